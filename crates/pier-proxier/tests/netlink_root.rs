//! As root: partial syncs applied over netlink leave exactly the ruleset that a
//! fresh full sync of the same model makes, step by step through a Service's
//! endpoints coming and going. Fails rather than skips without root (CI runs as
//! root).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pier_nft::{canonical_ruleset, Family, NftApplier, NftCli, TableName};
use pier_proxy::{build, render_full, render_partial, Existing, NodeInfo, RenderConfig, ServiceName};
use pier_sandbox::netlink::{create_netns, delete_netns};
use pier_sandbox::NetnsName;
use serde_json::json;

/// Deletes the test's namespaces on drop, also when an assertion fails.
struct Namespaces(Vec<NetnsName>);

impl Namespaces {
    fn add(&mut self, what: &str) -> NftCli {
        let name = NetnsName::new(format!("pier-pn{}-{what}", std::process::id())).expect("netns name");
        create_netns(&name).unwrap_or_else(|e| panic!("create netns {name}: {e}"));
        self.0.push(name.clone());
        NftCli::in_netns(name)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            if let Err(e) = delete_netns(name) {
                eprintln!("cleanup: delete netns {name}: {e}");
            }
        }
    }
}

fn node() -> NodeInfo {
    NodeInfo { name: "node-a".into(), node_ips: vec!["172.30.0.10".parse().expect("ip")] }
}

fn config() -> RenderConfig {
    RenderConfig {
        cluster_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..RenderConfig::default()
    }
}

/// A NodePort Service with a TCP and a UDP port (two endpoint maps).
fn web() -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.80.1",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                           {"name": "dns", "protocol": "UDP", "port": 53}]},
    }))
    .expect("service")
}

fn web_slice(ips: &[&str]) -> EndpointSlice {
    let eps: Vec<_> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node-a"}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353}],
        "endpoints": eps,
    }))
    .expect("slice")
}

fn ruleset(nft: &NftCli) -> Vec<String> {
    canonical_ruleset(&nft.list_ruleset_json_blocking().expect("nft -j list ruleset")).expect("json")
}

#[tokio::test]
async fn partial_syncs_over_netlink_match_full_syncs() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root; it fails rather than skips");
    let mut namespaces = Namespaces(Vec::new());
    let incremental = namespaces.add("inc");
    let fresh = namespaces.add("fresh");
    let table = TableName::new("pier-proxy").expect("table");
    let cfg = config();

    let mut model = build([web()], [web_slice(&["10.244.1.5", "10.244.1.6"])], &node());
    let first = render_full(&cfg, &model, &Existing::empty()).transaction.to_nft_script();
    incremental.apply(&first).await.expect("first full sync");

    let steps: [(&str, Option<&[&str]>); 5] = [
        ("an endpoint added", Some(&["10.244.1.5", "10.244.1.6", "10.244.1.7"])),
        ("an endpoint replaced", Some(&["10.244.1.5", "10.244.1.9", "10.244.1.7"])),
        ("endpoints removed", Some(&["10.244.1.9"])),
        ("the last endpoint removed", Some(&[])),
        ("the Service deleted", None),
    ];
    for (what, ips) in steps {
        let mut next = model.clone();
        match ips {
            Some(ips) => next.upsert_service(&web(), [web_slice(ips)]),
            None => next.remove_service(&ServiceName { namespace: "shop".into(), name: "web".into() }),
        }
        let partial = render_partial(&cfg, &model, &next);
        let Some(msgs) = pier_proxier::netlink::batch(&partial.transaction) else {
            panic!("{what}: no netlink batch for\n{}", partial.transaction.to_nft_script());
        };
        let applied = incremental.apply_batch(&table, msgs).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(applied, "{what}: NftCli applies batches");
        // The cleanup goes over netlink too, as a second transaction.
        let Some(cleanup) = pier_proxier::netlink::batch(&partial.cleanup) else {
            panic!("{what}: no netlink batch for the cleanup\n{}", partial.cleanup.to_nft_script());
        };
        incremental.apply_batch(&table, cleanup).await.unwrap_or_else(|e| panic!("{what}, cleanup: {e}"));

        fresh.delete_table(Family::Ip, &table).await.expect("reset");
        let full = render_full(&cfg, &next, &Existing::empty()).transaction.to_nft_script();
        fresh.apply(&full).await.expect("fresh full sync");
        let after = ruleset(&incremental);
        assert_eq!(after, ruleset(&fresh), "after {what}");
        for ip in ips.unwrap_or_default() {
            assert!(after.iter().any(|o| o.contains(ip)), "after {what}: {ip} is programmed: {after:#?}");
        }
        model = next;
    }

    // A refused batch changes nothing and names the operation.
    let before = ruleset(&incremental);
    let bad = vec![
        pier_nft::nftnl::NftMsg::FlushChain { name: "masquerading".into() },
        pier_nft::nftnl::NftMsg::DeleteChain { name: "no-such-chain".into() },
    ];
    let err = incremental.apply_batch(&table, bad).await.expect_err("a missing chain");
    assert!(err.to_string().contains("nf_tables netlink: operation 2 of 2"), "{err}");
    assert_eq!(ruleset(&incremental), before, "nothing of a refused batch is applied");
}
