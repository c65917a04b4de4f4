//! The node's registration against an in-process API server: the Node object that
//! `kubectl get nodes` prints, and the Lease that is its heartbeat.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use pier_node::{register, NodeConfig};
use pier_testkit::in_process::InProcess;

fn config() -> NodeConfig {
    NodeConfig {
        name: "pier-node-0".into(),
        dir: PathBuf::from("/nonexistent"),
        node_ip: Ipv4Addr::new(172, 30, 0, 10),
        pod_cidr: "10.244.0.0/24".parse().expect("cidr"),
        cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
        cluster_domain: "cluster.local".into(),
        masked: Vec::new(),
        kubelet_port: 10250,
        max_pods: 110,
        self_exe: PathBuf::from("/bin/true"),
        images_dir: PathBuf::from("/nonexistent"),
    }
}

#[tokio::test]
async fn registers_a_ready_node_with_its_addresses_and_a_lease() {
    let server = InProcess::start().await.expect("api server");
    let client = server.client.clone();
    let cfg = config();
    register::register(&client, &cfg).await.expect("register");
    // Registering again (a restarted node) updates instead of failing.
    register::register(&client, &cfg).await.expect("register again");
    register::renew_lease(&client, &cfg).await.expect("lease");
    register::renew_lease(&client, &cfg).await.expect("lease renewed");

    let node = Api::<Node>::all(client.clone()).get("pier-node-0").await.expect("node");
    let spec = node.spec.expect("spec");
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.0.0/24"));
    let status = node.status.expect("status");
    let addresses: Vec<(String, String)> =
        status.addresses.unwrap_or_default().into_iter().map(|a| (a.type_, a.address)).collect();
    assert_eq!(
        addresses,
        vec![
            ("InternalIP".to_string(), "172.30.0.10".to_string()),
            ("Hostname".to_string(), "pier-node-0".to_string())
        ]
    );
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
    assert_eq!(status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(10250));
    assert_eq!(status.node_info.map(|i| i.kubelet_version), Some("v1.33.0".to_string()));
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("pier-node-0"));

    let lease = Api::<Lease>::namespaced(client, "kube-node-lease").get("pier-node-0").await.expect("lease");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("pier-node-0"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert!(spec.renew_time.is_some());
}
