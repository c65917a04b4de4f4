use serde_json::{json, Value};

use super::*;

fn node() -> NodeInfo {
    NodeInfo { name: "node-a".into(), node_ips: vec![Ipv4Addr::new(172, 30, 0, 10)] }
}

fn service(mut v: Value) -> Service {
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Service");
    serde_json::from_value(v).expect("Service fixture")
}

fn slice(svc: &str, name: &str, address_type: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": name, "labels": {LABEL_SERVICE_NAME: svc}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("EndpointSlice fixture")
}

fn simple(name: &str, spec: Value) -> Service {
    service(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec}))
}

fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn only_port(model: &ProxyModel) -> &ServicePort {
    let ports: Vec<_> = model.service_ports().collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    ports[0]
}

fn ips(eps: &[&Endpoint]) -> Vec<String> {
    eps.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect()
}

#[test]
fn named_ports_resolve_per_slice_and_protocol() {
    let svc = simple(
        "web",
        json!({"clusterIP": "10.96.0.5", "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "http", "port": 80, "protocol": "UDP"},
        ]}),
    );
    let a = slice(
        "web",
        "web-a",
        "IPv4",
        json!([{"name": "http", "port": 8080}]),
        json!([ep("10.244.1.5", "node-a", true, true, false)]),
    );
    let b = slice(
        "web",
        "web-b",
        "IPv4",
        json!([{"name": "http", "port": 9090, "protocol": "TCP"}, {"name": "http", "port": 5353, "protocol": "UDP"}]),
        json!([ep("10.244.2.7", "node-b", true, true, false)]),
    );
    let model = build([svc], [a, b], &node());
    let ports: Vec<_> = model.service_ports().collect();
    assert_eq!(ports.len(), 2);
    let tcp = ports.iter().find(|p| p.name.protocol == Protocol::Tcp).expect("tcp port");
    let udp = ports.iter().find(|p| p.name.protocol == Protocol::Udp).expect("udp port");
    assert_eq!(
        tcp.endpoints.iter().map(|e| (e.ip.to_string(), e.port)).collect::<Vec<_>>(),
        [("10.244.1.5".to_string(), 8080), ("10.244.2.7".to_string(), 9090)]
    );
    assert_eq!(
        udp.endpoints.iter().map(|e| (e.ip.to_string(), e.port)).collect::<Vec<_>>(),
        [("10.244.2.7".to_string(), 5353)]
    );
}

#[test]
fn unset_fields_take_api_defaults() {
    let mut svc = json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}], "sessionAffinity": "ClientIP"});
    svc["sessionAffinityConfig"] = json!({});
    let no_conditions =
        slice("web", "web-a", "IPv4", json!([{"port": 8080}]), json!([{"addresses": ["10.244.1.5"]}]));
    let model = build([simple("web", svc)], [no_conditions], &node());
    let port = only_port(&model);
    assert_eq!(port.name.protocol, Protocol::Tcp);
    assert_eq!(port.name.port_name, "");
    assert_eq!(
        port.session_affinity,
        SessionAffinity::ClientIp { timeout_seconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS }
    );
    let e = &port.endpoints[0];
    assert!(e.ready && e.serving && !e.terminating && !e.is_local && e.node_name.is_none());
}

#[test]
fn headless_external_name_and_ipv6_only_are_not_proxied() {
    let services = [
        simple("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
        simple("ext", json!({"type": "ExternalName", "externalName": "example.com"})),
        simple("v6", json!({"clusterIP": "fd00::1", "clusterIPs": ["fd00::1"], "ports": [{"port": 80}]})),
        simple("no-spec-ip", json!({"ports": [{"port": 80}]})),
    ];
    let model = build(&services, Vec::<EndpointSlice>::new(), &node());
    assert!(model.services.is_empty());
    assert!(model.skipped.is_empty(), "{:?}", model.skipped);
}

#[test]
fn dual_stack_uses_the_ipv4_address_and_ignores_ipv6_parts() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "dual"},
        "spec": {"type": "LoadBalancer", "clusterIP": "fd00::1", "clusterIPs": ["fd00::1", "10.96.0.9"],
                 "externalIPs": ["2001:db8::5", "192.0.2.5"],
                 "loadBalancerSourceRanges": ["2001:db8::/32", "198.51.100.0/24"],
                 "ports": [{"port": 80, "nodePort": 30001}]},
        "status": {"loadBalancer": {"ingress": [
            {"ip": "2001:db8::9"}, {"ip": "192.0.2.9"}, {"ip": "192.0.2.10", "ipMode": "Proxy"}, {"hostname": "lb.example.com"},
        ]}},
    }));
    let v6_slice =
        slice("dual", "dual-v6", "IPv6", json!([{"port": 80}]), json!([{"addresses": ["fd00::5"]}]));
    let model = build([svc], [v6_slice], &node());
    let port = only_port(&model);
    assert_eq!(port.cluster_ip, Ipv4Addr::new(10, 96, 0, 9));
    assert_eq!(port.external_ips, [Ipv4Addr::new(192, 0, 2, 5)]);
    assert_eq!(port.load_balancer_ips, [Ipv4Addr::new(192, 0, 2, 9)]);
    assert_eq!(port.load_balancer_source_ranges.len(), 1);
    assert_eq!(port.node_port, Some(30001));
    assert!(port.endpoints.is_empty());
    assert!(model.skipped.is_empty(), "{:?}", model.skipped);
}

#[test]
fn invalid_input_is_reported_and_the_rest_still_works() {
    let svc = simple(
        "web",
        json!({"clusterIP": "10.96.0.5", "externalIPs": ["not-an-ip", "192.0.2.5"],
               "loadBalancerSourceRanges": ["10.0.0.0/99"],
               "ports": [{"port": 80}, {"port": 99999}, {"port": 81, "protocol": "ICMP"}]}),
    );
    let bad_slice = slice(
        "web",
        "web-a",
        "IPv4",
        json!([{"port": 8080}, {"port": -1}]),
        json!([{"addresses": ["10.244.1.300"]}, {"addresses": ["10.244.1.5"]}]),
    );
    let model = build([svc], [bad_slice], &node());
    let port = only_port(&model);
    assert_eq!(port.port, 80);
    assert_eq!(port.external_ips, [Ipv4Addr::new(192, 0, 2, 5)]);
    assert_eq!(port.endpoints.len(), 1);
    let reasons: Vec<String> = model.skipped.iter().map(|s| s.reason.to_string()).collect();
    assert_eq!(reasons.len(), 6, "{reasons:#?}");
    assert!(reasons.contains(&"spec.externalIPs: invalid IP address \"not-an-ip\"".to_string()));
    assert!(reasons.contains(&"spec.ports[].protocol: unsupported protocol \"ICMP\"".to_string()));
    assert!(reasons.contains(&"endpoints[].addresses: invalid IP address \"10.244.1.300\"".to_string()));
}

#[test]
fn duplicate_endpoints_prefer_the_local_copy() {
    let svc = simple("web", json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}));
    let a = slice(
        "web",
        "web-a",
        "IPv4",
        json!([{"port": 8080}]),
        json!([ep("10.244.1.5", "node-b", true, true, false)]),
    );
    let b = slice(
        "web",
        "web-b",
        "IPv4",
        json!([{"port": 8080}]),
        json!([ep("10.244.1.5", "node-a", true, true, false)]),
    );
    let model = build([svc], [a, b], &node());
    let port = only_port(&model);
    assert_eq!(port.endpoints.len(), 1);
    assert!(port.endpoints[0].is_local);
}

fn port_with(spec_extra: Value, endpoints: Value) -> ServicePort {
    let mut spec = json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]});
    for (k, v) in spec_extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let model = build(
        [simple("web", spec)],
        [slice("web", "web-a", "IPv4", json!([{"port": 8080}]), endpoints)],
        &node(),
    );
    only_port(&model).clone()
}

#[test]
fn cluster_policy_uses_ready_endpoints_then_serving_terminating_ones() {
    let p = port_with(
        json!({}),
        json!([ep("10.244.1.1", "node-a", true, true, false), ep("10.244.1.2", "node-b", false, true, true)]),
    );
    let c = p.categorize();
    assert_eq!(ips(&c.cluster), ["10.244.1.1:8080"]);
    assert!(c.local.is_empty() && c.has_any);
    assert_eq!(ips(&c.reachable), ["10.244.1.1:8080"]);

    let p = port_with(
        json!({}),
        json!([
            ep("10.244.1.1", "node-a", false, false, true),
            ep("10.244.1.2", "node-b", false, true, true)
        ]),
    );
    let c = p.categorize();
    assert_eq!(ips(&c.cluster), ["10.244.1.2:8080"]);

    let p = port_with(json!({}), json!([ep("10.244.1.1", "node-a", false, false, false)]));
    let c = p.categorize();
    assert!(c.cluster.is_empty() && c.reachable.is_empty() && !c.has_any);
}

#[test]
fn external_local_policy_keeps_cluster_endpoints_for_short_circuiting() {
    let p = port_with(
        json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}),
        json!([ep("10.244.1.1", "node-a", true, true, false), ep("10.244.2.1", "node-b", true, true, false)]),
    );
    assert!(p.external_policy_local && p.uses_cluster_endpoints() && p.uses_local_endpoints());
    let c = p.categorize();
    assert_eq!(ips(&c.cluster), ["10.244.1.1:8080", "10.244.2.1:8080"]);
    assert_eq!(ips(&c.local), ["10.244.1.1:8080"]);
    assert_eq!(ips(&c.reachable), ["10.244.1.1:8080", "10.244.2.1:8080"]);
}

#[test]
fn local_policy_falls_back_to_local_terminating_endpoints_independently() {
    // A ready remote endpoint exists, so Cluster policy uses it; no local endpoint is
    // ready, so Local policy uses the local serving-and-terminating one. Reachable is
    // the union.
    let p = port_with(
        json!({"internalTrafficPolicy": "Local"}),
        json!([ep("10.244.1.1", "node-a", false, true, true), ep("10.244.2.1", "node-b", true, true, false)]),
    );
    // ClusterIP only, internal Local: Cluster endpoints are never used.
    assert!(!p.uses_cluster_endpoints());
    let c = p.categorize();
    assert!(c.cluster.is_empty());
    assert_eq!(ips(&c.local), ["10.244.1.1:8080"]);
    assert_eq!(ips(&c.reachable), ["10.244.1.1:8080"]);
    assert!(c.has_any);

    let p = port_with(
        json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}),
        json!([ep("10.244.1.1", "node-a", false, true, true), ep("10.244.2.1", "node-b", true, true, false)]),
    );
    let c = p.categorize();
    assert_eq!(ips(&c.cluster), ["10.244.2.1:8080"]);
    assert_eq!(ips(&c.local), ["10.244.1.1:8080"]);
    assert_eq!(ips(&c.reachable), ["10.244.1.1:8080", "10.244.2.1:8080"]);
}

#[test]
fn external_policy_only_counts_for_externally_reachable_services() {
    let p = port_with(
        json!({"externalTrafficPolicy": "Local"}),
        json!([ep("10.244.1.1", "node-a", true, true, false)]),
    );
    // A ClusterIP Service without externalIPs ignores externalTrafficPolicy.
    assert!(!p.external_policy_local);
}

#[test]
fn upsert_and_remove_keep_the_model_in_step_with_build() {
    let web = simple("web", json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}));
    let db =
        simple("db", json!({"clusterIP": "10.96.0.6", "externalIPs": ["bad"], "ports": [{"port": 5432}]}));
    let slices = [
        slice(
            "web",
            "web-a",
            "IPv4",
            json!([{"port": 8080}]),
            json!([ep("10.244.1.5", "node-a", true, true, false)]),
        ),
        slice(
            "db",
            "db-a",
            "IPv4",
            json!([{"port": 5432}]),
            json!([ep("10.244.2.5", "node-b", true, true, false)]),
        ),
    ];
    let built = build([&web, &db], &slices, &node());

    let mut model = ProxyModel::new(node());
    model.upsert_service(&web, &slices);
    model.upsert_service(&db, &slices);
    model.upsert_service(&db, &slices);
    assert_eq!(model, built);
    assert_eq!(model.skipped.len(), 1);

    // db becomes headless: it leaves the model, and its old report goes with it.
    let headless = simple("db", json!({"clusterIP": "None", "ports": [{"port": 5432}]}));
    model.upsert_service(&headless, &slices);
    assert!(model.skipped.is_empty());
    model.remove_service(&ServiceName { namespace: "default".into(), name: "web".into() });
    assert!(model.services.is_empty());
}

#[test]
fn health_checks_count_local_ready_endpoints() {
    let svc = simple(
        "web",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.5", "externalTrafficPolicy": "Local",
               "healthCheckNodePort": 32100, "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
    );
    let s = slice(
        "web",
        "web-a",
        "IPv4",
        json!([{"name": "a", "port": 8080}, {"name": "b", "port": 8081}]),
        json!([
            ep("10.244.1.5", "node-a", true, true, false),
            ep("10.244.1.6", "node-a", false, true, true),
            ep("10.244.2.5", "node-b", true, true, false),
        ]),
    );
    let model = build([svc], [s], &node());
    let checks = model.health_checks();
    assert_eq!(
        checks,
        [HealthCheck {
            service: ServiceName { namespace: "default".into(), name: "web".into() },
            node_port: 32100,
            local_endpoints: 1,
        }]
    );
}
