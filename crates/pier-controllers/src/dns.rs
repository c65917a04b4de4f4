//! The `kube-dns` Service and its endpoints: every node runs a DNS server (pier-dns,
//! in the node's network namespace, on the node's address), and pods reach them
//! through the Service's ClusterIP (10.96.0.10 by default), which is what their
//! `/etc/resolv.conf` names. The proxy spreads queries over the nodes' servers like
//! over any Service's endpoints.
//!
//! - The Service `kube-system/kube-dns` is created when missing, as upstream's DNS
//!   add-on manifest has it: ports `dns` 53/UDP, `dns-tcp` 53/TCP and `metrics`
//!   9153/TCP, label `k8s-app: kube-dns`, and no selector: its endpoints are nodes,
//!   not pods. An existing one is left as it is (a user's change stays).
//! - One EndpointSlice, `kube-dns-nodes`, lists every node's InternalIP, ready while
//!   the node is Ready, rewritten whenever a node changes. Its `managed-by` label
//!   keeps the EndpointSlice controller's hands off it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use kube::runtime::{reflector, watcher};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;

use crate::resources::is_not_found;

/// The namespace and name of the Service.
pub const NAMESPACE: &str = "kube-system";
/// The Service's name.
pub const SERVICE: &str = "kube-dns";
/// The EndpointSlice with the nodes' servers.
pub const SLICE: &str = "kube-dns-nodes";
/// Its `endpointslice.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "dns-controller.pier.dev";
/// The DNS port on the nodes and of the Service.
pub const DNS_PORT: i32 = 53;
/// The metrics port (CoreDNS's).
pub const METRICS_PORT: i32 = 9153;

/// The Service, as created when missing.
pub fn service(cluster_ip: Ipv4Addr) -> Service {
    let ip = cluster_ip.to_string();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE,
            "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "pier-dns"},
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": DNS_PORT, "protocol": "UDP", "targetPort": DNS_PORT},
                {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP", "targetPort": DNS_PORT},
                {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP", "targetPort": METRICS_PORT},
            ],
        },
    }))
    .expect("a Service in JSON")
}

/// The EndpointSlice for these nodes: one endpoint per node with an InternalIP.
pub fn slice<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> EndpointSlice {
    let mut endpoints = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.clone() else { continue };
        let status = node.status.as_ref();
        let Some(ip) = status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
        else {
            continue;
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        endpoints.insert(
            name.clone(),
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": name,
                "targetRef": {"kind": "Node", "name": name},
            }),
        );
    }
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": SLICE,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints.into_values().collect::<Vec<_>>(),
        "ports": [
            {"name": "dns", "port": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
        ],
    }))
    .expect("an EndpointSlice in JSON")
}

/// Keeps the Service and the slice until the task is dropped.
pub async fn run(client: Client, cluster_ip: Ipv4Addr) {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    // Looked up first: creating an existing one fails on its ClusterIP (422, already
    // allocated) before its name (409).
    loop {
        let outcome = match services.get_opt(SERVICE).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => match services.create(&PostParams::default(), &service(cluster_ip)).await {
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                other => other.map(drop),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "creating the kube-dns Service; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let (store, writer) = reflector::store::<Node>();
    let mut events =
        reflector::reflector(writer, watcher(Api::<Node>::all(client), watcher::Config::default())).boxed();
    // The reflector fills the store only while its stream is polled: a task of its
    // own drives it and says when something happened.
    let (tx, mut changed) = mpsc::channel::<()>(1);
    let driver = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching Nodes for the kube-dns endpoints");
            }
            let _ = tx.try_send(());
        }
    });
    let _driver = AbortOnDrop(driver);
    let mut last: Option<EndpointSlice> = None;
    loop {
        // Every change, or a retry after a failed write, reconciles the whole slice.
        if let Ok(None) = tokio::time::timeout(Duration::from_secs(5), changed.recv()).await {
            return;
        }
        if store.wait_until_ready().await.is_err() {
            return;
        }
        let nodes = store.state();
        let want = slice(nodes.iter().map(AsRef::as_ref));
        if last.as_ref().is_some_and(|l| same_content(l, &want)) {
            continue;
        }
        match write(&slices, &want).await {
            Ok(()) => last = Some(want),
            Err(e) => tracing::warn!(error = %e, "writing the kube-dns EndpointSlice; retrying"),
        }
    }
}

/// Aborts the task when dropped (when [`run`] is).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints == b.endpoints && a.ports == b.ports && a.metadata.labels == b.metadata.labels
}

/// Creates the slice, or replaces the existing one when its content differs.
async fn write(api: &Api<EndpointSlice>, want: &EndpointSlice) -> Result<(), kube::Error> {
    match api.get(SLICE).await {
        Ok(current) => {
            if same_content(&current, want) {
                return Ok(());
            }
            let mut next = want.clone();
            next.metadata.resource_version = current.metadata.resource_version.clone();
            // A conflict (someone wrote it meanwhile) is retried like any failure.
            api.replace(SLICE, &PostParams::default(), &next).await.map(drop)
        }
        Err(e) if is_not_found(&e) => api.create(&PostParams::default(), want).await.map(drop),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .expect("node")
    }

    #[test]
    fn the_service_has_upstreams_ports_and_no_selector() {
        let svc = service(Ipv4Addr::new(10, 96, 0, 10));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(spec.selector.is_none());
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port, p.protocol.unwrap_or_default()))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".into(), 53, "UDP".into()),
                ("dns-tcp".into(), 53, "TCP".into()),
                ("metrics".into(), 9153, "TCP".into())
            ]
        );
    }

    #[test]
    fn every_node_with_an_address_is_an_endpoint_ready_as_the_node() {
        let nodes = [node("b", "172.30.0.11", false), node("a", "172.30.0.10", true)];
        let s = slice(nodes.iter());
        let eps = s.endpoints.unwrap_or_default();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].addresses, vec!["172.30.0.10".to_string()], "sorted by node name");
        assert_eq!(eps[0].conditions.as_ref().and_then(|c| c.ready), Some(true));
        assert_eq!(eps[1].conditions.as_ref().and_then(|c| c.ready), Some(false));
        assert_eq!(eps[1].node_name.as_deref(), Some("b"));
        let labels = s.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/service-name").map(String::as_str), Some("kube-dns"));
    }
}
