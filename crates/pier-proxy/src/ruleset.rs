//! The desired ruleset, as objects: the fixed part every node has (base chains,
//! dispatch maps, helper chains) and, per Service, its chains, affinity sets and map
//! elements. [`crate::render`] turns these into a full or a partial transaction.
//!
//! The layout is kube-proxy's nftables mode (`pkg/proxy/nftables/proxier.go`):
//!
//! ```text
//! nat-prerouting / nat-output  -> services: ip daddr . meta l4proto . th dport vmap @service-ips
//!                                           NodePorts: ... vmap @service-nodeports
//!   service-ips element        -> goto service-<port>   (ClusterIP, Cluster policy)
//!                              -> goto local-<port>     (ClusterIP, internalTrafficPolicy Local)
//!                              -> goto external-<port>  (externalIPs, load-balancer IPs)
//!   external-<port>            -> mark for SNAT, goto service-<port>     (Cluster policy)
//!                              -> short-circuit node and pod traffic, else goto local-<port>
//!   service-/local-<port>      -> dnat to numgen random mod N offset K map @endpoints-<proto>-<g>
//!                                 (with ClientIP affinity, kube-proxy's per-endpoint chains:)
//!                                 [ip saddr @affinity-<ep> goto endpoint-<ep>]
//!                                 numgen random mod N vmap { i : goto endpoint-<ep> }
//!   endpoint-<ep>              -> update @affinity-<ep>, dnat to ip:port
//! nat-postrouting -> masquerading: masquerade hairpin connections (@hairpin-endpoints)
//!                                  and what was marked
//! filter hooks (before DNAT)   -> no-endpoint-services / no-endpoint-nodeports: reject or drop
//!                              -> firewall-ips: loadBalancerSourceRanges
//!                              -> cluster-ips: reject what reached a ClusterIP un-DNATed
//! ```
//!
//! Unlike kube-proxy, a Service without affinity has no per-endpoint chains: its
//! chains DNAT through a shared map keyed by the number `numgen` draws, each port
//! owning the range `K..K+N` (K from [`ServicePort::slot`]). The kernel validates a
//! map's elements against every rule that uses it, and looks sets up by name in a
//! list, so one map for all ports, or one per port, makes a sync of 10,000 Services
//! quadratic (166 s and 7.4 s, Linux 6.18); ports are grouped [`SLOTS_PER_MAP`] to a
//! map instead. Hairpin connections are caught after DNAT by a set of
//! `address . address` pairs, which replaces kube-proxy's per-endpoint source check.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, NodeInfo, Protocol, ServicePort, SessionAffinity};
use crate::names::{
    self, AFFINITY_PREFIX, ENDPOINT_MAP_PREFIX, ENDPOINT_PREFIX, EXTERNAL_PREFIX, FIREWALL_PREFIX,
    LOCAL_PREFIX, SERVICE_PREFIX,
};
use crate::render::{LoadBalancing, NodePortAddresses, RenderConfig};
use crate::transaction::{BaseChain, ChainKind, ElementKey, EndpointPick, Hook, Op, Value};

// Fixed chains.
pub(crate) const FILTER_PREROUTING: &str = "filter-prerouting";
pub(crate) const FILTER_INPUT: &str = "filter-input";
pub(crate) const FILTER_OUTPUT: &str = "filter-output";
pub(crate) const FILTER_OUTPUT_POST_DNAT: &str = "filter-output-post-dnat";
pub(crate) const FILTER_PREROUTING_POST_DNAT: &str = "filter-prerouting-post-dnat";
pub(crate) const NAT_PREROUTING: &str = "nat-prerouting";
pub(crate) const NAT_OUTPUT: &str = "nat-output";
pub(crate) const NAT_POSTROUTING: &str = "nat-postrouting";
const SERVICES: &str = "services";
const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const REJECT_CHAIN: &str = "reject-chain";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
const FIREWALL_CHECK: &str = "firewall-check";
const MARK_MASQ: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";

// Sets and maps.
pub(crate) const CLUSTER_IPS: &str = "cluster-ips";
pub(crate) const NODEPORT_IPS: &str = "nodeport-ips";
pub(crate) const SERVICE_IPS: &str = "service-ips";
pub(crate) const SERVICE_NODEPORTS: &str = "service-nodeports";
pub(crate) const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub(crate) const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub(crate) const FIREWALL_IPS: &str = "firewall-ips";
pub(crate) const HAIRPIN_ENDPOINTS: &str = "hairpin-endpoints";

/// How many Service ports share one endpoint map.
pub const SLOTS_PER_MAP: u32 = 64;
/// Bits of a port's range in its map: two epochs (see [`ServicePort::epoch`]), each
/// with a Cluster-policy half and a Local-policy half of 2^16 endpoints.
const RANGE_BITS: u32 = 18;
const EPOCH_BIT: u32 = 1 << 17;
const LOCAL_HALF: u32 = 1 << 16;
/// The most endpoints one port's chain can pick from.
const ENDPOINTS_MAX: usize = 1 << 16;

/// Base chains: the filter chains run before DNAT (priority dstnat-10) so they see
/// the service address, except the `-post-dnat` ones, which see what DNAT left
/// untouched. Priorities are numbers because nft only accepts the names `dstnat` and
/// `srcnat` on some hooks.
const BASE_CHAINS: [(&str, ChainKind, Hook, i32); 8] = [
    (FILTER_PREROUTING, ChainKind::Filter, Hook::Prerouting, -110),
    (FILTER_PREROUTING_POST_DNAT, ChainKind::Filter, Hook::Prerouting, -90),
    (FILTER_INPUT, ChainKind::Filter, Hook::Input, -110),
    (FILTER_OUTPUT, ChainKind::Filter, Hook::Output, -110),
    (FILTER_OUTPUT_POST_DNAT, ChainKind::Filter, Hook::Output, -90),
    (NAT_PREROUTING, ChainKind::Nat, Hook::Prerouting, -100),
    (NAT_OUTPUT, ChainKind::Nat, Hook::Output, -100),
    (NAT_POSTROUTING, ChainKind::Nat, Hook::Postrouting, 100),
];

/// Jumps from base chains to the helper chains: (from, condition, to).
///
/// Unlike kube-proxy, traffic from pods is checked at prerouting, not forward: a Pier
/// node has no default route, so a packet to a Service address that DNAT did not
/// rewrite never reaches the forward hook; the routing failure would answer with an
/// ICMP error, which the kernel rate-limits (a client retrying would see timeouts
/// instead of refusals). `reject` at prerouting needs Linux 5.x or newer.
const JUMPS: [(&str, &str, &str); 11] = [
    (FILTER_INPUT, "ct state new ", NODEPORT_ENDPOINTS_CHECK),
    (FILTER_INPUT, "ct state new ", SERVICE_ENDPOINTS_CHECK),
    (FILTER_PREROUTING, "ct state new ", SERVICE_ENDPOINTS_CHECK),
    (FILTER_OUTPUT, "ct state new ", SERVICE_ENDPOINTS_CHECK),
    (FILTER_PREROUTING, "ct state new ", FIREWALL_CHECK),
    (FILTER_OUTPUT, "ct state new ", FIREWALL_CHECK),
    (NAT_OUTPUT, "", SERVICES),
    (NAT_PREROUTING, "", SERVICES),
    (NAT_POSTROUTING, "", MASQUERADING),
    (FILTER_PREROUTING_POST_DNAT, "ct state new ", CLUSTER_IPS_CHECK),
    (FILTER_OUTPUT_POST_DNAT, "ct state new ", CLUSTER_IPS_CHECK),
];

/// The verdict maps: (name, key type, comment).
const MAPS: [(&str, &str, &str); 5] = [
    (
        NO_ENDPOINT_SERVICES,
        "ipv4_addr . inet_proto . inet_service",
        "vmap to drop or reject packets to services with no endpoints",
    ),
    (
        NO_ENDPOINT_NODEPORTS,
        "inet_proto . inet_service",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    ),
    (
        FIREWALL_IPS,
        "ipv4_addr . inet_proto . inet_service",
        "destinations that are subject to LoadBalancerSourceRanges",
    ),
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service",
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    ),
    (SERVICE_NODEPORTS, "inet_proto . inet_service", "NodePort traffic"),
];

/// A rule: nft text and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub text: String,
    pub comment: Option<&'static str>,
    /// The rule in typed form, when it is an endpoint pick.
    pub pick: Option<EndpointPick>,
}

/// A per-Service chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
    /// The affinity sets its rules reference: if one must be re-created, the chain
    /// must be flushed first and rewritten after.
    pub sets: Vec<String>,
}

/// A ClientIP affinity set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AffinitySet {
    pub name: String,
    pub timeout_seconds: u32,
}

/// A set or map that elements go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Container {
    /// One of the fixed sets and maps.
    Fixed(&'static str),
    /// An endpoint map.
    Endpoints { protocol: Protocol, group: u32 },
}

impl Container {
    pub(crate) fn name(&self) -> String {
        match self {
            Container::Fixed(name) => name.to_string(),
            Container::Endpoints { protocol, group } => endpoint_map_name(*protocol, *group),
        }
    }

    /// Whether deleting an element nobody refers to may wait for a later
    /// transaction: endpoint map and hairpin elements are only reached through
    /// rules and picks that no longer lead to them.
    pub(crate) fn is_deferrable(&self) -> bool {
        match self {
            Container::Fixed(name) => *name == HAIRPIN_ENDPOINTS,
            Container::Endpoints { .. } => true,
        }
    }

    /// Whether the map is keyed by a Service's destination, so that two Services
    /// claiming one destination conflict.
    pub(crate) fn is_dispatch(&self) -> bool {
        match self {
            Container::Fixed(name) => *name != CLUSTER_IPS && *name != HAIRPIN_ENDPOINTS,
            Container::Endpoints { .. } => false,
        }
    }
}

pub(crate) fn endpoint_map_name(protocol: Protocol, group: u32) -> String {
    format!("{ENDPOINT_MAP_PREFIX}{}-{group}", protocol.as_nft())
}

/// The endpoint map of a slot.
pub(crate) fn endpoint_map(protocol: Protocol, slot: u32) -> Container {
    Container::Endpoints { protocol, group: slot / SLOTS_PER_MAP }
}

/// An element of one of the fixed sets or maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub container: Container,
    pub key: ElementKey,
    pub value: Option<Value>,
    pub comment: Option<String>,
}

impl Element {
    pub(crate) fn add_op(&self) -> Op {
        Op::AddElement {
            container: self.container.name(),
            key: self.key,
            value: self.value.clone(),
            comment: self.comment.clone(),
        }
    }

    pub(crate) fn delete_op(&self) -> Op {
        Op::DeleteElement { container: self.container.name(), key: self.key }
    }
}

/// Everything one Service contributes to the ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceObjects {
    /// In creation order.
    pub chains: Vec<Chain>,
    pub sets: Vec<AffinitySet>,
    /// Keyed by (container, key): a multi-port Service adds its cluster IP to
    /// `cluster-ips` once per port, and it must be one element.
    pub elements: BTreeMap<(Container, ElementKey), Element>,
}

impl ServiceObjects {
    fn chain(&mut self, index: &mut HashMap<String, usize>, name: &str) -> &mut Chain {
        let i = *index.entry(name.to_string()).or_insert_with(|| {
            self.chains.push(Chain { name: name.to_string(), rules: Vec::new(), sets: Vec::new() });
            self.chains.len() - 1
        });
        &mut self.chains[i]
    }

    fn element(
        &mut self,
        container: &'static str,
        key: ElementKey,
        value: Option<Value>,
        comment: Option<String>,
    ) {
        let container = Container::Fixed(container);
        self.elements.insert((container, key), Element { container, key, value, comment });
    }

    fn endpoint_element(&mut self, container: Container, key: u32, ep: &Endpoint) {
        let key = ElementKey::Number(key);
        let value = Some(Value::Endpoint { ip: ep.ip, port: ep.port });
        self.elements.insert((container, key), Element { container, key, value, comment: None });
    }

    /// The endpoint maps its elements go into.
    pub(crate) fn endpoint_maps(&self) -> impl Iterator<Item = Container> + '_ {
        let mut last = None;
        self.elements.keys().filter_map(move |(container, _)| {
            let new = matches!(container, Container::Endpoints { .. }) && last != Some(*container);
            last = Some(*container);
            new.then_some(*container)
        })
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

fn rule(text: String) -> Rule {
    Rule { text, comment: None, pick: None }
}

/// The fixed part of the ruleset, for a full sync: table, base chains (re-created, so
/// a changed priority applies), helper chains and their rules, and every set and map
/// declared and emptied (the Services' elements follow).
pub(crate) fn base_ops(cfg: &RenderConfig, node: &NodeInfo, ops: &mut Vec<Op>) -> BaseCounts {
    let mut counts = BaseCounts::default();
    let mut add_rule = |ops: &mut Vec<Op>, chain: &str, rule: String, comment: Option<&str>| {
        counts.rules += 1;
        ops.push(Op::AddRule { chain: chain.to_string(), rule, comment: comment.map(str::to_string) });
    };
    ops.push(Op::AddTable { comment: Some("rules for pier-proxy".to_string()) });
    for (name, ..) in BASE_CHAINS {
        // add+delete first, as upstream does once per process: it empties the chain
        // and lets the next `add` set a hook or priority that differs from what an
        // older version created (an `add` with other properties would fail).
        ops.push(Op::AddChain { name: name.to_string(), base: None, comment: None });
        ops.push(Op::DeleteChain { name: name.to_string() });
    }
    for (name, kind, hook, priority) in BASE_CHAINS {
        ops.push(Op::AddChain {
            name: name.to_string(),
            base: Some(BaseChain { kind, hook, priority }),
            comment: None,
        });
        counts.chains += 1;
    }
    let helpers = [
        (SERVICES, None),
        (SERVICE_ENDPOINTS_CHECK, None),
        (NODEPORT_ENDPOINTS_CHECK, None),
        (FIREWALL_CHECK, None),
        (CLUSTER_IPS_CHECK, None),
        (MASQUERADING, None),
        (MARK_MASQ, None),
        (REJECT_CHAIN, Some("helper for @no-endpoint-services / @no-endpoint-nodeports")),
    ];
    for (name, comment) in helpers {
        ops.push(Op::AddChain { name: name.to_string(), base: None, comment: comment.map(str::to_string) });
        ops.push(Op::FlushChain { name: name.to_string() });
        counts.chains += 1;
    }
    for (from, condition, to) in JUMPS {
        add_rule(ops, from, format!("{condition}jump {to}"), None);
    }

    ops.push(Op::AddSet {
        name: HAIRPIN_ENDPOINTS.to_string(),
        key_type: "ipv4_addr . ipv4_addr".to_string(),
        timeout_seconds: None,
        comment: Some("Connections from an endpoint to itself".to_string()),
    });
    ops.push(Op::FlushSet { name: HAIRPIN_ENDPOINTS.to_string() });
    counts.sets += 1;

    let mark = format!("{:#x}", cfg.masquerade_mark);
    add_rule(ops, MARK_MASQ, format!("mark set mark or {mark}"), None);
    // Hairpin: a pod that reached itself through a Service must see the reply come
    // from the Service's address, so SNAT it.
    add_rule(
        ops,
        MASQUERADING,
        format!("ct status dnat ip saddr . ip daddr @{HAIRPIN_ENDPOINTS} masquerade fully-random"),
        None,
    );
    add_rule(ops, MASQUERADING, format!("mark and {mark} == 0 return"), None);
    // Clear the mark so it does not leak into a second pass (e.g. through a tunnel).
    add_rule(ops, MASQUERADING, format!("mark set mark xor {mark}"), None);
    add_rule(ops, MASQUERADING, "masquerade fully-random".to_string(), None);
    // A TCP reset rather than ICMP where possible: the kernel rate-limits the ICMP
    // errors it sends (a burst of 6, then one a second per peer).
    add_rule(ops, REJECT_CHAIN, "meta l4proto tcp reject with tcp reset".to_string(), None);
    add_rule(ops, REJECT_CHAIN, "reject".to_string(), None);

    ops.push(Op::AddSet {
        name: CLUSTER_IPS.to_string(),
        key_type: "ipv4_addr".to_string(),
        timeout_seconds: None,
        comment: Some("Active ClusterIPs".to_string()),
    });
    ops.push(Op::FlushSet { name: CLUSTER_IPS.to_string() });
    counts.sets += 1;
    add_rule(
        ops,
        CLUSTER_IPS_CHECK,
        format!("ip daddr @{CLUSTER_IPS} reject"),
        Some("Reject traffic to invalid ports of ClusterIPs"),
    );
    if !cfg.service_cidrs.is_empty() {
        add_rule(
            ops,
            CLUSTER_IPS_CHECK,
            format!("ip daddr {{ {} }} drop", join(cfg.service_cidrs.iter())),
            Some("Drop traffic to unallocated ClusterIPs"),
        );
    }

    // nodeport-ips exists only when NodePorts are limited to the node's addresses;
    // add+delete removes it otherwise (a bare delete fails if it is missing).
    ops.push(Op::AddSet {
        name: NODEPORT_IPS.to_string(),
        key_type: "ipv4_addr".to_string(),
        timeout_seconds: None,
        comment: Some("IPs that accept NodePort traffic".to_string()),
    });
    match cfg.node_port_addresses {
        NodePortAddresses::AllLocal => ops.push(Op::DeleteSet { name: NODEPORT_IPS.to_string() }),
        NodePortAddresses::NodeIps => {
            counts.sets += 1;
            ops.push(Op::FlushSet { name: NODEPORT_IPS.to_string() });
            for element in node_elements(cfg, node) {
                counts.elements += 1;
                ops.push(element.add_op());
            }
        }
    }

    for (name, key_type, comment) in MAPS {
        ops.push(Op::AddMap {
            name: name.to_string(),
            key_type: key_type.to_string(),
            comment: Some(comment.to_string()),
        });
        ops.push(Op::FlushMap { name: name.to_string() });
        counts.sets += 1;
    }

    add_rule(
        ops,
        SERVICE_ENDPOINTS_CHECK,
        format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
        None,
    );
    // `filter-input` only sees packets to local addresses, so no `fib` test is
    // needed here; localhost is excluded as kube-proxy does not serve NodePorts there.
    let nodeport_match = match cfg.node_port_addresses {
        NodePortAddresses::AllLocal => "ip daddr != 127.0.0.0/8".to_string(),
        NodePortAddresses::NodeIps => format!("ip daddr @{NODEPORT_IPS}"),
    };
    add_rule(
        ops,
        NODEPORT_ENDPOINTS_CHECK,
        format!("{nodeport_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
        None,
    );
    add_rule(ops, FIREWALL_CHECK, format!("ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"), None);
    // Traffic to a cluster IP from outside the pod network (the node itself, or a
    // client routed to this node) must come back through this node: SNAT it. One
    // rule for all Services rather than kube-proxy's one per Service port: it marks
    // packets to ports without endpoints too, but those are rejected before NAT.
    let masquerade = if cfg.masquerade_all {
        Some(format!("ip daddr @{CLUSTER_IPS} jump {MARK_MASQ}"))
    } else {
        cfg.cluster_cidr.map(|cidr| format!("ip daddr @{CLUSTER_IPS} ip saddr != {cidr} jump {MARK_MASQ}"))
    };
    if let Some(rule) = masquerade {
        add_rule(ops, SERVICES, rule, Some("SNAT traffic to ClusterIPs from outside the pod network"));
    }
    add_rule(ops, SERVICES, format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"), None);
    let nodeport_dispatch = match cfg.node_port_addresses {
        NodePortAddresses::AllLocal => "fib daddr type local ip daddr != 127.0.0.0/8".to_string(),
        NodePortAddresses::NodeIps => format!("ip daddr @{NODEPORT_IPS}"),
    };
    add_rule(
        ops,
        SERVICES,
        format!("{nodeport_dispatch} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        None,
    );
    counts
}

/// Sizes of the fixed part.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BaseCounts {
    pub chains: usize,
    pub rules: usize,
    pub sets: usize,
    pub elements: usize,
}

/// The `nodeport-ips` elements: the node's addresses but loopback, which kube-proxy
/// refuses for NodePorts.
pub(crate) fn node_elements(cfg: &RenderConfig, node: &NodeInfo) -> Vec<Element> {
    if cfg.node_port_addresses != NodePortAddresses::NodeIps {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = node.node_ips.iter().copied().filter(|ip| !ip.is_loopback()).collect();
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .map(|ip| Element {
            container: Container::Fixed(NODEPORT_IPS),
            key: ElementKey::Ip(ip),
            value: None,
            comment: None,
        })
        .collect()
}

/// The chains, affinity sets and map elements of one Service (all its ports).
pub(crate) fn service_objects(cfg: &RenderConfig, node: &NodeInfo, ports: &[ServicePort]) -> ServiceObjects {
    let mut out = ServiceObjects::default();
    let mut index = HashMap::new();
    for port in ports {
        port_objects(cfg, node, port, &mut out, &mut index);
    }
    out
}

/// The endpoint map `port` puts endpoints in, if any: the same decision as
/// [`service_objects`], without rendering anything.
pub(crate) fn endpoint_map_of(cfg: &RenderConfig, port: &ServicePort) -> Option<Container> {
    if port.session_affinity != SessionAffinity::None || cfg.load_balancing != LoadBalancing::EndpointMaps {
        return None;
    }
    // Cheap tests first: this runs over many ports per partial sync.
    if port.endpoints.is_empty() {
        return None;
    }
    let cat = port.categorize();
    let cluster = !cat.cluster.is_empty() && port.uses_cluster_endpoints();
    let local = !cat.local.is_empty() && port.uses_local_endpoints();
    (cluster || local).then(|| endpoint_map(port.name.protocol, port.slot))
}

/// Names of one endpoint's chain and affinity set.
struct EndpointNames {
    chain: String,
    affinity: String,
}

fn port_objects(
    cfg: &RenderConfig,
    node: &NodeInfo,
    sp: &ServicePort,
    out: &mut ServiceObjects,
    index: &mut HashMap<String, usize>,
) {
    let proto = sp.name.protocol;
    let p = proto.as_nft();
    let spn = sp.name.to_string();
    let base = names::service_port_base(&sp.name);
    let cluster_chain = format!("{SERVICE_PREFIX}{base}");
    let local_chain = format!("{LOCAL_PREFIX}{base}");
    let external_chain = format!("{EXTERNAL_PREFIX}{base}");
    let firewall_chain = format!("{FIREWALL_PREFIX}{base}");
    let affinity = match sp.session_affinity {
        SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
        SessionAffinity::None => None,
    };

    let cat = sp.categorize();
    let ep_names = |ep: &Endpoint| {
        let base = names::endpoint_base(&sp.name, ep.ip, ep.port);
        EndpointNames {
            chain: format!("{ENDPOINT_PREFIX}{base}"),
            affinity: format!("{AFFINITY_PREFIX}{base}"),
        }
    };

    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let has_any = cat.has_any;
    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&local_chain, has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_any)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local {
        (&local_chain, has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, has_any)
    };
    // Created even when Local policy has no local endpoint: traffic from this node
    // and its pods is still short-circuited to the Cluster chain.
    let uses_external_chain = has_any && sp.externally_accessible();
    let uses_firewall = !sp.load_balancer_ips.is_empty() && !sp.load_balancer_source_ranges.is_empty();

    // No endpoint anywhere: reject at once (connection refused, not a timeout).
    // Endpoints exist but none local under Local policy: drop, as upstream.
    let reject = Value::Goto(REJECT_CHAIN.to_string());
    let internal_filter = if has_any { Value::Drop } else { reject.clone() };
    let external_filter = internal_filter.clone();

    // kube-proxy's per-endpoint chains only where ClientIP affinity needs them.
    let per_endpoint_chains = affinity.is_some() || cfg.load_balancing != LoadBalancing::EndpointMaps;

    // Chains, in a readable order; their rules are filled in below.
    if uses_cluster_chain {
        out.chain(index, &cluster_chain);
    }
    if uses_local_chain {
        out.chain(index, &local_chain);
    }
    if uses_external_chain {
        out.chain(index, &external_chain);
    }
    if uses_firewall {
        out.chain(index, &firewall_chain);
    }
    if per_endpoint_chains {
        for ep in &cat.reachable {
            out.chain(index, &ep_names(ep).chain);
        }
    }

    // Dispatch elements.
    let ip_port = |ip: Ipv4Addr| ElementKey::IpPort { ip, protocol: proto, port: sp.port };
    out.element(CLUSTER_IPS, ElementKey::Ip(sp.cluster_ip), None, None);
    if has_internal {
        out.element(SERVICE_IPS, ip_port(sp.cluster_ip), Some(Value::Goto(internal_chain.clone())), None);
    } else {
        out.element(NO_ENDPOINT_SERVICES, ip_port(sp.cluster_ip), Some(internal_filter), Some(spn.clone()));
    }
    for ip in &sp.external_ips {
        if has_any {
            out.element(SERVICE_IPS, ip_port(*ip), Some(Value::Goto(external_chain.clone())), None);
        }
        if !has_external {
            out.element(NO_ENDPOINT_SERVICES, ip_port(*ip), Some(external_filter.clone()), Some(spn.clone()));
        }
    }
    for ip in &sp.load_balancer_ips {
        if has_any {
            out.element(SERVICE_IPS, ip_port(*ip), Some(Value::Goto(external_chain.clone())), None);
        }
        if uses_firewall {
            out.element(FIREWALL_IPS, ip_port(*ip), Some(Value::Goto(firewall_chain.clone())), None);
        }
        if !has_external {
            out.element(NO_ENDPOINT_SERVICES, ip_port(*ip), Some(external_filter.clone()), Some(spn.clone()));
        }
    }
    if let Some(node_port) = sp.node_port {
        let key = ElementKey::Port { protocol: proto, port: node_port };
        // NodePorts are not subject to loadBalancerSourceRanges, as upstream.
        if has_any {
            out.element(SERVICE_NODEPORTS, key, Some(Value::Goto(external_chain.clone())), None);
        }
        if !has_external {
            out.element(NO_ENDPOINT_NODEPORTS, key, Some(external_filter.clone()), Some(spn.clone()));
        }
    }

    if uses_external_chain {
        let mut rules = Vec::new();
        if !sp.external_policy_local {
            // Endpoints may be on other nodes: SNAT so replies come back here.
            rules.push(rule(format!("jump {MARK_MASQ}")));
        } else {
            // Local policy keeps the client's address, except for traffic that
            // starts on this node: pods and the node itself reach the Service as if
            // through the load balancer and use Cluster policy.
            if let Some(cidr) = cfg.cluster_cidr {
                rules.push(Rule {
                    text: format!("ip saddr {cidr} goto {cluster_chain}"),
                    comment: Some("short-circuit pod traffic"),
                    pick: None,
                });
            }
            // The node's own source address is a local one, so it needs SNAT.
            rules.push(Rule {
                text: format!("fib saddr type local jump {MARK_MASQ}"),
                comment: Some("masquerade local traffic"),
                pick: None,
            });
            rules.push(Rule {
                text: format!("fib saddr type local goto {cluster_chain}"),
                comment: Some("short-circuit local traffic"),
                pick: None,
            });
        }
        if has_external {
            rules.push(rule(format!("goto {external_policy_chain}")));
        }
        out.chain(index, &external_chain).rules.extend(rules);
    }

    if uses_firewall {
        let mut sources: Vec<String> =
            sp.load_balancer_source_ranges.iter().map(ToString::to_string).collect();
        // A load-balancer IP that is a local address loops back with itself as the
        // source; let the node reach its own load balancer when the ranges admit it.
        if sp.load_balancer_source_ranges.iter().any(|r| node.node_ips.iter().any(|ip| r.contains(*ip))) {
            sources.extend(sp.load_balancer_ips.iter().map(ToString::to_string));
        }
        out.chain(index, &firewall_chain)
            .rules
            .push(rule(format!("ip saddr != {{ {} }} drop", sources.join(", "))));
    }

    if let Some(timeout_seconds) = affinity {
        for ep in &cat.reachable {
            out.sets.push(AffinitySet { name: ep_names(ep).affinity, timeout_seconds });
        }
    }
    // Only this node's pods: a pod on another node reaches a Service through its
    // own node's rules (and a remote pod DNAT'ed here through a NodePort under
    // Cluster policy is masqueraded anyway).
    for ep in sp.endpoints.iter().filter(|ep| ep.is_local) {
        out.element(HAIRPIN_ENDPOINTS, ElementKey::SameAddress(ep.ip), None, None);
    }

    let picks = [
        (uses_cluster_chain, &cluster_chain, &cat.cluster, 0),
        (uses_local_chain, &local_chain, &cat.local, LOCAL_HALF),
    ];
    for (used, chain_name, endpoints, half) in picks {
        if !used {
            continue;
        }
        if per_endpoint_chains {
            let chain = out.chain(index, chain_name);
            load_balance(chain, endpoints, affinity.is_some(), cfg.load_balancing, &ep_names);
        } else {
            let map = endpoint_map(proto, sp.slot);
            let epoch = if sp.epoch == 0 { 0 } else { EPOCH_BIT };
            let base = ((sp.slot % SLOTS_PER_MAP) << RANGE_BITS) | epoch | half;
            let picked = &endpoints[..endpoints.len().min(ENDPOINTS_MAX)];
            for (i, ep) in picked.iter().enumerate() {
                out.endpoint_element(map, base + i as u32, ep);
            }
            let pick =
                EndpointPick { protocol: proto, modulus: picked.len() as u32, offset: base, map: map.name() };
            out.chain(index, chain_name).rules.push(Rule {
                text: pick.to_string(),
                comment: None,
                pick: Some(pick),
            });
        }
    }

    if per_endpoint_chains {
        for ep in &cat.reachable {
            let names = ep_names(ep);
            let chain = out.chain(index, &names.chain);
            if affinity.is_some() {
                chain.rules.push(rule(format!("update @{} {{ ip saddr }}", names.affinity)));
                chain.sets.push(names.affinity);
            }
            chain.rules.push(rule(format!("meta l4proto {p} dnat to {}:{}", ep.ip, ep.port)));
        }
    }
}

/// The rules of a service or local chain with per-endpoint chains: affinity lookups
/// first (a client seen recently goes back to its endpoint), then a random pick.
fn load_balance(
    chain: &mut Chain,
    endpoints: &[&Endpoint],
    affinity: bool,
    mode: LoadBalancing,
    names: &impl Fn(&Endpoint) -> EndpointNames,
) {
    let names: Vec<EndpointNames> = endpoints.iter().map(|ep| names(ep)).collect();
    if affinity {
        for n in &names {
            chain.rules.push(rule(format!("ip saddr @{} goto {}", n.affinity, n.chain)));
            chain.sets.push(n.affinity.clone());
        }
    }
    match mode {
        LoadBalancing::VerdictMap | LoadBalancing::EndpointMaps => {
            let mut vmap = String::new();
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    vmap.push_str(", ");
                }
                let _ = write!(vmap, "{i} : goto {}", n.chain);
            }
            chain.rules.push(rule(format!("numgen random mod {} vmap {{ {vmap} }}", names.len())));
        }
        LoadBalancing::Rules => {
            // Rule i takes 1/(N-i) of what reaches it, so every endpoint gets 1/N.
            let n = names.len();
            for (i, name) in names.iter().enumerate() {
                if i + 1 == n {
                    chain.rules.push(rule(format!("goto {}", name.chain)));
                } else {
                    chain.rules.push(rule(format!("numgen random mod {} == 0 goto {}", n - i, name.chain)));
                }
            }
        }
    }
}

fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
