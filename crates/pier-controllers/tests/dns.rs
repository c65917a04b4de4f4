//! Integration tests of the DNS controller against an in-process API server: the
//! `kube-dns` Service, and its EndpointSlice following the nodes.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pier_controllers::dns;
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::json;

async fn add_node(nodes: &Api<Node>, name: &str, ip: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("create node");
    set_ready(nodes, name, ip, true).await;
}

async fn set_ready(nodes: &Api<Node>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "Test"}],
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("node status");
}

/// (address, ready) of every endpoint of the slice, once it exists.
async fn endpoints(slices: &Api<EndpointSlice>) -> Result<Vec<(String, bool)>, String> {
    let slice = slices.get(dns::SLICE).await.map_err(|e| e.to_string())?;
    Ok(slice
        .endpoints
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let ready = e.conditions.and_then(|c| c.ready).unwrap_or(false);
            (e.addresses.first().cloned().unwrap_or_default(), ready)
        })
        .collect())
}

/// Waits until the slice's (address, ready) pairs are `want`.
async fn slice_becomes(slices: &Api<EndpointSlice>, what: &str, want: &[(String, bool)]) {
    eventually(what, || async {
        let eps = endpoints(slices).await?;
        if eps == want {
            Ok(())
        } else {
            Err(format!("{eps:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn kube_dns_is_created_and_its_endpoints_follow_the_nodes() {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    add_node(&nodes, "node-a", "172.30.0.10").await;
    let controller = tokio::spawn(dns::run(client.clone(), Ipv4Addr::new(10, 96, 0, 10)));

    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let svc = eventually("the kube-dns Service", || async {
        services.get("kube-dns").await.map_err(|e| e.to_string())
    })
    .await;
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"), "defaulted by the API server");

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    eventually("node-a's server in the slice", || async {
        match endpoints(&slices).await?.as_slice() {
            [(ip, true)] if ip == "172.30.0.10" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    add_node(&nodes, "node-b", "172.30.0.11").await;
    set_ready(&nodes, "node-a", "172.30.0.10", false).await;
    slice_becomes(
        &slices,
        "node-b added, node-a not ready",
        &[("172.30.0.10".to_string(), false), ("172.30.0.11".to_string(), true)],
    )
    .await;

    nodes.delete("node-a", &DeleteParams::default()).await.expect("delete node-a");
    slice_becomes(&slices, "node-a gone from the slice", &[("172.30.0.11".to_string(), true)]).await;

    // The EndpointSlice controller leaves a slice it does not manage alone, and the
    // DNS controller puts back what someone else changed.
    let mut changed = slices.get(dns::SLICE).await.expect("slice");
    changed.endpoints = Some(Vec::new());
    slices.replace(dns::SLICE, &PostParams::default(), &changed).await.expect("overwrite");
    controller.abort();
    let _ = controller.await;
    let again = tokio::spawn(dns::run(client.clone(), Ipv4Addr::new(10, 96, 0, 10)));
    slice_becomes(
        &slices,
        "the slice restored by a restarted controller",
        &[("172.30.0.11".to_string(), true)],
    )
    .await;
    again.abort();
}
