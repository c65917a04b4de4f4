use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetSpec,
    ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.to_string())
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "kubia".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            template: template("luksa/kubia"),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

fn recreate(replicas: i32) -> Deployment {
    let mut d = deployment(replicas, IntOrString::Int(0), IntOrString::Int(0));
    d.spec.strategy = Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    d
}

fn rs(name: &str, created: i64, replicas: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            creation_timestamp: Some(Time(at(created))),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(template(name)),
            ..ReplicaSetSpec::default()
        },
        status: Some(ReplicaSetStatus {
            replicas,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn annotated(mut rs: ReplicaSet, pairs: &[(&str, &str)]) -> ReplicaSet {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in pairs {
        a.insert(k.to_string(), v.to_string());
    }
    rs
}

#[test]
fn percentages_round_surge_up_and_unavailable_down() {
    assert_eq!(scaled_value(&pct("25%"), 3, true), Ok(1));
    assert_eq!(scaled_value(&pct("25%"), 3, false), Ok(0));
    assert_eq!(scaled_value(&pct("25%"), 10, true), Ok(3));
    assert_eq!(scaled_value(&pct("25%"), 10, false), Ok(2));
    assert_eq!(scaled_value(&pct("100%"), 7, false), Ok(7));
    assert_eq!(scaled_value(&IntOrString::Int(4), 10, true), Ok(4));
    assert_eq!(scaled_value(&pct("25"), 10, true), Err(InvalidSpec::NotAPercentage("25".into())));
    assert_eq!(scaled_value(&pct("x%"), 10, true), Err(InvalidSpec::BadPercentage("x%".into())));
}

#[test]
fn fenceposts_never_both_zero() {
    // 25% of 1: surge rounds up to 1, unavailable down to 0.
    assert_eq!(resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 1), Ok((1, 0)));
    // Both zero after rounding: maxUnavailable becomes 1 so the rollout can move.
    assert_eq!(resolve_fenceposts(Some(&pct("0%")), Some(&pct("10%")), 5), Ok((0, 1)));
    assert_eq!(resolve_fenceposts(None, None, 5), Ok((0, 1)));
    // maxUnavailable never exceeds the replicas; Recreate has neither.
    assert_eq!(max_unavailable(&deployment(2, IntOrString::Int(0), IntOrString::Int(5))), 2);
    assert_eq!(max_surge(&recreate(3)), 0);
    assert_eq!(max_unavailable(&recreate(3)), 0);
    assert_eq!(max_unavailable(&deployment(0, pct("25%"), pct("25%"))), 0);
}

#[test]
fn new_replica_set_grows_within_surge() {
    let d = deployment(3, pct("25%"), pct("25%"));
    let old = rs("old", 0, 3, 3);
    let new = rs("new", 1, 0, 0);
    // 3 + ceil(0.75) = 4 pods allowed: one new.
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(1));
    // At the ceiling: no growth.
    let new1 = rs("new", 1, 1, 0);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new1], &new1), Ok(1));
    // Never beyond spec.replicas in the new set.
    let old0 = rs("old", 0, 0, 0);
    assert_eq!(new_rs_new_replicas(&d, &[&old0, &new1], &new1), Ok(3));
    assert_eq!(new_rs_new_replicas(&recreate(3), &[&old, &new], &new), Ok(3));
}

#[test]
fn rolling_scale_down_keeps_minimum_availability() {
    // 10 replicas, maxSurge 3, maxUnavailable 2: at least 8 available.
    let d = deployment(10, IntOrString::Int(3), IntOrString::Int(2));
    let old_a = rs("a", 0, 4, 4);
    let old_b = rs("b", 1, 6, 3);
    let new = rs("n", 2, 3, 3);
    let all = [&old_a, &old_b, &new];
    // 13 pods - 8 - 0 unavailable new = 5 may go.
    assert_eq!(max_scaled_down(&d, &all, &new), 5);
    // Unhealthy first: b has 3 unavailable.
    let (plan, n) = unhealthy_cleanup_plan(&[&old_a, &old_b], 5);
    assert_eq!((plan, n), (vec![(1, 3)], 3));
    // Then: available 4 + 3 + 3 = 10, minimum 8: two more, oldest first.
    let old_b = rs("b", 1, 3, 3);
    let (plan, n) = scale_down_old_plan(&d, &[&old_a, &old_b, &new], &[&old_a, &old_b]);
    assert_eq!((plan, n), (vec![(0, 2)], 2));
    // Nothing available beyond the minimum: nothing scales down.
    let thin = rs("n", 2, 3, 0);
    let (plan, n) = scale_down_old_plan(&d, &[&rs("a", 0, 8, 8), &thin], &[&rs("a", 0, 8, 8)]);
    assert_eq!((plan, n), (vec![], 0));
}

#[test]
fn proportional_scaling_matches_the_documented_example() {
    // The Kubernetes docs' example: 10 replicas, maxSurge 3, maxUnavailable 2, a
    // rollout stuck with 8 old and 5 new; scaled to 15, the 5 extra go 3 to the old
    // set and 2 to the new one.
    let d = deployment(15, IntOrString::Int(3), IntOrString::Int(2));
    let old = annotated(rs("old", 0, 8, 8), &[(MAX_REPLICAS, "13"), (DESIRED_REPLICAS, "10")]);
    let new = annotated(rs("new", 1, 5, 0), &[(MAX_REPLICAS, "13"), (DESIRED_REPLICAS, "10")]);
    assert_eq!(proportional_sizes(&d, &[&old, &new]), vec![("old".to_string(), 11), ("new".to_string(), 7)]);
    // Back down to 10: the old (larger, older) set goes first.
    let d = deployment(10, IntOrString::Int(3), IntOrString::Int(2));
    let old = annotated(rs("old", 0, 11, 11), &[(MAX_REPLICAS, "18")]);
    let new = annotated(rs("new", 1, 7, 0), &[(MAX_REPLICAS, "18")]);
    assert_eq!(proportional_sizes(&d, &[&old, &new]), vec![("old".to_string(), 8), ("new".to_string(), 5)]);
    // To zero: everything goes.
    let d = deployment(0, IntOrString::Int(3), IntOrString::Int(2));
    assert_eq!(proportional_sizes(&d, &[&old, &new]), vec![("old".to_string(), 0), ("new".to_string(), 0)]);
}

#[test]
fn active_or_latest_and_saturation() {
    let a = rs("a", 0, 0, 0);
    let b = rs("b", 1, 0, 0);
    let n = rs("n", 2, 3, 3);
    assert_eq!(
        find_active_or_latest(Some(&n), &[&a, &b]).and_then(|r| r.metadata.name.as_deref()),
        Some("n")
    );
    // None active: the new one, else the newest old one.
    assert_eq!(find_active_or_latest(None, &[&a, &b]).and_then(|r| r.metadata.name.as_deref()), Some("b"));
    let a3 = rs("a", 0, 3, 3);
    assert!(find_active_or_latest(Some(&n), &[&a3]).is_none());

    let d = deployment(3, pct("25%"), pct("25%"));
    assert!(!is_saturated(&d, Some(&n)), "no desired-replicas annotation");
    let n = annotated(n, &[(DESIRED_REPLICAS, "3")]);
    assert!(is_saturated(&d, Some(&n)));
    assert!(!is_saturated(&d, Some(&annotated(rs("n", 2, 3, 2), &[(DESIRED_REPLICAS, "3")]))));
}

#[test]
fn hash_is_stable_safe_and_ignores_itself() {
    let t = template("luksa/kubia");
    let h = compute_hash(&t, None);
    assert_eq!(h, compute_hash(&t.clone(), None));
    assert!(!h.is_empty() && h.len() <= 10, "{h}");
    assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
    assert_ne!(h, compute_hash(&template("luksa/kubia:v2"), None));
    assert_ne!(h, compute_hash(&t, Some(1)));
    assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));

    let mut labelled = t.clone();
    if let Some(l) = labelled.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.insert(POD_TEMPLATE_HASH.into(), h.clone());
    }
    assert!(equal_ignore_hash(&labelled, &t));
    // Empty and absent are the same, as Go's semantic equality has it.
    let mut empty_annotations = t.clone();
    if let Some(m) = empty_annotations.metadata.as_mut() {
        m.annotations = Some(BTreeMap::new());
    }
    assert!(equal_ignore_hash(&empty_annotations, &t));
    assert_eq!(compute_hash(&empty_annotations, None), h);
    assert!(!equal_ignore_hash(&template("other"), &t));
}

#[test]
fn safe_encoding_maps_digits_like_upstream() {
    // '0' is 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
    assert_eq!(safe_encode("09"), "4f");
}

#[test]
fn selectors_match_labels_and_expressions() {
    let labels =
        BTreeMap::from([("app".to_string(), "web".to_string()), ("tier".to_string(), "fe".to_string())]);
    let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
    };
    let sel = |exprs: Vec<LabelSelectorRequirement>| LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
        match_expressions: Some(exprs),
    };
    assert_eq!(selector_matches(&sel(vec![]), Some(&labels)), Ok(true));
    assert_eq!(selector_matches(&sel(vec![req("tier", "In", &["fe", "be"])]), Some(&labels)), Ok(true));
    assert_eq!(selector_matches(&sel(vec![req("tier", "NotIn", &["fe"])]), Some(&labels)), Ok(false));
    assert_eq!(selector_matches(&sel(vec![req("x", "DoesNotExist", &[])]), Some(&labels)), Ok(true));
    assert_eq!(selector_matches(&sel(vec![req("x", "Exists", &[])]), Some(&labels)), Ok(false));
    assert_eq!(selector_matches(&sel(vec![]), None), Ok(false));
    assert!(selector_matches(&sel(vec![req("x", "Near", &[])]), Some(&labels)).is_err());
    assert!(selector_is_empty(&LabelSelector::default()));
}

#[test]
fn new_replica_set_annotations_copy_and_record_rollbacks() {
    let mut d = deployment(3, pct("25%"), pct("25%"));
    d.metadata.annotations = Some(BTreeMap::from([
        ("kubernetes.io/change-cause".to_string(), "set image".to_string()),
        (REVISION.to_string(), "7".to_string()),
        (LAST_APPLIED.to_string(), "{}".to_string()),
    ]));
    let mut new = rs("n", 0, 0, 0);
    assert!(set_new_replica_set_annotations(&d, &mut new, 1, false));
    let a = new.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("set image"));
    assert_eq!(a.get(REVISION).map(String::as_str), Some("1"));
    assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
    assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("4"));
    assert!(!a.contains_key(LAST_APPLIED));
    // Nothing new: unchanged.
    assert!(!set_new_replica_set_annotations(&d, &mut new, 1, true));
    // Rolled back to: revision 1 becomes 3, with 1 kept in the history; then 5.
    assert!(set_new_replica_set_annotations(&d, &mut new, 3, true));
    assert!(set_new_replica_set_annotations(&d, &mut new, 5, true));
    let a = new.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));
    assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    // A lower revision never lowers it.
    assert!(!set_new_replica_set_annotations(&d, &mut new, 2, true));
    assert_eq!(max_revision(&[&new, &rs("x", 0, 0, 0)]), 5);
}

#[test]
fn conditions_keep_transition_time_unless_status_changes() {
    let mut s = DeploymentStatus::default();
    set_condition(&mut s, new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "m1".into(), at(0)));
    set_condition(&mut s, new_condition(AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE, "m".into(), at(0)));
    // Same status and reason: untouched.
    set_condition(&mut s, new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "m2".into(), at(5)));
    assert_eq!(get_condition(&s, PROGRESSING).and_then(|c| c.message.as_deref()), Some("m1"));
    // New reason, same status: moves last, keeps the transition time.
    set_condition(&mut s, new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "m3".into(), at(7)));
    let c = s.conditions.clone().unwrap_or_default();
    assert_eq!(
        c.iter().map(|c| c.type_.clone().unwrap_or_default()).collect::<Vec<_>>(),
        [AVAILABLE, PROGRESSING]
    );
    assert_eq!(c[1].last_transition_time, Some(Time(at(0))));
    assert_eq!(c[1].last_update_time, Some(Time(at(7))));
    // New status: new transition time.
    set_condition(&mut s, new_condition(PROGRESSING, "False", TIMED_OUT, "m4".into(), at(9)));
    assert_eq!(
        get_condition(&s, PROGRESSING).and_then(|c| c.last_transition_time.clone()),
        Some(Time(at(9)))
    );
    remove_condition(&mut s, PROGRESSING);
    remove_condition(&mut s, AVAILABLE);
    assert_eq!(s.conditions, None);
}

#[test]
fn rollout_status_reports_progress_completion_and_deadline() {
    let mut d = deployment(3, pct("25%"), pct("25%"));
    let new = rs("web-abc", 1, 3, 1);
    let old = rs("web-old", 0, 1, 1);
    d.status = Some(DeploymentStatus {
        conditions: Some(vec![new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "x".into(), at(0))]),
        ..DeploymentStatus::default()
    });
    // Counts, Available (2 >= 3 - 0 is false) and progress (more updated pods).
    let s = rollout_status(&d, &[&old, &new], Some(&new), at(10));
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(4), Some(3), Some(2), Some(2))
    );
    assert_eq!(s.observed_generation, Some(1));
    let avail = get_condition(&s, AVAILABLE).cloned().unwrap_or_default();
    assert_eq!(avail.reason.as_deref(), Some(MINIMUM_REPLICAS_UNAVAILABLE));
    assert_eq!(avail.message.as_deref(), Some("Deployment does not have minimum availability."));
    let prog = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!(prog.reason.as_deref(), Some(REPLICA_SET_UPDATED));
    assert_eq!(prog.message.as_deref(), Some("ReplicaSet \"web-abc\" is progressing."));
    assert_eq!(prog.last_transition_time, Some(Time(at(0))));

    // No progress since the last status, past the 600 s deadline: timed out.
    d.status = Some(s.clone());
    let s2 = rollout_status(&d, &[&old, &new], Some(&new), at(611));
    let prog = get_condition(&s2, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!(prog.reason.as_deref(), Some(TIMED_OUT));
    assert_eq!(prog.status.as_deref(), Some("False"));
    assert_eq!(prog.message.as_deref(), Some("ReplicaSet \"web-abc\" has timed out progressing."));
    // Before the deadline (last progress at 10 s): unchanged, and a check is
    // scheduled for just after it.
    let s3 = rollout_status(&d, &[&old, &new], Some(&new), at(300));
    assert_eq!(s3, s);
    assert_eq!(progress_check_after(&d, &s3, at(300)), Some(Duration::from_secs(311)));

    // All new and available: complete.
    let done = rs("web-abc", 1, 3, 3);
    let s4 = rollout_status(&d, &[&rs("web-old", 0, 0, 0), &done], Some(&done), at(20));
    let prog = get_condition(&s4, PROGRESSING).cloned().unwrap_or_default();
    assert_eq!(prog.reason.as_deref(), Some(NEW_RS_AVAILABLE));
    assert_eq!(prog.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
    assert_eq!(
        get_condition(&s4, AVAILABLE).and_then(|c| c.reason.as_deref()),
        Some(MINIMUM_REPLICAS_AVAILABLE)
    );
    assert_eq!(s4.unavailable_replicas, None, "zero is omitted");
    assert_eq!(progress_check_after(&d, &s4, at(20)), None);

    // Without a deadline there is no Progressing condition at all.
    d.spec.progress_deadline_seconds = None;
    let s5 = rollout_status(&d, &[&done], Some(&done), at(20));
    assert!(get_condition(&s5, PROGRESSING).is_none());
}

#[test]
fn replica_failures_surface_on_the_deployment() {
    let d = deployment(1, pct("25%"), pct("25%"));
    let mut new = rs("n", 0, 1, 0);
    if let Some(st) = new.status.as_mut() {
        st.conditions = Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: Some(REPLICA_FAILURE.into()),
            status: Some("True".into()),
            reason: Some("FailedCreate".into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(at(0))),
        }]);
    }
    let s = rollout_status(&d, &[&new], Some(&new), at(1));
    let c = get_condition(&s, REPLICA_FAILURE).cloned().unwrap_or_default();
    assert_eq!((c.reason.as_deref(), c.message.as_deref()), (Some("FailedCreate"), Some("quota")));
}

#[test]
fn orders_break_ties_like_upstream() {
    let a = rs("a", 0, 2, 0);
    let b = rs("b", 5, 2, 0);
    let c = rs("c", 5, 1, 0);
    let mut v = [&c, &b, &a];
    v.sort_by(|x, y| by_size_newer(x, y));
    assert_eq!(
        v.iter().map(|r| r.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>(),
        ["b", "a", "c"]
    );
    v.sort_by(|x, y| by_size_older(x, y));
    assert_eq!(
        v.iter().map(|r| r.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let r1 = annotated(rs("z", 9, 0, 0), &[(REVISION, "1")]);
    let r2 = annotated(rs("y", 0, 0, 0), &[(REVISION, "2")]);
    let mut v = [&r2, &r1];
    v.sort_by(|x, y| by_revision(x, y));
    assert_eq!(v[0].metadata.name.as_deref(), Some("z"));
}
