//! Layer-2 announcement of LoadBalancer and external IPs on the underlay, as
//! MetalLB's L2 mode: exactly one node holds each address (on its `lo`, so the kernel
//! answers ARP for it on `eth0`), and packets for it reach that node's proxy rules.
//!
//! Every node computes the same choice from the same data: among the nodes that may
//! serve the Service (all Ready nodes; with `externalTrafficPolicy: Local` only those
//! with a ready local endpoint, so the client's address survives), the one with the
//! smallest hash of address and node name. No coordination, and a Service's addresses
//! spread over the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use pier_proxy::{Ipv4Cidr, ProxyModel};
use sha2::{Digest, Sha256};

fn rank(ip: Ipv4Addr, node: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ip.octets());
    h.update(node.as_bytes());
    h.finalize().into()
}

/// The addresses `me` announces: LoadBalancer ingress IPs and external IPs inside
/// `subnet` (others are not on the underlay and cannot be announced), given the Ready
/// nodes.
pub fn announced(model: &ProxyModel, ready_nodes: &BTreeSet<String>, subnet: Ipv4Cidr) -> BTreeSet<Ipv4Addr> {
    let me = &model.node.name;
    // Per address: who may serve it.
    let mut candidates: BTreeMap<Ipv4Addr, BTreeSet<&str>> = BTreeMap::new();
    for port in model.service_ports() {
        let eligible: BTreeSet<&str> = if port.external_policy_local {
            port.endpoints.iter().filter(|e| e.ready).filter_map(|e| e.node_name.as_deref()).collect()
        } else {
            ready_nodes.iter().map(String::as_str).collect()
        };
        for ip in port.load_balancer_ips.iter().chain(&port.external_ips).filter(|ip| subnet.contains(**ip)) {
            candidates.entry(*ip).or_default().extend(eligible.iter().copied());
        }
    }
    candidates
        .into_iter()
        .filter(|(ip, nodes)| nodes.iter().min_by_key(|n| rank(*ip, n)).is_some_and(|n| *n == me))
        .map(|(ip, _)| ip)
        .collect()
}

const EEXIST: i32 = 17;

/// Adds (`true`) or removes (`false`) each address as a /32 on `lo` in the caller's
/// network namespace (the node's). Blocking.
pub fn apply(changes: &[(bool, Ipv4Addr)]) -> Result<(), pier_sandbox::OpError> {
    let netlink = pier_sandbox::NetlinkApplier::new();
    let lo = pier_sandbox::IfName::new("lo").map_err(|e| pier_sandbox::OpError::Sys {
        op: "name",
        path: "lo".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    for (add, ip) in changes {
        let addr = pier_sandbox::Ipv4Cidr::new(*ip, 32).map_err(|e| pier_sandbox::OpError::Sys {
            op: "address",
            path: ip.to_string().into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let ns = pier_sandbox::Netns::Host;
        let dev = lo.clone();
        let op = if *add {
            pier_sandbox::NetOp::AddAddr { ns, dev, addr }
        } else {
            pier_sandbox::NetOp::DelAddr { ns, dev, addr }
        };
        match pier_sandbox::NetApplier::apply(&netlink, &op) {
            // Already there (a sync retried after a partial failure).
            Err(e) if *add && e.netlink_errno() == Some(EEXIST) => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use pier_proxy::{build, NodeInfo};

    fn lb(name: &str, ip: &str, local: bool) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.50", "externalTrafficPolicy": if local {"Local"} else {"Cluster"},
                     "healthCheckNodePort": if local { serde_json::json!(32000) } else { serde_json::Value::Null },
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}
        }))
        .expect("service")
    }

    fn slice(svc: &str, node: &str) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": format!("{svc}-x"), "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": node, "conditions": {"ready": true}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }))
        .expect("slice")
    }

    fn model_on(node: &str, services: &[Service], slices: &[EndpointSlice]) -> ProxyModel {
        build(services, slices, &NodeInfo { name: node.into(), node_ips: vec![] })
    }

    #[test]
    fn exactly_one_node_announces_each_address() {
        let subnet: Ipv4Cidr = "172.30.0.0/24".parse().expect("cidr");
        let nodes: BTreeSet<String> = ["pier-node-0", "pier-node-1", "pier-node-2"].map(String::from).into();
        let services: Vec<Service> =
            (0..20).map(|i| lb(&format!("s{i}"), &format!("172.30.0.{}", 200 + i), false)).collect();
        let mut owners: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        let mut per_node = Vec::new();
        for n in &nodes {
            let mine = announced(&model_on(n, &services, &[]), &nodes, subnet);
            per_node.push(mine.len());
            for ip in mine {
                *owners.entry(ip).or_default() += 1;
            }
        }
        assert_eq!(owners.len(), 20, "every address has an owner");
        assert!(owners.values().all(|n| *n == 1), "{owners:?}");
        assert!(per_node.iter().all(|n| *n > 0), "spread over the nodes: {per_node:?}");
    }

    #[test]
    fn local_policy_is_announced_where_the_endpoints_are_and_only_on_the_underlay() {
        let subnet: Ipv4Cidr = "172.30.0.0/24".parse().expect("cidr");
        let nodes: BTreeSet<String> = ["pier-node-0", "pier-node-1"].map(String::from).into();
        let services = [lb("local", "172.30.0.201", true), lb("elsewhere", "192.0.2.10", false)];
        let slices = [slice("local", "pier-node-1")];
        assert!(announced(&model_on("pier-node-0", &services, &slices), &nodes, subnet).is_empty());
        assert_eq!(
            announced(&model_on("pier-node-1", &services, &slices), &nodes, subnet),
            BTreeSet::from(["172.30.0.201".parse().expect("ip")])
        );
    }
}
