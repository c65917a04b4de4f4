//! The EndpointSlice reconciler for Services with a selector: given a Service, the
//! pods it selects and its existing slices, which slices to create, update and
//! delete. It follows upstream's `k8s.io/endpointslice` reconciler so slices churn as
//! little as there:
//!
//! 1. slices are grouped by address type and by their port list (pods whose named
//!    ports resolve to different numbers land in different groups);
//! 2. in each group, endpoints no longer wanted leave their slice, changed ones are
//!    rewritten in place, and a slice left empty is deleted;
//! 3. new endpoints first fill the slices already being updated (fullest first),
//!    then the unchanged slice they fit in best, then new slices of at most
//!    [`MAX_ENDPOINTS_PER_SLICE`](super::desired::MAX_ENDPOINTS_PER_SLICE);
//! 4. a Service with no endpoints keeps one empty placeholder slice;
//! 5. a create paired with a delete becomes an update of the slice to be deleted.
//!
//! Where upstream takes "any" endpoint from a set, Pier takes them in key order, so a
//! plan is deterministic. Pure functions, no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{self, AddressType, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, SLICE_CONTROLLER};

/// What to write so a Service's slices match its pods.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Replacements of existing slices (carrying the existing resourceVersion).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// An endpoint's identity inside a group, as upstream's endpoint hash: its addresses,
/// hostname and target pod. Two versions of one pod's endpoint share a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointKey {
    addresses: Vec<String>,
    hostname: String,
    target: (String, String),
}

pub fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let target = ep
        .target_ref
        .as_ref()
        .map(|r| (r.namespace.clone().unwrap_or_default(), r.name.clone().unwrap_or_default()))
        .unwrap_or_default();
    EndpointKey { addresses, hostname: ep.hostname.clone().unwrap_or_default(), target }
}

/// Whether two versions of an endpoint are the same for the API, ignoring the target's
/// resourceVersion (a pod update alone must not rewrite slices).
pub fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    let strip = |e: &Endpoint| {
        let mut e = e.clone();
        if let Some(r) = e.target_ref.as_mut() {
            r.resource_version = None;
        }
        e
    };
    strip(a) == strip(b)
}

/// A port list as a group key: the ports in a canonical order.
pub type PortsKey = Vec<(String, i32, String, Option<String>)>;

pub fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Whether a slice has a controller ownerReference to this Service (by uid).
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.metadata.uid.as_deref().unwrap_or("");
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// The labels of a Service's slices: its own (less reserved keys), the headless
/// marker, and the service name and manager.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = desired::service_labels(svc);
    labels.insert(LABEL_SERVICE_NAME.to_string(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.to_string(), SLICE_CONTROLLER.to_string());
    labels
}

fn new_slice(svc: &Service, ports: &[EndpointPort], addr_type: AddressType) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            // Upstream drops the dash when `<name>-` would be too long to generate from.
            generate_name: Some(if name.len() < 253 { format!("{name}-") } else { name }),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Service".to_string(),
                name: svc.metadata.name.clone().unwrap_or_default(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: addr_type.as_str().to_string(),
        endpoints: Some(Vec::new()),
        ports: Some(ports.to_vec()),
    }
}

fn endpoints_of(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or(&[])
}

fn len_of(slice: &EndpointSlice) -> usize {
    endpoints_of(slice).len()
}

/// The pods' desired endpoints for one address type, grouped by port list.
type Desired = BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)>;

fn desired_for(svc: &Service, pods: &[&Pod], addr_type: AddressType) -> Desired {
    let mut desired: Desired = BTreeMap::new();
    for pod in pods {
        // Terminating pods stay, with `terminating: true`, so consumers can drain them.
        if !desired::should_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = desired::endpoint_ports(svc, pod);
        if desired::lacks_ports(svc, &ports) {
            continue;
        }
        let group = desired.entry(ports_key(&ports)).or_insert_with(|| (ports, BTreeMap::new()));
        if let Some(ep) = desired::pod_endpoint(pod, svc, addr_type) {
            group.1.insert(endpoint_key(&ep), ep);
        }
    }
    desired
}

/// Plans the slices of a Service with a selector. `existing` are the slices this
/// controller manages for the Service's name (any owner); `max` is the number of
/// endpoints per slice (upstream's default is
/// [`MAX_ENDPOINTS_PER_SLICE`](super::desired::MAX_ENDPOINTS_PER_SLICE)).
pub fn reconcile(svc: &Service, pods: &[&Pod], existing: &[Arc<EndpointSlice>], max: usize) -> Plan {
    let max = max.max(1);
    let types = desired::address_types(svc);
    let mut plan = Plan::default();
    let mut existing: Vec<&EndpointSlice> = existing.iter().map(Arc::as_ref).collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for addr_type in &types {
        let of_type: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| AddressType::parse(&s.address_type) == Some(*addr_type))
            .collect();
        reconcile_address_type(svc, pods, &of_type, *addr_type, max, &mut plan);
    }
    // Slices of address types the Service no longer has.
    for s in &existing {
        if !AddressType::parse(&s.address_type).is_some_and(|t| types.contains(&t)) {
            plan.delete.extend(s.metadata.name.clone());
        }
    }
    plan
}

fn reconcile_address_type(
    svc: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    addr_type: AddressType,
    max: usize,
    plan: &mut Plan,
) {
    let mut create: Vec<EndpointSlice> = Vec::new();
    let mut update: Vec<EndpointSlice> = Vec::new();
    let mut delete: Vec<&EndpointSlice> = Vec::new();

    let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if owned_by(s, svc) {
            by_ports.entry(ports_key(s.ports.as_deref().unwrap_or(&[]))).or_default().push(s);
        } else {
            // Left over from an earlier Service of the same name.
            delete.push(s);
        }
    }
    let desired = desired_for(svc, pods, addr_type);
    for (key, (ports, endpoints)) in desired.iter() {
        let slices = by_ports.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let (c, u, d) = reconcile_ports(svc, slices, endpoints.clone(), ports, addr_type, max);
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    for (key, slices) in &by_ports {
        if !desired.contains_key(key) {
            delete.extend(slices.iter().copied());
        }
    }

    // A Service without endpoints keeps one empty placeholder slice, so consumers can
    // tell "no endpoints" from "not synced yet".
    if existing.len() == delete.len() && create.is_empty() {
        let placeholder = new_slice(svc, &[], addr_type);
        if delete.len() == 1 && is_placeholder_like(delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }

    // Turn creates into updates of slices that would be deleted: fewer writes and
    // stable names. Only slices of this Service (a slice's address type never changes).
    let mut kept_deletes = Vec::new();
    for d in delete {
        match create.pop() {
            Some(mut c) if owned_by(d, svc) => {
                c.metadata.generate_name = None;
                c.metadata.name = d.metadata.name.clone();
                c.metadata.resource_version = d.metadata.resource_version.clone();
                c.metadata.annotations = d.metadata.annotations.clone();
                update.push(c);
            }
            other => {
                create.extend(other);
                kept_deletes.push(d);
            }
        }
    }
    plan.create.extend(create);
    plan.update.extend(update);
    plan.delete.extend(kept_deletes.into_iter().filter_map(|d| d.metadata.name.clone()));
}

/// Upstream's placeholder comparison: same namespace and labels, no endpoints and no
/// ports (absent and empty lists are the same).
fn is_placeholder_like(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && len_of(slice) == 0
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// One port group: (creates, updates, deletes).
fn reconcile_ports<'a>(
    svc: &Service,
    existing: &[&'a EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    addr_type: AddressType,
    max: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<&'a EndpointSlice>) {
    let labels = slice_labels(svc);
    // Slices by name: updated copies replace the originals as they change.
    let mut to_update: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeMap<String, &EndpointSlice> = BTreeMap::new();
    let mut to_delete: Vec<&EndpointSlice> = Vec::new();

    // 1. Keep wanted endpoints where they are, refreshed; drop unwanted ones.
    for s in existing {
        let name = s.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in endpoints_of(s) {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                changed |= !same_endpoint(&want, ep);
                kept.push(want);
            }
        }
        let labels_changed = s.metadata.labels.clone().unwrap_or_default() != labels;
        if changed || kept.len() != len_of(s) {
            if kept.is_empty() {
                to_delete.push(s);
            } else {
                let mut copy = (*s).clone();
                copy.endpoints = Some(kept);
                copy.metadata.labels = Some(labels.clone());
                to_update.insert(name, copy);
            }
        } else if labels_changed {
            let mut copy = (*s).clone();
            copy.metadata.labels = Some(labels.clone());
            to_update.insert(name, copy);
        } else {
            unchanged.insert(name, s);
        }
    }

    // 2. Fill slices that are being written anyway, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<String> = to_update.keys().cloned().collect();
        names.sort_by_key(|n| std::cmp::Reverse(to_update.get(n).map_or(0, len_of)));
        for n in names {
            let Some(slice) = to_update.get_mut(&n) else { continue };
            fill(slice, &mut desired, max);
        }
    }

    // 3. Put the rest into the unchanged slice they fit best, or into new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut target = None;
        if desired.len() < max && !unchanged.is_empty() {
            target = slice_to_fill(unchanged.values().copied(), desired.len(), max);
        }
        match target {
            Some(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                unchanged.remove(&name);
                let mut copy = s.clone();
                fill(&mut copy, &mut desired, max);
                to_update.insert(name, copy);
            }
            None => {
                let mut slice = new_slice(svc, ports, addr_type);
                fill(&mut slice, &mut desired, max);
                create.push(slice);
            }
        }
    }
    (create, to_update.into_values().collect(), to_delete)
}

fn fill(slice: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    let eps = slice.endpoints.get_or_insert_with(Vec::new);
    while eps.len() < max {
        let Some((_, ep)) = desired.pop_first() else { break };
        eps.push(ep);
    }
}

/// The slice that will be closest to full once `n` endpoints are added (upstream's
/// `getSliceToFill`); `None` when none has room.
pub fn slice_to_fill<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    n: usize,
    max: usize,
) -> Option<&'a EndpointSlice> {
    let mut best: Option<(&EndpointSlice, usize)> = None;
    for s in slices {
        let Some(diff) = max.checked_sub(n + len_of(s)) else { continue };
        if best.is_none_or(|(_, d)| diff < d) {
            best = Some((s, diff));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(s, _)| s)
}
