use super::*;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn at(secs_ago: i64, now: Timestamp) -> Timestamp {
    now - k8s_openapi::jiff::SignedDuration::from_secs(secs_ago)
}

/// A pod builder for the tables below.
#[derive(Clone)]
struct P {
    name: &'static str,
    node: &'static str,
    phase: &'static str,
    ready_secs_ago: Option<i64>,
    created_secs_ago: i64,
    restarts: i32,
    cost: Option<i32>,
    labels: Vec<(&'static str, &'static str)>,
    owner: Option<&'static str>,
}

fn p(name: &'static str) -> P {
    P {
        name,
        node: "n1",
        phase: "Running",
        ready_secs_ago: Some(1000),
        created_secs_ago: 2000,
        restarts: 0,
        cost: None,
        labels: vec![("app", "kubia")],
        owner: None,
    }
}

impl P {
    fn build(&self, now: Timestamp) -> Pod {
        let conditions = self.ready_secs_ago.map(|s| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(s, now))),
                ..PodCondition::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{}", self.name)),
                labels: Some(labels(&self.labels)),
                annotations: self.cost.map(|c| [(POD_DELETION_COST.to_string(), c.to_string())].into()),
                creation_timestamp: Some(Time(at(self.created_secs_ago, now))),
                owner_references: self.owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "ReplicationController".into(),
                        name: "kubia".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!self.node.is_empty()).then(|| self.node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(self.phase.into()),
                conditions,
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    restart_count: self.restarts,
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
}

#[test]
fn selectors_match_like_upstream_and_empty_ones_match_nothing() {
    let rc = Selector::Map(labels(&[("app", "kubia")]));
    assert!(rc.matches(Some(&labels(&[("app", "kubia"), ("enabled", "true")]))));
    assert!(!rc.matches(Some(&labels(&[("app", "other")]))));
    assert!(!rc.matches(None));
    assert!(!Selector::Map(BTreeMap::new()).matches(Some(&labels(&[("app", "kubia")]))));
    assert!(!Selector::Label(LabelSelector::default()).matches(Some(&labels(&[("app", "kubia")]))));

    let rs = Selector::Label(LabelSelector {
        match_labels: Some(labels(&[("app", "kubia")])),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into()]),
            },
            LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
        ]),
    });
    assert!(rs.matches(Some(&labels(&[("app", "kubia"), ("env", "prod")]))));
    assert!(!rs.matches(Some(&labels(&[("app", "kubia"), ("env", "dev")]))));
    assert!(!rs.matches(Some(&labels(&[("app", "kubia"), ("env", "prod"), ("canary", "1")]))));
    let not_in = Selector::Label(LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "env".into(),
            operator: "NotIn".into(),
            values: Some(vec!["prod".into()]),
        }]),
    });
    assert!(not_in.matches(Some(&labels(&[]))));
    assert!(!not_in.matches(Some(&labels(&[("env", "prod")]))));
}

#[test]
fn claim_adopts_orphans_keeps_ours_releases_mismatches_and_ignores_others() {
    let now = Timestamp::now();
    let sel = Selector::Map(labels(&[("app", "kubia")]));
    let ours = P { owner: Some("rc-uid"), ..p("a") }.build(now);
    let orphan = p("b").build(now);
    let theirs = P { owner: Some("other-uid"), ..p("c") }.build(now);
    let relabelled = P { owner: Some("rc-uid"), labels: vec![("app", "foo")], ..p("d") }.build(now);
    let stranger = P { labels: vec![("app", "foo")], ..p("e") }.build(now);
    let cases = [
        (&ours, false, Claim::Keep),
        (&orphan, false, Claim::Adopt),
        (&theirs, false, Claim::Ignore),
        (&relabelled, false, Claim::Release),
        (&stranger, false, Claim::Ignore),
        // An owner being deleted neither adopts nor releases.
        (&orphan, true, Claim::Ignore),
        (&relabelled, true, Claim::Ignore),
        (&ours, true, Claim::Keep),
    ];
    for (pod, deleting, want) in cases {
        assert_eq!(claim("rc-uid", deleting, &sel, pod), want, "{:?} deleting={deleting}", pod.metadata.name);
    }
}

#[test]
fn inactive_pods_do_not_count() {
    let now = Timestamp::now();
    let mut terminating = p("a").build(now);
    terminating.metadata.deletion_timestamp = Some(Time(now));
    assert!(!is_active(&terminating));
    assert!(!is_active(&P { phase: "Succeeded", ..p("b") }.build(now)));
    assert!(!is_active(&P { phase: "Failed", ..p("c") }.build(now)));
    assert!(is_active(&P { phase: "Pending", ..p("d") }.build(now)));
}

#[test]
fn diff_is_capped_at_the_burst() {
    assert_eq!(replica_diff(0, 3), 3);
    assert_eq!(replica_diff(5, 3), -2);
    assert_eq!(replica_diff(3, 3), 0);
    assert_eq!(replica_diff(0, 1000), 500);
    assert_eq!(replica_diff(1000, 0), -500);
}

#[test]
fn slow_start_doubles_from_one() {
    assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
    assert_eq!(slow_start_batches(1, 1), [1]);
    assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
    assert_eq!(slow_start_batches(500, 1), [1, 2, 4, 8, 16, 32, 64, 128, 245]);
}

#[test]
fn deletion_order_follows_upstream_rules_in_turn() {
    let now = Timestamp::now();
    // Each pair: the first is deleted before the second, by the rule named.
    let pairs = [
        ("unassigned before assigned", P { node: "", ..p("x") }, p("y")),
        ("pending before running", P { phase: "Pending", ..p("x") }, p("y")),
        ("unknown before running", P { phase: "Unknown", ..p("x") }, p("y")),
        ("not ready before ready", P { ready_secs_ago: None, ..p("x") }, p("y")),
        ("lower deletion cost first", P { cost: Some(-5), ..p("x") }, P { cost: Some(10), ..p("y") }),
        (
            "recently ready first",
            P { ready_secs_ago: Some(10), ..p("x") },
            P { ready_secs_ago: Some(5000), ..p("y") },
        ),
        ("more restarts first", P { restarts: 3, ..p("x") }, p("y")),
        ("newer first", P { created_secs_ago: 10, ..p("x") }, P { created_secs_ago: 9000, ..p("y") }),
    ];
    for (rule, first, second) in pairs {
        let (a, b) = (first.build(now), second.build(now));
        let chosen = pods_to_delete(&[&b, &a], &[&a, &b], 1, now);
        assert_eq!(names(&chosen), ["x"], "{rule}");
        let chosen = pods_to_delete(&[&a, &b], &[&a, &b], 1, now);
        assert_eq!(names(&chosen), ["x"], "{rule}");
    }
}

#[test]
fn doubled_up_pods_go_first() {
    let now = Timestamp::now();
    let a = P { node: "n1", ..p("a") }.build(now);
    let b = P { node: "n1", ..p("b") }.build(now);
    let c = P { node: "n2", ..p("c") }.build(now);
    let all = [&c, &a, &b];
    let chosen = pods_to_delete(&all, &all, 1, now);
    assert!(names(&chosen) == ["a"] || names(&chosen) == ["b"], "{:?}", names(&chosen));
    assert_eq!(pods_to_delete(&all, &all, 3, now).len(), 3);
}

#[test]
fn counts_honour_template_labels_and_min_ready_seconds() {
    let now = Timestamp::now();
    let template = labels(&[("app", "kubia")]);
    let full = p("a").build(now);
    let partial = P { labels: vec![("app", "kubia")], ready_secs_ago: Some(3), ..p("b") }.build(now);
    let unready = P { ready_secs_ago: None, labels: vec![("other", "x")], ..p("c") }.build(now);
    let pods = [&full, &partial, &unready];
    let (c, next) = count(&pods, Some(&template), 0, now);
    assert_eq!(
        c,
        Counts { replicas: 3, fully_labeled_replicas: 2, ready_replicas: 2, available_replicas: 2 }
    );
    assert_eq!(next, None);
    // With minReadySeconds 10, the pod ready for 3 s is ready but not yet available,
    // and the controller must look again in about 7 s.
    let (c, next) = count(&pods, Some(&template), 10, now);
    assert_eq!(
        c,
        Counts { replicas: 3, fully_labeled_replicas: 2, ready_replicas: 2, available_replicas: 1 }
    );
    let next = next.expect("a pod turns available later");
    assert!(
        next > Duration::from_secs(6) && next <= Duration::from_secs(7) + Duration::from_millis(1),
        "{next:?}"
    );
}

#[test]
fn pods_from_templates_carry_the_controller_reference_and_generate_name() {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "kubia")])),
            annotations: Some(labels(&[("note", "x")])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec::default()),
    };
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "ReplicationController".into(),
        name: "kubia-rc".into(),
        uid: "u".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let pod = pod_from_template(&template, owner.clone(), "default");
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("kubia-rc-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(pod.metadata.labels, Some(labels(&[("app", "kubia")])));
    assert_eq!(pod.metadata.annotations, Some(labels(&[("note", "x")])));
    assert_eq!(pod.metadata.owner_references, Some(vec![owner]));
}
