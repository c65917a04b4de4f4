//! What a Service's endpoints should be, computed from the Service and its pods: the
//! per-pod rules both controllers share (which pods count, conditions, named ports,
//! hostnames) and the legacy Endpoints object's `subsets`, grouped, sorted and
//! truncated as upstream's endpoints controller does. Pure functions, no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// The label every EndpointSlice carries with its Service's name.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Which controller manages an EndpointSlice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Set on Endpoints and slices of headless Services (clusterIP `None`).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Endpoints carrying `"true"` are not mirrored into slices.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The time of the change that caused the last update of an Endpoints or slice.
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set on Endpoints whose addresses were cut to [`MAX_ENDPOINTS_CAPACITY`].
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints used as leader-election locks are neither mirrored nor cleaned up.
pub const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// kubectl's copy of the applied manifest; not copied onto mirrored slices.
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The `managed-by` value of the EndpointSlice controller.
pub const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The `managed-by` value of the EndpointSlice mirroring controller.
pub const MIRROR_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub const MAX_MIRRORED_PER_SUBSET: usize = 1000;
/// At most this many addresses go into one Endpoints object (upstream's `maxCapacity`).
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;

/// IPv4 or IPv6: an EndpointSlice's `addressType` and the family of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressType {
    IPv4,
    IPv6,
}

impl AddressType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    pub fn parse(s: &str) -> Option<AddressType> {
        match s {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    fn of(ip: &IpAddr) -> AddressType {
        match ip {
            IpAddr::V4(_) => AddressType::IPv4,
            IpAddr::V6(_) => AddressType::IPv6,
        }
    }
}

/// Parses an IP as upstream's `ParseIPSloppy` does for what Pier sees (no leading
/// zeros in IPv4), returning its canonical text and family.
pub fn parse_ip(s: &str) -> Option<(String, AddressType)> {
    let ip: IpAddr = s.trim().parse().ok()?;
    Some((ip.to_string(), AddressType::of(&ip)))
}

// ---------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------

/// The selector the controllers act on. An empty selector counts as none: the API
/// server drops empty maps (`omitempty`), so upstream never sees `selector: {}`.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

fn cluster_ip(svc: &Service) -> &str {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("")
}

/// Whether the Service has a cluster IP (upstream's `IsServiceIPSet`).
pub fn has_cluster_ip(svc: &Service) -> bool {
    let ip = cluster_ip(svc);
    !ip.is_empty() && ip != "None"
}

fn is_headless(svc: &Service) -> bool {
    cluster_ip(svc) == "None"
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or(&[])
}

/// The address types a Service's slices use: its `ipFamilies`, else the family of its
/// cluster IP, else (headless without families) both, as upstream.
pub fn address_types(svc: &Service) -> Vec<AddressType> {
    let mut types: Vec<AddressType> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| AddressType::parse(f))
        .collect();
    types.sort();
    types.dedup();
    if !types.is_empty() {
        return types;
    }
    if has_cluster_ip(svc) {
        return vec![parse_ip(cluster_ip(svc)).map_or(AddressType::IPv4, |(_, t)| t)];
    }
    vec![AddressType::IPv4, AddressType::IPv6]
}

/// The labels of a Service's Endpoints and slices (without the slice-only ones): the
/// Service's own, less the reserved keys, plus the headless marker.
pub fn service_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), LABEL_SERVICE_NAME | LABEL_MANAGED_BY | LABEL_HEADLESS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !has_cluster_ip(svc) {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// When the pod's `Ready` condition last changed: upstream's per-pod trigger time.
pub fn ready_transition(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)?.last_transition_time.as_ref().map(|t| t.0)
}

pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's IPs: `status.podIPs`, else `status.podIP`.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let ips: Vec<&str> =
        status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).filter(|s| !s.is_empty()).collect();
    if !ips.is_empty() {
        return ips;
    }
    status.pod_ip.as_deref().filter(|s| !s.is_empty()).into_iter().collect()
}

/// Whether a pod belongs in a Service's endpoints at all (upstream's
/// `ShouldPodBeInEndpoints`): it has an IP, has not finished for good, and is not
/// terminating unless `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    // A pod that finished and will not be restarted never serves again.
    let finished = match restart {
        "Never" => phase == "Failed" || phase == "Succeeded",
        "OnFailure" => phase == "Succeeded",
        _ => false,
    };
    if finished || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || !terminating(pod)
}

/// Whether an endpoint of this pod gets a hostname: the pod set `hostname` and its
/// `subdomain` names the Service (upstream's `ShouldSetHostname`).
pub fn hostname_for<'a>(pod: &'a Pod, svc: &Service) -> Option<&'a str> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = pod.metadata.namespace == svc.metadata.namespace;
    (same_ns && spec.subdomain.is_some() && spec.subdomain == svc.metadata.name).then_some(host)
}

/// The container port a Service port targets on this pod (upstream's `FindPort`):
/// a number is used as is; a name is looked up among the containers' ports (and
/// sidecars') with the Service port's protocol. `None` when the pod lacks it.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let target = port.target_port.clone().unwrap_or(IntOrString::Int(port.port));
    match target {
        IntOrString::Int(n) => Some(n),
        IntOrString::String(name) => {
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .flat_map(|c| c.ports.iter().flatten());
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .chain(sidecars)
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// The slice ports of a pod: each Service port whose target the pod has, in the
/// Service's order. Pods with different numbers behind a named port get different
/// lists and so different slices.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Whether a pod without any of the Service's ports is left out. A headless Service
/// may have no ports at all; then every pod counts, with no ports.
pub fn lacks_ports(svc: &Service, ports: &[EndpointPort]) -> bool {
    ports.is_empty() && !service_ports(svc).is_empty()
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The conditions of a pod's endpoint, as upstream: `serving` is the pod's readiness,
/// `terminating` its deletion, and `ready` is serving and not terminating (always
/// true when the Service publishes not-ready addresses).
pub fn conditions(pod: &Pod, publish_not_ready: bool) -> EndpointConditions {
    let serving = pod_ready(pod);
    let terminating = terminating(pod);
    EndpointConditions {
        ready: Some(publish_not_ready || (serving && !terminating)),
        serving: Some(serving),
        terminating: Some(terminating),
    }
}

/// A pod's endpoint in a slice of `addr_type`; `None` when it has no such address.
pub fn pod_endpoint(pod: &Pod, svc: &Service, addr_type: AddressType) -> Option<Endpoint> {
    let addresses: Vec<String> = pod_ips(pod)
        .into_iter()
        .filter_map(parse_ip)
        .filter(|(_, t)| *t == addr_type)
        .map(|(ip, _)| ip)
        .collect();
    if addresses.is_empty() {
        return None;
    }
    Some(Endpoint {
        addresses,
        conditions: Some(conditions(pod, publish_not_ready(svc))),
        hostname: hostname_for(pod, svc).map(str::to_string),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
        ..Endpoint::default()
    })
}

// ---------------------------------------------------------------------------
// The legacy Endpoints object
// ---------------------------------------------------------------------------

/// The pod address an Endpoints object lists: of the Service's primary family (its
/// first `ipFamilies` entry or its cluster IP's family); a headless Service without
/// families takes the pod's first IP.
fn endpoints_address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let family = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .and_then(|f| AddressType::parse(f))
        .or_else(|| has_cluster_ip(svc).then(|| parse_ip(cluster_ip(svc)).map(|(_, t)| t)).flatten());
    let ip = pod_ips(pod).into_iter().filter_map(parse_ip).find(|(_, t)| family.is_none_or(|f| f == *t))?.0;
    Some(EndpointAddress {
        ip,
        hostname: hostname_for(pod, svc).map(str::to_string),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
    })
}

/// An address's identity when grouping: its IP and its pod's uid (two pods may share an
/// IP over time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AddrKey {
    ip: String,
    uid: String,
}

fn addr_key(a: &EndpointAddress) -> AddrKey {
    AddrKey { ip: a.ip.clone(), uid: a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default() }
}

/// An Endpoints port as a sortable key (`None` stands for "no ports", headless).
type PortKey = Option<(String, i32, String, Option<String>)>;

fn port_key(p: &CorePort) -> PortKey {
    Some((
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone(),
    ))
}

fn core_port(k: &(String, i32, String, Option<String>)) -> CorePort {
    CorePort {
        name: Some(k.0.clone()).filter(|n| !n.is_empty()),
        port: k.1,
        protocol: Some(k.2.clone()),
        app_protocol: k.3.clone(),
    }
}

/// The `subsets` of a Service's Endpoints, and whether they were truncated to
/// [`MAX_ENDPOINTS_CAPACITY`].
///
/// Each pod that should be in the endpoints contributes its address once per port it
/// has (ready, or not ready unless the Service publishes not-ready addresses); then
/// the subsets are repacked as upstream's `RepackSubsets`: ports offered by exactly
/// the same addresses (with the same readiness) share a subset, and an address that is
/// not ready on one port counts as not ready for that port. Addresses are sorted by IP
/// and then pod uid as upstream (`LessEndpointAddress`); upstream orders ports and
/// subsets by an object hash, Pier by value, which is as stable and easier to read.
pub fn endpoints_subsets<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> (Vec<EndpointSubset>, bool) {
    let tolerate = publish_not_ready(svc);
    let ports = service_ports(svc);
    let mut addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // For each port: the addresses offering it and whether each is ready there.
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    let mut add = |addr: &EndpointAddress, port: PortKey, ready: bool| {
        let key = addr_key(addr);
        addrs.entry(key.clone()).or_insert_with(|| addr.clone());
        let set = by_port.entry(port).or_default();
        // Not ready on one port wins over ready: a half-ready address is not ready.
        let entry = set.entry(key).or_insert(ready);
        *entry = *entry && ready;
    };
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate) {
            continue;
        }
        let Some(addr) = endpoints_address(svc, pod) else { continue };
        let ready = tolerate || pod_ready(pod);
        if ports.is_empty() {
            if is_headless(svc) {
                add(&addr, None, ready);
            }
            continue;
        }
        for sp in ports {
            let Some(num) = find_port(pod, sp) else { continue };
            let port = CorePort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: num,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                app_protocol: sp.app_protocol.clone(),
            };
            add(&addr, port_key(&port), ready);
        }
    }
    // Group ports by the exact set of (address, readiness) that offers them.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in by_port {
        groups.entry(set.into_iter().collect()).or_default().push(port);
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, ports)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| *r == want)
                    .filter_map(|(k, _)| addrs.get(k).cloned())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            let ports: Vec<CorePort> = ports.iter().flatten().map(core_port).collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(subset_order);
    let truncated = truncate(&mut subsets);
    (subsets, truncated)
}

/// A subset's place in the list: by its first address, then its ports.
fn subset_order(s: &EndpointSubset) -> (Vec<String>, Vec<String>, Vec<(i32, String)>) {
    let ips = |v: &Option<Vec<EndpointAddress>>| v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
    let ports = s.ports.iter().flatten().map(|p| (p.port, p.name.clone().unwrap_or_default())).collect();
    (ips(&s.addresses), ips(&s.not_ready_addresses), ports)
}

/// Cuts subsets to [`MAX_ENDPOINTS_CAPACITY`] addresses as upstream's
/// `truncateEndpoints`: ready addresses first, spread over the subsets in proportion
/// to their sizes. Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_ENDPOINTS_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_ENDPOINTS_CAPACITY, ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready { &mut s.addresses } else { &mut s.not_ready_addresses };
        let n = count(list);
        // Proportional share, rounded up; the last subsets get what is left.
        let share = (n * max).div_ceil(total).min(room);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
        }
        room -= count(list);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// Subsets compared as the API stores them: empty lists are absent, and a target's
/// resourceVersion does not count (upstream ignores it so pod updates alone do not
/// rewrite Endpoints).
pub fn normalized_subsets(subsets: Option<&[EndpointSubset]>) -> Vec<EndpointSubset> {
    let addrs = |v: &Option<Vec<EndpointAddress>>| {
        let v: Vec<EndpointAddress> = v
            .iter()
            .flatten()
            .map(|a| {
                let mut a = a.clone();
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
                a.hostname = a.hostname.filter(|h| !h.is_empty());
                a
            })
            .collect();
        (!v.is_empty()).then_some(v)
    };
    subsets
        .unwrap_or_default()
        .iter()
        .map(|s| EndpointSubset {
            addresses: addrs(&s.addresses),
            not_ready_addresses: addrs(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|p| !p.is_empty()),
        })
        .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
        .collect()
}

// ---------------------------------------------------------------------------
// Trigger times
// ---------------------------------------------------------------------------

/// Formats a time as Go's `time.RFC3339Nano` in UTC: the fraction has no trailing
/// zeros and is left out when zero (`2024-05-01T10:00:00.12Z`).
pub fn rfc3339_nano(t: Timestamp) -> String {
    let secs = t.as_second();
    let nanos = t.subsec_nanosecond();
    let whole =
        Timestamp::from_second(secs).map(|w| w.strftime("%Y-%m-%dT%H:%M:%S").to_string()).unwrap_or_default();
    if nanos == 0 {
        return format!("{whole}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{whole}.{}Z", frac.trim_end_matches('0'))
}
