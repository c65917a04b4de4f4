//! A pod's sandbox: its network namespace (veth on `cbr0`, IP from the node's pod
//! CIDR) and its root filesystem (overlay of the host root with the generated
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use pier_sandbox::dns::{HostAlias, PodDnsConfig};
use pier_sandbox::{
    apply_plan, apply_teardown, hostname_file, hosts_file, pod_resolv_conf, DnsPolicy, GeneratedFiles,
    NetlinkApplier, Netns, NetnsName, PodNetwork, ResolvConf, RootfsPlan,
};

use crate::Node;

/// What a running pod's sandbox is made of.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: NetnsName,
    pub net: PodNetwork,
    pub rootfs: RootfsPlan,
    pub ip: Ipv4Addr,
    pub hostname: String,
}

/// The namespace name of a pod: derived from its uid, so a restarted node finds it.
pub fn netns_name(uid: &str) -> Result<NetnsName, String> {
    let short: String = uid.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect();
    NetnsName::new(format!("pod-{short}")).map_err(|e| e.to_string())
}

/// The pod's hostname: `spec.hostname` or its name (truncated to 63 as upstream).
pub fn hostname(pod: &Pod) -> String {
    let spec_host = pod.spec.as_ref().and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty());
    let name = spec_host.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

fn generated_files(node: &Node, pod: &Pod, ip: Ipv4Addr, hostname: &str) -> GeneratedFiles {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string());
    let host_domain = spec
        .subdomain
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{sub}.{ns}.svc.{}", node.config.cluster_domain));
    let aliases: Vec<HostAlias> = spec
        .host_aliases
        .unwrap_or_default()
        .into_iter()
        .map(|a| HostAlias { ip: a.ip, hostnames: a.hostnames.unwrap_or_default() })
        .collect();
    let hosts = hosts_file(&[IpAddr::V4(ip)], hostname, host_domain.as_deref(), &aliases);
    let policy = spec.dns_policy.as_deref().and_then(DnsPolicy::parse).unwrap_or(DnsPolicy::ClusterFirst);
    let host_conf =
        std::fs::read_to_string("/etc/resolv.conf").map(|t| ResolvConf::parse(&t)).unwrap_or_default();
    let dns_config = spec.dns_config.map(|c| PodDnsConfig {
        nameservers: c.nameservers.unwrap_or_default(),
        searches: c.searches.unwrap_or_default(),
        options: c
            .options
            .unwrap_or_default()
            .into_iter()
            .map(|o| pier_sandbox::dns::DnsOption { name: o.name.unwrap_or_default(), value: o.value })
            .collect(),
    });
    let resolv = pod_resolv_conf(policy, &ns, &node.cluster_dns, &host_conf, dns_config.as_ref());
    GeneratedFiles { hosts, hostname: hostname_file(hostname), resolv_conf: resolv.render() }
}

/// Makes the sandbox; on failure undoes what was made and returns upstream-style text.
pub async fn create(node: &Node, pod: &Pod, uid: &str) -> Result<Sandbox, String> {
    let netns = netns_name(uid)?;
    let (ip, generation) =
        node.ipam.lock().await.allocate_unsaved(uid).map_err(|e| format!("allocating a pod IP: {e}"))?;
    // Written before use, one write for the pods allocated meanwhile.
    if let Err(e) = node.ipam_writer.persist(&node.ipam, generation).await {
        let _ = node.ipam.lock().await.release(uid);
        return Err(format!("allocating a pod IP: {e}"));
    }
    let (bridge, gateway) = node.pod_bridge.clone();
    // The node agent runs inside the node's namespace: its "host" is the node.
    let net = PodNetwork::on_bridge(Netns::Host, bridge, gateway, netns.clone(), uid, ip)
        .map_err(|e| e.to_string())?;
    let plan = net.clone();
    let t0 = std::time::Instant::now();
    let applied = tokio::task::spawn_blocking(move || {
        let netlink = NetlinkApplier::new();
        // A leftover from a crashed run with the same uid would make the plan fail.
        let _ = apply_teardown(&netlink, &plan.render_teardown());
        apply_plan(&netlink, &plan.render_setup()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    tracing::debug!(uid, took_ms = t0.elapsed().as_millis() as u64, "network");
    if let Err(e) = applied {
        let _ = node.ipam.lock().await.release(uid);
        return Err(format!("failed to set up sandbox network: {e}"));
    }
    let host = hostname(pod);
    let mut rootfs = RootfsPlan::new(node.pod_dir(uid), generated_files(node, pod, ip, &host));
    rootfs.masked = node.config.masked.clone();
    let plan = rootfs.clone();
    let prepared = tokio::task::spawn_blocking(move || pier_sandbox::rootfs::prepare(&plan))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{e:#}")));
    if let Err(e) = prepared {
        let _ = teardown_network(&net).await;
        let _ = node.ipam.lock().await.release(uid);
        return Err(format!("failed to prepare the pod's root filesystem: {e}"));
    }
    Ok(Sandbox { netns, net, rootfs, ip, hostname: host })
}

/// Deletes the pod's veth and namespace, off the async workers.
async fn teardown_network(net: &PodNetwork) -> Result<(), String> {
    let ops = net.render_teardown();
    tokio::task::spawn_blocking(move || {
        apply_teardown(&NetlinkApplier::new(), &ops).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
}

/// Removes the sandbox and releases the IP. Every step is attempted.
pub async fn destroy(node: &Node, sandbox: &Sandbox, uid: &str) {
    if let Err(e) = teardown_network(&sandbox.net).await {
        tracing::warn!(uid, error = %e, "tearing down a pod network");
    }
    let plan = sandbox.rootfs.clone();
    let dir: PathBuf = plan.pod_dir.clone();
    let torn = tokio::task::spawn_blocking(move || {
        let r = pier_sandbox::rootfs::teardown(&plan);
        let _ = std::fs::remove_dir_all(&dir);
        r
    })
    .await;
    if let Ok(Err(e)) = torn {
        tracing::warn!(uid, error = %e, "removing a pod's root filesystem");
    }
    if let Err(e) = node.ipam.lock().await.release(uid) {
        tracing::warn!(uid, error = %e, "releasing a pod IP");
    }
}
