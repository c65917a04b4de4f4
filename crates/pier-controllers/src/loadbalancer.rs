//! The LoadBalancer controller: gives every Service of type LoadBalancer an address
//! from a pool (`pier up --lb-range`), as MetalLB's controller does in L2 mode. The
//! node that answers for the address and the rules that carry its traffic belong to
//! the node agent and the proxy; this controller only decides who has which address.
//!
//! - A Service of type LoadBalancer without `spec.loadBalancerClass` (a class names
//!   another implementation, which this one leaves alone) gets the lowest free
//!   address, written as `status.loadBalancer.ingress: [{ip, ipMode: VIP}]` through
//!   the status subresource (`ipMode: VIP` is what upstream's API server defaults an
//!   IP ingress to since 1.30), and a `Normal IPAllocated` event,
//!   `Assigned IP ["172.30.0.200"]`.
//! - `spec.loadBalancerIP` is honoured when the address is in the pool and free;
//!   otherwise the Service gets no address and a `Warning AllocationFailed` event
//!   that says why. A Service keeps the address its status shows, so nothing moves
//!   when the controller restarts.
//! - When every address is taken the Service stays `<pending>` with
//!   `Failed to allocate IP for "default/kubia": no available IPs`, and is tried again
//!   as soon as another Service gives its address back.
//! - An address is given back when its Service is deleted or stops being a managed
//!   LoadBalancer; the status is then cleared.
//!
//! # Why it is shaped like this
//!
//! One task owns the [`Allocator`] and handles every watch event in turn, so two
//! Services can never be handed the same address. After each (re-)list the
//! allocations are rebuilt from the Services' own statuses before anything new is
//! handed out: the statuses are the only durable record, so a restart can neither
//! forget an address nor give it twice. Of two Services that claim one address (a
//! status edited by hand) the older keeps it. Status writes pin the resourceVersion
//! the decision was made from; a conflict means a newer version is on its way through
//! the watch, which decides again.

mod pool;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;

use crate::events::{reference, EventType, Recorder};
use crate::resources::{is_conflict, is_not_found};
pub use pool::{parse_lb_range, AllocError, Allocator, LbRange, LbRangeError};

/// The component named in this controller's events.
pub const CONTROLLER: &str = "loadbalancer-controller";
/// Reason of the event for a new address (MetalLB's).
pub const REASON_ALLOCATED: &str = "IPAllocated";
/// Reason of the event for a Service that could not get an address (MetalLB's).
pub const REASON_FAILED: &str = "AllocationFailed";
/// `status.loadBalancer.ingress[].ipMode` for an address whose traffic reaches the
/// node with the address itself as destination: the proxy's rules match it.
pub const IP_MODE_VIP: &str = "VIP";
/// How long a Service whose status write failed (other than by a conflict) waits
/// before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs the controller with addresses from `range` until the task is dropped.
pub async fn run(client: Client, range: LbRange) {
    let services: Api<Service> = Api::all(client.clone());
    let mut events = watcher(services, watcher::Config::default()).default_backoff().boxed();
    let (retry_tx, mut retries) = mpsc::unbounded_channel();
    let mut c = Controller::new(client, range, retry_tx);
    loop {
        tokio::select! {
            Some(e) = events.next() => match e {
                Ok(e) => c.on_event(e).await,
                Err(e) => tracing::debug!(error = %e, "load balancer service watch error; the watcher retries"),
            },
            Some(key) = retries.recv() => c.on_retry(key).await,
            else => break,
        }
    }
}

/// `namespace/name`, the owner names in the [`Allocator`] and in event messages.
fn key_of(svc: &Service) -> Option<String> {
    Some(format!("{}/{}", svc.metadata.namespace.as_deref()?, svc.metadata.name.as_deref()?))
}

/// A resourceVersion as a number (Pier's are revisions); `None` counts as newest.
fn rv(svc: &Service) -> Option<u64> {
    svc.metadata.resource_version.as_deref()?.parse().ok()
}

/// Whether this controller hands out the Service's address.
fn is_managed(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

fn ingress(svc: &Service) -> &[LoadBalancerIngress] {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or(&[])
}

/// The IPv4 address the Service's status shows first, if any.
fn status_ip(svc: &Service) -> Option<Ipv4Addr> {
    ingress(svc).first()?.ip.as_deref()?.parse().ok()
}

/// Whether the status shows exactly what this controller writes for `ip` (nothing
/// when `None`), so no write is needed.
fn status_is(svc: &Service, ip: Option<Ipv4Addr>) -> bool {
    match (ingress(svc), ip) {
        ([], None) => true,
        ([only], Some(ip)) => {
            only.ip.as_deref() == Some(ip.to_string().as_str())
                && only.ip_mode.as_deref() == Some(IP_MODE_VIP)
                && only.hostname.is_none()
                && only.ports.as_ref().is_none_or(Vec::is_empty)
        }
        _ => false,
    }
}

/// What one look at a Service decided, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    /// The address the status must show (`None`: no address); `None` for a Service
    /// whose status is not this controller's to write.
    status: Option<Option<Ipv4Addr>>,
    /// An event to record: type, reason, message.
    event: Option<(EventType, &'static str, String)>,
    /// The Service waits for an address to be given back.
    pending: bool,
    /// An address was given back.
    freed: bool,
}

/// Decides what `svc` should have, updating `alloc` (pure apart from that).
fn decide(alloc: &mut Allocator, key: &str, svc: &Service) -> Decision {
    let mut d = Decision { status: None, event: None, pending: false, freed: false };
    if !is_managed(svc) {
        d.freed = alloc.release(key).is_some();
        // A Service with a class belongs to another implementation, status included.
        // Any other non-LoadBalancer Service should show no load balancer (the API
        // server clears it on a type change; this covers anything else).
        let classed = svc.spec.as_ref().is_some_and(|s| s.load_balancer_class.is_some());
        if !classed {
            d.status = Some(None);
        }
        return d;
    }
    let failed = |d: &mut Decision, why: String, pending: bool| {
        d.status = Some(None);
        d.pending = pending;
        d.event =
            Some((EventType::Warning, REASON_FAILED, format!("Failed to allocate IP for {key:?}: {why}")));
    };
    let allocated = |d: &mut Decision, ip: Ipv4Addr| {
        d.status = Some(Some(ip));
        d.event = Some((EventType::Normal, REASON_ALLOCATED, format!("Assigned IP [{:?}]", ip.to_string())));
    };
    let spec = svc.spec.as_ref();
    let families = spec.and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    if !families.is_empty() && !families.iter().any(|f| f == "IPv4") {
        d.freed = alloc.release(key).is_some();
        failed(&mut d, format!("the pool {} has only IPv4 addresses", alloc.range()), false);
        return d;
    }
    let before = alloc.get(key);
    let requested = spec.and_then(|s| s.load_balancer_ip.as_deref()).filter(|s| !s.is_empty());
    if let Some(text) = requested {
        let ip = match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(_)) => {
                d.freed = alloc.release(key).is_some();
                failed(&mut d, format!("requested {text:?} is not an IPv4 address"), false);
                return d;
            }
            Err(_) => {
                d.freed = alloc.release(key).is_some();
                failed(&mut d, format!("invalid spec.loadBalancerIP {text:?}"), false);
                return d;
            }
        };
        match alloc.assign(key, ip) {
            Ok(()) if before == Some(ip) => d.status = Some(Some(ip)),
            Ok(()) => {
                d.freed = before.is_some();
                allocated(&mut d, ip);
            }
            Err(e) => {
                // The Service asked for another address than it has: it gives up the
                // one it had, as MetalLB does, rather than keep something it refused.
                d.freed = alloc.release(key).is_some();
                failed(&mut d, e.to_string(), e.may_clear_on_release());
            }
        }
        return d;
    }
    if let Some(ip) = before {
        d.status = Some(Some(ip));
        return d;
    }
    // Adopt what the status shows (after a restart the rebuild has done so already);
    // an address outside the pool or taken by an older Service is replaced.
    if let Some(ip) = status_ip(svc) {
        if alloc.assign(key, ip).is_ok() {
            d.status = Some(Some(ip));
            return d;
        }
    }
    match alloc.allocate(key) {
        Ok(ip) => allocated(&mut d, ip),
        Err(e) => failed(&mut d, e.to_string(), e.may_clear_on_release()),
    }
    d
}

/// Rebuilds the allocations from the statuses of `services` (managed ones only),
/// the older Service winning an address claimed twice.
fn rebuild<'a>(range: LbRange, services: impl IntoIterator<Item = (&'a String, &'a Service)>) -> Allocator {
    let mut alloc = Allocator::new(range);
    let mut claims: Vec<_> = services
        .into_iter()
        .filter(|(_, svc)| is_managed(svc))
        .filter_map(|(key, svc)| Some((svc.metadata.creation_timestamp.clone(), key, status_ip(svc)?)))
        .collect();
    claims.sort();
    for (_, key, ip) in claims {
        if let Err(e) = alloc.assign(key, ip) {
            tracing::info!(service = %key, error = %e, "not keeping the address in the status");
        }
    }
    alloc
}

struct Controller {
    client: Client,
    recorder: Recorder,
    alloc: Allocator,
    services: HashMap<String, Service>,
    /// Services listed since the watch (re)started, until the list is complete.
    relist: Option<HashMap<String, Service>>,
    synced: bool,
    /// Services that wait for an address to be given back.
    pending: BTreeSet<String>,
    /// The last failure event recorded per Service, so an unchanged failure is not
    /// recorded again on every update of the Service.
    reported: HashMap<String, String>,
    retry_tx: mpsc::UnboundedSender<String>,
    retrying: HashSet<String>,
}

impl Controller {
    fn new(client: Client, range: LbRange, retry_tx: mpsc::UnboundedSender<String>) -> Self {
        Controller {
            recorder: Recorder::new(client.clone(), CONTROLLER),
            client,
            alloc: Allocator::new(range),
            services: HashMap::new(),
            relist: None,
            synced: false,
            pending: BTreeSet::new(),
            reported: HashMap::new(),
            retry_tx,
            retrying: HashSet::new(),
        }
    }

    async fn on_event(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(svc) => {
                if let (Some(key), Some(relist)) = (key_of(&svc), self.relist.as_mut()) {
                    relist.insert(key, svc);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relist.take() {
                    self.services = listed;
                }
                self.alloc = rebuild(self.alloc.range(), &self.services);
                self.pending.clear();
                self.synced = true;
                let mut keys: Vec<_> = self
                    .services
                    .iter()
                    .map(|(k, s)| (s.metadata.creation_timestamp.clone(), k.clone()))
                    .collect();
                keys.sort();
                for (_, key) in keys {
                    self.reconcile(&key).await;
                }
                tracing::info!(held = self.alloc.len(), pool = %self.alloc.range(), "load balancer addresses rebuilt");
            }
            watcher::Event::Apply(svc) => {
                let Some(key) = key_of(&svc) else { return };
                if self.remember(&key, svc) && self.synced {
                    self.reconcile(&key).await;
                }
            }
            watcher::Event::Delete(svc) => {
                let Some(key) = key_of(&svc) else { return };
                self.services.remove(&key);
                self.pending.remove(&key);
                self.reported.remove(&key);
                if let Some(ip) = self.alloc.release(&key) {
                    tracing::info!(service = %key, %ip, "load balancer address released");
                    self.retry_pending().await;
                }
            }
        }
    }

    async fn on_retry(&mut self, key: String) {
        self.retrying.remove(&key);
        self.reconcile(&key).await;
    }

    /// Files `svc` unless the cache has a newer version; true when it was filed.
    fn remember(&mut self, key: &str, svc: Service) -> bool {
        if let (Some(old), Some(new)) = (self.services.get(key).and_then(rv), rv(&svc)) {
            if new < old {
                return false;
            }
        }
        self.services.insert(key.to_string(), svc);
        true
    }

    async fn reconcile(&mut self, key: &str) {
        let Some(svc) = self.services.get(key).cloned() else { return };
        let d = decide(&mut self.alloc, key, &svc);
        if d.pending {
            self.pending.insert(key.to_string());
        } else {
            self.pending.remove(key);
        }
        match &d.event {
            Some((kind, reason, message)) => {
                let repeat = *reason == REASON_FAILED && self.reported.get(key) == Some(message);
                if *reason == REASON_FAILED {
                    self.reported.insert(key.to_string(), message.clone());
                } else {
                    self.reported.remove(key);
                }
                if !repeat {
                    tracing::info!(service = %key, reason, message, "load balancer");
                    self.recorder.record(&reference(&svc), *kind, reason, message).await;
                }
            }
            None if d.status.is_some_and(|s| s.is_some()) => {
                self.reported.remove(key);
            }
            None => {}
        }
        if let Some(ip) = d.status {
            if !status_is(&svc, ip) {
                self.write_status(key, &svc, ip).await;
            }
        }
        if d.freed {
            Box::pin(self.retry_pending()).await;
        }
    }

    /// Tries again every Service that waits for an address, oldest first.
    async fn retry_pending(&mut self) {
        let mut waiting: Vec<_> = self
            .pending
            .iter()
            .filter_map(|k| Some((self.services.get(k)?.metadata.creation_timestamp.clone(), k.clone())))
            .collect();
        waiting.sort();
        for (_, key) in waiting {
            Box::pin(self.reconcile(&key)).await;
        }
    }

    async fn write_status(&mut self, key: &str, svc: &Service, ip: Option<Ipv4Addr>) {
        let (Some(ns), Some(name)) = (svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()) else {
            return;
        };
        let ingress = match ip {
            Some(ip) => json!([{"ip": ip.to_string(), "ipMode": IP_MODE_VIP}]),
            None => serde_json::Value::Null,
        };
        let patch = json!({
            "metadata": {"resourceVersion": svc.metadata.resource_version},
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(written) => {
                self.remember(key, written);
            }
            // A newer version (or the deletion) is on its way through the watch.
            Err(e) if is_conflict(&e) || is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(service = %key, error = %e, "writing the load balancer status; retrying");
                if self.retrying.insert(key.to_string()) {
                    let tx = self.retry_tx.clone();
                    let key = key.to_string();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = tx.send(key);
                    });
                }
            }
        }
    }
}
