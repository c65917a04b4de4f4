//! The node's service proxy loop: watches Services and EndpointSlices and keeps the
//! node's nftables table equal to what they say, as kube-proxy's nftables mode does.
//!
//! - One full sync when both watches have listed (it replaces whatever the table held,
//!   so a restarted proxy picks up where the last one stopped; established connections
//!   keep their conntrack state and never notice).
//! - Then one partial sync per burst of changes: only the Services that changed are
//!   rebuilt ([`pier_proxy::render_partial`]), applied as one atomic `nft -f`
//!   transaction. No minimum sync period: a change is programmed as soon as the
//!   previous sync has finished.
//! - A failed sync is counted, and retried as a full sync after a back-off.
//! - Removed UDP endpoints lose their conntrack entries (else a client keeps sending
//!   into the void, which for DNS means a resolver that never recovers).
//! - `healthCheckNodePort`s ([`health`]) and Prometheus metrics ([`metrics`]).

#![forbid(unsafe_code)]

pub mod announce;
pub mod health;
pub mod metrics;
pub mod netlink;
mod stale;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use futures::StreamExt;
use hyper::StatusCode;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use pier_nft::{Conntrack, Family, NftApplier, NftError, TableName};
use pier_proxy::{
    build, render_full, render_partial, Existing, Ipv4Cidr, NodeInfo, ProxyModel, RenderConfig, Rendered,
    RulesetCounts, ServiceName, SyncKind, Transaction,
};
use pier_status_http as http;
use tokio::sync::mpsc;

pub use metrics::Metrics;

/// The annotation on EndpointSlices with the time of the change that last touched them
/// (a pod turning ready, a service created): the start of network programming latency.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// kube-proxy's metrics port.
pub const METRICS_PORT: u16 = 10249;
/// kube-proxy's health port.
pub const HEALTHZ_PORT: u16 = 10256;

/// How the proxy runs on one node.
#[derive(Debug, Clone)]
pub struct ProxierConfig {
    /// The node: its name decides which endpoints are local, its addresses where
    /// NodePorts answer.
    pub node: NodeInfo,
    /// Table name, masquerade mark, cluster and service CIDRs.
    pub render: RenderConfig,
    /// Where the metrics, health and health check node port endpoints listen.
    pub bind: Ipv4Addr,
    /// The metrics port (0: none).
    pub metrics_port: u16,
    /// The proxy's own health port (0: none).
    pub healthz_port: u16,
    /// The underlay: LoadBalancer and external IPs inside it are announced (see
    /// [`announce`]); `None` announces nothing.
    pub announce_subnet: Option<Ipv4Cidr>,
    /// The node's link to the underlay (`eth0`): pod traffic leaving through it is
    /// masqueraded ([`node_masquerade_script`]); `None` leaves egress alone.
    pub uplink: Option<String>,
}

/// Something that changed since the last sync.
#[derive(Debug)]
enum Change {
    /// A Service or one of its EndpointSlices, with the slice's trigger time.
    Service(ServiceName, Option<SystemTime>),
    /// A watch (re)listed: rebuild everything.
    Relist,
    /// A Node changed: which addresses this node announces may change.
    Nodes,
}

fn service_key(svc: &Service) -> ServiceName {
    ServiceName {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    }
}

fn slice_key(slice: &EndpointSlice) -> Option<ServiceName> {
    let name = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?;
    Some(ServiceName { namespace: slice.metadata.namespace.clone().unwrap_or_default(), name: name.clone() })
}

fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let text = slice.metadata.annotations.as_ref()?.get(TRIGGER_TIME)?;
    let t: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(t))
}

/// Feeds a reflector's events into `changes` (the store is updated before each event
/// is seen here).
async fn forward<K, F>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    changes: mpsc::UnboundedSender<Change>,
    key: F,
) where
    F: Fn(&K) -> Option<Change>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::Delete(o)) => key(&o),
            Ok(watcher::Event::InitDone) => Some(Change::Relist),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "proxy watch");
                None
            }
        };
        if let Some(c) = change {
            if changes.send(c).is_err() {
                return;
            }
        }
    }
}

/// The node's own NAT table (`ip pier-node`): pod traffic that leaves the pod network
/// through the node's `eth0` (to the API server, the host, another node's address) goes
/// out with the node's address, as a bridge CNI's `ipMasq` does. The underlay does not
/// route pod addresses; without this, replies to a pod address would follow the
/// receiver's default route off the machine.
pub fn node_masquerade_script(cluster_cidr: Ipv4Cidr, uplink: &str) -> String {
    format!(
        "table ip pier-node {{\n\tcomment \"pod traffic leaving the pod network goes out as the node\"\n}}\n\
         flush table ip pier-node\n\
         table ip pier-node {{\n\
         \tchain pod-egress {{\n\
         \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
         \t\tip saddr {cluster_cidr} ip daddr != {cluster_cidr} oifname \"{uplink}\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Runs the proxy until the task is dropped.
pub async fn run(
    client: Client,
    config: ProxierConfig,
    nft: Arc<dyn NftApplier>,
    conntrack: Arc<dyn Conntrack>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let table = TableName::new(config.render.table.clone()).context("the proxy's table name")?;
    if let (Some(cidr), Some(uplink)) = (config.render.cluster_cidr, config.uplink.as_deref()) {
        nft.apply(&node_masquerade_script(cidr, uplink))
            .await
            .context("programming the node's pod egress NAT")?;
    }
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let service_events = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
    );
    let slice_events = reflector::reflector(
        slices_writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default()),
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(forward(service_events, tx.clone(), |s: &Service| {
        Some(Change::Service(service_key(s), None))
    }));
    tasks.spawn(forward(slice_events, tx.clone(), |s: &EndpointSlice| {
        slice_key(s).map(|k| Change::Service(k, trigger_time(s)))
    }));
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let node_events =
        reflector::reflector(nodes_writer, watcher(Api::<Node>::all(client), watcher::Config::default()));
    tasks.spawn(forward(node_events, tx, |_: &Node| Some(Change::Nodes)));
    if config.metrics_port != 0 {
        let addr = SocketAddr::from((config.bind, config.metrics_port));
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let m = Arc::clone(&metrics);
        tasks.spawn(http::serve(listener, move |path| match path {
            "/metrics" => http::Reply::metrics(m.render()),
            _ => http::Reply::not_found(),
        }));
    }
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if config.healthz_port != 0 {
        let addr = SocketAddr::from((config.bind, config.healthz_port));
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let ok = Arc::clone(&synced);
        tasks.spawn(http::serve(listener, move |path| match path {
            "/healthz" | "/livez" if ok.load(std::sync::atomic::Ordering::Relaxed) => {
                http::Reply::text(StatusCode::OK, "ok")
            }
            "/healthz" | "/livez" => http::Reply::text(StatusCode::SERVICE_UNAVAILABLE, "not synced yet"),
            _ => http::Reply::not_found(),
        }));
    }
    services.wait_until_ready().await.context("listing services")?;
    slices.wait_until_ready().await.context("listing endpoint slices")?;
    nodes.wait_until_ready().await.context("listing nodes")?;

    let mut syncer = Syncer {
        config,
        table,
        nft,
        conntrack,
        metrics,
        services,
        slices,
        nodes,
        announced: BTreeSet::new(),
        announce_dirty: true,
        applied: None,
        dirty: BTreeSet::new(),
        triggers: BTreeMap::new(),
        full_needed: true,
        health: health::HealthServers::default(),
        counts: RulesetCounts::default(),
    };
    let mut backoff = Duration::ZERO;
    loop {
        while let Ok(c) = rx.try_recv() {
            syncer.absorb(c);
        }
        if !syncer.pending() && syncer.announce_dirty {
            syncer.announce().await;
        }
        if syncer.pending() {
            if syncer.sync().await {
                synced.store(true, std::sync::atomic::Ordering::Relaxed);
                backoff = Duration::ZERO;
            } else {
                backoff = (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                tokio::time::sleep(backoff).await;
            }
            continue;
        }
        match rx.recv().await {
            Some(c) => syncer.absorb(c),
            None => anyhow::bail!("the proxy's watches ended"),
        }
    }
}

/// The sync loop's state.
struct Syncer {
    config: ProxierConfig,
    table: TableName,
    nft: Arc<dyn NftApplier>,
    conntrack: Arc<dyn Conntrack>,
    metrics: Arc<Metrics>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// The addresses this node holds on `lo` for others to reach.
    announced: BTreeSet<Ipv4Addr>,
    announce_dirty: bool,
    /// What the kernel holds, when known.
    applied: Option<ProxyModel>,
    dirty: BTreeSet<ServiceName>,
    /// The earliest unprogrammed trigger time per Service.
    triggers: BTreeMap<ServiceName, SystemTime>,
    full_needed: bool,
    health: health::HealthServers,
    /// The table's size after the last sync.
    counts: RulesetCounts,
}

impl Syncer {
    fn absorb(&mut self, change: Change) {
        match change {
            Change::Service(key, trigger) => {
                if let Some(t) = trigger {
                    let entry = self.triggers.entry(key.clone()).or_insert(t);
                    *entry = (*entry).min(t);
                }
                self.dirty.insert(key);
            }
            Change::Relist => self.full_needed = true,
            Change::Nodes => self.announce_dirty = true,
        }
    }

    fn pending(&self) -> bool {
        self.full_needed || self.applied.is_none() || !self.dirty.is_empty()
    }

    /// The slices of the dirty Services, in one pass over the store.
    fn dirty_slices(&self) -> BTreeMap<ServiceName, Vec<Arc<EndpointSlice>>> {
        let mut by_service: BTreeMap<ServiceName, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
        for slice in self.slices.state() {
            if let Some(key) = slice_key(&slice).filter(|k| self.dirty.contains(k)) {
                by_service.entry(key).or_default().push(slice);
            }
        }
        by_service
    }

    /// The model the stores describe now, and the transaction that gets there.
    async fn render(&self) -> (ProxyModel, Rendered) {
        match (&self.applied, self.full_needed) {
            (Some(prev), false) => {
                let mut next = prev.clone();
                let mut slices = self.dirty_slices();
                for key in &self.dirty {
                    let name = ObjectRef::<Service>::new(&key.name).within(&key.namespace);
                    match self.services.get(&name) {
                        Some(svc) => {
                            next.upsert_service(svc.as_ref(), slices.remove(key).unwrap_or_default())
                        }
                        None => next.remove_service(key),
                    }
                }
                let rendered = render_partial(&self.config.render, prev, &next);
                (next, rendered)
            }
            _ => {
                let model = build(self.services.state(), self.slices.state(), &self.config.node);
                let existing = match self.nft.list_table_terse(Family::Ip, &self.table).await {
                    Ok(listing) => Existing::from_nft_listing(&listing),
                    Err(NftError::NoSuchTable { .. }) => Existing::empty(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listing the proxy's table before a full sync");
                        Existing::default()
                    }
                };
                let rendered = render_full(&self.config.render, &model, &existing);
                (model, rendered)
            }
        }
    }

    /// A partial sync of known operations goes over netlink when the applier can;
    /// anything else through nft.
    async fn apply(&self, kind: SyncKind, tx: &Transaction) -> Result<(), NftError> {
        if tx.is_empty() {
            return Ok(());
        }
        if kind == SyncKind::Partial {
            if let Some(msgs) = netlink::batch(tx) {
                if self.nft.apply_batch(&self.table, msgs).await? {
                    return Ok(());
                }
            }
        }
        self.nft.apply(&tx.to_nft_script()).await
    }

    /// One sync; false when it failed (the next one is full).
    async fn sync(&mut self) -> bool {
        let started = Instant::now();
        let (next, rendered) = self.render().await;
        if let Err(e) = self.apply(rendered.stats.kind, &rendered.transaction).await {
            self.metrics.failed();
            tracing::warn!(error = %e, detail = ?std::error::Error::source(&e).map(|s| s.to_string()), kind = ?rendered.stats.kind, "proxy sync failed; retrying with a full sync");
            self.full_needed = true;
            return false;
        }
        let took = started.elapsed();
        for c in &rendered.stats.conflicts {
            tracing::warn!(destination = ?c.destination, owner = ?c.owner, ignored = ?c.ignored, "two services claim one destination");
        }
        let stale = match &self.applied {
            Some(prev) => stale::udp_flows(prev, &next),
            None => Vec::new(),
        };
        if !stale.is_empty() {
            if let Err(e) = self.conntrack.clear(&stale).await {
                tracing::warn!(error = %e, "clearing conntrack entries of removed UDP endpoints");
            }
        }
        // A full sync's counts replace whatever was counted before.
        let counts = self.counts.after(&rendered.stats);
        self.counts = counts;
        let now = SystemTime::now();
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.metrics.synced(rendered.stats.kind, took, counts.rules, counts.chains, unix);
        let programmed: Vec<ServiceName> = if self.full_needed || self.applied.is_none() {
            self.triggers.keys().cloned().collect()
        } else {
            self.dirty.iter().cloned().collect()
        };
        for key in programmed {
            if let Some(t) = self.triggers.remove(&key) {
                if let Ok(latency) = now.duration_since(t) {
                    self.metrics.programmed(latency);
                }
            }
        }
        tracing::debug!(kind = ?rendered.stats.kind, took_us = took.as_micros() as u64, services = self.dirty.len(), rules = counts.rules, "proxy synced");
        self.health.update(self.config.bind, &next.health_checks()).await;
        // Deletions nothing refers to, after the change is in place and timed.
        let cleaned = self.apply(SyncKind::Partial, &rendered.cleanup).await;
        if let Err(e) = &cleaned {
            tracing::warn!(error = %e, "deleting unused set elements after a sync; the next sync is a full one");
            self.metrics.failed();
        }
        self.applied = Some(next);
        self.dirty.clear();
        self.full_needed = cleaned.is_err();
        self.announce_dirty = true;
        true
    }

    /// Adds and removes this node's announced addresses to match the last sync.
    async fn announce(&mut self) {
        self.announce_dirty = false;
        let (Some(subnet), Some(model)) = (self.config.announce_subnet, &self.applied) else { return };
        let ready: BTreeSet<String> = self
            .nodes
            .state()
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let wanted = announce::announced(model, &ready, subnet);
        if wanted == self.announced {
            return;
        }
        let mut ops = Vec::new();
        for ip in self.announced.difference(&wanted) {
            ops.push((false, *ip));
        }
        for ip in wanted.difference(&self.announced) {
            ops.push((true, *ip));
        }
        let result = tokio::task::spawn_blocking(move || announce::apply(&ops)).await;
        match result {
            Ok(Ok(())) => self.announced = wanted,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "announcing load balancer addresses");
                self.announce_dirty = true;
            }
            Err(e) => tracing::warn!(error = %e, "announcing load balancer addresses"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_egress_is_masqueraded_only_off_the_pod_network() {
        let cidr: Ipv4Cidr = "10.244.0.0/16".parse().expect("cidr");
        assert_eq!(
            node_masquerade_script(cidr, "eth0"),
            "table ip pier-node {\n\tcomment \"pod traffic leaving the pod network goes out as the node\"\n}\n\
             flush table ip pier-node\n\
             table ip pier-node {\n\
             \tchain pod-egress {\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 oifname \"eth0\" masquerade\n\
             \t}\n\
             }\n"
        );
    }
}
