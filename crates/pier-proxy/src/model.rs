//! What the proxy programs, built from Services and EndpointSlices: one [`ServicePort`]
//! per port of every proxied Service, each with its endpoints from the slices.
//!
//! This follows kube-proxy's service and endpoint caches (`pkg/proxy/serviceport.go`,
//! `pkg/proxy/endpointslicecache.go`) and its endpoint selection
//! (`pkg/proxy/topology.go`, `CategorizeEndpoints`), for the IPv4 family only:
//!
//! - Headless Services (`clusterIP: None`) and `ExternalName` Services are not proxied;
//!   neither are Services without an IPv4 cluster IP (IPv6 single-stack). IPv6
//!   external IPs, load-balancer IPs, source ranges and slices are ignored.
//! - An EndpointSlice belongs to the Service named by its `kubernetes.io/service-name`
//!   label. Its endpoint ports are matched to the Service's ports by port *name* and
//!   protocol, which is how a named `targetPort` resolves to a different number on
//!   each endpoint. Only an endpoint's first address is used.
//! - Endpoint conditions default as the API says: `ready` and `serving` true,
//!   `terminating` false.
//!
//! Input that is invalid (an unparsable IP, a port out of range) is skipped and
//! reported in [`ProxyModel::skipped`], never a panic: one bad object must not stop
//! every other Service from being programmed.

#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cidr::Ipv4Cidr;
use crate::transaction::ElementKey;

/// The label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset: three hours, the API
/// server's default.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// The node the proxy runs on: its name decides which endpoints are local, its
/// addresses where NodePorts listen (see `NodePortAddresses`) and whether a
/// `loadBalancerSourceRanges` entry admits the node itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name` of the Node; compared with each endpoint's `nodeName`.
    pub name: String,
    /// The node's IPv4 addresses (loopback addresses are ignored for NodePorts).
    pub node_ips: Vec<Ipv4Addr>,
}

/// A transport protocol a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `TCP`, the default.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

impl Protocol {
    /// The nft keyword (`tcp`, `udp`, `sctp`), also used in chain names.
    pub fn as_nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Parses the Kubernetes spelling; `None` (unset) is TCP, as the API defaults it.
    fn from_k8s(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }
}

/// A Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: upstream's `ServicePortName`. Endpoint ports are matched
/// to it by `port_name` and `protocol`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    /// `metadata.namespace` of the Service.
    pub namespace: String,
    /// `metadata.name` of the Service.
    pub name: String,
    /// `spec.ports[].name`; empty for the single unnamed port of a Service.
    pub port_name: String,
    /// `spec.ports[].protocol`.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// The Service this port belongs to.
    pub fn service(&self) -> ServiceName {
        ServiceName { namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

impl fmt::Display for ServicePortName {
    /// `namespace/name:port`, or `namespace/name` for an unnamed port, as upstream
    /// prints it (the protocol is not part of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        Ok(())
    }
}

/// `spec.sessionAffinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAffinity {
    /// Every connection picks an endpoint at random.
    None,
    /// A client IP keeps its endpoint until it has been idle this long.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds` (default
        /// [`DEFAULT_AFFINITY_TIMEOUT_SECONDS`]).
        timeout_seconds: u32,
    },
}

/// One endpoint of one Service port, from an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's first address.
    pub ip: Ipv4Addr,
    /// The port number the slice gives for this Service port's name and protocol.
    pub port: u16,
    /// `conditions.ready` (unset means true).
    pub ready: bool,
    /// `conditions.serving` (unset means true).
    pub serving: bool,
    /// `conditions.terminating` (unset means false).
    pub terminating: bool,
    /// `nodeName`, if the slice says.
    pub node_name: Option<String>,
    /// Whether `node_name` is the node this model was built for.
    pub is_local: bool,
}

/// Everything the proxy needs about one port of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Which Service and port.
    pub name: ServicePortName,
    /// The IPv4 cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// `spec.ports[].port`.
    pub port: u16,
    /// `spec.ports[].nodePort`, if allocated.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` (IPv4 ones).
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` (IPv4, `ipMode` unset or `VIP`).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges` (IPv4 ones); they filter load-balancer IPs only.
    pub load_balancer_source_ranges: Vec<Ipv4Cidr>,
    /// `spec.sessionAffinity` with its timeout.
    pub session_affinity: SessionAffinity,
    /// `externalTrafficPolicy: Local` on a Service that is reachable from outside
    /// (NodePort, LoadBalancer, or externalIPs); false otherwise, as upstream.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with
    /// `externalTrafficPolicy: Local`.
    pub health_check_node_port: Option<u16>,
    /// Every endpoint of this port, whatever its conditions, sorted by address and
    /// port; [`ServicePort::categorize`] picks the usable ones.
    pub endpoints: Vec<Endpoint>,
    /// Where the port's endpoints live in the shared endpoint maps: assigned by the
    /// [`ProxyModel`] it is in, and kept for as long as the port exists there, so a
    /// partial sync only touches the port's own map elements.
    pub slot: u32,
    /// Which of the slot's two key ranges holds the endpoints: it flips whenever
    /// they change, so a change adds the new endpoints beside the old ones and
    /// switches the pick over, and the old elements can be deleted afterwards (the
    /// kernel takes a grace period, 8-16 ms, to delete set elements).
    pub epoch: u8,
}

/// The endpoints a Service port uses on this node, from [`ServicePort::categorize`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Categorized<'a> {
    /// Endpoints for "Cluster" traffic policy: the ready ones, or if none is ready
    /// anywhere, the serving and terminating ones. Empty if the port never uses
    /// Cluster policy.
    pub cluster: Vec<&'a Endpoint>,
    /// Endpoints for "Local" traffic policy: the local ready ones, or if none is,
    /// the local serving and terminating ones. Empty if the port never uses Local
    /// policy.
    pub local: Vec<&'a Endpoint>,
    /// The union of both: every endpoint this node may send the port's traffic to.
    pub reachable: Vec<&'a Endpoint>,
    /// Whether the Service has a usable endpoint anywhere in the cluster, even if
    /// none is reachable from this node.
    pub has_any: bool,
}

impl ServicePort {
    /// Whether the port takes traffic other than to its cluster IP (NodePort,
    /// externalIPs or load-balancer IPs).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// Whether any traffic to the port uses "Cluster" policy endpoints. External
    /// traffic under `Local` policy still needs them: traffic from the node itself and
    /// from pods is short-circuited to Cluster policy, as upstream.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether any traffic to the port uses "Local" policy endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }

    /// The destinations the port takes traffic for: its ClusterIP, external and
    /// load-balancer IPs on its port, and its NodePort.
    pub fn destinations(&self) -> impl Iterator<Item = ElementKey> + '_ {
        let ip_port = move |ip| ElementKey::IpPort { ip, protocol: self.name.protocol, port: self.port };
        std::iter::once(ip_port(self.cluster_ip))
            .chain(self.external_ips.iter().map(move |ip| ip_port(*ip)))
            .chain(self.load_balancer_ips.iter().map(move |ip| ip_port(*ip)))
            .chain(self.node_port.map(|np| ElementKey::Port { protocol: self.name.protocol, port: np }))
    }

    /// Picks the endpoints traffic may go to from this node, as upstream's
    /// `CategorizeEndpoints` (without topology hints, which Pier does not implement):
    /// ready endpoints, falling back to serving-and-terminating ones, independently
    /// for Cluster and Local policy.
    pub fn categorize(&self) -> Categorized<'_> {
        let mut out = Categorized::default();
        if self.endpoints.is_empty() {
            return out;
        }
        if self.uses_cluster_endpoints() {
            out.cluster = self.endpoints.iter().filter(|ep| ep.ready).collect();
            if out.cluster.is_empty() {
                out.cluster = self.endpoints.iter().filter(|ep| ep.serving && ep.terminating).collect();
            }
            out.has_any = !out.cluster.is_empty();
        }
        if !self.uses_local_endpoints() {
            out.reachable = out.cluster.clone();
            return out;
        }
        let mut local_ready = false;
        let mut local_fallback = false;
        for ep in &self.endpoints {
            if ep.ready {
                out.has_any = true;
                local_ready |= ep.is_local;
            } else if ep.serving && ep.terminating {
                out.has_any = true;
                local_fallback |= ep.is_local;
            }
        }
        if local_ready {
            out.local = self.endpoints.iter().filter(|ep| ep.is_local && ep.ready).collect();
        } else if local_fallback {
            out.local =
                self.endpoints.iter().filter(|ep| ep.is_local && ep.serving && ep.terminating).collect();
        }
        if !self.uses_cluster_endpoints() {
            out.reachable = out.local.clone();
            return out;
        }
        // The union, in the endpoints' order (they are sorted), so rendering is
        // deterministic. Endpoints are unique by (ip, port), so pointer identity is
        // membership.
        out.reachable = self
            .endpoints
            .iter()
            .filter(|ep| {
                out.cluster.iter().any(|c| std::ptr::eq(*c, *ep))
                    || out.local.iter().any(|l| std::ptr::eq(*l, *ep))
            })
            .collect();
        out
    }
}

/// A `healthCheckNodePort` the node must answer, with the number of local ready
/// endpoints behind it: 200 when there is at least one, 503 otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: ServiceName,
    /// Its `spec.healthCheckNodePort`.
    pub node_port: u16,
    /// Distinct local ready endpoint addresses over all its ports.
    pub local_endpoints: usize,
}

/// An object, or a part of one, that [`build`] skipped because it was invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The Service the object is, or belongs to.
    pub service: ServiceName,
    /// `Service` or `EndpointSlice`.
    pub kind: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// What was wrong.
    pub reason: SkipReason,
}

/// Why part of an object was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A field that should hold an IP address does not.
    #[error("{field}: invalid IP address {value:?}")]
    InvalidIp {
        /// The field, e.g. `spec.externalIPs`.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A field that should hold a CIDR does not.
    #[error("{field}: invalid CIDR {value:?}")]
    InvalidCidr {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// A port number outside 1..=65535.
    #[error("{field}: invalid port {value}")]
    InvalidPort {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: i32,
    },
    /// A protocol other than TCP, UDP and SCTP.
    #[error("{field}: unsupported protocol {value:?}")]
    UnsupportedProtocol {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
}

/// The whole input of the ruleset: every proxied Service port of the cluster, with
/// its endpoints, as seen from one node. Deterministic: Services and their ports are
/// sorted, and so are endpoints.
///
/// Cloning is cheap (persistent maps that share their structure), so a watch loop
/// can keep the model it last applied next to the one it is building, and a
/// partial sync finds the changed Services without visiting the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyModel {
    /// The node the model was built for.
    pub node: NodeInfo,
    /// Each proxied Service's ports, sorted by [`ServicePortName`].
    pub services: imbl::OrdMap<ServiceName, Arc<Vec<ServicePort>>>,
    /// What was skipped as invalid while building.
    pub skipped: Vec<Skipped>,
    /// Slots of the ports in `services`, free and used.
    slots: Slots,
    /// How many times each address is a local endpoint of a port in `services`: a
    /// partial sync asks whether any Service still has one (hairpin elements are
    /// shared), which would otherwise take a pass over every endpoint.
    local_ips: imbl::OrdMap<Ipv4Addr, u32>,
    /// Who claims each destination (a cluster, external or load-balancer IP with a
    /// port, or a NodePort), sorted: a partial sync settles conflicts of a few
    /// destinations without a pass over every Service.
    claimants: imbl::OrdMap<ElementKey, Vec<ServiceName>>,
    /// The Service each used slot belongs to.
    slot_owners: imbl::OrdMap<u32, ServiceName>,
}

/// Hands out [`ServicePort::slot`]s, the lowest free one first, so the slots (and
/// the endpoint maps they are spread over) stay as few as the ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slots {
    /// Every slot below this was handed out at some time.
    next: u32,
    /// Handed out and given back.
    free: BTreeSet<u32>,
}

impl Slots {
    fn take(&mut self) -> u32 {
        if let Some(slot) = self.free.pop_first() {
            return slot;
        }
        self.next += 1;
        self.next - 1
    }

    fn give_back(&mut self, slot: u32) {
        self.free.insert(slot);
    }
}

impl ProxyModel {
    /// An empty model for `node`.
    pub fn new(node: NodeInfo) -> Self {
        Self { node, ..Self::default() }
    }

    /// Every Service port, in order.
    pub fn service_ports(&self) -> impl Iterator<Item = &ServicePort> {
        self.services.values().flat_map(|ports| ports.iter())
    }

    /// Adds or replaces one Service from its object and its EndpointSlices (slices of
    /// other Services are ignored). A Service that is not proxied (headless,
    /// ExternalName, no IPv4 cluster IP) is removed. For incremental updates; [`build`]
    /// is this for every Service.
    pub fn upsert_service<E: Borrow<EndpointSlice>>(
        &mut self,
        service: &Service,
        slices: impl IntoIterator<Item = E>,
    ) {
        let key = ServiceName {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
        };
        self.skipped.retain(|s| s.service != key);
        let mut endpoints = EndpointIndex::default();
        for slice in slices {
            let slice = slice.borrow();
            if slice_service(slice).as_ref() == Some(&key) {
                endpoints.add_slice(slice, &key, &self.node.name, &mut self.skipped);
            }
        }
        match service_ports(service, &key, &endpoints, &mut self.skipped) {
            Some(mut ports) if !ports.is_empty() => {
                // A port keeps its slot; ports that went away give theirs back.
                let mut old: BTreeMap<&ServicePortName, u32> = BTreeMap::new();
                if let Some(previous) = self.services.get(&key) {
                    old = previous.iter().map(|p| (&p.name, p.slot)).collect();
                }
                let mut kept = BTreeSet::new();
                let mut fresh = Vec::new();
                let previous_ports = self.services.get(&key).cloned().unwrap_or_default();
                for (i, port) in ports.iter_mut().enumerate() {
                    match old.get(&port.name) {
                        Some(slot) => {
                            port.slot = *slot;
                            kept.insert(*slot);
                            if let Some(before) = previous_ports.iter().find(|p| p.name == port.name) {
                                port.epoch = before.epoch;
                                let same = before.endpoints == port.endpoints
                                    && before.internal_policy_local == port.internal_policy_local
                                    && before.external_policy_local == port.external_policy_local
                                    && before.session_affinity == port.session_affinity
                                    && before.externally_accessible() == port.externally_accessible();
                                if !same {
                                    port.epoch ^= 1;
                                }
                            }
                        }
                        None => fresh.push(i),
                    }
                }
                let released: Vec<u32> = old.values().copied().filter(|s| !kept.contains(s)).collect();
                for i in fresh {
                    ports[i].slot = self.slots.take();
                }
                for slot in released {
                    self.slots.give_back(slot);
                }
                if let Some(previous) = self.services.get(&key).cloned() {
                    self.index(&key, &previous, false);
                }
                self.index(&key, &ports, true);
                self.services.insert(key, Arc::new(ports));
            }
            _ => self.remove_service_ports(&key),
        }
    }

    /// Removes a Service (it was deleted).
    pub fn remove_service(&mut self, service: &ServiceName) {
        self.remove_service_ports(service);
        self.skipped.retain(|s| &s.service != service);
    }

    fn remove_service_ports(&mut self, service: &ServiceName) {
        if let Some(ports) = self.services.remove(service) {
            for port in ports.iter() {
                self.slots.give_back(port.slot);
            }
            self.index(service, &ports, false);
        }
    }

    /// Adds a Service's ports to the indexes, or takes them out.
    fn index(&mut self, service: &ServiceName, ports: &[ServicePort], add: bool) {
        for port in ports {
            if add {
                self.slot_owners.insert(port.slot, service.clone());
            } else if self.slot_owners.get(&port.slot) == Some(service) {
                self.slot_owners.remove(&port.slot);
            }
        }
        for key in ports.iter().flat_map(ServicePort::destinations) {
            let mut claimants = self.claimants.get(&key).cloned().unwrap_or_default();
            match (claimants.binary_search(service), add) {
                (Err(at), true) => claimants.insert(at, service.clone()),
                (Ok(at), false) => {
                    claimants.remove(at);
                }
                _ => continue,
            }
            if claimants.is_empty() {
                self.claimants.remove(&key);
            } else {
                self.claimants.insert(key, claimants);
            }
        }
        for ep in ports.iter().flat_map(|p| p.endpoints.iter()).filter(|ep| ep.is_local) {
            if add {
                *self.local_ips.entry(ep.ip).or_default() += 1;
            } else if let Some(n) = self.local_ips.get_mut(&ep.ip) {
                *n -= 1;
                if *n == 0 {
                    self.local_ips.remove(&ep.ip);
                }
            }
        }
    }

    /// Whether `ip` is the address of a local endpoint of some Service port.
    pub fn has_local_endpoint(&self, ip: Ipv4Addr) -> bool {
        self.local_ips.contains_key(&ip)
    }

    /// The ports whose slots are in `slots`.
    pub fn ports_in_slots(&self, slots: std::ops::Range<u32>) -> impl Iterator<Item = &ServicePort> {
        self.slot_owners
            .range(slots)
            .filter_map(move |(slot, owner)| self.services.get(owner)?.iter().find(|p| p.slot == *slot))
    }

    /// The Services that claim a destination, sorted by name.
    pub fn claimants(&self, destination: &ElementKey) -> &[ServiceName] {
        self.claimants.get(destination).map_or(&[], Vec::as_slice)
    }

    /// Destinations claimed by more than one Service, with their claimants.
    pub fn contested(&self) -> impl Iterator<Item = (&ElementKey, &[ServiceName])> {
        self.claimants.iter().filter(|(_, c)| c.len() > 1).map(|(k, c)| (k, c.as_slice()))
    }

    /// Adds a Service's ports, giving each a slot.
    fn insert_new(&mut self, key: ServiceName, mut ports: Vec<ServicePort>) {
        for port in &mut ports {
            port.slot = self.slots.take();
        }
        self.index(&key, &ports, true);
        self.services.insert(key, Arc::new(ports));
    }

    /// The health checks this node must serve, one per LoadBalancer Service with
    /// `externalTrafficPolicy: Local` (upstream's `healthCheckNodePort` server).
    pub fn health_checks(&self) -> Vec<HealthCheck> {
        let mut out = Vec::new();
        for (name, ports) in &self.services {
            let Some(node_port) = ports.iter().find_map(|p| p.health_check_node_port) else {
                continue;
            };
            let local: BTreeSet<Ipv4Addr> = ports
                .iter()
                .flat_map(|p| p.endpoints.iter())
                .filter(|ep| ep.is_local && ep.ready)
                .map(|ep| ep.ip)
                .collect();
            out.push(HealthCheck { service: name.clone(), node_port, local_endpoints: local.len() });
        }
        out
    }
}

/// Builds the model of every Service from all Services and all EndpointSlices, as
/// seen from `node`.
///
/// Accepts owned objects, references or `Arc`s (what a reflector store hands out).
pub fn build<S, E>(
    services: impl IntoIterator<Item = S>,
    slices: impl IntoIterator<Item = E>,
    node: &NodeInfo,
) -> ProxyModel
where
    S: Borrow<Service>,
    E: Borrow<EndpointSlice>,
{
    let mut model = ProxyModel::new(node.clone());
    // Group the slices by Service first, so building is linear in the input.
    let mut by_service: BTreeMap<ServiceName, EndpointIndex> = BTreeMap::new();
    for slice in slices {
        let slice = slice.borrow();
        if let Some(key) = slice_service(slice) {
            let index = by_service.entry(key.clone()).or_default();
            index.add_slice(slice, &key, &node.name, &mut model.skipped);
        }
    }
    let empty = EndpointIndex::default();
    for service in services {
        let service = service.borrow();
        let key = ServiceName {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
        };
        let endpoints = by_service.get(&key).unwrap_or(&empty);
        if let Some(ports) = service_ports(service, &key, endpoints, &mut model.skipped) {
            if !ports.is_empty() {
                model.insert_new(key, ports);
            }
        }
    }
    model
}

/// The Service a slice belongs to, from its label.
fn slice_service(slice: &EndpointSlice) -> Option<ServiceName> {
    let name = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
    Some(ServiceName { namespace: slice.metadata.namespace.clone().unwrap_or_default(), name: name.clone() })
}

/// The endpoints of one Service's slices, by endpoint port name and protocol.
#[derive(Default)]
struct EndpointIndex {
    /// (port name, protocol) -> (ip, port) -> endpoint.
    ports: BTreeMap<(String, Protocol), BTreeMap<(Ipv4Addr, u16), Endpoint>>,
}

impl EndpointIndex {
    fn add_slice(
        &mut self,
        slice: &EndpointSlice,
        service: &ServiceName,
        node_name: &str,
        skipped: &mut Vec<Skipped>,
    ) {
        // The IPv4 family only; FQDN slices are not proxied by kube-proxy either.
        if slice.address_type != "IPv4" {
            return;
        }
        let mut skip = |reason| {
            skipped.push(Skipped {
                service: service.clone(),
                kind: "EndpointSlice",
                namespace: slice.metadata.namespace.clone().unwrap_or_default(),
                name: slice.metadata.name.clone().unwrap_or_default(),
                reason,
            })
        };
        let mut ports = Vec::new();
        for port in slice.ports.iter().flatten() {
            // A port without a number means "all ports" for a selector-less Service
            // and cannot be proxied; upstream skips it too.
            let Some(number) = port.port else { continue };
            let Ok(number) = u16::try_from(number) else {
                skip(SkipReason::InvalidPort { field: "ports[].port", value: number });
                continue;
            };
            if number == 0 {
                skip(SkipReason::InvalidPort { field: "ports[].port", value: 0 });
                continue;
            }
            let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
                skip(SkipReason::UnsupportedProtocol {
                    field: "ports[].protocol",
                    value: port.protocol.clone().unwrap_or_default(),
                });
                continue;
            };
            ports.push((port.name.clone().unwrap_or_default(), protocol, number));
        }
        let mut endpoints = Vec::new();
        for ep in slice.endpoints.iter().flatten() {
            let Some(address) = ep.addresses.first() else {
                continue;
            };
            let Ok(ip) = address.parse::<Ipv4Addr>() else {
                skip(SkipReason::InvalidIp { field: "endpoints[].addresses", value: address.clone() });
                continue;
            };
            let conditions = ep.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let is_local = ep.node_name.as_deref() == Some(node_name) && !node_name.is_empty();
            endpoints.push((ip, ready, serving, terminating, ep.node_name.clone(), is_local));
        }
        for (port_name, protocol, number) in ports {
            let by_addr = self.ports.entry((port_name, protocol)).or_default();
            for (ip, ready, serving, terminating, node, is_local) in &endpoints {
                let endpoint = Endpoint {
                    ip: *ip,
                    port: number,
                    ready: *ready,
                    serving: *serving,
                    terminating: *terminating,
                    node_name: node.clone(),
                    is_local: *is_local,
                };
                // The same endpoint in two slices (briefly, while the controller
                // moves it): keep the first, unless the later one is local, as
                // upstream does.
                let key = (*ip, number);
                if *is_local || !by_addr.contains_key(&key) {
                    by_addr.insert(key, endpoint);
                }
            }
        }
    }

    fn endpoints(&self, port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
        self.ports
            .get(&(port_name.to_string(), protocol))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The proxied ports of one Service, or `None` if the Service is not proxied.
fn service_ports(
    service: &Service,
    key: &ServiceName,
    endpoints: &EndpointIndex,
    skipped: &mut Vec<Skipped>,
) -> Option<Vec<ServicePort>> {
    let spec = service.spec.as_ref()?;
    let mut skip = |reason| {
        skipped.push(Skipped {
            service: key.clone(),
            kind: "Service",
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            reason,
        })
    };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" {
        return None;
    }
    // The IPv4 cluster IP: `clusterIPs` holds one per family (the first equals
    // `clusterIP`); older objects only have `clusterIP`. Empty or "None" is headless.
    let mut cluster_ips: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.as_deref());
    }
    if cluster_ips.iter().all(|ip| ip.is_empty() || *ip == "None") {
        return None;
    }
    let mut cluster_ip = None;
    for ip in &cluster_ips {
        if ip.contains(':') || ip.is_empty() || *ip == "None" {
            continue;
        }
        match ip.parse::<Ipv4Addr>() {
            Ok(ip) => {
                cluster_ip = Some(ip);
                break;
            }
            Err(_) => skip(SkipReason::InvalidIp { field: "spec.clusterIPs", value: (*ip).to_string() }),
        }
    }
    // An IPv6 single-stack Service: not ours, and not an error.
    let cluster_ip = cluster_ip?;

    let external_ips =
        ipv4_list(spec.external_ips.iter().flatten().map(String::as_str), "spec.externalIPs", &mut skip);
    let mut source_ranges = Vec::new();
    for range in spec.load_balancer_source_ranges.iter().flatten() {
        // Validation lets whitespace through; upstream trims it too.
        let range = range.trim();
        if range.contains(':') {
            continue;
        }
        match range.parse::<Ipv4Cidr>() {
            Ok(cidr) => source_ranges.push(cidr),
            Err(_) => skip(SkipReason::InvalidCidr {
                field: "spec.loadBalancerSourceRanges",
                value: range.to_string(),
            }),
        }
    }
    let lb_ingress =
        service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    // `ipMode: Proxy` load balancers deliver traffic themselves; kube-proxy only
    // captures VIP-mode addresses.
    let load_balancer_ips = ipv4_list(
        lb_ingress
            .into_iter()
            .flatten()
            .filter(|ing| matches!(ing.ip_mode.as_deref(), None | Some("VIP")))
            .filter_map(|ing| ing.ip.as_deref())
            .filter(|ip| !ip.is_empty()),
        "status.loadBalancer.ingress[].ip",
        &mut skip,
    );

    let session_affinity = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
        SessionAffinity::ClientIp { timeout_seconds: timeout }
    } else {
        SessionAffinity::None
    };

    // Upstream's apiservice.ExternallyAccessible / ExternalPolicyLocal /
    // NeedsHealthCheck, which look at the Service, not at the port.
    let externally_accessible =
        type_ == "LoadBalancer" || type_ == "NodePort" || (type_ == "ClusterIP" && !external_ips.is_empty());
    let external_policy_local =
        externally_accessible && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let health_check_node_port = if type_ == "LoadBalancer" && external_policy_local {
        spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
    } else {
        None
    };

    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(number) = u16::try_from(port.port).ok().filter(|p| *p > 0) else {
            skip(SkipReason::InvalidPort { field: "spec.ports[].port", value: port.port });
            continue;
        };
        let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
            skip(SkipReason::UnsupportedProtocol {
                field: "spec.ports[].protocol",
                value: port.protocol.clone().unwrap_or_default(),
            });
            continue;
        };
        let node_port = match port.node_port {
            None | Some(0) => None,
            Some(p) => match u16::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => {
                    skip(SkipReason::InvalidPort { field: "spec.ports[].nodePort", value: p });
                    None
                }
            },
        };
        let name = ServicePortName {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            port_name: port.name.clone().unwrap_or_default(),
            protocol,
        };
        let endpoints = endpoints.endpoints(&name.port_name, protocol);
        ports.push(ServicePort {
            name,
            cluster_ip,
            port: number,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            load_balancer_source_ranges: source_ranges.clone(),
            session_affinity,
            external_policy_local,
            internal_policy_local,
            health_check_node_port,
            endpoints,
            slot: 0,
            epoch: 0,
        });
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    // Two ports with the same name and protocol are rejected by validation; if one
    // slipped through, keep the first so chain names stay unique.
    ports.dedup_by(|b, a| a.name == b.name);
    Some(ports)
}

/// The IPv4 addresses of a list, sorted and deduplicated; IPv6 ones are dropped
/// silently (the other family's proxier would take them), invalid ones reported.
fn ipv4_list<'a>(
    values: impl Iterator<Item = &'a str>,
    field: &'static str,
    skip: &mut impl FnMut(SkipReason),
) -> Vec<Ipv4Addr> {
    let mut out = BTreeSet::new();
    for value in values {
        if value.contains(':') {
            continue;
        }
        match value.parse::<Ipv4Addr>() {
            Ok(ip) => {
                out.insert(ip);
            }
            Err(_) => skip(SkipReason::InvalidIp { field, value: value.to_string() }),
        }
    }
    out.into_iter().collect()
}
