//! Integration tests of the ReplicationController and ReplicaSet controllers against an
//! in-process API server. There is no node agent: tests that need Ready pods write pod
//! status through the `status` subresource themselves.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::json;

async fn start() -> (InProcess, Client) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    tokio::spawn(pier_controllers::replication::run(client.clone()));
    (server, client)
}

fn rc(name: &str, replicas: i32, min_ready_seconds: i32) -> ReplicationController {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"app": name},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia", "ports": [{"containerPort": 8080}]}]}
            }
        }
    }))
    .expect("rc")
}

/// The active (not terminating) pods of the namespace with label `app=<app>`.
async fn active_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list pods");
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

async fn wait_active(pods: &Api<Pod>, app: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} active pods app={app}"), || async {
        let got = active_pods(pods, app).await;
        if got.len() == n {
            Ok(got)
        } else {
            Err(format!("{} pods", got.len()))
        }
    })
    .await
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn owner_uids(p: &Pod) -> Vec<String> {
    p.metadata.owner_references.iter().flatten().map(|r| r.uid.clone()).collect()
}

async fn events_for(client: &Client, object: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={object}")))
        .await
        .expect("list events");
    list.items.into_iter().map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default())).collect()
}

async fn set_ready(pods: &Api<Pod>, name: &str) {
    let patch = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())}
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("pod status");
}

#[tokio::test]
async fn rc_creates_named_owned_pods_records_events_and_reports_status() {
    let (_server, client) = start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = rcs.create(&PostParams::default(), &rc("kubia-rc", 3, 0)).await.expect("create rc");
    let uid = created.metadata.uid.clone().expect("uid");

    let got = wait_active(&pods, "kubia-rc", 3).await;
    for p in &got {
        let n = name(p);
        let suffix = n.strip_prefix("kubia-rc-").unwrap_or_else(|| panic!("{n} is named after the rc"));
        assert_eq!(suffix.len(), 5, "{n}");
        assert!(suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{n}");
        let refs = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.len(), 1, "{n}");
        let r = &refs[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.uid.as_str()),
            ("ReplicationController", "kubia-rc", uid.as_str())
        );
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
    }

    let status = eventually("status.replicas 3", || async {
        let rc = rcs.get("kubia-rc").await.map_err(|e| e.to_string())?;
        let s = rc.status.clone().unwrap_or_default();
        if s.replicas == 3 && s.observed_generation == Some(1) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.ready_replicas, None, "zero counts are omitted as upstream does");

    let mut want: Vec<(String, String)> =
        got.iter().map(|p| ("SuccessfulCreate".to_string(), format!("Created pod: {}", name(p)))).collect();
    want.sort();
    let seen = eventually("3 SuccessfulCreate events", || async {
        let mut e = events_for(&client, "kubia-rc").await;
        e.sort();
        if e.len() >= 3 {
            Ok(e)
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
    assert_eq!(seen, want);

    // Ready pods are counted; with minReadySeconds 0 they are available at once.
    for p in &got {
        set_ready(&pods, &name(p)).await;
    }
    eventually("3 ready and available", || async {
        let s = rcs.get("kubia-rc").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.ready_replicas == Some(3) && s.available_replicas == Some(3) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn scale_up_and_down_through_the_scale_subresource() {
    let (_server, client) = start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rcs.create(&PostParams::default(), &rc("kubia", 3, 0)).await.expect("create rc");
    let three = wait_active(&pods, "kubia", 3).await;

    // What `kubectl scale` sends.
    let scale = json!({"spec": {"replicas": 5}});
    rcs.patch_scale("kubia", &PatchParams::default(), &Patch::Merge(scale)).await.expect("scale up");
    wait_active(&pods, "kubia", 5).await;

    // Two of the new pods are Ready; scaling to 2 deletes the three not-ready pods first.
    let all = active_pods(&pods, "kubia").await;
    let keep: Vec<String> =
        all.iter().map(name).filter(|n| three.iter().any(|t| &name(t) == n)).take(2).collect();
    for n in &keep {
        set_ready(&pods, n).await;
    }
    let scale = json!({"spec": {"replicas": 2}});
    rcs.patch_scale("kubia", &PatchParams::default(), &Patch::Merge(scale)).await.expect("scale down");
    let left = wait_active(&pods, "kubia", 2).await;
    let mut left: Vec<String> = left.iter().map(name).collect();
    left.sort();
    let mut keep = keep;
    keep.sort();
    assert_eq!(left, keep, "the ready pods survive");
    let deletes = eventually("3 SuccessfulDelete events", || async {
        let e: Vec<_> =
            events_for(&client, "kubia").await.into_iter().filter(|(r, _)| r == "SuccessfulDelete").collect();
        if e.len() == 3 {
            Ok(e)
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
    assert!(deletes.iter().all(|(_, m)| m.starts_with("Deleted pod: kubia-")), "{deletes:?}");
    eventually("status.replicas 2", || async {
        let s = rcs.get("kubia").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.replicas == 2 && s.ready_replicas == Some(2) && s.observed_generation == Some(3) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn relabelled_pods_are_released_and_replaced_and_orphans_adopted() {
    let (_server, client) = start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // An orphan that matches exists before the controller does: it is adopted, and
    // only two more are created.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "kubia"}},
        "spec": {"containers": [{"name": "c", "image": "luksa/kubia"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan).await.expect("create orphan");
    let created = rcs.create(&PostParams::default(), &rc("kubia", 3, 0)).await.expect("create rc");
    let uid = created.metadata.uid.clone().expect("uid");
    let got = wait_active(&pods, "kubia", 3).await;
    eventually("the orphan is adopted", || async {
        let p = pods.get("stray").await.map_err(|e| e.to_string())?;
        if owner_uids(&p) == [uid.clone()] {
            Ok(())
        } else {
            Err(format!("{:?}", p.metadata.owner_references))
        }
    })
    .await;
    assert!(got.iter().any(|p| name(p) == "stray"));

    // The book's trick: relabel a pod out of the selector.
    let victim = got.iter().map(name).find(|n| n != "stray").expect("a created pod");
    let relabel = json!({"metadata": {"labels": {"app": "foo"}}});
    pods.patch(&victim, &PatchParams::default(), &Patch::Merge(relabel)).await.expect("relabel");
    let now = wait_active(&pods, "kubia", 3).await;
    assert!(now.iter().all(|p| name(p) != victim), "a replacement was created");
    eventually("the relabelled pod is released", || async {
        let p = pods.get(&victim).await.map_err(|e| e.to_string())?;
        if p.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
            Ok(())
        } else {
            Err(format!("{:?}", p.metadata.owner_references))
        }
    })
    .await;

    // Labelling it back makes four: it is adopted again and one pod goes.
    let relabel = json!({"metadata": {"labels": {"app": "kubia"}}});
    pods.patch(&victim, &PatchParams::default(), &Patch::Merge(relabel)).await.expect("relabel back");
    eventually("back to 3 owned pods", || async {
        let got = active_pods(&pods, "kubia").await;
        let owned = got.iter().filter(|p| owner_uids(p) == [uid.clone()]).count();
        if got.len() == 3 && owned == 3 {
            Ok(())
        } else {
            Err(format!("{} pods, {owned} owned", got.len()))
        }
    })
    .await;
}

#[tokio::test]
async fn terminating_pods_do_not_count_and_many_replicas_are_created_exactly_once() {
    let (_server, client) = start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rcs.create(&PostParams::default(), &rc("big", 120, 0)).await.expect("create rc");
    wait_active(&pods, "big", 120).await;
    eventually("status 120", || async {
        let s = rcs.get("big").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.replicas == 120 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let all = pods.list(&ListParams::default().labels("app=big")).await.expect("list");
    assert_eq!(all.items.len(), 120, "expectations keep in-flight creates from being repeated");

    // A bound pod is deleted gracefully (it stays, terminating, with no node agent to
    // finish it): the controller replaces it at once.
    let victim = name(&all.items[0]);
    let bind = json!({"spec": {"nodeName": "n1"}});
    pods.patch(&victim, &PatchParams::default(), &Patch::Merge(bind)).await.expect("bind");
    pods.delete(&victim, &DeleteParams::default()).await.expect("delete");
    let p = pods.get(&victim).await.expect("still there, terminating");
    assert!(p.metadata.deletion_timestamp.is_some());
    eventually("a replacement", || async {
        let total =
            pods.list(&ListParams::default().labels("app=big")).await.map_err(|e| e.to_string())?.items.len();
        let active = active_pods(&pods, "big").await.len();
        if total == 121 && active == 120 {
            Ok(())
        } else {
            Err(format!("{total} total, {active} active"))
        }
    })
    .await;
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let (_server, client) = start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rcs.create(&PostParams::default(), &rc("slow", 1, 1)).await.expect("create rc");
    let got = wait_active(&pods, "slow", 1).await;
    set_ready(&pods, &name(&got[0])).await;
    let s = eventually("ready", || async {
        let s = rcs.get("slow").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.ready_replicas == Some(1) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(s.available_replicas, None, "available only after minReadySeconds");
    // No watch event marks the moment: the controller looks again by itself.
    eventually("available after minReadySeconds", || async {
        let s = rcs.get("slow").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.available_replicas == Some(1) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn replica_set_with_match_expressions() {
    let (_server, client) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "kubia-rs"},
        "spec": {
            "replicas": 2,
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["kubia-rs"]}]},
            "template": {
                "metadata": {"labels": {"app": "kubia-rs", "tier": "web"}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}
            }
        }
    }))
    .expect("rs");
    rss.create(&PostParams::default(), &rs).await.expect("create rs");
    let got = wait_active(&pods, "kubia-rs", 2).await;
    for p in &got {
        assert!(name(p).starts_with("kubia-rs-"));
        let r = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((r.api_version.as_str(), r.kind.as_str()), ("apps/v1", "ReplicaSet"));
    }
    // Dropping the extra template label keeps the pod owned but not fully labelled.
    let first = name(&got[0]);
    let patch = json!({"metadata": {"labels": {"tier": null}}});
    pods.patch(&first, &PatchParams::default(), &Patch::Merge(patch)).await.expect("unlabel");
    eventually("fullyLabeledReplicas 1", || async {
        let s = rss.get("kubia-rs").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.replicas == 2 && s.fully_labeled_replicas == Some(1) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let events = events_for(&client, "kubia-rs").await;
    assert!(
        events.iter().any(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: kubia-rs-")),
        "{events:?}"
    );
}
