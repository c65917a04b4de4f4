//! Network plans (pure): what a node's and a pod's network look like, rendered to an
//! ordered list of [`NetOp`]s and the list that tears them down.
//!
//! The rendered operations print as the `ip(8)`/`sysctl(8)` command that does the same
//! thing, one per line; the golden tests compare those lines, and a reader can replay
//! them by hand when debugging a node.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::names::{short_hash, IfName, Ipv4Cidr, NameError, NetnsName};

/// Which network namespace an operation acts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Netns {
    /// The namespace of the process applying the plan (for `pier up`, the host's).
    Host,
    /// A persistent namespace under `/run/netns`.
    Named(NetnsName),
}

impl Netns {
    fn ip_prefix(&self) -> String {
        match self {
            Netns::Host => "ip".to_string(),
            Netns::Named(n) => format!("ip -n {n}"),
        }
    }
}

/// A `sysctl` key under `/proc/sys`, e.g. `net.ipv4.ip_forward`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SysctlKey(String);

impl SysctlKey {
    /// Accepts dotted keys of `[A-Za-z0-9_-]` components, so the path under
    /// `/proc/sys` cannot escape it.
    pub fn new(key: impl Into<String>) -> Result<Self, PlanError> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if ok {
            Ok(Self(key))
        } else {
            Err(PlanError::SysctlKey(key))
        }
    }

    /// The key as written, with dots.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file under `/proc/sys` (relative), e.g. `net/ipv4/ip_forward`.
    pub fn proc_path(&self) -> String {
        self.0.replace('.', "/")
    }
}

/// One step of a network plan.
///
/// Deletions ([`NetOp::DelLink`], [`NetOp::DelNetns`]) succeed when the object is
/// already gone, so a teardown can be repeated after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetOp {
    /// Create a persistent network namespace (fails if the name exists).
    AddNetns {
        /// Namespace name.
        name: NetnsName,
    },
    /// Remove a persistent network namespace.
    DelNetns {
        /// Namespace name.
        name: NetnsName,
    },
    /// Create a Linux bridge (down).
    AddBridge {
        /// Where.
        ns: Netns,
        /// Bridge name.
        name: IfName,
    },
    /// Create a veth pair; both ends start in `ns`.
    AddVeth {
        /// Where.
        ns: Netns,
        /// The end that stays.
        name: IfName,
        /// The end that will move.
        peer: IfName,
    },
    /// Create a veth pair whose peer is made directly inside another namespace under
    /// its final name. One request instead of add, move and rename: moving a link
    /// between namespaces waits for RCU grace periods under the kernel's RTNL lock,
    /// which made that step most of a pod's start time.
    AddVethInto {
        /// Where the first end stays.
        ns: Netns,
        /// The end that stays.
        name: IfName,
        /// The peer's name in its namespace (e.g. `eth0`).
        peer: IfName,
        /// The peer's namespace.
        peer_ns: NetnsName,
    },
    /// Move a link into another namespace.
    MoveLink {
        /// Where the link is now.
        ns: Netns,
        /// Link name.
        name: IfName,
        /// Target namespace.
        to: NetnsName,
    },
    /// Rename a (down) link.
    RenameLink {
        /// Where.
        ns: Netns,
        /// Current name.
        name: IfName,
        /// New name.
        new_name: IfName,
    },
    /// Add an IPv4 address to a link.
    AddAddr {
        /// Where.
        ns: Netns,
        /// Link name.
        dev: IfName,
        /// Address with prefix.
        addr: Ipv4Cidr,
    },
    /// Remove an IPv4 address from a link; succeeds if it is not there.
    DelAddr {
        /// Where.
        ns: Netns,
        /// Link name.
        dev: IfName,
        /// Address with prefix.
        addr: Ipv4Cidr,
    },
    /// Set a link up.
    LinkUp {
        /// Where.
        ns: Netns,
        /// Link name.
        dev: IfName,
    },
    /// Add the IPv4 default route.
    AddDefaultRoute {
        /// Where.
        ns: Netns,
        /// Gateway.
        via: Ipv4Addr,
        /// Outgoing link.
        dev: IfName,
    },
    /// Add an IPv4 route to `dst` through gateway `via` (e.g. another node's pod
    /// CIDR through that node's underlay address).
    AddRoute {
        /// Where.
        ns: Netns,
        /// Destination network.
        dst: Ipv4Cidr,
        /// Gateway.
        via: Ipv4Addr,
    },
    /// Attach a link to a bridge.
    SetMaster {
        /// Where.
        ns: Netns,
        /// Link name.
        dev: IfName,
        /// Bridge name.
        master: IfName,
    },
    /// Set hairpin mode on a bridge port, so a pod can reach itself through a
    /// service IP (the proxy DNATs the packet back out of the port it came in on).
    SetHairpin {
        /// Where.
        ns: Netns,
        /// Bridge port name.
        dev: IfName,
        /// On or off.
        on: bool,
    },
    /// Write a sysctl. Only ever inside a named namespace: a plan never changes the
    /// host's settings.
    Sysctl {
        /// The namespace whose `/proc/sys/net` is written.
        ns: NetnsName,
        /// Key.
        key: SysctlKey,
        /// Value.
        value: String,
    },
    /// Delete a link (a veth's peer goes with it).
    DelLink {
        /// Where.
        ns: Netns,
        /// Link name.
        name: IfName,
    },
}

impl NetOp {
    /// The operation that undoes this one during rollback, if one is needed.
    ///
    /// Only creations have an inverse: addresses, routes, flags and bridge membership
    /// vanish with the link or namespace they belong to, and a moved or renamed veth
    /// end vanishes when the end that stayed is deleted.
    pub fn undo(&self) -> Option<NetOp> {
        match self {
            NetOp::AddNetns { name } => Some(NetOp::DelNetns { name: name.clone() }),
            NetOp::AddBridge { ns, name }
            | NetOp::AddVeth { ns, name, .. }
            | NetOp::AddVethInto { ns, name, .. } => {
                Some(NetOp::DelLink { ns: ns.clone(), name: name.clone() })
            }
            _ => None,
        }
    }
}

impl fmt::Display for NetOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetOp::AddNetns { name } => write!(f, "ip netns add {name}"),
            NetOp::DelNetns { name } => write!(f, "ip netns del {name}"),
            NetOp::AddBridge { ns, name } => {
                write!(f, "{} link add {name} type bridge", ns.ip_prefix())
            }
            NetOp::AddVeth { ns, name, peer } => {
                write!(f, "{} link add {name} type veth peer name {peer}", ns.ip_prefix())
            }
            NetOp::AddVethInto { ns, name, peer, peer_ns } => {
                write!(f, "{} link add {name} type veth peer name {peer} netns {peer_ns}", ns.ip_prefix())
            }
            NetOp::MoveLink { ns, name, to } => {
                write!(f, "{} link set {name} netns {to}", ns.ip_prefix())
            }
            NetOp::RenameLink { ns, name, new_name } => {
                write!(f, "{} link set {name} name {new_name}", ns.ip_prefix())
            }
            NetOp::AddAddr { ns, dev, addr } => {
                write!(f, "{} addr add {addr} dev {dev}", ns.ip_prefix())
            }
            NetOp::DelAddr { ns, dev, addr } => {
                write!(f, "{} addr del {addr} dev {dev}", ns.ip_prefix())
            }
            NetOp::LinkUp { ns, dev } => write!(f, "{} link set {dev} up", ns.ip_prefix()),
            NetOp::AddDefaultRoute { ns, via, dev } => {
                write!(f, "{} route add default via {via} dev {dev}", ns.ip_prefix())
            }
            NetOp::AddRoute { ns, dst, via } => write!(f, "{} route add {dst} via {via}", ns.ip_prefix()),
            NetOp::SetMaster { ns, dev, master } => {
                write!(f, "{} link set {dev} master {master}", ns.ip_prefix())
            }
            NetOp::SetHairpin { ns, dev, on } => write!(
                f,
                "{} link set {dev} type bridge_slave hairpin {}",
                ns.ip_prefix(),
                if *on { "on" } else { "off" }
            ),
            NetOp::Sysctl { ns, key, value } => {
                write!(f, "ip netns exec {ns} sysctl -w {}={value}", key.as_str())
            }
            NetOp::DelLink { ns, name } => write!(f, "{} link del {name}", ns.ip_prefix()),
        }
    }
}

/// Renders operations as text, one per line (the golden-file form).
pub fn render_text(ops: &[NetOp]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

/// A plan's inputs did not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A name was invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A sysctl key with characters outside `[A-Za-z0-9_.-]` or empty components.
    #[error("invalid sysctl key {0:?}")]
    SysctlKey(String),
    /// A pod IP outside the node's pod CIDR, or one of its reserved addresses.
    #[error("pod IP {ip} is not a usable address of pod CIDR {cidr}")]
    PodIpOutsideCidr {
        /// The pod IP.
        ip: Ipv4Addr,
        /// The node's pod CIDR.
        cidr: Ipv4Cidr,
    },
}

/// The underlay: one bridge per cluster that connects the nodes' `eth0`s.
///
/// In `pier up` it lives in the host namespace (`Netns::Host`); tests put it in a
/// namespace of their own so they never add a link to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Underlay {
    /// Where the bridge lives.
    pub ns: Netns,
    /// Bridge name, e.g. `pier-<cluster>`.
    pub bridge: IfName,
    /// The bridge's own address, e.g. `172.30.0.1/24`.
    pub addr: Ipv4Cidr,
}

impl Underlay {
    /// Create the bridge, address it, bring it up.
    pub fn render_setup(&self) -> Vec<NetOp> {
        vec![
            NetOp::AddBridge { ns: self.ns.clone(), name: self.bridge.clone() },
            NetOp::AddAddr { ns: self.ns.clone(), dev: self.bridge.clone(), addr: self.addr },
            NetOp::LinkUp { ns: self.ns.clone(), dev: self.bridge.clone() },
        ]
    }

    /// Delete the bridge.
    pub fn render_teardown(&self) -> Vec<NetOp> {
        vec![NetOp::DelLink { ns: self.ns.clone(), name: self.bridge.clone() }]
    }
}

/// A node's network: its namespace, `eth0` on the underlay and the `cbr0` pod bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNetwork {
    /// The underlay the node's `eth0` is attached to.
    pub underlay: Underlay,
    /// The node's network namespace.
    pub netns: NetnsName,
    /// The node's address on the underlay, e.g. `172.30.0.10/24`.
    pub node_ip: Ipv4Cidr,
    /// The pod bridge, `cbr0`.
    pub pod_bridge: IfName,
    /// The pod bridge's address, which is the pods' gateway, e.g. `10.244.0.1/24`.
    pub pod_bridge_addr: Ipv4Cidr,
    /// The underlay end of the node's veth (on the underlay bridge).
    pub underlay_veth: IfName,
    /// Sysctls written inside the node namespace.
    pub sysctls: Vec<(SysctlKey, String)>,
}

impl NodeNetwork {
    /// A node plan with `cbr0`, veth names derived from the namespace name (unique on
    /// the machine, unlike node names, which repeat across clusters), and the sysctls
    /// pod traffic needs: forwarding between `cbr0` and `eth0`, and bridged traffic
    /// through netfilter so the service proxy sees pod-to-pod replies on `cbr0`.
    pub fn new(
        underlay: Underlay,
        netns: NetnsName,
        node_ip: Ipv4Cidr,
        pod_bridge_addr: Ipv4Cidr,
    ) -> Result<Self, PlanError> {
        let h = short_hash(netns.as_str());
        Ok(Self {
            underlay,
            underlay_veth: IfName::new(format!("pn{h}"))?,
            netns,
            node_ip,
            pod_bridge: IfName::new("cbr0")?,
            pod_bridge_addr,
            sysctls: vec![
                (SysctlKey::new("net.ipv4.ip_forward")?, "1".to_string()),
                (SysctlKey::new("net.bridge.bridge-nf-call-iptables")?, "1".to_string()),
            ],
        })
    }

    /// The node's pod CIDR, e.g. `10.244.0.0/24`.
    pub fn pod_cidr(&self) -> Ipv4Cidr {
        self.pod_bridge_addr.network()
    }

    /// The node's namespace as an operation target.
    pub fn ns(&self) -> Netns {
        Netns::Named(self.netns.clone())
    }

    /// Plans a pod on this node: `pod_uid` names its veth, `ip` must be a usable
    /// address of the pod CIDR other than the gateway.
    pub fn pod(&self, netns: NetnsName, pod_uid: &str, ip: Ipv4Addr) -> Result<PodNetwork, PlanError> {
        PodNetwork::on_bridge(self.ns(), self.pod_bridge.clone(), self.pod_bridge_addr, netns, pod_uid, ip)
    }

    /// Namespace, `eth0` on the underlay, `cbr0`, sysctls.
    pub fn render_setup(&self) -> Vec<NetOp> {
        let node = self.ns();
        let under = self.underlay.ns.clone();
        let eth0 = eth0();
        let lo = lo();
        let mut ops = vec![
            NetOp::AddNetns { name: self.netns.clone() },
            NetOp::AddVethInto {
                ns: under.clone(),
                name: self.underlay_veth.clone(),
                peer: eth0.clone(),
                peer_ns: self.netns.clone(),
            },
            NetOp::LinkUp { ns: node.clone(), dev: lo },
            NetOp::AddAddr { ns: node.clone(), dev: eth0.clone(), addr: self.node_ip },
            NetOp::LinkUp { ns: node.clone(), dev: eth0 },
            NetOp::SetMaster {
                ns: under.clone(),
                dev: self.underlay_veth.clone(),
                master: self.underlay.bridge.clone(),
            },
            NetOp::LinkUp { ns: under, dev: self.underlay_veth.clone() },
            NetOp::AddBridge { ns: node.clone(), name: self.pod_bridge.clone() },
            NetOp::AddAddr { ns: node.clone(), dev: self.pod_bridge.clone(), addr: self.pod_bridge_addr },
            NetOp::LinkUp { ns: node, dev: self.pod_bridge.clone() },
        ];
        ops.extend(self.sysctls.iter().map(|(key, value)| NetOp::Sysctl {
            ns: self.netns.clone(),
            key: key.clone(),
            value: value.clone(),
        }));
        ops
    }

    /// Delete the underlay veth (its node end goes with it), then the namespace with
    /// `cbr0` in it.
    pub fn render_teardown(&self) -> Vec<NetOp> {
        vec![
            NetOp::DelLink { ns: self.underlay.ns.clone(), name: self.underlay_veth.clone() },
            NetOp::DelNetns { name: self.netns.clone() },
        ]
    }
}

/// A pod's network: its namespace and `eth0`, a veth whose other end is a port of
/// the node's `cbr0`. Made by [`NodeNetwork::pod`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    /// The node namespace, where the host end and the bridge live.
    pub node_ns: Netns,
    /// The node's pod bridge.
    pub bridge: IfName,
    /// The pod's network namespace.
    pub netns: NetnsName,
    /// The host end, `veth` + 10 hex digits of the pod uid's hash (14 bytes).
    pub host_veth: IfName,
    /// The pod IP with the pod CIDR's prefix.
    pub ip: Ipv4Cidr,
    /// The default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

impl PodNetwork {
    /// A pod on `bridge` (in `node_ns`) whose address `gateway` is the pods' gateway:
    /// `pod_uid` names its veth, `ip` must be a usable address of the gateway's network
    /// other than the gateway. The node agent, inside its node's namespace, plans with
    /// `Netns::Host` there.
    pub fn on_bridge(
        node_ns: Netns,
        bridge: IfName,
        gateway: Ipv4Cidr,
        netns: NetnsName,
        pod_uid: &str,
        ip: Ipv4Addr,
    ) -> Result<PodNetwork, PlanError> {
        let cidr = gateway.network();
        let gw = gateway.addr();
        if !cidr.contains(ip) || ip == cidr.addr() || ip == cidr.broadcast() || ip == gw {
            return Err(PlanError::PodIpOutsideCidr { ip, cidr });
        }
        let h = short_hash(pod_uid);
        Ok(PodNetwork {
            node_ns,
            bridge,
            netns,
            host_veth: IfName::new(format!("veth{h}"))?,
            ip: Ipv4Cidr::new(ip, cidr.prefix())?,
            gateway: gw,
        })
    }

    /// Namespace, veth, `eth0` with address and default route, bridge port with hairpin.
    pub fn render_setup(&self) -> Vec<NetOp> {
        let pod = Netns::Named(self.netns.clone());
        let node = self.node_ns.clone();
        vec![
            NetOp::AddNetns { name: self.netns.clone() },
            NetOp::AddVethInto {
                ns: node.clone(),
                name: self.host_veth.clone(),
                peer: eth0(),
                peer_ns: self.netns.clone(),
            },
            NetOp::LinkUp { ns: pod.clone(), dev: lo() },
            NetOp::AddAddr { ns: pod.clone(), dev: eth0(), addr: self.ip },
            NetOp::LinkUp { ns: pod.clone(), dev: eth0() },
            NetOp::AddDefaultRoute { ns: pod, via: self.gateway, dev: eth0() },
            NetOp::SetMaster { ns: node.clone(), dev: self.host_veth.clone(), master: self.bridge.clone() },
            NetOp::SetHairpin { ns: node.clone(), dev: self.host_veth.clone(), on: true },
            NetOp::LinkUp { ns: node, dev: self.host_veth.clone() },
        ]
    }

    /// Delete the host end first (a process still holding the namespace must not keep
    /// the pod attached to the bridge), then the namespace.
    pub fn render_teardown(&self) -> Vec<NetOp> {
        vec![
            NetOp::DelLink { ns: self.node_ns.clone(), name: self.host_veth.clone() },
            NetOp::DelNetns { name: self.netns.clone() },
        ]
    }
}

fn eth0() -> IfName {
    IfName(String::from("eth0"))
}

fn lo() -> IfName {
    IfName(String::from("lo"))
}
