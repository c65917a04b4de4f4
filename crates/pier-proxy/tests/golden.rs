//! Golden tests: Services and EndpointSlices in, the exact nft script out, compared
//! with `tests/golden/<case>.nft` (`PIER_BLESS=1 cargo test -p pier-proxy` rewrites
//! them; review the diff). As root (CI runs as root), every script is also checked by
//! the real `nft` in a throwaway network namespace, and each partial sync is applied
//! on top of the full sync before it and compared with a fresh full sync of the new
//! state.

mod support;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pier_proxy::{
    build, render_full, render_partial, Existing, LoadBalancing, NodePortAddresses, ProxyModel, RenderConfig,
    Rendered, RulesetCounts, ServiceName, SyncKind,
};
use serde_json::json;
use support::{config, endpoint, golden, in_netns, nft_check, node, ready, service, slice};

/// Renders a full sync of `services` and `slices`, compares it with the golden file
/// and has nft check it.
fn full_case(name: &str, cfg: &RenderConfig, services: &[Service], slices: &[EndpointSlice]) -> ProxyModel {
    let model = build(services, slices, &node());
    let rendered = render_full(cfg, &model, &Existing::default());
    let script = rendered.transaction.to_nft_script();
    golden(name, &script);
    nft_check(&script);
    // The counts must describe what the script holds.
    let rules = script.lines().filter(|l| l.starts_with("add rule ")).count();
    assert_eq!(rendered.stats.rules_written, rules, "{name}: rule count");
    assert_eq!(RulesetCounts::default().after(&rendered.stats).rules, rules);
    model
}

/// A ClusterIP Service `default/<name>` on 10.96.<ip> port 80, unnamed.
fn cluster_ip(name: &str, ip: &str) -> serde_json::Value {
    json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80, "targetPort": 8080}]},
    })
}

fn two_endpoints(svc: &str) -> EndpointSlice {
    slice(
        "default",
        svc,
        &format!("{svc}-abc"),
        json!([{"port": 8080, "protocol": "TCP"}]),
        json!([ready("10.244.1.5", "node-a"), ready("10.244.2.7", "node-b")]),
    )
}

#[test]
fn clusterip_with_two_endpoints() {
    let model = full_case(
        "clusterip_two_endpoints",
        &config(),
        &[service(cluster_ip("kubia", "10.96.12.34"))],
        &[two_endpoints("kubia")],
    );
    assert!(model.skipped.is_empty(), "{:?}", model.skipped);
}

#[test]
fn multi_port_with_named_target_ports() {
    // The pods name their ports but use different numbers, so the controller puts
    // them in two slices; each endpoint's port comes from its slice.
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "kubia"},
        "spec": {"clusterIP": "10.96.12.34", "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "https", "port": 443, "targetPort": "https"},
        ]},
    }));
    let a = slice(
        "default",
        "kubia",
        "kubia-a",
        json!([{"name": "http", "port": 8080}, {"name": "https", "port": 8443}]),
        json!([ready("10.244.1.5", "node-a")]),
    );
    let b = slice(
        "default",
        "kubia",
        "kubia-b",
        json!([{"name": "http", "port": 9080}, {"name": "https", "port": 9443}]),
        json!([ready("10.244.2.7", "node-b")]),
    );
    full_case("multiport_named_target_port", &config(), &[svc], &[a, b]);
}

#[test]
fn no_ready_endpoints_are_rejected() {
    let not_ready = slice(
        "default",
        "kubia",
        "kubia-abc",
        json!([{"port": 8080}]),
        json!([endpoint("10.244.1.5", "node-a", false, false, false)]),
    );
    full_case("no_endpoints_reject", &config(), &[service(cluster_ip("kubia", "10.96.12.34"))], &[not_ready]);
}

#[test]
fn headless_external_name_and_ipv6_get_nothing() {
    let headless = service(json!({
        "metadata": {"namespace": "default", "name": "kubia-headless"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
    }));
    let external_name = service(json!({
        "metadata": {"namespace": "default", "name": "external"},
        "spec": {"type": "ExternalName", "externalName": "api.example.com"},
    }));
    let ipv6 = service(json!({
        "metadata": {"namespace": "default", "name": "v6"},
        "spec": {"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"], "ipFamilies": ["IPv6"], "ports": [{"port": 80}]},
    }));
    let model = full_case(
        "headless_externalname_nothing",
        &config(),
        &[headless, external_name, ipv6],
        &[two_endpoints("kubia-headless")],
    );
    assert!(model.services.is_empty());
    assert!(model.skipped.is_empty(), "{:?}", model.skipped);
}

#[test]
fn udp_and_sctp() {
    let dns = service(json!({
        "metadata": {"namespace": "kube-system", "name": "kube-dns"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]},
    }));
    let dns_slice = slice(
        "kube-system",
        "kube-dns",
        "kube-dns-x",
        json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        json!([ready("10.244.1.2", "node-a")]),
    );
    let sctp = service(json!({
        "metadata": {"namespace": "default", "name": "signal"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 9999, "protocol": "SCTP"}]},
    }));
    let sctp_slice = slice(
        "default",
        "signal",
        "signal-x",
        json!([{"port": 9999, "protocol": "SCTP"}]),
        json!([ready("10.244.2.9", "node-b")]),
    );
    full_case("udp_and_sctp", &config(), &[dns, sctp], &[dns_slice, sctp_slice]);
}

#[test]
fn client_ip_affinity() {
    let mut svc = cluster_ip("kubia", "10.96.12.34");
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    svc["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 600}});
    full_case("affinity_client_ip", &config(), &[service(svc)], &[two_endpoints("kubia")]);
}

fn nodeport_service() -> Service {
    service(json!({
        "metadata": {"namespace": "default", "name": "kubia-nodeport"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.20.1",
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30123}]},
    }))
}

#[test]
fn nodeport_on_local_addresses() {
    full_case("nodeport", &config(), &[nodeport_service()], &[two_endpoints("kubia-nodeport")]);
}

#[test]
fn nodeport_on_node_ips_only() {
    let cfg = RenderConfig { node_port_addresses: NodePortAddresses::NodeIps, ..config() };
    full_case("nodeport_node_ips", &cfg, &[nodeport_service()], &[two_endpoints("kubia-nodeport")]);
}

#[test]
fn loadbalancer_with_source_ranges() {
    // 172.30.0.0/24 holds the node's address, so the node may reach its own load
    // balancer: the LB IP is allowed as a source too.
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "kubia-lb"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.30.1",
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31000}],
                 "loadBalancerSourceRanges": ["203.0.113.0/24", " 172.30.0.0/24 "]},
        "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.200", "ipMode": "VIP"}]}},
    }));
    full_case("loadbalancer_source_ranges", &config(), &[svc], &[two_endpoints("kubia-lb")]);
}

#[test]
fn external_ips() {
    let mut svc = cluster_ip("kubia-ext", "10.96.40.1");
    svc["spec"]["externalIPs"] = json!(["172.30.0.100", "2001:db8::1"]);
    full_case("external_ips", &config(), &[service(svc)], &[two_endpoints("kubia-ext")]);
}

#[test]
fn external_traffic_policy_local_with_local_endpoint() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "kubia-local"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.50.1", "externalTrafficPolicy": "Local",
                 "healthCheckNodePort": 32000,
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31001}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.201"}]}},
    }));
    let model = full_case("etp_local_with_local", &config(), &[svc], &[two_endpoints("kubia-local")]);
    let checks = model.health_checks();
    assert_eq!(checks.len(), 1);
    assert_eq!((checks[0].node_port, checks[0].local_endpoints), (32000, 1));
}

#[test]
fn external_traffic_policy_local_without_local_endpoint() {
    let svc = service(json!({
        "metadata": {"namespace": "default", "name": "kubia-local"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.50.2", "externalTrafficPolicy": "Local",
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31002}]},
    }));
    let remote_only = slice(
        "default",
        "kubia-local",
        "kubia-local-x",
        json!([{"port": 8080}]),
        json!([ready("10.244.2.7", "node-b")]),
    );
    full_case("etp_local_no_local", &config(), &[svc], &[remote_only]);
}

#[test]
fn internal_traffic_policy_local() {
    let mut with_local = cluster_ip("itp-local", "10.96.60.1");
    with_local["spec"]["internalTrafficPolicy"] = json!("Local");
    let mut without_local = cluster_ip("itp-remote", "10.96.60.2");
    without_local["spec"]["internalTrafficPolicy"] = json!("Local");
    let remote_only = slice(
        "default",
        "itp-remote",
        "itp-remote-x",
        json!([{"port": 8080}]),
        json!([ready("10.244.2.7", "node-b")]),
    );
    full_case(
        "itp_local",
        &config(),
        &[service(with_local), service(without_local)],
        &[two_endpoints("itp-local"), remote_only],
    );
}

#[test]
fn terminating_endpoints_serve_when_none_is_ready() {
    let draining = slice(
        "default",
        "kubia",
        "kubia-abc",
        json!([{"port": 8080}]),
        json!([
            endpoint("10.244.1.5", "node-a", false, true, true),
            endpoint("10.244.2.7", "node-b", false, false, true),
        ]),
    );
    full_case("terminating_fallback", &config(), &[service(cluster_ip("kubia", "10.96.12.34"))], &[draining]);
}

#[test]
fn conflicting_destinations_keep_the_first_service() {
    // `b-ext` claims a-svc's ClusterIP and port as an external IP: nft cannot hold
    // both elements, so a-svc keeps it and the conflict is reported.
    let a = service(cluster_ip("a-svc", "10.96.70.1"));
    let mut b = cluster_ip("b-ext", "10.96.70.2");
    b["spec"]["externalIPs"] = json!(["10.96.70.1"]);
    let model = build([&a, &service(b.clone())], [two_endpoints("a-svc"), two_endpoints("b-ext")], &node());
    let rendered = render_full(&config(), &model, &Existing::default());
    golden("conflict_first_wins", &rendered.transaction.to_nft_script());
    nft_check(&rendered.transaction.to_nft_script());
    assert_eq!(rendered.stats.conflicts.len(), 1);
    assert_eq!(rendered.stats.conflicts[0].owner.name, "a-svc");

    // When a-svc goes, b-ext's external IP takes over, although b-ext is unchanged.
    let mut next = model.clone();
    next.remove_service(&ServiceName { namespace: "default".into(), name: "a-svc".into() });
    let partial = render_partial(&config(), &model, &next);
    assert!(partial.stats.conflicts.is_empty());
    assert_partial_applies(&config(), &model, &next, &partial);
}

// Partial syncs. The world has a changing Service (`web`, with ClientIP affinity,
// so affinity sets come and go too) and one that never changes (`db`).

fn web(timeout: u32) -> Service {
    service(json!({
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.80.1", "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
    }))
}

fn web_slice(ips: &[&str]) -> EndpointSlice {
    let eps: Vec<_> = ips.iter().map(|ip| ready(ip, "node-a")).collect();
    slice("shop", "web", "web-x", json!([{"name": "http", "port": 8080}]), json!(eps))
}

fn db() -> (Service, EndpointSlice) {
    let svc = service(json!({
        "metadata": {"namespace": "shop", "name": "db"},
        "spec": {"clusterIP": "10.96.80.2", "ports": [{"port": 5432}]},
    }));
    let eps = slice("shop", "db", "db-x", json!([{"port": 5432}]), json!([ready("10.244.3.3", "node-b")]));
    (svc, eps)
}

fn world(web_svc: Option<Service>, web_ips: &[&str]) -> ProxyModel {
    let (db_svc, db_eps) = db();
    let services: Vec<Service> = web_svc.into_iter().chain([db_svc]).collect();
    build(&services, [web_slice(web_ips), db_eps], &node())
}

/// `prev` after `web` changed (or went away), as the proxy derives its next model:
/// Services keep their slots in the endpoint maps.
fn evolve(prev: &ProxyModel, web_svc: Option<Service>, web_ips: &[&str]) -> ProxyModel {
    let mut next = prev.clone();
    match web_svc {
        Some(svc) => next.upsert_service(&svc, [web_slice(web_ips)]),
        None => next.remove_service(&ServiceName { namespace: "shop".into(), name: "web".into() }),
    }
    next
}

/// `web` without session affinity: its endpoints live in the shared endpoint maps.
fn plain_web() -> Service {
    service(json!({
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.80.1",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
    }))
}

/// Renders the partial sync, compares it with its golden file, checks that the
/// unchanged `db` is not touched, and (as root) applies it.
fn partial_case(name: &str, prev: &ProxyModel, next: &ProxyModel) {
    let rendered = render_partial(&config(), prev, next);
    assert_eq!(rendered.stats.kind, SyncKind::Partial);
    let script = partial_text(&rendered);
    golden(name, &script);
    assert!(!script.contains("shop/db"), "{name}: the unchanged Service was touched:\n{script}");
    assert_partial_applies(&config(), prev, next, &rendered);

    // The counts after the partial sync are those of a full sync of `next`.
    let full_prev = render_full(&config(), prev, &Existing::default());
    let full_next = render_full(&config(), next, &Existing::default());
    let after = RulesetCounts::default().after(&full_prev.stats).after(&rendered.stats);
    assert_eq!(after, RulesetCounts::default().after(&full_next.stats), "{name}: counts");
}

/// As root: `full(prev)` then `partial` in a fresh namespace leaves exactly the
/// ruleset a fresh `full(next)` makes.
fn assert_partial_applies(cfg: &RenderConfig, prev: &ProxyModel, next: &ProxyModel, partial: &Rendered) {
    let full_prev = render_full(cfg, prev, &Existing::default()).transaction.to_nft_script();
    let full_next = render_full(cfg, next, &Existing::default()).transaction.to_nft_script();
    let (main, cleanup) = (partial.transaction.to_nft_script(), partial.cleanup.to_nft_script());
    let files = [
        ("full.nft", full_prev.as_str()),
        ("partial.nft", main.as_str()),
        ("cleanup.nft", cleanup.as_str()),
        ("next.nft", full_next.as_str()),
    ];
    // The partial sync and its cleanup are two transactions, in this order.
    let Some(applied) = in_netns(
        &files,
        "nft -f full.nft && nft -f partial.nft && nft -f cleanup.nft && nft -j list ruleset",
    ) else {
        return;
    };
    let fresh = in_netns(&files, "nft -f next.nft && nft -j list ruleset").unwrap_or_default();
    assert_eq!(
        support::canonical_ruleset(&applied),
        support::canonical_ruleset(&fresh),
        "full(prev) + partial + cleanup differs from full(next)"
    );
}

/// A partial sync as its golden file shows it: the transaction, then the cleanup.
fn partial_text(r: &Rendered) -> String {
    format!(
        "{}# cleanup, a transaction of its own:\n{}",
        r.transaction.to_nft_script(),
        r.cleanup.to_nft_script()
    )
}

#[test]
fn partial_sync_endpoint_added() {
    let prev = world(Some(web(600)), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, Some(web(600)), &["10.244.1.5", "10.244.1.6", "10.244.1.7"]);
    partial_case("partial_endpoint_added", &prev, &next);
}

#[test]
fn partial_sync_endpoint_removed() {
    let prev = world(Some(web(600)), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, Some(web(600)), &["10.244.1.5"]);
    partial_case("partial_endpoint_removed", &prev, &next);
}

#[test]
fn partial_sync_last_endpoint_removed() {
    // No endpoint left: chains go, the reject elements come.
    let prev = world(Some(web(600)), &["10.244.1.5"]);
    let next = evolve(&prev, Some(web(600)), &[]);
    partial_case("partial_last_endpoint_removed", &prev, &next);
}

#[test]
fn partial_sync_service_removed() {
    let prev = world(Some(web(600)), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, None, &["10.244.1.5", "10.244.1.6"]);
    partial_case("partial_service_removed", &prev, &next);
}

#[test]
fn partial_sync_service_added() {
    let prev = world(None, &[]);
    let next = evolve(&prev, Some(web(600)), &["10.244.1.5"]);
    partial_case("partial_service_added", &prev, &next);
}

#[test]
fn partial_sync_affinity_timeout_changed() {
    // The sets are re-created with the new timeout; the chains using them are
    // flushed first and refilled after, although their rules are the same.
    let prev = world(Some(web(600)), &["10.244.1.5"]);
    let next = evolve(&prev, Some(web(60)), &["10.244.1.5"]);
    partial_case("partial_affinity_timeout_changed", &prev, &next);
}

#[test]
fn partial_sync_plain_endpoint_added() {
    // Elements only: one more number in the map, and the pick's modulus.
    let prev = world(Some(plain_web()), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, Some(plain_web()), &["10.244.1.5", "10.244.1.6", "10.244.1.7"]);
    partial_case("partial_plain_endpoint_added", &prev, &next);
}

#[test]
fn partial_sync_plain_endpoint_replaced() {
    // A pod replaced by another: the endpoints go into the slot's other key range and
    // the pick switches to it; the old elements are deleted by the cleanup, so the
    // transaction that matters deletes no element (the kernel's slow part).
    let prev = world(Some(plain_web()), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, Some(plain_web()), &["10.244.1.5", "10.244.1.9"]);
    let rendered = render_partial(&config(), &prev, &next);
    let main = rendered.transaction.to_nft_script();
    assert!(!main.contains("delete element"), "{main}");
    assert_eq!(rendered.stats.rules_written, 1, "{main}");
    let cleanup = rendered.cleanup.to_nft_script();
    assert_eq!(cleanup.matches("delete element ip pier-proxy endpoints-tcp-").count(), 2, "{cleanup}");
    partial_case("partial_plain_endpoint_replaced", &prev, &next);
}

#[test]
fn partial_sync_plain_service_removed_keeps_shared_hairpin() {
    // web and db share the endpoint 10.244.3.3, a pod on this node: removing web
    // must keep its hairpin element, which db still needs.
    let mut prev = world(Some(plain_web()), &["10.244.1.5", "10.244.3.3"]);
    let (db_svc, _) = db();
    let db_here =
        slice("shop", "db", "db-x", json!([{"port": 5432}]), json!([ready("10.244.3.3", "node-a")]));
    prev.upsert_service(&db_svc, [db_here]);
    let next = evolve(&prev, None, &[]);
    let script = partial_text(&render_partial(&config(), &prev, &next));
    assert!(
        script.contains("delete element ip pier-proxy hairpin-endpoints { 10.244.1.5 . 10.244.1.5 }"),
        "{script}"
    );
    assert!(!script.contains("10.244.3.3 . 10.244.3.3"), "{script}");
    partial_case("partial_plain_service_removed", &prev, &next);
}

#[test]
fn partial_sync_plain_last_endpoint_removed_and_back() {
    // db has no endpoint either: the group's map goes out of use and is deleted,
    // then comes back with the Service's first endpoint.
    let empty_db = |model: &mut ProxyModel| {
        let (db_svc, _) = db();
        model.upsert_service(&db_svc, Vec::<EndpointSlice>::new());
    };
    let mut prev = world(Some(plain_web()), &["10.244.1.5"]);
    empty_db(&mut prev);
    let next = evolve(&prev, Some(plain_web()), &[]);
    let gone_r = render_partial(&config(), &prev, &next);
    let gone = partial_text(&gone_r);
    assert!(gone.contains("delete map ip pier-proxy endpoints-tcp-0"), "{gone}");
    assert_partial_applies(&config(), &prev, &next, &gone_r);
    let back_r = render_partial(&config(), &next, &prev);
    let back = partial_text(&back_r);
    assert!(back.contains("add map ip pier-proxy endpoints-tcp-0"), "{back}");
    assert_partial_applies(&config(), &next, &prev, &back_r);
}

#[test]
fn slots_are_kept_and_reused() {
    let prev = world(Some(plain_web()), &["10.244.1.5"]);
    let slot_of = |model: &ProxyModel, name: &str| {
        model.service_ports().find(|p| p.name.name == name).map(|p| p.slot).expect("port")
    };
    let (web_slot, db_slot) = (slot_of(&prev, "web"), slot_of(&prev, "db"));
    assert_ne!(web_slot, db_slot);
    let without = evolve(&prev, None, &[]);
    assert_eq!(slot_of(&without, "db"), db_slot, "db keeps its slot");
    let mut other = plain_web();
    other.metadata.name = Some("api".into());
    let mut again = without.clone();
    again.upsert_service(&other, Vec::<EndpointSlice>::new());
    assert_eq!(slot_of(&again, "api"), web_slot, "a freed slot is reused");
}

#[test]
fn partial_sync_without_change_is_empty() {
    let prev = world(Some(web(600)), &["10.244.1.5"]);
    let next = world(Some(web(600)), &["10.244.1.5"]);
    let rendered = render_partial(&config(), &prev, &next);
    assert!(rendered.transaction.is_empty(), "{}", rendered.transaction.to_nft_script());
}

#[test]
fn full_sync_over_an_older_ruleset() {
    // A restart: the table holds the previous run's ruleset, including chains and
    // affinity sets of a Service deleted meanwhile. The new full sync, told what
    // exists (as the applier lists it), leaves exactly the new ruleset.
    let prev = world(Some(web(600)), &["10.244.1.5", "10.244.1.6"]);
    let next = evolve(&prev, None, &[]);
    let full_prev = render_full(&config(), &prev, &Existing::default()).transaction.to_nft_script();
    // Applying the same full sync twice must work too (restart with no change).
    let Some(listing) = in_netns(
        &[("full.nft", full_prev.as_str())],
        "nft -f full.nft && nft -f full.nft && nft -t list table ip pier-proxy",
    ) else {
        return;
    };
    let existing = Existing::from_nft_listing(&listing);
    let Existing::Listed { chains, sets } = &existing else { panic!("a listing is Listed") };
    assert!(chains.iter().any(|c| c.starts_with("endpoint-")), "{listing}");
    assert!(sets.iter().any(|s| s.starts_with("affinity-")), "{listing}");
    let over = render_full(&config(), &next, &existing);
    assert_eq!(over.stats.sets_deleted, 2);
    let over_script = over.transaction.to_nft_script();
    golden("full_over_leftovers", &over_script);
    assert_full_over_leaves_fresh(&full_prev, &over_script, &next);
}

/// As root: `full_prev` then `over` leave exactly what a full sync of `next` into an
/// empty table leaves.
fn assert_full_over_leaves_fresh(full_prev: &str, over: &str, next: &ProxyModel) {
    let fresh = render_full(&config(), next, &Existing::default()).transaction.to_nft_script();
    let files = [("full.nft", full_prev), ("over.nft", over), ("fresh.nft", fresh.as_str())];
    let applied =
        in_netns(&files, "nft -f full.nft && nft -f over.nft && nft -j list ruleset").unwrap_or_default();
    let clean = in_netns(&files, "nft -f fresh.nft && nft -j list ruleset").unwrap_or_default();
    assert_eq!(support::canonical_ruleset(&applied), support::canonical_ruleset(&clean));
}

#[test]
fn full_sync_over_an_older_ruleset_deletes_unused_endpoint_maps() {
    let prev = world(Some(plain_web()), &["10.244.1.5"]);
    let mut next = evolve(&prev, None, &[]);
    next.remove_service(&ServiceName { namespace: "shop".into(), name: "db".into() });
    let full_prev = render_full(&config(), &prev, &Existing::default()).transaction.to_nft_script();
    let Some(listing) =
        in_netns(&[("full.nft", full_prev.as_str())], "nft -f full.nft && nft -t list table ip pier-proxy")
    else {
        return;
    };
    let existing = Existing::from_nft_listing(&listing);
    let over = render_full(&config(), &next, &existing);
    let over_script = over.transaction.to_nft_script();
    assert!(over_script.contains("delete map ip pier-proxy endpoints-tcp-0"), "{over_script}");
    assert_full_over_leaves_fresh(&full_prev, &over_script, &next);
}

#[test]
fn full_sync_keeps_affinity_entries() {
    // A restart must not forget which client sticks to which endpoint: the full sync
    // re-adds the affinity set, which keeps its elements.
    let model = world(Some(web(600)), &["10.244.1.5"]);
    let full = render_full(&config(), &model, &Existing::default()).transaction.to_nft_script();
    let set = full
        .lines()
        .find_map(|l| l.strip_prefix("add set ip pier-proxy affinity-"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|suffix| format!("affinity-{suffix}"))
        .expect("an affinity set");
    let script = format!(
        "nft -f full.nft && nft add element ip pier-proxy {set} '{{ 10.0.0.9 }}' \
         && nft -f full.nft && nft list set ip pier-proxy {set}"
    );
    if let Some(listing) = in_netns(&[("full.nft", full.as_str())], &script) {
        assert!(listing.contains("10.0.0.9"), "{listing}");
    }
}

#[test]
fn rules_load_balancing_with_affinity() {
    let mut svc = cluster_ip("kubia", "10.96.12.34");
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    let three = slice(
        "default",
        "kubia",
        "kubia-abc",
        json!([{"port": 8080}]),
        json!([ready("10.244.1.5", "node-a"), ready("10.244.1.6", "node-a"), ready("10.244.2.7", "node-b")]),
    );
    let cfg = RenderConfig { load_balancing: LoadBalancing::Rules, ..config() };
    full_case("load_balancing_rules", &cfg, &[service(svc)], &[three]);
}

#[test]
fn full_sync_of_a_fresh_table_skips_the_flushes() {
    // Known empty: per-Service chains are created without a flush (much cheaper for
    // the kernel in a large transaction), and the result is the same ruleset.
    let model = world(Some(web(600)), &["10.244.1.5", "10.244.1.6"]);
    let fresh = render_full(&config(), &model, &Existing::empty()).transaction.to_nft_script();
    let unknown = render_full(&config(), &model, &Existing::Unknown).transaction.to_nft_script();
    assert!(!fresh.contains("flush chain ip pier-proxy endpoint-"), "{fresh}");
    assert!(unknown.contains("flush chain ip pier-proxy endpoint-"), "{unknown}");
    let files = [("fresh.nft", fresh.as_str()), ("unknown.nft", unknown.as_str())];
    let Some(a) = in_netns(&files, "nft -f fresh.nft && nft -j list ruleset") else {
        return;
    };
    let b = in_netns(&files, "nft -f unknown.nft && nft -j list ruleset").unwrap_or_default();
    assert_eq!(support::canonical_ruleset(&a), support::canonical_ruleset(&b));
}

#[test]
fn partial_sync_node_address_changed() {
    // With NodePorts on the node's addresses only, a new node address replaces the
    // nodeport-ips element; the Services' chains stay as they are.
    let cfg = RenderConfig { node_port_addresses: NodePortAddresses::NodeIps, ..config() };
    let prev = world(Some(web(600)), &["10.244.1.5"]);
    let mut moved = node();
    moved.node_ips = vec!["172.30.0.11".parse().expect("ip"), "127.0.0.1".parse().expect("ip")];
    let mut next = prev.clone();
    next.node = moved;
    let rendered = render_partial(&cfg, &prev, &next);
    let script = partial_text(&rendered);
    golden("partial_node_address_changed", &script);
    assert_partial_applies(&cfg, &prev, &next, &rendered);
}
