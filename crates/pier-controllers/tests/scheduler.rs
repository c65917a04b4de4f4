//! Integration tests of the scheduler against an in-process API server, with Node
//! objects the tests write themselves (there is no node agent).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::json;

async fn start() -> (InProcess, Client) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    tokio::spawn(pier_controllers::scheduler::run(client.clone()));
    (server, client)
}

/// Creates a node and gives it a Ready condition through the status subresource, as a
/// node agent would.
async fn node(client: &Client, name: &str, ready: &str, labels: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("node");
    nodes.create(&PostParams::default(), &n).await.expect("create node");
    let status =
        json!({"status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("node status");
}

fn pod(name: &str, spec_extra: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "luksa/kubia"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

async fn bound(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("{name} bound"), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        node_of(&p).ok_or_else(|| "unbound".to_string())
    })
    .await
}

async fn events_for(client: &Client, object: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={object}")))
        .await
        .expect("list events");
    list.items
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn pods_spread_over_ready_nodes_with_scheduled_events() {
    let (_server, client) = start().await;
    node(&client, "node-a", "True", json!({})).await;
    node(&client, "node-b", "True", json!({})).await;
    node(&client, "node-c", "False", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..6 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}"), json!({}))).await.expect("create pod");
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node.entry(bound(&pods, &format!("p{i}")).await).or_default() += 1;
    }
    assert_eq!(per_node, BTreeMap::from([("node-a".to_string(), 3), ("node-b".to_string(), 3)]));

    let p0_node = bound(&pods, "p0").await;
    let events = eventually("a Scheduled event", || async {
        let e = events_for(&client, "p0").await;
        if e.is_empty() {
            Err("none".to_string())
        } else {
            Ok(e)
        }
    })
    .await;
    assert_eq!(
        events,
        [(
            "Normal".to_string(),
            "Scheduled".to_string(),
            format!("Successfully assigned default/p0 to {p0_node}")
        )]
    );
}

#[tokio::test]
async fn pods_already_bound_or_for_other_schedulers_are_left_alone() {
    let (_server, client) = start().await;
    node(&client, "node-a", "True", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("other", json!({"schedulerName": "my-scheduler"})))
        .await
        .expect("pod");
    pods.create(&PostParams::default(), &pod("preset", json!({"nodeName": "node-z"}))).await.expect("pod");
    pods.create(&PostParams::default(), &pod("mine", json!({}))).await.expect("pod");
    assert_eq!(bound(&pods, "mine").await, "node-a");
    // The scheduler handled "mine" after seeing the others: they are decided by now.
    let other = pods.get("other").await.expect("get");
    assert_eq!(node_of(&other), None);
    let preset = pods.get("preset").await.expect("get");
    assert_eq!(node_of(&preset).as_deref(), Some("node-z"));
    assert!(events_for(&client, "preset").await.is_empty());
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_waits_with_upstreams_reason_until_a_node_fits() {
    let (_server, client) = start().await;
    node(&client, "node-a", "True", json!({"disk": "hdd"})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("picky", json!({"nodeSelector": {"disk": "ssd"}})))
        .await
        .expect("pod");

    let want = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
                preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let condition = eventually("PodScheduled=False", || async {
        let p = pods.get("picky").await.map_err(|e| e.to_string())?;
        let c = p
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled")
            .ok_or_else(|| "no condition".to_string())?;
        Ok(c)
    })
    .await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(want));
    let events = events_for(&client, "picky").await;
    assert!(
        events.contains(&("Warning".to_string(), "FailedScheduling".to_string(), want.to_string())),
        "{events:?}"
    );
    let p = pods.get("picky").await.expect("get");
    assert_eq!(node_of(&p), None);

    // A node that fits appears: the pod is retried and bound, its condition True.
    node(&client, "node-b", "True", json!({"disk": "ssd"})).await;
    assert_eq!(bound(&pods, "picky").await, "node-b");
    eventually("PodScheduled=True", || async {
        let p = pods.get("picky").await.map_err(|e| e.to_string())?;
        let ok = p
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True");
        if ok {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
}

#[tokio::test]
async fn no_nodes_at_all() {
    let (_server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("lonely", json!({}))).await.expect("pod");
    let events = eventually("FailedScheduling", || async {
        let e = events_for(&client, "lonely").await;
        if e.is_empty() {
            Err("none".to_string())
        } else {
            Ok(e)
        }
    })
    .await;
    assert_eq!(
        events,
        [(
            "Warning".to_string(),
            "FailedScheduling".to_string(),
            "no nodes available to schedule pods".to_string()
        )]
    );
    node(&client, "late", "True", json!({})).await;
    assert_eq!(bound(&pods, "lonely").await, "late");
}
