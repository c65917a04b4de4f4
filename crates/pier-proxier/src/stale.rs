//! Which UDP conntrack entries a sync makes stale (kube-proxy's
//! `pkg/proxy/conntrack/cleanup.go`). UDP has no connection to end: an entry keeps
//! steering a client's packets to where they went first. Two cases matter:
//!
//! - an endpoint that is gone: entries DNAT'ed to it would black-hole the client;
//! - a service port that had no endpoints and now has some: packets sent meanwhile
//!   made entries without DNAT (the reject answered them), which would keep the client
//!   from reaching the new endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use pier_nft::FlowFilter;
use pier_proxy::{Protocol, ProxyModel, ServicePort, ServicePortName};

fn udp_ports(model: &ProxyModel) -> BTreeMap<&ServicePortName, &ServicePort> {
    model.service_ports().filter(|p| p.name.protocol == Protocol::Udp).map(|p| (&p.name, p)).collect()
}

/// Every address a service port is reached at, with its port.
fn destinations(p: &ServicePort) -> Vec<Ipv4Addr> {
    let mut d = vec![p.cluster_ip];
    d.extend(&p.external_ips);
    d.extend(&p.load_balancer_ips);
    d
}

/// The filters for entries that `prev` made and `next` no longer serves.
pub fn udp_flows(prev: &ProxyModel, next: &ProxyModel) -> Vec<FlowFilter> {
    let before = udp_ports(prev);
    let after = udp_ports(next);
    // In the order found, each once.
    let mut out: Vec<FlowFilter> = Vec::new();
    let mut add = |f: FlowFilter| {
        if !out.contains(&f) {
            out.push(f);
        }
    };
    for (name, old) in &before {
        let kept: BTreeSet<Ipv4Addr> = after
            .get(name)
            .map(|p| p.endpoints.iter().filter(|e| e.serving).map(|e| e.ip).collect())
            .unwrap_or_default();
        for ep in old.endpoints.iter().filter(|e| e.serving && !kept.contains(&e.ip)) {
            let ep_ip = IpAddr::V4(ep.ip);
            for dst in destinations(old) {
                add(FlowFilter::udp_to_service(IpAddr::V4(dst), old.port, ep_ip));
            }
            if let Some(np) = old.node_port {
                add(FlowFilter::udp_to_node_port(np, ep_ip));
            }
        }
    }
    for (name, new) in &after {
        let had_none = before.get(name).is_none_or(|p| p.endpoints.iter().all(|e| !e.ready && !e.serving));
        let has_some = new.endpoints.iter().any(|e| e.ready || e.serving);
        if had_none && has_some {
            for dst in destinations(new) {
                // Not DNAT'ed: the reply came (as a reject) from the address itself.
                add(FlowFilter::udp_to_service(IpAddr::V4(dst), new.port, IpAddr::V4(dst)));
            }
            if let Some(np) = new.node_port {
                for ip in &next.node.node_ips {
                    add(FlowFilter::udp_to_node_port(np, IpAddr::V4(*ip)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use pier_proxy::{build, NodeInfo};

    fn service(proto: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "kube-system", "name": "kube-dns"},
            "spec": {"clusterIP": "10.96.0.10", "type": "NodePort",
                     "ports": [{"name": "dns", "port": 53, "protocol": proto, "targetPort": 53, "nodePort": 30053}]}
        }))
        .expect("service")
    }

    fn slice(ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| serde_json::json!({"addresses": [ip], "conditions": {"ready": true, "serving": true}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "kube-system", "name": "kube-dns-abc",
                         "labels": {"kubernetes.io/service-name": "kube-dns"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]
        }))
        .expect("slice")
    }

    fn node() -> NodeInfo {
        NodeInfo { name: "pier-node-0".into(), node_ips: vec!["172.30.0.10".parse().expect("ip")] }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_removed_udp_endpoint_loses_its_entries() {
        let svc = service("UDP");
        let prev = build([&svc], [slice(&["10.244.0.5", "10.244.0.6"])], &node());
        let next = build([&svc], [slice(&["10.244.0.6"])], &node());
        assert_eq!(
            udp_flows(&prev, &next),
            vec![
                FlowFilter::udp_to_service(ip("10.96.0.10"), 53, ip("10.244.0.5")),
                FlowFilter::udp_to_node_port(30053, ip("10.244.0.5")),
            ]
        );
        assert!(udp_flows(&next, &next).is_empty(), "nothing changed, nothing cleared");
    }

    #[test]
    fn a_udp_service_that_gets_endpoints_clears_its_rejected_flows() {
        let svc = service("UDP");
        let prev = build([&svc], Vec::<EndpointSlice>::new(), &node());
        let next = build([&svc], [slice(&["10.244.0.6"])], &node());
        assert_eq!(
            udp_flows(&prev, &next),
            vec![
                FlowFilter::udp_to_service(ip("10.96.0.10"), 53, ip("10.96.0.10")),
                FlowFilter::udp_to_node_port(30053, ip("172.30.0.10")),
            ]
        );
    }

    #[test]
    fn an_endpoint_that_stops_serving_loses_its_entries() {
        let svc = service("UDP");
        let prev = build([&svc], [slice(&["10.244.0.5", "10.244.0.6"])], &node());
        let mut unready = slice(&["10.244.0.5", "10.244.0.6"]);
        if let Some(ep) = unready.endpoints.as_mut().and_then(|eps| eps.first_mut()) {
            ep.conditions = Some(
                serde_json::from_value(serde_json::json!({"ready": false, "serving": false}))
                    .expect("conditions"),
            );
        }
        let next = build([&svc], [unready], &node());
        assert_eq!(
            udp_flows(&prev, &next),
            vec![
                FlowFilter::udp_to_service(ip("10.96.0.10"), 53, ip("10.244.0.5")),
                FlowFilter::udp_to_node_port(30053, ip("10.244.0.5")),
            ]
        );
    }

    #[test]
    fn tcp_is_left_alone() {
        let svc = service("TCP");
        let prev = build([&svc], [slice(&["10.244.0.5"])], &node());
        let next = build([&svc], Vec::<EndpointSlice>::new(), &node());
        assert!(udp_flows(&prev, &next).is_empty());
    }
}
