//! Keeping the index current: watches on Services, EndpointSlices, Namespaces
//! and Pods in every namespace, each event applied to a working copy of the
//! [`Index`], the copy published with arc-swap.
//!
//! - Until all four watches have listed once, nothing is published: the served
//!   index stays unsynced, so names in the zone get SERVFAIL rather than a wrong
//!   NXDOMAIN. Then [`Index::mark_synced`] and the first publish.
//! - After that, every event is published at once, with no batching delay; events
//!   that are already waiting when one arrives are applied first and published
//!   together (a burst costs one publish).
//! - A re-list (after the watch lost its place) applies what it lists and then
//!   removes the objects of that kind it did not list.
//!
//! The index is built from Services with their slices, so the Services and slices
//! seen are kept (without managed fields) to rebuild one Service when any of its
//! slices changes. Of Namespaces and Pods only the names are kept.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use pier_dns::Index;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The most events applied before a publish, so that a long burst (a re-list of
/// many Pods) still shows its progress.
const MAX_BATCH: usize = 1024;

/// Namespace and name.
type Key = (String, String);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    Slice,
    Namespace,
    Pod,
}
const KINDS: usize = 4;

// Each value moves once from a watch stream into `State::apply`; boxing would
// only add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(Event<Service>),
    Slice(Event<EndpointSlice>),
    Namespace(Event<Namespace>),
    Pod(Event<Pod>),
    Error(Kind, watcher::Error),
}

fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn service_of(slice: &EndpointSlice) -> Option<Key> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((slice.metadata.namespace.clone().unwrap_or_default(), name.clone()))
}

/// What the watches have said so far, and the index it makes.
struct State {
    index: Index,
    services: HashMap<Key, Service>,
    slices: HashMap<Key, EndpointSlice>,
    /// Slice names by Service.
    slices_of: HashMap<Key, BTreeSet<String>>,
    namespaces: HashSet<String>,
    pods: HashSet<Key>,
    /// Per kind: listed at least once.
    listed: [bool; KINDS],
    /// Per kind, during a re-list: what it listed so far.
    relisting: [Option<HashSet<Key>>; KINDS],
    /// Changed since the last publish.
    dirty: bool,
}

impl State {
    fn new(index: Index) -> State {
        State {
            index,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_of: HashMap::new(),
            namespaces: HashSet::new(),
            pods: HashSet::new(),
            listed: [false; KINDS],
            relisting: Default::default(),
            dirty: false,
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(event) => {
                self.event(Kind::Service, event, State::upsert_service, State::delete_service)
            }
            Change::Slice(event) => self.event(Kind::Slice, event, State::upsert_slice, State::delete_slice),
            Change::Namespace(event) => {
                self.event(Kind::Namespace, event, State::upsert_namespace, State::delete_namespace)
            }
            Change::Pod(event) => self.event(Kind::Pod, event, State::upsert_pod, State::delete_pod),
            Change::Error(kind, error) => {
                let kind = match kind {
                    Kind::Service => "services",
                    Kind::Slice => "endpointslices",
                    Kind::Namespace => "namespaces",
                    Kind::Pod => "pods",
                };
                tracing::warn!(%error, kind, "cluster dns watch failed; retrying");
            }
        }
    }

    /// Applies one event of a kind; on a re-list's end, deletes what it did not
    /// list.
    fn event<K: Resource>(
        &mut self,
        kind: Kind,
        event: Event<K>,
        upsert: fn(&mut State, K),
        delete: fn(&mut State, &Key),
    ) {
        let k = kind as usize;
        match event {
            Event::Apply(object) => upsert(self, object),
            Event::Delete(object) => delete(self, &key_of(&object)),
            Event::Init => self.relisting[k] = Some(HashSet::new()),
            Event::InitApply(object) => {
                if let Some(seen) = &mut self.relisting[k] {
                    seen.insert(key_of(&object));
                }
                upsert(self, object);
            }
            Event::InitDone => {
                let seen = self.relisting[k].take().unwrap_or_default();
                let known: Vec<Key> = match kind {
                    Kind::Service => self.services.keys().cloned().collect(),
                    Kind::Slice => self.slices.keys().cloned().collect(),
                    Kind::Namespace => self.namespaces.iter().map(|n| (String::new(), n.clone())).collect(),
                    Kind::Pod => self.pods.iter().cloned().collect(),
                };
                for gone in known.iter().filter(|key| !seen.contains(*key)) {
                    delete(self, gone);
                }
                self.listed[k] = true;
            }
        }
    }

    /// Rebuilds one Service from the Service and its slices.
    fn refresh_service(&mut self, key: &Key) {
        let Some(service) = self.services.get(key) else { return };
        let names = self.slices_of.get(key);
        let slices =
            names.into_iter().flatten().filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())));
        self.index.upsert_service(service, slices);
        self.dirty = true;
    }

    fn upsert_service(&mut self, mut service: Service) {
        service.metadata.managed_fields = None;
        let key = key_of(&service);
        self.services.insert(key.clone(), service);
        self.refresh_service(&key);
    }

    fn delete_service(&mut self, key: &Key) {
        if self.services.remove(key).is_some() {
            self.index.remove_service(&key.0, &key.1);
            self.dirty = true;
        }
    }

    fn upsert_slice(&mut self, mut slice: EndpointSlice) {
        slice.metadata.managed_fields = None;
        let key = key_of(&slice);
        let owner = service_of(&slice);
        let previous = self.slices.insert(key.clone(), slice).and_then(|old| service_of(&old));
        if let Some(old) = previous.filter(|old| Some(old) != owner.as_ref()) {
            self.unlink_slice(&old, &key.1);
            self.refresh_service(&old);
        }
        if let Some(owner) = owner {
            self.slices_of.entry(owner.clone()).or_default().insert(key.1.clone());
            self.refresh_service(&owner);
        }
    }

    fn delete_slice(&mut self, key: &Key) {
        let Some(slice) = self.slices.remove(key) else { return };
        if let Some(owner) = service_of(&slice) {
            self.unlink_slice(&owner, &key.1);
            self.refresh_service(&owner);
        }
    }

    fn unlink_slice(&mut self, owner: &Key, name: &str) {
        if let Some(names) = self.slices_of.get_mut(owner) {
            names.remove(name);
            if names.is_empty() {
                self.slices_of.remove(owner);
            }
        }
    }

    fn upsert_namespace(&mut self, namespace: Namespace) {
        self.index.upsert_namespace(&namespace);
        self.namespaces.insert(key_of(&namespace).1);
        self.dirty = true;
    }

    fn delete_namespace(&mut self, key: &Key) {
        if self.namespaces.remove(&key.1) {
            self.index.remove_namespace(&key.1);
            self.dirty = true;
        }
    }

    fn upsert_pod(&mut self, pod: Pod) {
        self.index.upsert_pod(&pod);
        self.pods.insert(key_of(&pod));
        self.dirty = true;
    }

    fn delete_pod(&mut self, key: &Key) {
        if self.pods.remove(key) {
            self.index.remove_pod(&key.0, &key.1);
            self.dirty = true;
        }
    }
}

fn watch<K>(client: &Client) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff().boxed()
}

/// Keeps `index` current from the API server until the future is dropped:
/// watches Services, EndpointSlices, Namespaces and Pods in all namespaces, and
/// publishes the first synced index once all four have listed (see the module
/// docs). The zone's configuration is the one of the index found in `index`.
///
/// # Errors
///
/// When the watches end (they retry failures with back-off, so only if the client
/// is gone).
pub async fn watch_index(client: Client, index: Arc<ArcSwap<Index>>) -> anyhow::Result<()> {
    let start = {
        let current = index.load();
        let mut fresh = Index::unsynced(current.config().clone()).context("the cluster dns zone")?;
        fresh.set_serial(current.serial());
        fresh
    };
    let mut state = State::new(start);
    let mut changes: SelectAll<BoxStream<'static, Change>> = futures::stream::select_all([
        watch::<Service>(&client)
            .map(|e| e.map_or_else(|e| Change::Error(Kind::Service, e), Change::Service))
            .boxed(),
        watch::<EndpointSlice>(&client)
            .map(|e| e.map_or_else(|e| Change::Error(Kind::Slice, e), Change::Slice))
            .boxed(),
        watch::<Namespace>(&client)
            .map(|e| e.map_or_else(|e| Change::Error(Kind::Namespace, e), Change::Namespace))
            .boxed(),
        watch::<Pod>(&client).map(|e| e.map_or_else(|e| Change::Error(Kind::Pod, e), Change::Pod)).boxed(),
    ]);
    loop {
        let Some(change) = changes.next().await else {
            anyhow::bail!("the cluster dns watches ended");
        };
        state.apply(change);
        // Whatever else is ready now goes into the same publish.
        for _ in 1..MAX_BATCH {
            match changes.next().now_or_never() {
                Some(Some(change)) => state.apply(change),
                _ => break,
            }
        }
        if !state.index.is_synced() {
            if !state.listed.iter().all(|l| *l) {
                continue;
            }
            state.index.mark_synced();
            tracing::info!(services = state.index.service_count(), "cluster dns synced with the API server");
            state.dirty = true;
        }
        if state.dirty {
            index.store(Arc::new(state.index.clone()));
            state.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_dns::wire::{encode_query, NameBuf, Query, RecordType};
    use pier_dns::{answer, Answer, Config};
    use serde_json::json;

    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("an object")
    }

    fn headless(name: &str) -> Service {
        object(json!({"metadata": {"namespace": "default", "name": name}, "spec": {"clusterIP": "None"}}))
    }

    fn slice(name: &str, service: &str, ip: &str) -> EndpointSlice {
        object(json!({"metadata": {"namespace": "default", "name": name,
                "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]}))
    }

    fn state() -> State {
        State::new(Index::unsynced(Config::default()).expect("a zone"))
    }

    /// The A records of `<name>.default.svc.cluster.local`, as the index answers.
    fn lookup(state: &State, name: &str) -> Option<usize> {
        let mut index = state.index.clone();
        index.mark_synced();
        let mut packet = Vec::new();
        let qname = NameBuf::from_ascii(&format!("{name}.default.svc.cluster.local.")).expect("a name");
        encode_query(&mut packet, 1, qname.as_name(), RecordType::A, None, false);
        let query = Query::parse(&packet).expect("a query");
        match answer(&index, &query, None) {
            Answer::Authoritative(records) => Some(records.answer_count()),
            _ => None,
        }
    }

    #[test]
    fn slices_before_their_service_and_moved_slices_are_followed() {
        let mut s = state();
        s.apply(Change::Slice(Event::Apply(slice("a-1", "a", "10.0.0.1"))));
        assert_eq!(lookup(&s, "a"), None, "a slice alone is no Service");
        s.apply(Change::Service(Event::Apply(headless("a"))));
        s.apply(Change::Service(Event::Apply(headless("b"))));
        assert_eq!(lookup(&s, "a"), Some(1));
        assert_eq!(lookup(&s, "b"), None, "a headless Service without endpoints is NXDOMAIN");
        s.apply(Change::Slice(Event::Apply(slice("a-2", "a", "10.0.0.2"))));
        assert_eq!(lookup(&s, "a"), Some(2));
        // Relabelled to `b`: moves over.
        s.apply(Change::Slice(Event::Apply(slice("a-2", "b", "10.0.0.2"))));
        assert_eq!((lookup(&s, "a"), lookup(&s, "b")), (Some(1), Some(1)));
        s.apply(Change::Slice(Event::Delete(slice("a-1", "a", "10.0.0.1"))));
        assert_eq!(lookup(&s, "a"), None);
        s.apply(Change::Service(Event::Delete(headless("b"))));
        assert_eq!(lookup(&s, "b"), None);
        assert!(s.dirty);
    }

    #[test]
    fn a_relist_deletes_what_it_did_not_list() {
        let mut s = state();
        for name in ["a", "b"] {
            s.apply(Change::Service(Event::Apply(headless(name))));
            s.apply(Change::Slice(Event::Apply(slice(&format!("{name}-1"), name, "10.0.0.1"))));
        }
        s.apply(Change::Namespace(Event::Apply(object(json!({"metadata": {"name": "gone"}})))));
        assert_eq!((lookup(&s, "a"), lookup(&s, "b")), (Some(1), Some(1)));
        assert!(s.listed.iter().all(|l| !l), "no kind has listed yet");

        s.apply(Change::Service(Event::Init));
        s.apply(Change::Service(Event::InitApply(headless("a"))));
        s.apply(Change::Service(Event::InitDone));
        assert_eq!((lookup(&s, "a"), lookup(&s, "b")), (Some(1), None));
        assert!(s.listed[Kind::Service as usize]);

        s.apply(Change::Slice(Event::Init));
        s.apply(Change::Slice(Event::InitDone));
        assert_eq!(lookup(&s, "a"), None, "its slice was not listed");
        assert!(s.slices.is_empty() && s.slices_of.is_empty());

        s.apply(Change::Namespace(Event::Init));
        s.apply(Change::Namespace(Event::InitDone));
        assert!(s.namespaces.is_empty());
        s.apply(Change::Pod(Event::Init));
        s.apply(Change::Pod(Event::InitDone));
        assert!(s.listed.iter().all(|l| *l));
    }
}
