//! Integration tests of the Deployment controller against an in-process API server.
//! Most run the Deployment controller alone and play the ReplicaSet controller
//! themselves, writing ReplicaSet status through the `status` subresource, so each
//! rollout step can be checked; one runs it with the real ReplicaSet controller.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::{json, Value};

const REVISION: &str = "deployment.kubernetes.io/revision";

async fn start() -> (InProcess, Client) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    tokio::spawn(pier_controllers::deployment::run(client.clone()));
    (server, client)
}

fn deployment(name: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}
            }
        }
    }))
    .expect("deployment")
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn create(client: &Client, d: &Deployment) -> Deployment {
    Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), d)
        .await
        .expect("create deployment")
}

async fn patch_deployment(client: &Client, name: &str, patch: Value) {
    Api::<Deployment>::default_namespaced(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch deployment");
}

async fn set_image(client: &Client, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "image": image}]}}}});
    patch_deployment(client, name, patch).await;
}

async fn get_deployment(client: &Client, name: &str) -> Deployment {
    Api::<Deployment>::default_namespaced(client.clone()).get(name).await.expect("get deployment")
}

/// The ReplicaSets the Deployment controls, by revision.
async fn replica_sets(client: &Client, d: &str) -> Vec<ReplicaSet> {
    let uid = get_deployment(client, d).await.metadata.uid;
    let list = Api::<ReplicaSet>::default_namespaced(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list rs");
    let mut owned: Vec<ReplicaSet> = list
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect();
    owned.sort_by_key(revision);
    owned
}

fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

/// The ReplicaSets' `spec.replicas`, oldest revision first.
async fn sizes(client: &Client, d: &str) -> Vec<i32> {
    replica_sets(client, d).await.iter().map(spec_replicas).collect()
}

async fn wait_sizes(client: &Client, d: &str, want: &[i32]) -> Vec<ReplicaSet> {
    eventually(&format!("replica sets of {d} sized {want:?}"), || async {
        let rss = replica_sets(client, d).await;
        let got: Vec<i32> = rss.iter().map(spec_replicas).collect();
        if got == want {
            Ok(rss)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

/// Plays the ReplicaSet controller: `replicas` pods exist, `available` of them available.
async fn set_rs_status(client: &Client, rs: &str, replicas: i32, available: i32) {
    let api = Api::<ReplicaSet>::default_namespaced(client.clone());
    let current = api.get(rs).await.expect("get rs");
    let patch = json!({"status": {
        "replicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "fullyLabeledReplicas": replicas,
        "observedGeneration": current.metadata.generation,
    }});
    api.patch_status(rs, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch rs status");
}

/// A stand-in ReplicaSet controller in which every pod is available at once.
fn mirror_replica_sets(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api = Api::<ReplicaSet>::default_namespaced(client.clone());
        let mut events =
            watcher(api.clone(), watcher::Config::default()).applied_objects().default_backoff().boxed();
        while let Some(Ok(rs)) = events.next().await {
            let want = spec_replicas(&rs);
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas == want
                && status.available_replicas.unwrap_or(0) == want
                && status.observed_generation == rs.metadata.generation
            {
                continue;
            }
            let patch = json!({"status": {
                "replicas": want, "readyReplicas": want, "availableReplicas": want,
                "fullyLabeledReplicas": want, "observedGeneration": rs.metadata.generation,
            }});
            let _ = api.patch_status(&name(&rs), &PatchParams::default(), &Patch::Merge(&patch)).await;
        }
    })
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some(type_))?;
    Some((
        c.status.clone().unwrap_or_default(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

async fn wait_condition(client: &Client, d: &str, type_: &str, reason: &str) -> (String, String, String) {
    eventually(&format!("{type_} condition {reason} on {d}"), || async {
        let dep = get_deployment(client, d).await;
        match condition(&dep, type_) {
            Some(c) if c.1 == reason => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Messages of the Deployment's `ScalingReplicaSet` events, oldest first.
async fn scaling_events(client: &Client) -> Vec<String> {
    let list =
        Api::<Event>::default_namespaced(client.clone()).list(&ListParams::default()).await.expect("events");
    let mut events: Vec<Event> =
        list.items.into_iter().filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet")).collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events.into_iter().filter_map(|e| e.message).collect()
}

async fn wait_events(client: &Client, want: &[String]) {
    eventually("ScalingReplicaSet events", || async {
        let got = scaling_events(client).await;
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:#?}"))
        }
    })
    .await
}

#[tokio::test]
async fn creates_a_hashed_replica_set_and_reports_availability() {
    let (_server, client) = start().await;
    create(&client, &deployment("web", 3, rolling(json!("25%"), json!("25%")))).await;
    let rss = wait_sizes(&client, "web", &[3]).await;
    let rs = &rss[0];
    let hash =
        rs.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned().expect("hash label");
    assert_eq!(name(rs), format!("web-{hash}"));
    assert_eq!(rs.spec.selector.match_labels.as_ref().and_then(|l| l.get("pod-template-hash")), Some(&hash));
    let template_labels =
        rs.spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    assert_eq!(template_labels.as_ref().and_then(|l| l.get("pod-template-hash")), Some(&hash));
    assert_eq!(template_labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("web"));
    let owner = rs.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!(
        (owner[0].kind.as_str(), owner[0].controller, owner[0].block_owner_deletion),
        ("Deployment", Some(true), Some(true))
    );
    assert_eq!(annotation(rs, REVISION), Some("1"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/desired-replicas"), Some("3"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), Some("4"));
    wait_events(&client, &[format!("Scaled up replica set web-{hash} from 0 to 3")]).await;

    let (status, _, message) = wait_condition(&client, "web", "Progressing", "NewReplicaSetCreated").await;
    assert_eq!((status.as_str(), message), ("True", format!("Created new replica set \"web-{hash}\"")));
    wait_condition(&client, "web", "Available", "MinimumReplicasUnavailable").await;
    let d = get_deployment(&client, "web").await;
    assert_eq!(d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("1"));

    set_rs_status(&client, &name(rs), 3, 3).await;
    let (_, _, message) = wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;
    assert_eq!(message, format!("ReplicaSet \"web-{hash}\" has successfully progressed."));
    let (status, _, message) = wait_condition(&client, "web", "Available", "MinimumReplicasAvailable").await;
    assert_eq!((status.as_str(), message.as_str()), ("True", "Deployment has minimum availability."));
    let s = get_deployment(&client, "web").await.status.unwrap_or_default();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas,
            s.observed_generation
        ),
        (Some(3), Some(3), Some(3), Some(3), None, Some(1))
    );
}

#[tokio::test]
async fn rolling_update_moves_one_step_at_a_time_within_surge_and_unavailability() {
    let (_server, client) = start().await;
    // 3 replicas, 25%/25%: maxSurge 1 (rounded up), maxUnavailable 0 (rounded down).
    create(&client, &deployment("web", 3, rolling(json!("25%"), json!("25%")))).await;
    let old = name(&wait_sizes(&client, "web", &[3]).await[0]);
    set_rs_status(&client, &old, 3, 3).await;
    wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;

    set_image(&client, "web", "luksa/kubia:v2").await;
    let rss = wait_sizes(&client, "web", &[3, 1]).await;
    let new = name(&rss[1]);
    assert_ne!(new, old);
    assert_eq!(revision(&rss[1]), 2);
    // Nothing new is available yet, and no old pod may go.
    wait_condition(&client, "web", "Progressing", "NewReplicaSetCreated").await;
    assert_eq!(sizes(&client, "web").await, [3, 1]);

    set_rs_status(&client, &new, 1, 1).await;
    wait_sizes(&client, "web", &[2, 2]).await;
    set_rs_status(&client, &old, 2, 2).await;
    set_rs_status(&client, &new, 2, 2).await;
    wait_sizes(&client, "web", &[1, 3]).await;
    set_rs_status(&client, &old, 1, 1).await;
    set_rs_status(&client, &new, 3, 3).await;
    wait_sizes(&client, "web", &[0, 3]).await;
    set_rs_status(&client, &old, 0, 0).await;
    let (_, _, message) = wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;
    assert_eq!(message, format!("ReplicaSet \"{new}\" has successfully progressed."));

    wait_events(
        &client,
        &[
            format!("Scaled up replica set {old} from 0 to 3"),
            format!("Scaled up replica set {new} from 0 to 1"),
            format!("Scaled down replica set {old} from 3 to 2"),
            format!("Scaled up replica set {new} from 1 to 2"),
            format!("Scaled down replica set {old} from 2 to 1"),
            format!("Scaled up replica set {new} from 2 to 3"),
            format!("Scaled down replica set {old} from 1 to 0"),
        ],
    )
    .await;
    let d = get_deployment(&client, "web").await;
    assert_eq!(d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("2"));
}

#[tokio::test]
async fn recreate_waits_for_old_pods_before_creating_the_new_replica_set() {
    let (_server, client) = start().await;
    create(&client, &deployment("db", 2, json!({"type": "Recreate"}))).await;
    let old_rs = wait_sizes(&client, "db", &[2]).await.remove(0);
    let old = name(&old_rs);
    set_rs_status(&client, &old, 2, 2).await;
    // A pod of the old ReplicaSet, still running after its ReplicaSet reports none.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "db-old-pod",
            "labels": {"app": "db", "pod-template-hash": old_rs.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash"))},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": old, "uid": old_rs.metadata.uid, "controller": true}]
        },
        "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}
    }))
    .expect("pod");
    let pods = Api::<Pod>::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod).await.expect("create pod");

    set_image(&client, "db", "luksa/kubia:v2").await;
    wait_sizes(&client, "db", &[0]).await;
    set_rs_status(&client, &old, 0, 0).await;
    // The controller has seen the change (observedGeneration) and still waits.
    eventually("the template change observed", || async {
        let d = get_deployment(&client, "db").await;
        let observed = d.status.as_ref().and_then(|s| s.observed_generation);
        if observed == d.metadata.generation && d.status.as_ref().and_then(|s| s.replicas).is_none() {
            Ok(())
        } else {
            Err(format!("{:?}", d.status))
        }
    })
    .await;
    assert_eq!(sizes(&client, "db").await, [0], "no new replica set while an old pod runs");

    pods.delete("db-old-pod", &DeleteParams::default()).await.expect("delete pod");
    let rss = wait_sizes(&client, "db", &[0, 2]).await;
    wait_events(
        &client,
        &[
            format!("Scaled up replica set {old} from 0 to 2"),
            format!("Scaled down replica set {old} from 2 to 0"),
            format!("Scaled up replica set {} from 0 to 2", name(&rss[1])),
        ],
    )
    .await;
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional() {
    let (_server, client) = start().await;
    // The Kubernetes documentation's example: 10 replicas, maxSurge 3, maxUnavailable 2,
    // a rollout to an image that never becomes available, then a scale to 15.
    create(&client, &deployment("nginx", 10, rolling(json!(3), json!(2)))).await;
    let old = name(&wait_sizes(&client, "nginx", &[10]).await[0]);
    set_rs_status(&client, &old, 10, 10).await;
    wait_condition(&client, "nginx", "Available", "MinimumReplicasAvailable").await;
    set_image(&client, "nginx", "nginx:sometag").await;
    let rss = wait_sizes(&client, "nginx", &[8, 5]).await;
    let new = name(&rss[1]);

    patch_deployment(&client, "nginx", json!({"spec": {"replicas": 15}})).await;
    let rss = wait_sizes(&client, "nginx", &[11, 7]).await;
    for rs in &rss {
        assert_eq!(annotation(rs, "deployment.kubernetes.io/desired-replicas"), Some("15"));
        assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), Some("18"));
    }
    let events = scaling_events(&client).await;
    assert!(events.contains(&format!("Scaled up replica set {old} from 8 to 11")), "{events:#?}");
    assert!(events.contains(&format!("Scaled up replica set {new} from 5 to 7")), "{events:#?}");
}

#[tokio::test]
async fn paused_deployments_scale_but_do_not_roll_out() {
    let (_server, client) = start().await;
    create(&client, &deployment("web", 2, rolling(json!("25%"), json!("25%")))).await;
    let old = name(&wait_sizes(&client, "web", &[2]).await[0]);
    set_rs_status(&client, &old, 2, 2).await;
    wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;

    patch_deployment(&client, "web", json!({"spec": {"paused": true}})).await;
    let (status, _, message) = wait_condition(&client, "web", "Progressing", "DeploymentPaused").await;
    assert_eq!((status.as_str(), message.as_str()), ("Unknown", "Deployment is paused"));
    set_image(&client, "web", "luksa/kubia:v2").await;
    patch_deployment(&client, "web", json!({"spec": {"replicas": 4}})).await;
    wait_sizes(&client, "web", &[4]).await;
    set_rs_status(&client, &old, 4, 4).await;

    // Resumed, the rollout runs until the new pods' unavailability stops it: surge one
    // (4+1), scale the old set down to the 3 that must stay available, surge again to
    // 5, then wait. (The intermediate [4, 1] is too brief to assert on.)
    patch_deployment(&client, "web", json!({"spec": {"paused": false}})).await;
    let rss = wait_sizes(&client, "web", &[3, 2]).await;
    assert_eq!(revision(&rss[1]), 2);
    let d = get_deployment(&client, "web").await;
    let reason = condition(&d, "Progressing").map(|c| c.1).unwrap_or_default();
    assert!(
        ["DeploymentResumed", "NewReplicaSetCreated", "ReplicaSetUpdated"].contains(&reason.as_str()),
        "{reason}"
    );
}

#[tokio::test]
async fn rollback_reuses_the_old_replica_set_and_history_is_limited() {
    let (_server, client) = start().await;
    let _rs_controller = mirror_replica_sets(client.clone());
    let mut d = deployment("web", 2, rolling(json!("25%"), json!("25%")));
    d.spec.revision_history_limit = Some(1);
    create(&client, &d).await;
    let first = name(&wait_sizes(&client, "web", &[2]).await[0]);
    set_image(&client, "web", "luksa/kubia:v2").await;
    let second = name(&wait_sizes(&client, "web", &[0, 2]).await[1]);
    wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;

    // What `kubectl rollout undo` does: write the old template back.
    set_image(&client, "web", "luksa/kubia").await;
    let rss = eventually("the first replica set new again, as revision 3", || async {
        let rss = replica_sets(&client, "web").await;
        let got: Vec<(String, i64, i32)> =
            rss.iter().map(|rs| (name(rs), revision(rs), spec_replicas(rs))).collect();
        if got == [(second.clone(), 2, 0), (first.clone(), 3, 2)] {
            Ok(rss)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    assert_eq!(annotation(&rss[1], "deployment.kubernetes.io/revision-history"), Some("1"));
    wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;

    // A third template: with revisionHistoryLimit 1, only one old replica set stays.
    set_image(&client, "web", "luksa/kubia:v3").await;
    let rss = eventually("the oldest empty replica set deleted", || async {
        let rss = replica_sets(&client, "web").await;
        let names: Vec<String> = rss.iter().map(name).collect();
        if rss.len() == 2
            && !names.contains(&second)
            && rss.iter().map(spec_replicas).collect::<Vec<_>>() == [0, 2]
        {
            Ok(rss)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    assert_eq!(name(&rss[0]), first);
    assert_eq!(revision(&rss[1]), 4);
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_what_stops_matching() {
    let (_server, client) = start().await;
    // An orphan with the Deployment's template, as after `kubectl delete --cascade=orphan`.
    let orphan: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-orphan", "labels": {"app": "web", "pod-template-hash": "orphan"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "orphan"}},
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": "orphan"}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}
            }
        }
    }))
    .expect("rs");
    let rs_api = Api::<ReplicaSet>::default_namespaced(client.clone());
    rs_api.create(&PostParams::default(), &orphan).await.expect("create orphan");
    create(&client, &deployment("web", 3, rolling(json!("25%"), json!("25%")))).await;

    let rss = eventually("the orphan adopted", || async {
        let rss = replica_sets(&client, "web").await;
        if rss.len() == 1 && revision(&rss[0]) == 1 {
            Ok(rss)
        } else {
            Err(format!("{:?}", rss.iter().map(name).collect::<Vec<_>>()))
        }
    })
    .await;
    assert_eq!(name(&rss[0]), "web-orphan", "adopted as the new replica set rather than a second one");

    // Labels only: the selector is immutable in apps/v1.
    let relabel = json!({"metadata": {"labels": {"app": "other", "pod-template-hash": "orphan"}}});
    rs_api.patch("web-orphan", &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabel");
    eventually("the orphan released and a replacement created", || async {
        let rs = rs_api.get("web-orphan").await.map_err(|e| e.to_string())?;
        let owned = replica_sets(&client, "web").await;
        if rs.metadata.owner_references.is_none_or(|o| o.is_empty())
            && owned.len() == 1
            && name(&owned[0]) != "web-orphan"
        {
            Ok(())
        } else {
            Err(format!("{:?}", owned.iter().map(name).collect::<Vec<_>>()))
        }
    })
    .await;
}

#[tokio::test]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let (_server, client) = start().await;
    let mut d = deployment("web", 2, rolling(json!("25%"), json!("25%")));
    d.spec.progress_deadline_seconds = Some(1);
    create(&client, &d).await;
    let rs = name(&wait_sizes(&client, "web", &[2]).await[0]);
    let (status, _, message) =
        wait_condition(&client, "web", "Progressing", "ProgressDeadlineExceeded").await;
    assert_eq!(
        (status.as_str(), message),
        ("False", format!("ReplicaSet \"{rs}\" has timed out progressing."))
    );
}

#[tokio::test]
async fn rolls_out_with_the_real_replica_set_controller() {
    let (_server, client) = start().await;
    tokio::spawn(pier_controllers::replication::run(client.clone()));
    let pods = Api::<Pod>::default_namespaced(client.clone());
    // No node agent: every pod is bound and Ready as soon as it exists.
    let ready = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut events =
                watcher(pods.clone(), watcher::Config::default()).applied_objects().default_backoff().boxed();
            while let Some(Ok(pod)) = events.next().await {
                let is_ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if is_ready || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let patch = json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}
                ]}});
                let name = pod.metadata.name.clone().unwrap_or_default();
                let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        })
    };
    create(&client, &deployment("web", 3, rolling(json!("25%"), json!("25%")))).await;
    wait_condition(&client, "web", "Progressing", "NewReplicaSetAvailable").await;
    set_image(&client, "web", "luksa/kubia:v2").await;
    eventually("the rollout to finish", || async {
        let d = get_deployment(&client, "web").await;
        let s = d.status.clone().unwrap_or_default();
        let done = s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(3)
            && s.replicas == Some(3)
            && s.available_replicas == Some(3)
            && condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable");
        if done {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(sizes(&client, "web").await, [0, 3]);
    ready.abort();
}
