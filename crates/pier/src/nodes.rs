//! The nodes `pier up` runs: the cluster's underlay bridge in the host namespace, one
//! network namespace per node (`eth0` on the underlay, `cbr0` for its pods, routes to
//! the other nodes' pod CIDRs), and a `pier node` process inside each.
//!
//! What was made is written to `network.json` in the data directory before it is
//! made, so a run that was killed is cleaned up by the next start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use pier_sandbox::names::short_hash;
use pier_sandbox::{
    apply_plan, apply_teardown, IfName, Ipv4Cidr, NetOp, NetlinkApplier, Netns, NetnsName, NodeNetwork,
    Underlay,
};
use serde::{Deserialize, Serialize};

/// The file recording the cluster's host-side network.
pub const STATE_FILE: &str = "network.json";

/// One node of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: String,
    pub network: NodeNetwork,
}

/// The cluster's network: underlay and nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNetwork {
    pub underlay: Underlay,
    pub nodes: Vec<NodePlan>,
}

/// `pier-<cluster>` when it fits a link name, else `pier-` and a hash of the name.
pub fn bridge_name(cluster: &str) -> anyhow::Result<IfName> {
    let name = if cluster.starts_with("pier") { cluster.to_string() } else { format!("pier-{cluster}") };
    let name = if name.len() <= pier_sandbox::names::IFNAMSIZ_MAX {
        name
    } else {
        format!("pier-{}", short_hash(cluster))
    };
    IfName::new(name).context("bridge name")
}

impl ClusterNetwork {
    /// Plans `count` nodes: node `i` at underlay address `.10+i`, pod CIDR the `i`th
    /// /24 of `pod_cidr`.
    pub fn plan(cluster: &str, underlay: Ipv4Cidr, pod_cidr: Ipv4Cidr, count: u32) -> anyhow::Result<Self> {
        let net = underlay.network();
        let bridge_ip = net.nth(1).context("underlay too small")?;
        let bridge = bridge_name(cluster)?;
        let underlay = Underlay {
            ns: Netns::Host,
            bridge: bridge.clone(),
            addr: Ipv4Cidr::new(bridge_ip, net.prefix())?,
        };
        let pods = pod_cidr.network();
        anyhow::ensure!(pods.prefix() <= 24, "pod CIDR {pod_cidr} must be /24 or larger");
        let mut nodes = Vec::new();
        for i in 0..count {
            let name = format!("pier-node-{i}");
            let ip = net.nth(10 + i).with_context(|| format!("underlay {net} has no room for node {i}"))?;
            let node_cidr_base =
                pods.nth(i * 256).with_context(|| format!("pod CIDR {pods} has no /24 for node {i}"))?;
            let gateway = Ipv4Cidr::new(node_cidr_base, 24)?.nth(1).context("pod gateway")?;
            let netns = NetnsName::new(format!("{bridge}-{name}")).context("node namespace name")?;
            let network = NodeNetwork::new(
                underlay.clone(),
                netns,
                Ipv4Cidr::new(ip, net.prefix())?,
                Ipv4Cidr::new(gateway, 24)?,
            )?;
            nodes.push(NodePlan { name, network });
        }
        Ok(ClusterNetwork { underlay, nodes })
    }

    /// The API server's address on the underlay.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        self.underlay.addr.addr()
    }

    /// Bridge, nodes, then routes between the nodes' pod CIDRs.
    fn render_setup(&self) -> Vec<NetOp> {
        let mut ops = self.underlay.render_setup();
        for n in &self.nodes {
            ops.extend(n.network.render_setup());
        }
        for n in &self.nodes {
            for other in self.nodes.iter().filter(|o| o.name != n.name) {
                ops.push(NetOp::AddRoute {
                    ns: n.network.ns(),
                    dst: other.network.pod_cidr(),
                    via: other.network.node_ip.addr(),
                });
            }
        }
        ops
    }

    fn render_teardown(&self) -> Vec<NetOp> {
        let mut ops = Vec::new();
        for n in &self.nodes {
            ops.extend(n.network.render_teardown());
        }
        ops.extend(self.underlay.render_teardown());
        ops
    }

    /// Records the plan, then makes it (undoing it on failure).
    pub fn setup(&self, data_dir: &Path, applier: &NetlinkApplier) -> anyhow::Result<()> {
        let path = data_dir.join(STATE_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        if let Err(e) = apply_plan(applier, &self.render_setup()) {
            let _ = apply_teardown(applier, &self.render_teardown());
            let _ = std::fs::remove_file(&path);
            if matches!(&e.op, NetOp::AddBridge { name, .. } if *name == self.underlay.bridge) {
                bail!(
                    "creating the underlay bridge {} failed ({e}); is another cluster named like this one running? \
                     Pass --cluster-name and --underlay to run side by side",
                    self.underlay.bridge
                );
            }
            return Err(e).context("setting up the cluster network");
        }
        Ok(())
    }

    /// Removes everything; the record goes last, so a failed teardown is retried.
    pub fn teardown(&self, data_dir: &Path, applier: &NetlinkApplier) {
        if let Err(e) = apply_teardown(applier, &self.render_teardown()) {
            tracing::warn!(error = %e, "tearing down the cluster network");
            return;
        }
        let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    }

    /// Tears down what a killed earlier run of this data directory left.
    pub fn cleanup_stale(data_dir: &Path, applier: &NetlinkApplier) -> anyhow::Result<()> {
        let path = data_dir.join(STATE_FILE);
        let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
        let stale: ClusterNetwork =
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
        tracing::info!(bridge = %stale.underlay.bridge, "removing the network a previous run left");
        apply_teardown(applier, &stale.render_teardown()).context("removing the previous run's network")?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}

/// What `pier up` tells a node process.
pub struct NodeLaunch {
    pub plan: NodePlan,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub cluster_dns: Ipv4Addr,
    pub data_dir: PathBuf,
    /// The whole cluster's pod CIDR.
    pub cluster_cidr: String,
    pub service_cidr: String,
    /// The underlay network, e.g. `172.30.0.0/24`.
    pub underlay: String,
    /// The DNS servers' upstreams (`--dns-upstream`).
    pub dns_upstream: String,
}

/// The default LoadBalancer pool: `.200-.250` of a /24 underlay, the last quarter of a
/// bigger one (nodes are numbered from `.10`, so the two do not meet).
pub fn default_lb_range(underlay: Ipv4Cidr) -> anyhow::Result<String> {
    let net = u32::from(underlay.network().addr());
    let size = 1u32.checked_shl(32 - u32::from(underlay.prefix())).unwrap_or(0);
    anyhow::ensure!(
        size >= 256,
        "the underlay {underlay} is too small for a load balancer pool; pass --lb-range"
    );
    let (first, last) =
        if size == 256 { (net + 200, net + 250) } else { (net + size / 4 * 3, net + size - 2) };
    Ok(format!("{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last)))
}

/// Writes a node's credentials and kubeconfig into its directory.
pub fn write_node_files(
    pki: &pier_apiserver::pki::Pki,
    dir: &Path,
    node: &NodePlan,
    api_url: &str,
    cluster: &str,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let creds = pki
        .node_credentials(&node.name, IpAddr::V4(node.network.node_ip.addr()))
        .context("issuing the node's certificates")?;
    let write = |name: &str, contents: &str| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, contents).with_context(|| format!("writing {}", p.display()))
    };
    write("kubelet.crt", &creds.serving.cert_pem)?;
    write("kubelet.key", &creds.serving.key_pem)?;
    write("ca.crt", &pki.ca.cert_pem)?;
    let kubeconfig = pki.node_kubeconfig(api_url, cluster, &creds);
    write("kubeconfig", &kubeconfig)?;
    Ok(dir.join("kubeconfig"))
}

/// Starts the node process in its namespaces.
pub fn spawn_node(launch: &NodeLaunch) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("finding the pier executable")?;
    let n = &launch.plan.network;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("node-init")
        .arg("--name")
        .arg(&launch.plan.name)
        .arg("--dir")
        .arg(&launch.dir)
        .arg("--kubeconfig")
        .arg(&launch.kubeconfig)
        .arg("--node-ip")
        .arg(n.node_ip.addr().to_string())
        .arg("--pod-cidr")
        .arg(n.pod_cidr().to_string())
        .arg("--cluster-dns")
        .arg(launch.cluster_dns.to_string())
        .arg("--mask")
        .arg(&launch.data_dir)
        .arg("--images-dir")
        .arg(&launch.data_dir)
        .arg("--cluster-cidr")
        .arg(&launch.cluster_cidr)
        .arg("--service-cidr")
        .arg(&launch.service_cidr)
        .arg("--underlay")
        .arg(&launch.underlay)
        .arg("--dns-upstream")
        .arg(&launch.dns_upstream);
    pier_sandbox::node::prepare_node_command(&n.netns, &mut cmd).context("preparing the node process")?;
    tokio::process::Command::from(cmd).kill_on_drop(true).spawn().context("starting the node process")
}

/// Stops a node process: SIGTERM, then SIGKILL after `grace`.
pub async fn stop_node(child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Where the API server listens for nodes: the bridge address, same port.
pub fn underlay_listen(net: &ClusterNetwork) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(net.bridge_ip()), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_load_balancer_pool_sits_high_in_the_underlay() {
        let cidr = |s: &str| s.parse::<Ipv4Cidr>().expect("cidr");
        assert_eq!(default_lb_range(cidr("172.30.0.1/24")).expect("pool"), "172.30.0.200-172.30.0.250");
        assert_eq!(default_lb_range(cidr("10.1.0.1/22")).expect("pool"), "10.1.3.0-10.1.3.254");
        assert!(default_lb_range(cidr("10.1.0.1/25")).is_err());
    }

    #[test]
    fn bridge_names_fit_a_link_name() {
        assert_eq!(bridge_name("pier").expect("name").as_str(), "pier");
        assert_eq!(bridge_name("pier-t5").expect("name").as_str(), "pier-t5");
        assert_eq!(bridge_name("lab").expect("name").as_str(), "pier-lab");
        let long = bridge_name("pier-a-very-long-cluster-name").expect("name");
        assert!(long.as_str().starts_with("pier-") && long.as_str().len() <= 15, "{long:?}");
    }

    #[test]
    fn two_nodes_get_addresses_cidrs_and_routes_to_each_other() {
        let net = ClusterNetwork::plan(
            "pier-t5",
            "172.31.5.0/24".parse().expect("cidr"),
            "10.244.0.0/16".parse().expect("cidr"),
            2,
        )
        .expect("plan");
        assert_eq!(net.bridge_ip().to_string(), "172.31.5.1");
        let text: Vec<String> = net.render_setup().iter().map(ToString::to_string).collect();
        let text = text.join("\n");
        for line in [
            "ip link add pier-t5 type bridge",
            "ip addr add 172.31.5.1/24 dev pier-t5",
            "ip -n pier-t5-pier-node-0 addr add 172.31.5.10/24 dev eth0",
            "ip -n pier-t5-pier-node-0 addr add 10.244.0.1/24 dev cbr0",
            "ip -n pier-t5-pier-node-1 addr add 172.31.5.11/24 dev eth0",
            "ip -n pier-t5-pier-node-1 addr add 10.244.1.1/24 dev cbr0",
            "ip -n pier-t5-pier-node-0 route add 10.244.1.0/24 via 172.31.5.11",
            "ip -n pier-t5-pier-node-1 route add 10.244.0.0/24 via 172.31.5.10",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        let down: Vec<String> = net.render_teardown().iter().map(ToString::to_string).collect();
        assert_eq!(down.last().map(String::as_str), Some("ip link del pier-t5"));
        assert!(ClusterNetwork::plan(
            "x",
            "172.31.5.0/24".parse().expect("cidr"),
            "10.244.0.0/24".parse().expect("cidr"),
            2
        )
        .is_err());
    }
}
