//! Allocator transitions, exhaustion, restore and the transactional shape.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::*;
use crate::apply_defaults;

fn alloc() -> ServiceAllocator {
    ServiceAllocator::with_seed("10.96.0.0/12", 30000..=32767, 42).expect("valid config")
}

fn svc(name: &str, spec: Value) -> Value {
    let mut s = json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec});
    apply_defaults("", "Service", &mut s);
    s
}

fn ip_of(s: &Value) -> Ipv4Addr {
    s["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok()).expect("a cluster IP")
}

fn node_port(s: &Value, i: usize) -> u16 {
    s["spec"]["ports"][i]["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a node port")
}

fn create(a: &mut ServiceAllocator, s: &mut Value) {
    let tx = a.allocate_on_create(s).expect("allocation succeeds");
    tx.commit(a);
}

#[test]
fn fixed_addresses() {
    assert_eq!(nth_ip("10.96.0.0/12", 1), Ok(Ipv4Addr::new(10, 96, 0, 1)));
    assert_eq!(nth_ip("10.96.0.0/12", 10), Ok(Ipv4Addr::new(10, 96, 0, 10)));
    assert_eq!(nth_ip("10.120.0.0/16", 10), Ok(Ipv4Addr::new(10, 120, 0, 10)));
    assert!(matches!(nth_ip("nope", 1), Err(CidrError::Parse { .. })));
    assert!(matches!(nth_ip("10.0.0.0/30", 4), Err(CidrError::OutOfRange { .. })));
    assert!(matches!(ServiceAllocator::new("10.0.0.0/8", 30000..=32767), Err(CidrError::TooLarge { .. })));
}

#[test]
fn create_assigns_ip_outside_the_static_band() {
    let mut a = alloc();
    for i in 0..200 {
        let mut s = svc(&format!("s{i}"), json!({"ports": [{"port": 80}]}));
        create(&mut a, &mut s);
        let ip = ip_of(&s);
        // The first 256 addresses are kept for explicit requests (kubernetes, kube-dns).
        assert!(u32::from(ip) >= u32::from(Ipv4Addr::new(10, 96, 1, 1)), "{ip}");
        assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
        assert!(s["spec"]["ports"][0].get("nodePort").is_none());
    }
}

#[test]
fn explicit_ip_reserved_and_conflicts_reported() {
    let mut a = alloc();
    let mut k =
        svc("kubernetes", json!({"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}));
    create(&mut a, &mut k);
    assert!(a.is_ip_allocated(Ipv4Addr::new(10, 96, 0, 1)));
    let mut dup = svc("other", json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}));
    let err = a.allocate_on_create(&mut dup).expect_err("already allocated");
    assert_eq!(
        pier_api::field::aggregate_message(&err),
        "spec.clusterIPs: Invalid value: []string{\"10.96.0.1\"}: failed to allocate IP 10.96.0.1: provided IP is already allocated"
    );
    let mut outside = svc("other", json!({"clusterIP": "192.168.0.1", "ports": [{"port": 80}]}));
    let err = a.allocate_on_create(&mut outside).expect_err("outside range");
    assert_eq!(
        err[0].detail,
        "failed to allocate IP 192.168.0.1: the provided IP (192.168.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
    // The network address is not allocatable either.
    let mut network = svc("other", json!({"clusterIP": "10.96.0.0", "ports": [{"port": 80}]}));
    assert!(a.allocate_on_create(&mut network).is_err());
}

#[test]
fn headless_and_external_name_get_no_ip() {
    let mut a = alloc();
    let free = a.free_ips();
    let mut headless = svc("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    create(&mut a, &mut headless);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let mut ext = svc(
        "e",
        json!({"type": "ExternalName", "externalName": "someapi.somecompany.com", "ports": [{"port": 80}]}),
    );
    create(&mut a, &mut ext);
    assert!(ext["spec"].get("clusterIP").is_none());
    assert_eq!(a.free_ips(), free);
}

#[test]
fn node_ports_random_explicit_and_errors() {
    let mut a = alloc();
    let mut s = svc(
        "np",
        json!({"type": "NodePort", "ports": [
        {"name": "http", "port": 80}, {"name": "https", "port": 443, "nodePort": 30123}]}),
    );
    create(&mut a, &mut s);
    let p0 = node_port(&s, 0);
    assert!((30000..=32767).contains(&p0));
    assert_eq!(node_port(&s, 1), 30123);
    assert!(a.is_port_allocated(p0) && a.is_port_allocated(30123));

    let mut taken = svc("t", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30123}]}));
    let err = a.allocate_on_create(&mut taken).expect_err("taken");
    assert_eq!(
        pier_api::field::aggregate_message(&err),
        "spec.ports[0].nodePort: Invalid value: 30123: provided port is already allocated"
    );
    let mut out = svc("o", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}));
    let err = a.allocate_on_create(&mut out).expect_err("out of range");
    assert_eq!(
        pier_api::field::aggregate_message(&err),
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // A failed create leaks nothing: its cluster IP was given back.
    assert_eq!(a.free_ips(), a.ips.size() - 1);
}

#[test]
fn tcp_and_udp_of_one_port_share_a_node_port() {
    let mut a = alloc();
    let mut s = svc(
        "dns",
        json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    );
    create(&mut a, &mut s);
    assert_eq!(node_port(&s, 0), node_port(&s, 1));
    assert_eq!(a.free_ports(), 2768 - 1);
}

#[test]
fn load_balancer_health_check_and_opt_out() {
    let mut a = alloc();
    let mut lb =
        svc("lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}));
    create(&mut a, &mut lb);
    let hc = lb["spec"]["healthCheckNodePort"].as_u64().expect("health check port");
    assert!((30000..=32767).contains(&hc));
    assert!(crate::validate_create("", "Service", &lb).is_empty());
    let mut no_ports = svc(
        "lb2",
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
    );
    create(&mut a, &mut no_ports);
    assert!(no_ports["spec"]["ports"][0].get("nodePort").is_none());
    // NodePort with Local gets no health-check port: upstream only gives them to LBs.
    let mut np =
        svc("np", json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}));
    create(&mut a, &mut np);
    assert!(np["spec"].get("healthCheckNodePort").is_none());
}

fn update(a: &mut ServiceAllocator, old: &Value, new: &mut Value) -> AllocationTx {
    apply_defaults("", "Service", new);
    a.allocate_on_update(old, new).expect("update allocation succeeds")
}

#[test]
fn cluster_ip_to_node_port_and_back() {
    let mut a = alloc();
    let mut s = svc("kubia", json!({"ports": [{"port": 80}]}));
    create(&mut a, &mut s);
    let ip = ip_of(&s);

    // A client that omits clusterIP keeps the allocated one (kubectl replace).
    let mut to_np = json!({"metadata": s["metadata"], "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let tx = update(&mut a, &s, &mut to_np);
    assert_eq!(ip_of(&to_np), ip);
    let np = node_port(&to_np, 0);
    assert_eq!(tx.allocated_ports(), &[np]);
    tx.commit(&mut a);
    assert!(a.is_port_allocated(np));
    assert!(crate::validate_update("", "Service", &s, &to_np).is_empty());

    // Keeping the port across an unrelated update allocates nothing.
    let mut same = to_np.clone();
    same["metadata"]["labels"] = json!({"x": "y"});
    let tx = update(&mut a, &to_np, &mut same);
    assert!(tx.allocated_ports().is_empty() && tx.released_ports().is_empty());
    tx.commit(&mut a);

    // Back to ClusterIP (nodePort left as the server returned it): released and cleared.
    let mut back = same.clone();
    back["spec"]["type"] = json!("ClusterIP");
    let tx = update(&mut a, &same, &mut back);
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    assert!(back["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(tx.released_ports(), &[np]);
    assert!(a.is_port_allocated(np), "released only on commit");
    tx.commit(&mut a);
    assert!(!a.is_port_allocated(np));
    assert!(a.is_ip_allocated(ip));
    assert!(crate::validate_update("", "Service", &same, &back).is_empty());
}

#[test]
fn external_name_and_back_releases_and_allocates_the_ip() {
    let mut a = alloc();
    let mut s = svc("kubia", json!({"ports": [{"port": 80}]}));
    create(&mut a, &mut s);
    let ip = ip_of(&s);
    let mut ext = s.clone();
    ext["spec"]["type"] = json!("ExternalName");
    ext["spec"]["externalName"] = json!("someapi.somecompany.com");
    let tx = update(&mut a, &s, &mut ext);
    for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(ext["spec"].get(gone).is_none(), "{gone}");
    }
    tx.commit(&mut a);
    assert!(!a.is_ip_allocated(ip));
    assert!(crate::validate_update("", "Service", &s, &ext).is_empty());

    let mut back = json!({"metadata": s["metadata"], "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
    let tx = update(&mut a, &ext, &mut back);
    let new_ip = ip_of(&back);
    assert_eq!(tx.allocated_ips(), &[new_ip]);
    tx.commit(&mut a);
    assert!(a.is_ip_allocated(new_ip));
}

#[test]
fn cluster_ip_is_immutable() {
    let mut a = alloc();
    let mut s = svc("kubia", json!({"ports": [{"port": 80}]}));
    create(&mut a, &mut s);
    let mut changed = s.clone();
    changed["spec"]["clusterIP"] = json!("10.96.5.5");
    changed["spec"]["clusterIPs"] = json!(["10.96.5.5"]);
    let err = a.allocate_on_update(&s, &mut changed).expect_err("immutable");
    assert_eq!(
        pier_api::field::aggregate_message(&err),
        "spec.clusterIP: Invalid value: \"10.96.5.5\": field is immutable"
    );
    assert!(!is_internal(&err));
}

#[test]
fn rollback_frees_new_and_keeps_old() {
    let mut a = alloc();
    let mut s = svc("kubia", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}]}));
    create(&mut a, &mut s);
    let old_port = node_port(&s, 0);
    let mut more = s.clone();
    more["spec"]["ports"] =
        json!([{"name": "a", "port": 80, "nodePort": old_port}, {"name": "b", "port": 81}]);
    let tx = update(&mut a, &s, &mut more);
    let new_port = node_port(&more, 1);
    assert!(a.is_port_allocated(new_port));
    tx.rollback(&mut a); // the store write failed
    assert!(!a.is_port_allocated(new_port));
    assert!(a.is_port_allocated(old_port));
    assert!(a.is_ip_allocated(ip_of(&s)));

    let mut fresh = svc("fresh", json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let tx = a.allocate_on_create(&mut fresh).expect("allocates");
    a.rollback(tx);
    assert!(!a.is_ip_allocated(ip_of(&fresh)));
    assert!(!a.is_port_allocated(node_port(&fresh, 0)));
}

#[test]
fn release_on_delete_and_restore_after_restart() {
    let mut a = alloc();
    let mut k =
        svc("kubernetes", json!({"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}));
    let mut dns = svc(
        "kube-dns",
        json!({"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    let mut lb =
        svc("lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}));
    for s in [&mut k, &mut dns, &mut lb] {
        create(&mut a, s);
    }
    let lb_port = node_port(&lb, 0);
    let hc = lb["spec"]["healthCheckNodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("hc");

    let mut restarted = ServiceAllocator::with_seed("10.96.0.0/12", 30000..=32767, 1).expect("config");
    restarted.restore(&[k.clone(), dns.clone(), lb.clone()]);
    for ip in [Ipv4Addr::new(10, 96, 0, 1), Ipv4Addr::new(10, 96, 0, 10), ip_of(&lb)] {
        assert!(restarted.is_ip_allocated(ip), "{ip}");
    }
    assert!(restarted.is_port_allocated(lb_port) && restarted.is_port_allocated(hc));
    let mut clash = svc("dns2", json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
    assert!(restarted.allocate_on_create(&mut clash).is_err());

    restarted.release(&lb);
    assert!(!restarted.is_ip_allocated(ip_of(&lb)));
    assert!(!restarted.is_port_allocated(lb_port) && !restarted.is_port_allocated(hc));
}

#[test]
fn exhaustion_uses_upstream_wording() {
    // A /29 has 6 usable addresses.
    let mut a = ServiceAllocator::with_seed("10.0.0.0/29", 30000..=30001, 3).expect("config");
    for i in 0..6 {
        let mut s = svc(&format!("s{i}"), json!({"ports": [{"port": 80}]}));
        create(&mut a, &mut s);
    }
    let mut s = svc("full", json!({"ports": [{"port": 80}]}));
    let err = a.allocate_on_create(&mut s).expect_err("full");
    assert!(is_internal(&err));
    assert_eq!(err[0].detail, "failed to allocate a serviceIP: range is full");

    let mut b = ServiceAllocator::with_seed("10.96.0.0/24", 30000..=30001, 3).expect("config");
    let mut s = svc(
        "np",
        json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
    );
    create(&mut b, &mut s);
    let mut s2 = svc("np2", json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let err = b.allocate_on_create(&mut s2).expect_err("full");
    assert!(is_internal(&err));
    assert_eq!(err[0].detail, "failed to allocate a nodePort: range is full");
    assert_eq!(b.free_ips(), 254 - 1, "the failed create gave its IP back");
}
