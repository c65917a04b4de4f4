//! Mirroring: user-written Endpoints of a Service without a selector become
//! EndpointSlices, as upstream's `endpointslicemirroring` controller does, so every
//! consumer (proxy, DNS, ingress) reads slices only.
//!
//! Addresses are grouped by address type and port list (one group per distinct
//! subset port list); each group is one slice of at most
//! [`MAX_MIRRORED_PER_SUBSET`] endpoints, owned by the Endpoints object, labelled with
//! the service name and `managed-by: endpointslicemirroring-controller.k8s.io`, and
//! carrying the Endpoints' labels and annotations (less kubectl's last-applied
//! configuration and the trigger time). Ready addresses get `ready: true`, not-ready
//! ones `ready: false`. Pure functions, no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{
    parse_ip, AddressType, ANNOTATION_LAST_APPLIED, ANNOTATION_LEADER, ANNOTATION_TRIGGER_TIME,
    LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR, MAX_MIRRORED_PER_SUBSET, MIRROR_CONTROLLER,
};
use super::slices::{endpoint_key, ports_key, same_endpoint, EndpointKey, Plan, PortsKey};

/// Whether an Endpoints object may be mirrored at all: not labelled
/// `endpointslice.kubernetes.io/skip-mirror: "true"` (the built-in `kubernetes`
/// Endpoints is) and not a leader-election lock.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let skip =
        ep.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SKIP_MIRROR)).is_some_and(|v| v == "true");
    let leader = ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
    !skip && !leader
}

fn labels(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.to_string(), ep.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.to_string(), MIRROR_CONTROLLER.to_string());
    labels
}

fn annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut a = ep.metadata.annotations.clone().unwrap_or_default();
    a.remove(ANNOTATION_TRIGGER_TIME);
    a.remove(ANNOTATION_LAST_APPLIED);
    a
}

fn to_endpoint(a: &EndpointAddress, ready: bool) -> Option<(Endpoint, AddressType)> {
    let (ip, t) = parse_ip(&a.ip)?;
    Some((
        Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions { ready: Some(ready), ..EndpointConditions::default() }),
            hostname: a.hostname.clone().filter(|h| !h.is_empty()),
            node_name: a.node_name.clone(),
            target_ref: a.target_ref.clone(),
            ..Endpoint::default()
        },
        t,
    ))
}

type Group = (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>);

/// What the Endpoints' subsets want: per (address type, ports), the endpoints; and how
/// many addresses were skipped (not IPs, or over the per-subset limit).
pub fn desired(ep: &Endpoints) -> (BTreeMap<(AddressType, PortsKey), Group>, usize) {
    let mut groups: BTreeMap<(AddressType, PortsKey), Group> = BTreeMap::new();
    let mut skipped = 0;
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = ports_key(&ports);
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let mut added = 0;
        for (a, is_ready) in ready.chain(not_ready) {
            if added >= MAX_MIRRORED_PER_SUBSET {
                skipped += 1;
                continue;
            }
            let Some((endpoint, t)) = to_endpoint(a, is_ready) else {
                skipped += 1;
                continue;
            };
            added += 1;
            let group = groups.entry((t, key.clone())).or_insert_with(|| (ports.clone(), BTreeMap::new()));
            group.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    (groups, skipped)
}

fn new_slice(ep: &Endpoints, ports: &[EndpointPort], t: AddressType) -> EndpointSlice {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let annotations = annotations(ep);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(if name.len() < 253 { format!("{name}-") } else { name.clone() }),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels(ep)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Endpoints".to_string(),
                name,
                uid: ep.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: t.as_str().to_string(),
        endpoints: Some(Vec::new()),
        ports: Some(ports.to_vec()),
    }
}

/// Whether an existing mirrored slice already says what `want` says.
fn matches(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    let eps = |s: &EndpointSlice| {
        let mut v: Vec<(EndpointKey, Endpoint)> =
            s.endpoints.iter().flatten().map(|e| (endpoint_key(e), e.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (eps(have), eps(want));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && same_endpoint(&x.1, &y.1))
        && have.metadata.labels.clone().unwrap_or_default()
            == want.metadata.labels.clone().unwrap_or_default()
        && have.metadata.annotations.clone().unwrap_or_default()
            == want.metadata.annotations.clone().unwrap_or_default()
        && have.metadata.owner_references.clone().unwrap_or_default()
            == want.metadata.owner_references.clone().unwrap_or_default()
}

/// Plans the mirrored slices of one Endpoints object. `existing` are the slices the
/// mirroring controller manages for that name.
pub fn reconcile(ep: &Endpoints, existing: &[Arc<EndpointSlice>]) -> Plan {
    let (groups, _) = desired(ep);
    let mut by_key: BTreeMap<(AddressType, PortsKey), Vec<&EndpointSlice>> = BTreeMap::new();
    let mut delete: Vec<&EndpointSlice> = Vec::new();
    let mut sorted: Vec<&EndpointSlice> = existing.iter().map(Arc::as_ref).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        match AddressType::parse(&s.address_type) {
            Some(t) => by_key.entry((t, ports_key(s.ports.as_deref().unwrap_or(&[])))).or_default().push(s),
            None => delete.push(s),
        }
    }
    let mut plan = Plan::default();
    let mut create: Vec<EndpointSlice> = Vec::new();
    for (key, (ports, endpoints)) in &groups {
        let mut want = new_slice(ep, ports, key.0);
        want.endpoints = Some(endpoints.values().cloned().collect());
        let have = by_key.remove(key).unwrap_or_default();
        // One slice per group: keep the first, delete the rest.
        match have.split_first() {
            Some((first, rest)) => {
                delete.extend(rest.iter().copied());
                if !matches(first, &want) {
                    want.metadata.generate_name = None;
                    want.metadata.name = first.metadata.name.clone();
                    want.metadata.resource_version = first.metadata.resource_version.clone();
                    plan.update.push(want);
                }
            }
            None => create.push(want),
        }
    }
    delete.extend(by_key.into_values().flatten());
    // Recycle slices to be deleted for creates of the same address type.
    let mut kept = Vec::new();
    for d in delete {
        let pos = create.iter().position(|c| c.address_type == d.address_type);
        match pos {
            Some(i) => {
                let mut c = create.remove(i);
                c.metadata.generate_name = None;
                c.metadata.name = d.metadata.name.clone();
                c.metadata.resource_version = d.metadata.resource_version.clone();
                plan.update.push(c);
            }
            None => kept.push(d),
        }
    }
    plan.create = create;
    plan.delete = kept.into_iter().filter_map(|d| d.metadata.name.clone()).collect();
    plan
}
