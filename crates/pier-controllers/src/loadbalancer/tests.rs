//! Decisions of the LoadBalancer controller on Service objects, with no API server.

use serde_json::{json, Value};

use super::*;

fn range() -> LbRange {
    parse_lb_range("172.30.0.200-172.30.0.201").expect("range")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn svc(name: &str, spec: Value, status: Value) -> Service {
    let mut base = json!({"type": "LoadBalancer", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]});
    if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
        "spec": base,
        "status": status,
    }))
    .expect("a Service")
}

fn lb_status(ip: &str) -> Value {
    json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}})
}

fn allocated(ip: &str) -> Option<(EventType, &'static str, String)> {
    Some((EventType::Normal, REASON_ALLOCATED, format!("Assigned IP [\"{ip}\"]")))
}

fn failed(key: &str, why: &str) -> Option<(EventType, &'static str, String)> {
    Some((EventType::Warning, REASON_FAILED, format!("Failed to allocate IP for \"{key}\": {why}")))
}

#[test]
fn a_new_service_gets_the_lowest_address_then_keeps_it_quietly() {
    let mut alloc = Allocator::new(range());
    let s = svc("a", json!({}), json!({}));
    let d = decide(&mut alloc, "default/a", &s);
    assert_eq!(
        d,
        Decision {
            status: Some(Some(ip("172.30.0.200"))),
            event: allocated("172.30.0.200"),
            pending: false,
            freed: false
        }
    );
    let d = decide(&mut alloc, "default/a", &svc("a", json!({}), lb_status("172.30.0.200")));
    assert_eq!(d.status, Some(Some(ip("172.30.0.200"))));
    assert_eq!(d.event, None);
}

#[test]
fn exhaustion_leaves_the_service_pending_with_metallbs_message() {
    let mut alloc = Allocator::new(range());
    decide(&mut alloc, "default/a", &svc("a", json!({}), json!({})));
    decide(&mut alloc, "default/b", &svc("b", json!({}), json!({})));
    let d = decide(&mut alloc, "default/c", &svc("c", json!({}), json!({})));
    assert_eq!(
        d,
        Decision {
            status: Some(None),
            event: failed("default/c", "no available IPs"),
            pending: true,
            freed: false
        }
    );
}

#[test]
fn a_requested_address_is_honoured_only_inside_the_pool_and_when_free() {
    let mut alloc = Allocator::new(range());
    let d = decide(&mut alloc, "default/a", &svc("a", json!({"loadBalancerIP": "172.30.0.201"}), json!({})));
    assert_eq!(d.status, Some(Some(ip("172.30.0.201"))));
    assert_eq!(d.event, allocated("172.30.0.201"));

    let d = decide(&mut alloc, "default/b", &svc("b", json!({"loadBalancerIP": "172.30.0.201"}), json!({})));
    assert_eq!(d.event, failed("default/b", "\"172.30.0.201\" is already in use by default/a"));
    assert!(d.pending, "may succeed once default/a lets go");

    let d = decide(&mut alloc, "default/c", &svc("c", json!({"loadBalancerIP": "10.1.2.3"}), json!({})));
    assert_eq!(
        d.event,
        failed("default/c", "\"10.1.2.3\" is not in the load balancer pool 172.30.0.200-172.30.0.201")
    );
    assert_eq!((d.status, d.pending), (Some(None), false));

    let d = decide(&mut alloc, "default/d", &svc("d", json!({"loadBalancerIP": "nope"}), json!({})));
    assert_eq!(d.event, failed("default/d", "invalid spec.loadBalancerIP \"nope\""));
}

#[test]
fn changing_the_requested_address_moves_the_service_and_frees_the_old_one() {
    let mut alloc = Allocator::new(range());
    decide(&mut alloc, "default/a", &svc("a", json!({}), json!({})));
    let moved = svc("a", json!({"loadBalancerIP": "172.30.0.201"}), lb_status("172.30.0.200"));
    let d = decide(&mut alloc, "default/a", &moved);
    assert_eq!(d.status, Some(Some(ip("172.30.0.201"))));
    assert!(d.freed);
    assert_eq!(alloc.owner(ip("172.30.0.200")), None);
}

#[test]
fn leaving_load_balancer_releases_and_clears_but_a_class_is_left_alone() {
    let mut alloc = Allocator::new(range());
    decide(&mut alloc, "default/a", &svc("a", json!({}), json!({})));
    let d =
        decide(&mut alloc, "default/a", &svc("a", json!({"type": "ClusterIP"}), lb_status("172.30.0.200")));
    assert_eq!(d, Decision { status: Some(None), event: None, pending: false, freed: true });
    assert!(alloc.is_empty());

    let classed = svc("k", json!({"loadBalancerClass": "example.com/other"}), lb_status("172.30.0.200"));
    let d = decide(&mut alloc, "default/k", &classed);
    assert_eq!(d, Decision { status: None, event: None, pending: false, freed: false });
    assert!(alloc.is_empty());
}

#[test]
fn rebuild_keeps_status_addresses_and_the_older_service_wins_a_double_claim() {
    let mut older = svc("old", json!({}), lb_status("172.30.0.201"));
    older.metadata.creation_timestamp = serde_json::from_value(json!("2024-01-01T00:00:00Z")).expect("time");
    let mut newer = svc("new", json!({}), lb_status("172.30.0.201"));
    newer.metadata.creation_timestamp = serde_json::from_value(json!("2024-06-01T00:00:00Z")).expect("time");
    let outside = svc("out", json!({}), lb_status("10.0.0.1"));
    let not_lb = svc("cip", json!({"type": "ClusterIP"}), lb_status("172.30.0.200"));
    let services: HashMap<String, Service> = [
        ("default/new".to_string(), newer.clone()),
        ("default/old".to_string(), older),
        ("default/out".to_string(), outside.clone()),
        ("default/cip".to_string(), not_lb),
    ]
    .into();
    let mut alloc = rebuild(range(), &services);
    assert_eq!(alloc.owner(ip("172.30.0.201")), Some("default/old"));
    assert_eq!(alloc.len(), 1);
    // The loser and the Service with a foreign address get fresh addresses.
    let d = decide(&mut alloc, "default/new", &newer);
    assert_eq!(d.event, allocated("172.30.0.200"));
    let d = decide(&mut alloc, "default/out", &outside);
    assert_eq!(d.event, failed("default/out", "no available IPs"));
}

#[test]
fn status_comparison_wants_exactly_one_vip_entry() {
    let s = svc("a", json!({}), lb_status("172.30.0.200"));
    assert!(status_is(&s, Some(ip("172.30.0.200"))));
    assert!(!status_is(&s, Some(ip("172.30.0.201"))));
    assert!(!status_is(&s, None));
    let no_mode = svc("a", json!({}), json!({"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}}));
    assert!(!status_is(&no_mode, Some(ip("172.30.0.200"))));
    let empty = svc("a", json!({}), json!({"loadBalancer": {}}));
    assert!(status_is(&empty, None));
}
