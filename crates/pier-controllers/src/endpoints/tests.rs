//! Unit tests of the pure logic: conditions, named ports, slice packing and reuse,
//! Endpoints subsets, mirroring, the index and trigger-time formatting.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::desired::{self, AddressType};
use super::index::Index;
use super::{mirror, slices};

fn svc(v: Value) -> Service {
    let mut base = json!({
        "metadata": {"name": "kubia", "namespace": "default", "uid": "svc-uid"},
        "spec": {"selector": {"app": "kubia"}, "clusterIP": "10.96.0.20", "ipFamilies": ["IPv4"],
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    merge(&mut base, v);
    serde_json::from_value(base).expect("a valid Service")
}

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    pod_with(name, ip, ready, json!({}))
}

fn pod_with(name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "kubia"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "luksa/kubia",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                   "lastTransitionTime": "2024-05-01T10:00:00Z"}]}
    });
    merge(&mut base, extra);
    serde_json::from_value(base).expect("a valid Pod")
}

/// JSON merge patch, enough to vary fixtures.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn ips(slice: &EndpointSlice) -> Vec<String> {
    slice.endpoints.iter().flatten().flat_map(|e| e.addresses.clone()).collect()
}

/// Gives planned slices names and versions, as the API server would.
fn written(plan: &slices::Plan, start: usize) -> Vec<Arc<EndpointSlice>> {
    let mut out = Vec::new();
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        s.metadata.name = Some(format!("kubia-{}", start + i));
        s.metadata.resource_version = Some("1".into());
        out.push(Arc::new(s));
    }
    out.extend(plan.update.iter().cloned().map(Arc::new));
    out
}

#[test]
fn conditions_follow_readiness_and_termination() {
    let ready = pod("a", "10.244.0.5", true);
    let c = desired::conditions(&ready, false);
    assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(true), Some(false)));

    let not_ready = pod("b", "10.244.0.6", false);
    let c = desired::conditions(&not_ready, false);
    assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(false), Some(false)));

    let terminating =
        pod_with("c", "10.244.0.7", true, json!({"metadata": {"deletionTimestamp": "2024-05-01T10:00:00Z"}}));
    let c = desired::conditions(&terminating, false);
    assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));

    // publishNotReadyAddresses: always ready.
    let c = desired::conditions(&not_ready, true);
    assert_eq!((c.ready, c.serving), (Some(true), Some(false)));
    let c = desired::conditions(&terminating, true);
    assert_eq!((c.ready, c.terminating), (Some(true), Some(true)));
}

#[test]
fn pods_without_ip_or_finished_are_left_out() {
    let no_ip = pod_with("a", "", true, json!({"status": {"podIP": null}}));
    assert!(!desired::should_be_in_endpoints(&no_ip, true));
    let done = pod_with(
        "b",
        "10.244.0.5",
        false,
        json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
    );
    assert!(!desired::should_be_in_endpoints(&done, true));
    let terminating =
        pod_with("c", "10.244.0.7", true, json!({"metadata": {"deletionTimestamp": "2024-05-01T10:00:00Z"}}));
    assert!(desired::should_be_in_endpoints(&terminating, true));
    assert!(!desired::should_be_in_endpoints(&terminating, false));
}

#[test]
fn named_target_ports_resolve_per_pod() {
    let s = svc(
        json!({"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
    );
    let a = pod("a", "10.244.0.5", true);
    let b = pod_with(
        "b",
        "10.244.0.6",
        true,
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}}),
    );
    let c = pod_with("c", "10.244.0.7", true, json!({"spec": {"containers": [{"name": "c", "image": "x"}]}}));
    let udp = pod_with(
        "d",
        "10.244.0.8",
        true,
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "UDP"}]}]}}),
    );
    assert_eq!(
        desired::find_port(&a, &s.spec.as_ref().expect("present").ports.as_ref().expect("present")[0]),
        Some(8080)
    );
    assert_eq!(desired::endpoint_ports(&s, &b)[0].port, Some(9090));
    assert!(desired::endpoint_ports(&s, &c).is_empty());
    assert!(desired::endpoint_ports(&s, &udp).is_empty(), "the protocol must match too");

    let plan = slices::reconcile(&s, &[&a, &b, &c, &udp], &[], 100);
    assert_eq!(plan.create.len(), 2, "one slice per port number: {plan:#?}");
    let mut by_port: Vec<(i32, Vec<String>)> =
        plan.create.iter().map(|s| (s.ports.as_ref().and_then(|p| p[0].port).unwrap_or(0), ips(s))).collect();
    by_port.sort();
    assert_eq!(by_port, [(8080, vec!["10.244.0.5".to_string()]), (9090, vec!["10.244.0.6".to_string()])]);
    assert_eq!(plan.create[0].ports.as_ref().expect("present")[0].name.as_deref(), Some("web"));

    let (subsets, _) = desired::endpoints_subsets(&s, [&a, &b, &c]);
    assert_eq!(subsets.len(), 2);
    let all: Vec<(String, i32)> = subsets
        .iter()
        .flat_map(|ss| {
            let port = ss.ports.as_ref().expect("present")[0].port;
            ss.addresses.iter().flatten().map(move |a| (a.ip.clone(), port))
        })
        .collect();
    assert_eq!(all, [("10.244.0.5".to_string(), 8080), ("10.244.0.6".to_string(), 9090)]);
}

#[test]
fn new_slices_are_packed_to_the_limit_with_labels_and_owner() {
    let s = svc(json!({"metadata": {"labels": {"team": "a"}}}));
    let pods: Vec<Pod> = (0..250)
        .map(|i| pod(&format!("p{i:03}"), &format!("10.244.{}.{}", i / 200, i % 200 + 2), true))
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = slices::reconcile(&s, &refs, &[], 100);
    let mut sizes: Vec<usize> = plan.create.iter().map(|s| ips(s).len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("kubia-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/service-name").map(String::as_str), Some("kubia"));
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    let owner = &slice.metadata.owner_references.as_ref().expect("present")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );
    let ep = &slice.endpoints.as_ref().expect("present")[0];
    assert_eq!(ep.node_name.as_deref(), Some("node-1"));
    assert_eq!(ep.target_ref.as_ref().and_then(|r| r.kind.as_deref()), Some("Pod"));
    assert_eq!(slice.ports.as_ref().expect("present")[0].port, Some(8080));
}

#[test]
fn changes_touch_only_the_slices_they_must() {
    let s = svc(json!({}));
    let pods: Vec<Pod> =
        (0..150).map(|i| pod(&format!("p{i:03}"), &format!("10.244.0.{}", i + 2), true)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let existing = written(&slices::reconcile(&s, &refs, &[], 100), 0);
    assert_eq!(existing.len(), 2);

    // Nothing changed: nothing to write.
    assert!(slices::reconcile(&s, &refs, &existing, 100).is_empty());

    // One pod turns NotReady: only its slice is rewritten, in place.
    let mut changed = pods.clone();
    changed[7] = pod("p007", "10.244.0.9", false);
    let refs2: Vec<&Pod> = changed.iter().collect();
    let plan = slices::reconcile(&s, &refs2, &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:#?}");
    assert_eq!(plan.update.len(), 1);
    let ep =
        plan.update[0].endpoints.iter().flatten().find(|e| e.addresses == ["10.244.0.9"]).expect("present");
    assert_eq!(ep.conditions.as_ref().and_then(|c| c.ready), Some(false));

    // A pod goes and a new one comes: the new one fills the slice being updated.
    let mut swapped: Vec<Pod> =
        pods.iter().filter(|p| p.metadata.name.as_deref() != Some("p000")).cloned().collect();
    swapped.push(pod("q000", "10.244.1.2", true));
    let refs3: Vec<&Pod> = swapped.iter().collect();
    let plan = slices::reconcile(&s, &refs3, &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:#?}");
    assert_eq!(plan.update.len(), 1);
    assert!(ips(&plan.update[0]).contains(&"10.244.1.2".to_string()));

    // A new pod with no slice being updated goes to the unchanged slice with room.
    let mut grown = pods.clone();
    grown.push(pod("r000", "10.244.2.2", true));
    let refs4: Vec<&Pod> = grown.iter().collect();
    let plan = slices::reconcile(&s, &refs4, &existing, 100);
    assert!(plan.create.is_empty(), "{plan:#?}");
    assert_eq!(plan.update.len(), 1);
    assert_eq!(ips(&plan.update[0]).len(), 51);

    // Every pod of one slice gone: that slice is deleted, the other untouched.
    let first: Vec<String> = ips(&existing[0]);
    let rest: Vec<&Pod> =
        pods.iter().filter(|p| !first.contains(&desired::pod_ips(p)[0].to_string())).collect();
    let plan = slices::reconcile(&s, &rest, &existing, 100);
    assert_eq!(plan.delete, [existing[0].metadata.name.clone().expect("present")]);
    assert!(plan.create.is_empty() && plan.update.is_empty());
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let s = svc(json!({}));
    let plan = slices::reconcile(&s, &[], &[], 100);
    assert_eq!(plan.create.len(), 1);
    assert!(plan.create[0].endpoints.as_ref().is_some_and(Vec::is_empty));
    assert!(plan.create[0].ports.as_ref().is_some_and(Vec::is_empty));
    let existing = written(&plan, 0);
    assert!(slices::reconcile(&s, &[], &existing, 100).is_empty(), "the placeholder stays as it is");

    // Pods arrive: the placeholder is reused, not deleted and recreated.
    let p = pod("a", "10.244.0.5", true);
    let plan = slices::reconcile(&s, &[&p], &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:#?}");
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("kubia-0"));
    assert_eq!(ips(&plan.update[0]), ["10.244.0.5"]);

    // And back to none: the slice becomes the placeholder again.
    let existing = written(&plan, 0);
    let plan = slices::reconcile(&s, &[], &existing, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:#?}");
    assert!(plan.update[0].endpoints.as_ref().is_some_and(Vec::is_empty));
}

#[test]
fn slices_of_an_earlier_service_of_that_name_are_replaced() {
    let s = svc(json!({}));
    let p = pod("a", "10.244.0.5", true);
    let existing = written(&slices::reconcile(&s, &[&p], &[], 100), 0);
    let recreated = svc(json!({"metadata": {"uid": "other-uid"}}));
    let plan = slices::reconcile(&recreated, &[&p], &existing, 100);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.delete, ["kubia-0"]);
}

#[test]
fn slice_to_fill_picks_the_closest_to_full() {
    let s = svc(json!({}));
    let mk = |n: usize| {
        let pods: Vec<Pod> =
            (0..n).map(|i| pod(&format!("p{i}"), &format!("10.244.0.{}", i + 2), true)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        slices::reconcile(&s, &refs, &[], 100).create.remove(0)
    };
    let (a, b, c) = (mk(10), mk(80), mk(95));
    let pick = slices::slice_to_fill([&a, &b, &c], 10, 100).map(|s| ips(s).len());
    assert_eq!(pick, Some(80));
    assert_eq!(slices::slice_to_fill([&a, &b, &c], 95, 100).map(|s| ips(s).len()), None);
    assert_eq!(slices::slice_to_fill([&a, &b, &c], 5, 100).map(|s| ips(s).len()), Some(95));
}

#[test]
fn headless_services_get_hostnames_and_the_headless_label() {
    let s = svc(json!({"metadata": {"name": "kubia-headless"}, "spec": {"clusterIP": "None"}}));
    let named = pod_with(
        "a",
        "10.244.0.5",
        true,
        json!({"spec": {"hostname": "web-0", "subdomain": "kubia-headless"}}),
    );
    let other =
        pod_with("b", "10.244.0.6", true, json!({"spec": {"hostname": "web-1", "subdomain": "elsewhere"}}));
    let plan = slices::reconcile(&s, &[&named, &other], &[], 100);
    let eps = plan.create[0].endpoints.clone().unwrap_or_default();
    let host = |ip: &str| eps.iter().find(|e| e.addresses == [ip]).and_then(|e| e.hostname.clone());
    assert_eq!(host("10.244.0.5").as_deref(), Some("web-0"));
    assert_eq!(host("10.244.0.6"), None);
    let labels = plan.create[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    let (subsets, _) = desired::endpoints_subsets(&s, [&named, &other]);
    let addrs = subsets[0].addresses.clone().unwrap_or_default();
    assert_eq!(addrs[0].hostname.as_deref(), Some("web-0"));
    assert_eq!(addrs[1].hostname, None);
    assert!(desired::service_labels(&s).contains_key("service.kubernetes.io/headless"));

    // Headless without ports: addresses with no ports.
    let bare = svc(json!({"spec": {"clusterIP": "None", "ports": null}}));
    let (subsets, _) = desired::endpoints_subsets(&bare, [&named]);
    assert_eq!(subsets.len(), 1);
    assert!(subsets[0].ports.is_none());
}

#[test]
fn endpoints_subsets_group_and_sort_as_upstream() {
    let s = svc(json!({}));
    let pods = [
        pod("a", "10.244.0.5", true),
        pod("b", "10.244.0.10", true),
        pod("c", "10.244.0.6", false),
        pod("d", "10.244.1.6", true),
    ];
    let (subsets, truncated) = desired::endpoints_subsets(&s, pods.iter());
    assert!(!truncated);
    assert_eq!(subsets.len(), 1, "one port, one subset: {subsets:#?}");
    let ready: Vec<&str> = subsets[0].addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
    // Byte order of the IP text, as upstream's LessEndpointAddress.
    assert_eq!(ready, ["10.244.0.10", "10.244.0.5", "10.244.1.6"]);
    let not_ready: Vec<&str> =
        subsets[0].not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
    assert_eq!(not_ready, ["10.244.0.6"]);
    let a = &subsets[0].addresses.as_ref().expect("present")[1];
    assert_eq!(a.node_name.as_deref(), Some("node-1"));
    assert_eq!(a.target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("a"));
    assert_eq!(subsets[0].ports.as_ref().expect("present")[0].port, 8080);

    // Two ports, one pod lacking the second: the ports split into two subsets.
    let two = svc(json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]}}));
    let both = pod_with(
        "x",
        "10.244.0.20",
        true,
        json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "https", "containerPort": 8443, "protocol": "TCP"}]}]}}),
    );
    let one = pod("y", "10.244.0.21", true);
    let (subsets, _) = desired::endpoints_subsets(&two, [&both, &one]);
    assert_eq!(subsets.len(), 2, "{subsets:#?}");
    let shape: Vec<(Vec<String>, Vec<i32>)> = subsets
        .iter()
        .map(|ss| {
            (
                ss.addresses.iter().flatten().map(|a| a.ip.clone()).collect(),
                ss.ports.iter().flatten().map(|p| p.port).collect(),
            )
        })
        .collect();
    assert!(shape.contains(&(vec!["10.244.0.20".into(), "10.244.0.21".into()], vec![8080])), "{shape:?}");
    assert!(shape.contains(&(vec!["10.244.0.20".into()], vec![8443])), "{shape:?}");

    // Same set of addresses on both ports: one subset with both ports.
    let (subsets, _) = desired::endpoints_subsets(&two, [&both]);
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports.as_ref().map(Vec::len), Some(2));
}

#[test]
fn publish_not_ready_lists_every_pod_as_ready() {
    let s = svc(json!({"spec": {"publishNotReadyAddresses": true}}));
    let pods = [pod("a", "10.244.0.5", false)];
    let (subsets, _) = desired::endpoints_subsets(&s, pods.iter());
    assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
    assert!(subsets[0].not_ready_addresses.is_none());
}

#[test]
fn endpoints_are_truncated_to_capacity_ready_first() {
    let s = svc(json!({}));
    let pods: Vec<Pod> = (0..1100)
        .map(|i| pod(&format!("p{i}"), &format!("10.244.{}.{}", i / 250, i % 250 + 1), i % 2 == 0))
        .collect();
    let (subsets, truncated) = desired::endpoints_subsets(&s, pods.iter());
    assert!(truncated);
    let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
    let not_ready: usize = subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
    assert_eq!((ready, not_ready), (550, 450));
}

#[test]
fn normalized_subsets_ignore_empty_lists_and_versions() {
    let s = svc(json!({}));
    let pods = [pod("a", "10.244.0.5", true)];
    let (mut subsets, _) = desired::endpoints_subsets(&s, pods.iter());
    let want = desired::normalized_subsets(Some(&subsets));
    subsets[0].not_ready_addresses = Some(Vec::new());
    if let Some(r) = subsets[0].addresses.as_mut().and_then(|a| a[0].target_ref.as_mut()) {
        r.resource_version = Some("42".into());
    }
    assert_eq!(desired::normalized_subsets(Some(&subsets)), want);
    assert_eq!(desired::normalized_subsets(Some(&[])), desired::normalized_subsets(None));
}

#[test]
fn mirroring_copies_user_endpoints_into_one_slice() {
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external-service", "namespace": "default", "uid": "ep-uid",
                     "labels": {"team": "a"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"}},
        "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "22.22.22.22"}], "notReadyAddresses": [{"ip": "33.33.33.33"}],
                     "ports": [{"port": 80, "protocol": "TCP"}]}]
    }))
    .expect("valid Endpoints");
    assert!(mirror::should_mirror(&ep));
    let plan = mirror::reconcile(&ep, &[]);
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("external-service-"));
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslicemirroring-controller.k8s.io")
    );
    assert_eq!(labels.get("kubernetes.io/service-name").map(String::as_str), Some("external-service"));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    let ann = slice.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.keys().collect::<Vec<_>>(), ["note"]);
    assert_eq!(slice.metadata.owner_references.as_ref().expect("present")[0].kind, "Endpoints");
    let mut got: Vec<(String, Option<bool>)> = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().and_then(|c| c.ready)))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("11.11.11.11".into(), Some(true)),
            ("22.22.22.22".into(), Some(true)),
            ("33.33.33.33".into(), Some(false))
        ]
    );
    assert_eq!(slice.ports.as_ref().expect("present")[0].port, Some(80));

    // Once written, nothing more to do; a changed address updates the same slice.
    let mut w = slice.clone();
    w.metadata.name = Some("external-service-abcde".into());
    w.metadata.generate_name = None;
    let existing = vec![Arc::new(w)];
    assert!(mirror::reconcile(&ep, &existing).is_empty());
    let mut ep2 = ep.clone();
    if let Some(a) = ep2.subsets.as_mut().and_then(|s| s[0].addresses.as_mut()) {
        a[1].ip = "44.44.44.44".into();
    }
    let plan = mirror::reconcile(&ep2, &existing);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("external-service-abcde"));

    // Empty Endpoints: the slice goes.
    let mut empty = ep.clone();
    empty.subsets = None;
    assert_eq!(mirror::reconcile(&empty, &existing).delete, ["external-service-abcde"]);

    let mut skip = ep.clone();
    skip.metadata.labels =
        Some(BTreeMap::from([("endpointslice.kubernetes.io/skip-mirror".into(), "true".into())]));
    assert!(!mirror::should_mirror(&skip));
}

#[test]
fn mirroring_splits_families_and_drops_invalid_addresses() {
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "ext", "namespace": "default", "uid": "u"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}, {"ip": "not-an-ip"}], "ports": [{"port": 80}]}]
    }))
    .expect("valid Endpoints");
    let (groups, skipped) = mirror::desired(&ep);
    assert_eq!(skipped, 1);
    let types: Vec<AddressType> = groups.keys().map(|k| k.0).collect();
    assert_eq!(types, [AddressType::IPv4, AddressType::IPv6]);
}

#[test]
fn the_index_finds_services_for_pods_and_pods_for_services() {
    let mut ix = Index::default();
    ix.upsert_service(Arc::new(svc(json!({}))));
    ix.upsert_service(Arc::new(svc(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "kubia", "tier": "web"}}}),
    )));
    ix.upsert_service(Arc::new(svc(json!({"metadata": {"name": "manual"}, "spec": {"selector": null}}))));
    ix.upsert_service(Arc::new(svc(json!({"metadata": {"name": "other", "namespace": "ns2"}}))));
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let mut got = ix.services_selecting("default", Some(&labels(&[("app", "kubia")])));
    got.sort();
    assert_eq!(got, ["kubia"]);
    let mut got = ix.services_selecting("default", Some(&labels(&[("app", "kubia"), ("tier", "web")])));
    got.sort();
    assert_eq!(got, ["kubia", "web"]);
    assert!(ix.services_selecting("default", None).is_empty());

    ix.upsert_pod(Arc::new(pod("a", "10.244.0.5", true)));
    ix.upsert_pod(Arc::new(pod_with(
        "b",
        "10.244.0.6",
        true,
        json!({"metadata": {"labels": {"tier": "web"}}}),
    )));
    ix.upsert_pod(Arc::new(pod_with(
        "c",
        "10.244.0.7",
        true,
        json!({"metadata": {"labels": {"app": "other"}}}),
    )));
    let sel = labels(&[("app", "kubia")]);
    let names: Vec<String> =
        ix.pods_selected("default", &sel).iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["a", "b"]);
    let sel = labels(&[("app", "kubia"), ("tier", "web")]);
    let names: Vec<String> =
        ix.pods_selected("default", &sel).iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["b"]);

    // Relabelling moves a pod between services; removal forgets it.
    ix.upsert_pod(Arc::new(pod_with(
        "a",
        "10.244.0.5",
        true,
        json!({"metadata": {"labels": {"app": "other"}}}),
    )));
    assert_eq!(ix.pods_selected("default", &labels(&[("app", "kubia")])).len(), 1);
    ix.remove_pod("default", "b");
    assert!(ix.pods_selected("default", &labels(&[("app", "kubia")])).is_empty());
    ix.remove_service("default", "web");
    assert_eq!(
        ix.services_selecting("default", Some(&labels(&[("app", "kubia"), ("tier", "web")]))),
        ["kubia"]
    );
}

#[test]
fn trigger_times_print_as_go_rfc3339_nano() {
    let t: Timestamp = "2024-05-01T10:00:00.120Z".parse().expect("a time");
    assert_eq!(desired::rfc3339_nano(t), "2024-05-01T10:00:00.12Z");
    let t: Timestamp = "2024-05-01T10:00:00Z".parse().expect("a time");
    assert_eq!(desired::rfc3339_nano(t), "2024-05-01T10:00:00Z");
    let t: Timestamp = "2024-05-01T10:00:00.000000001Z".parse().expect("a time");
    assert_eq!(desired::rfc3339_nano(t), "2024-05-01T10:00:00.000000001Z");
}

#[test]
fn pod_triggers_use_the_ready_transition_when_it_changed() {
    let seen: Timestamp = "2024-05-01T12:00:00Z".parse().expect("a time");
    let before = pod("a", "10.244.0.5", false);
    let after = pod_with(
        "a",
        "10.244.0.5",
        true,
        json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T11:59:59.5Z"}]}}),
    );
    assert_eq!(super::pod_trigger(Some(&before), Some(&after), seen).to_string(), "2024-05-01T11:59:59.5Z");
    let relabelled = pod_with("a", "10.244.0.5", false, json!({"metadata": {"labels": {"x": "y"}}}));
    assert_eq!(super::pod_trigger(Some(&before), Some(&relabelled), seen), seen);
}
