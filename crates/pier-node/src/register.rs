//! The Node object and its heartbeat: what `kubectl get nodes` shows.
//!
//! As the kubelet does with node leases: the Lease in `kube-node-lease` is renewed
//! every 10 s (cheap, the liveness signal), and the Node's status is rewritten only
//! when it changes or once a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;

use crate::NodeConfig;

/// How long a lease is valid; the kubelet's default.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the lease is renewed (a quarter of its duration, as the kubelet).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the Node's status is rewritten without a change.
pub const STATUS_REPORT: Duration = Duration::from_secs(60);

/// The version the node reports, matching the API server's.
pub const KUBELET_VERSION: &str = "v1.33.0";

fn quantity(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// Memory in KiB from `/proc/meminfo`'s `MemTotal`.
fn mem_total_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The Node object this agent registers.
pub fn node_object(config: &NodeConfig) -> Node {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = mem_total_kib().map(|k| format!("{k}Ki")).unwrap_or_else(|| "0".to_string());
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), quantity(cpus.to_string()));
    capacity.insert("memory".to_string(), quantity(mem));
    capacity.insert("pods".to_string(), quantity(config.max_pods.to_string()));
    capacity.insert("ephemeral-storage".to_string(), quantity("10Gi"));
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), config.name.clone());
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert("kubernetes.io/arch".to_string(), std::env::consts::ARCH.replace("x86_64", "amd64"));
    labels.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert("beta.kubernetes.io/arch".to_string(), std::env::consts::ARCH.replace("x86_64", "amd64"));
    let cidr = config.pod_cidr.to_string();
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(config, capacity)),
    }
}

fn node_status(config: &NodeConfig, capacity: BTreeMap<String, Quantity>) -> NodeStatus {
    let now = Time(Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".to_string(), address: config.node_ip.to_string() },
            NodeAddress { type_: "Hostname".to_string(), address: config.name.clone() },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(config.kubelet_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            container_runtime_version: concat!("pier://", env!("CARGO_PKG_VERSION")).to_string(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            kube_proxy_version: KUBELET_VERSION.to_string(),
            kubelet_version: KUBELET_VERSION.to_string(),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
            operating_system: "linux".to_string(),
            os_image: os_image(),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid").unwrap_or_default(),
            swap: None,
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// `PRETTY_NAME` from os-release, as the kubelet reports the OS image.
fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".to_string())
}

/// Creates the Node, or brings an existing one (from an earlier run) up to date.
pub async fn register(client: &Client, config: &NodeConfig) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(config);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = serde_json::json!({
                "metadata": { "labels": node.metadata.labels },
            });
            nodes.patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Err(e) => return Err(e),
    }
    report_status(client, config).await
}

/// Rewrites the Node's status (addresses, capacity, conditions with a fresh heartbeat).
pub async fn report_status(client: &Client, config: &NodeConfig) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut status = node_object(config).status.unwrap_or_default();
    if let Ok(current) = nodes.get_status(&config.name).await {
        keep_transition_times(&mut status, current.status.as_ref());
    }
    let patch = serde_json::json!({ "status": status });
    nodes.patch_status(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// A condition's `lastTransitionTime` changes only when its status does: heartbeats
/// keep the earlier time.
pub fn keep_transition_times(new: &mut NodeStatus, old: Option<&NodeStatus>) {
    let Some(old) = old.and_then(|o| o.conditions.as_ref()) else { return };
    for c in new.conditions.iter_mut().flatten() {
        if let Some(prev) = old.iter().find(|p| p.type_ == c.type_ && p.status == c.status) {
            if prev.last_transition_time.is_some() {
                c.last_transition_time = prev.last_transition_time.clone();
            }
        }
    }
}

/// Renews the node's Lease, creating it when missing.
pub async fn renew_lease(client: &Client, config: &NodeConfig) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta { name: Some(config.name.clone()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    match leases.get_opt(&config.name).await? {
        None => leases.create(&PostParams::default(), &lease).await.map(drop),
        Some(_) => {
            let patch = serde_json::json!({ "spec": lease.spec });
            leases.patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
        }
    }
}

/// Keeps the lease and the status fresh until the task is dropped.
pub async fn heartbeat(client: Client, config: NodeConfig) {
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_REPORT);
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &config).await {
                    tracing::warn!(error = %e, "renewing the node lease");
                }
            }
            _ = status_tick.tick() => {
                if let Err(e) = report_status(&client, &config).await {
                    tracing::warn!(error = %e, "reporting node status");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, at: i64) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(Time(Timestamp::from_second(at).expect("time"))),
            ..NodeCondition::default()
        }
    }

    #[test]
    fn heartbeats_keep_transition_times_unless_the_status_changed() {
        let old = NodeStatus {
            conditions: Some(vec![condition("Ready", "True", 100), condition("DiskPressure", "True", 100)]),
            ..NodeStatus::default()
        };
        let mut new = NodeStatus {
            conditions: Some(vec![condition("Ready", "True", 200), condition("DiskPressure", "False", 200)]),
            ..NodeStatus::default()
        };
        keep_transition_times(&mut new, Some(&old));
        let times: Vec<i64> = new
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| c.last_transition_time.as_ref().map(|t| t.0.as_second()).unwrap_or_default())
            .collect();
        assert_eq!(times, vec![100, 200]);
    }
}
