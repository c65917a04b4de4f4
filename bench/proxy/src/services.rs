//! The Services and EndpointSlices the benchmark programs, built as the API would
//! return them, and the syncs (the real renderer, the real `nft`) that program them.
//!
//! One Service is real: `bench/web`, ClusterIP 10.251.0.10 port 80 -> the server pod
//! 10.250.0.20:8080. The others (`fill/svc-NNNNN`) only make the ruleset as large as
//! a big cluster's: ClusterIPs from 10.251.1.1 up, each with `endpoints` ready
//! endpoints at addresses in 10.250.128.0/17, which no link in any namespace has.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pier_nft::{Family, NftCli, TableName};
use pier_proxy::{build, render_full, Existing, NodeInfo, ProxyModel, RenderConfig};
use serde::Serialize;
use serde_json::json;

use crate::netns::{CLUSTER_CIDR, CLUSTER_IP, GATEWAY, SERVER_IP, SERVER_PORT, SERVICE_CIDR, SERVICE_PORT};

/// The node every model is built for (the server pod is on it).
pub const NODE_NAME: &str = "pbp-node";
/// Where the fillers' endpoints run.
const OTHER_NODE: &str = "pbp-other-node";
/// The most Services the address plan has room for.
pub const MAX_SERVICES: usize = 65_000;
/// Fake endpoint addresses: 10.250.128.1 up to this many.
const FAKE_ENDPOINT_SPAN: u32 = 32_000;

/// Every Service and EndpointSlice of one node's cluster, in the same order.
pub struct Objects {
    /// `bench/web` first, then the fillers.
    pub services: Vec<Service>,
    /// One slice per Service, in the order of `services`.
    pub slices: Vec<EndpointSlice>,
    /// Endpoints per filler Service.
    pub endpoints: usize,
}

/// The node's identity for the renderer.
pub fn node_info() -> NodeInfo {
    NodeInfo { name: NODE_NAME.to_string(), node_ips: vec![GATEWAY] }
}

/// The renderer's settings, as `pier` passes them (cluster and service CIDR, the
/// default table, mark and NodePort addresses). Without bridge netfilter the replies of
/// a server pod to a client pod are bridged past conntrack and never un-DNATed, so
/// every ClusterIP connection is masqueraded instead (`masquerade_all`).
pub fn render_config(bridge_nf: bool) -> anyhow::Result<RenderConfig> {
    Ok(RenderConfig {
        cluster_cidr: Some(CLUSTER_CIDR.parse().context("cluster CIDR")?),
        service_cidrs: vec![SERVICE_CIDR.parse().context("service CIDR")?],
        masquerade_all: !bridge_nf,
        ..RenderConfig::default()
    })
}

/// The proxy's table name, for `nft list` and `nft delete`.
pub fn table(cfg: &RenderConfig) -> anyhow::Result<TableName> {
    TableName::new(cfg.table.clone()).context("table name")
}

fn service(namespace: &str, name: &str, cluster_ip: Ipv4Addr) -> anyhow::Result<Service> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "ports": [{"name": "http", "protocol": "TCP", "port": SERVICE_PORT, "targetPort": SERVER_PORT}],
            "sessionAffinity": "None",
        }
    }))
    .with_context(|| format!("building Service {namespace}/{name}"))
}

fn slice(
    namespace: &str,
    service: &str,
    addresses: &[Ipv4Addr],
    node: &str,
) -> anyhow::Result<EndpointSlice> {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|a| {
            json!({
                "addresses": [a.to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": node,
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": format!("{service}-abcde"),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": SERVER_PORT}],
        "endpoints": endpoints,
    }))
    .with_context(|| format!("building the EndpointSlice of {namespace}/{service}"))
}

/// The `k`-th fake endpoint address (any `k`), in 10.250.128.0/17.
pub fn fake_endpoint(k: u64) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(10, 250, 128, 0));
    let offset = u32::try_from(k % u64::from(FAKE_ENDPOINT_SPAN)).unwrap_or(0);
    Ipv4Addr::from(base + 1 + offset)
}

/// The fake endpoints of filler `i`: distinct as long as `endpoints` < 32,000.
fn filler_endpoints(i: usize, endpoints: usize) -> Vec<Ipv4Addr> {
    (0..endpoints).map(|j| fake_endpoint((i * endpoints + j) as u64)).collect()
}

/// The filler's name.
pub fn filler_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// `bench/web` and `total - 1` fillers with `endpoints` endpoints each.
pub fn objects(total: usize, endpoints: usize) -> anyhow::Result<Objects> {
    if total == 0 || total > MAX_SERVICES {
        bail!("the number of Services must be 1 to {MAX_SERVICES}, not {total}");
    }
    let mut services = Vec::with_capacity(total);
    let mut slices = Vec::with_capacity(total);
    services.push(service("bench", "web", CLUSTER_IP)?);
    slices.push(slice("bench", "web", &[SERVER_IP], NODE_NAME)?);
    let first = u32::from(Ipv4Addr::new(10, 251, 1, 0));
    for i in 1..total {
        let name = filler_name(i);
        let ip = Ipv4Addr::from(first + u32::try_from(i).context("service index")?);
        services.push(service("fill", &name, ip)?);
        // On other nodes, as in a cluster of this size (a node runs at most ~110
        // pods): only this node's pods get hairpin elements.
        slices.push(slice("fill", &name, &filler_endpoints(i, endpoints), OTHER_NODE)?);
    }
    Ok(Objects { services, slices, endpoints })
}

impl Objects {
    /// Replaces endpoint `j` of filler `i` by address `to`: the next model sees one
    /// endpoint gone and one new.
    pub fn move_endpoint(&mut self, i: usize, j: usize, to: Ipv4Addr) -> anyhow::Result<()> {
        let ep = self
            .slices
            .get_mut(i)
            .and_then(|s| s.endpoints.as_mut())
            .and_then(|e| e.get_mut(j))
            .with_context(|| format!("no endpoint {j} in slice {i}"))?;
        ep.addresses = vec![to.to_string()];
        Ok(())
    }

    /// Removes endpoint `j` of filler `i` (the Service scales down).
    pub fn remove_endpoint(&mut self, i: usize, j: usize) -> anyhow::Result<()> {
        let eps = self.slices.get_mut(i).and_then(|s| s.endpoints.as_mut()).context("no endpoints")?;
        if j >= eps.len() || eps.len() < 2 {
            bail!("filler {i} keeps at least one endpoint (it has {}; asked to remove {j})", eps.len());
        }
        eps.remove(j);
        Ok(())
    }

    /// Adds an endpoint with address `ip` to filler `i` (the Service scales up).
    pub fn add_endpoint(&mut self, i: usize, ip: Ipv4Addr) -> anyhow::Result<()> {
        let eps = self.slices.get_mut(i).and_then(|s| s.endpoints.as_mut()).context("no endpoints")?;
        let mut ep = eps.first().cloned().context("no endpoint to copy")?;
        ep.addresses = vec![ip.to_string()];
        eps.push(ep);
        Ok(())
    }

    /// How many endpoints filler `i` has.
    pub fn endpoint_count(&self, i: usize) -> usize {
        self.slices.get(i).and_then(|s| s.endpoints.as_ref()).map_or(0, Vec::len)
    }

    /// Whether filler `i` already has address `ip`.
    pub fn has_endpoint(&self, i: usize, ip: Ipv4Addr) -> bool {
        let ip = ip.to_string();
        self.slices.get(i).is_some_and(|s| s.endpoints.iter().flatten().any(|e| e.addresses.contains(&ip)))
    }
}

/// Where the time of one full sync went, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct FullSync {
    /// `nft list table` and `Existing::from_nft_listing` (a restarted proxy's sync; 0
    /// into an empty table).
    pub list_ms: f64,
    /// `pier_proxy::build` of all Services and slices.
    pub build_ms: f64,
    /// `render_full` and `to_nft_script`.
    pub render_ms: f64,
    /// `nft -f -` in the node namespace.
    pub apply_ms: f64,
    /// All of it: what the proxier's `kubeproxy_sync_full_proxy_rules_duration_seconds`
    /// measures.
    pub total_ms: f64,
    /// The script's size.
    pub script_bytes: usize,
    /// Rules written.
    pub rules: usize,
    /// Map and set elements written.
    pub elements: usize,
    /// Chains written.
    pub chains: usize,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// One full sync of `objects` as the proxier does it: (optionally) list the table, build
/// the model, render, apply. Returns the model it programmed.
pub fn full_sync(
    nft: &NftCli,
    cfg: &RenderConfig,
    objects: &Objects,
    list_first: bool,
) -> anyhow::Result<(ProxyModel, FullSync)> {
    let started = Instant::now();
    let existing = if list_first {
        match nft.list_table_terse_blocking(Family::Ip, &table(cfg)?) {
            Ok(listing) => Existing::from_nft_listing(&listing),
            Err(pier_nft::NftError::NoSuchTable { .. }) => Existing::default(),
            Err(e) => return Err(e).context("listing the proxy's table"),
        }
    } else {
        Existing::default()
    };
    let list_ms = ms_since(started);
    let t = Instant::now();
    let model = build(&objects.services, &objects.slices, &node_info());
    let build_ms = ms_since(t);
    if let Some(s) = model.skipped.first() {
        bail!("the renderer skipped part of {}: {}", s.service, s.reason);
    }
    let t = Instant::now();
    let rendered = render_full(cfg, &model, &existing);
    let script = rendered.transaction.to_nft_script();
    let render_ms = ms_since(t);
    if let Some(c) = rendered.stats.conflicts.first() {
        bail!("two Services claim {:?}", c.destination);
    }
    let t = Instant::now();
    nft.apply_blocking(&script).context("applying the full sync")?;
    let apply_ms = ms_since(t);
    let total_ms = ms_since(started);
    let sync = FullSync {
        list_ms,
        build_ms,
        render_ms,
        apply_ms,
        total_ms,
        script_bytes: script.len(),
        rules: rendered.stats.rules_written,
        elements: rendered.stats.elements_added,
        chains: rendered.stats.chains_written,
    };
    Ok((model, sync))
}
