//! The ReplicationController and ReplicaSet controllers: one implementation for both
//! kinds, as upstream's `pkg/controller/replicaset` (which runs the RC controller
//! through an adapter). Each keeps `spec.replicas` active pods matching its selector:
//!
//! - pods are created from the template with `generateName: <owner>-` and a controller
//!   ownerReference (`blockOwnerDeletion: true`), in slow-start batches (1, 2, 4, ...)
//!   so a failing create stops the sync early, at most [`logic::BURST_REPLICAS`] per sync;
//! - matching orphans are adopted and owned pods whose labels stop matching are released
//!   (their ownerReference removed), so relabelling a pod takes it out of the set;
//! - surplus pods are deleted in upstream's order (unscheduled, pending, not ready,
//!   cheap, doubled up, recently ready, restarting, new first);
//! - `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas with
//!   minReadySeconds, observedGeneration, the ReplicaFailure condition) is written
//!   through the status subresource;
//! - `SuccessfulCreate`/`SuccessfulDelete` (and `FailedCreate`/`FailedDelete`) events
//!   are recorded on the owner.
//!
//! Everything is driven by watches of pods and owners kept in memory (one pod watch
//! shared by both kinds). [`expectations`] keep a sync from acting while the creates
//! and deletes of the previous one have not been seen yet, and the [`queue`] never
//! syncs one owner in two workers at once. Pods being deleted and finished pods do
//! not count. There is no periodic resync: every input is a watch event.

mod expectations;
mod logic;
mod queue;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::events::{self, EventType, Recorder};
use crate::resources::is_not_found;
use expectations::Expectations;
use logic::{Counts, Selector};
use queue::Queue;

/// Concurrent syncs per kind (upstream's `--concurrent-replicaset-syncs` default).
const WORKERS: usize = 5;
/// Adoptions and releases of one sync in flight at once.
const CLAIM_CONCURRENCY: usize = 16;
/// Event writes in flight at once: events must not crowd out the real work.
const EVENT_CONCURRENCY: usize = 8;
/// client-go's `EventSourceObjectSpamFilter`: each object and reason may burst 25
/// events, then earns one more every 5 minutes; the rest are dropped. Scaling to
/// 1,000 pods thus records 25 `SuccessfulCreate` events, as upstream does.
const EVENT_BURST: f64 = 25.0;
const EVENT_REFILL: Duration = Duration::from_secs(300);

/// The spam filter's token buckets: tokens left and when last refilled, by owner uid
/// and event reason.
type EventBuckets = HashMap<(String, &'static str), (f64, Instant)>;

/// Runs the ReplicationController and ReplicaSet controllers until the task is dropped.
pub async fn run(client: Client) {
    let pods = Arc::new(Mirror::<Pod>::default());
    let rc = Arc::new(Controller::<ReplicationController>::new(client.clone(), Arc::clone(&pods)));
    let rs = Arc::new(Controller::<ReplicaSet>::new(client.clone(), Arc::clone(&pods)));
    let pod_handlers: Vec<Arc<dyn PodHandler>> = vec![rc.clone(), rs.clone()];
    let watch_pods = mirror(Api::<Pod>::all(client), pods, move |old, new| {
        for h in &pod_handlers {
            h.on_pod(old, new);
        }
    });
    tokio::join!(watch_pods, rc.run(), rs.run());
}

// ---------------------------------------------------------------------------
// The two kinds
// ---------------------------------------------------------------------------

/// What the controller needs from a ReplicationController or a ReplicaSet.
trait Owner:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The component named in events, as upstream's.
    const COMPONENT: &'static str;
    fn selector(&self) -> Selector;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn current_status(&self) -> Status;
}

/// The shared shape of both kinds' status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Status {
    counts: Counts,
    observed_generation: i64,
    /// The `ReplicaFailure` condition, present while creates or deletes fail.
    failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    reason: String,
    message: String,
    last_transition_time: Option<Timestamp>,
}

fn failure_of<'a>(
    conditions: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<Timestamp>)>,
) -> Option<Failure> {
    conditions.into_iter().find(|c| c.0 == "ReplicaFailure" && c.1 == "True").map(|c| Failure {
        reason: c.2.unwrap_or_default().to_string(),
        message: c.3.unwrap_or_default().to_string(),
        last_transition_time: c.4,
    })
}

impl Owner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn selector(&self) -> Selector {
        Selector::Map(self.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default())
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn current_status(&self) -> Status {
        let Some(s) = self.status.as_ref() else { return Status::default() };
        Status {
            counts: Counts {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
            },
            observed_generation: s.observed_generation.unwrap_or(0),
            failure: failure_of(s.conditions.iter().flatten().map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref(),
                    c.message.as_deref(),
                    c.last_transition_time.as_ref().map(|t| t.0),
                )
            })),
        }
    }
}

impl Owner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn selector(&self) -> Selector {
        Selector::Label(self.spec.selector.clone())
    }
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.template.as_ref()
    }
    fn current_status(&self) -> Status {
        let Some(s) = self.status.as_ref() else { return Status::default() };
        Status {
            counts: Counts {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
            },
            observed_generation: s.observed_generation.unwrap_or(0),
            failure: failure_of(s.conditions.iter().flatten().map(|c| {
                (
                    c.type_.as_deref().unwrap_or_default(),
                    c.status.as_deref().unwrap_or_default(),
                    c.reason.as_deref(),
                    c.message.as_deref(),
                    c.last_transition_time.as_ref().map(|t| t.0),
                )
            })),
        }
    }
}

/// The status as a JSON merge patch. Zero counts are removed, as upstream omits them.
fn status_patch(s: &Status) -> Value {
    let nonzero = |n: i32| if n == 0 { Value::Null } else { json!(n) };
    let conditions = match &s.failure {
        None => Value::Null,
        Some(f) => json!([{
            "type": "ReplicaFailure",
            "status": "True",
            "reason": f.reason,
            "message": f.message,
            "lastTransitionTime": f.last_transition_time.map(Time),
        }]),
    };
    json!({
        "status": {
            "replicas": s.counts.replicas,
            "fullyLabeledReplicas": nonzero(s.counts.fully_labeled_replicas),
            "readyReplicas": nonzero(s.counts.ready_replicas),
            "availableReplicas": nonzero(s.counts.available_replicas),
            "observedGeneration": if s.observed_generation == 0 { Value::Null } else { json!(s.observed_generation) },
            "conditions": conditions,
        }
    })
}

// ---------------------------------------------------------------------------
// Watch-fed caches
// ---------------------------------------------------------------------------

type Key = (String, String);

fn key_of(meta: &kube::api::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a handful of map operations that leave the data
    // consistent, so a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The objects of one resource as the watch last showed them, by namespace and name.
struct Mirror<K> {
    objects: Mutex<MirrorInner<K>>,
    synced: watch::Sender<bool>,
}

struct MirrorInner<K> {
    items: BTreeMap<Key, Arc<K>>,
    /// While re-listing: the keys seen so far, to find what vanished meanwhile.
    relisting: Option<HashSet<Key>>,
}

impl<K> Default for Mirror<K> {
    fn default() -> Self {
        Mirror {
            objects: Mutex::new(MirrorInner { items: BTreeMap::new(), relisting: None }),
            synced: watch::Sender::new(false),
        }
    }
}

impl<K> Mirror<K> {
    fn get(&self, key: &Key) -> Option<Arc<K>> {
        lock(&self.objects).items.get(key).cloned()
    }

    fn in_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        let inner = lock(&self.objects);
        inner
            .items
            .range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, v)| Arc::clone(v))
            .collect()
    }

    async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the mirror; an error only means shutdown.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Feeds `mirror` from a watch of `api`, calling `changed(old, new)` for every change
/// (`new` is `None` for a deletion), also for objects that vanished during a re-list.
async fn mirror<K>(api: Api<K>, mirror: Arc<Mirror<K>>, changed: impl Fn(Option<&K>, Option<&K>))
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "watch error; the watcher retries");
                continue;
            }
        };
        match event {
            watcher::Event::Init => lock(&mirror.objects).relisting = Some(HashSet::new()),
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = key_of(obj.meta());
                let obj = Arc::new(obj);
                let old = {
                    let mut inner = lock(&mirror.objects);
                    if let Some(seen) = inner.relisting.as_mut() {
                        seen.insert(key.clone());
                    }
                    inner.items.insert(key, Arc::clone(&obj))
                };
                changed(old.as_deref(), Some(&obj));
            }
            watcher::Event::Delete(obj) => {
                let old = lock(&mirror.objects).items.remove(&key_of(obj.meta()));
                changed(Some(old.as_deref().unwrap_or(&obj)), None);
            }
            watcher::Event::InitDone => {
                let gone: Vec<Arc<K>> = {
                    let mut inner = lock(&mirror.objects);
                    let seen = inner.relisting.take().unwrap_or_default();
                    let gone_keys: Vec<Key> =
                        inner.items.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                    gone_keys.iter().filter_map(|k| inner.items.remove(k)).collect()
                };
                for old in gone {
                    changed(Some(&old), None);
                }
                mirror.synced.send_replace(true);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------

trait PodHandler: Send + Sync {
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>);
}

struct Controller<K: Owner> {
    client: Client,
    recorder: Recorder,
    pods: Arc<Mirror<Pod>>,
    owners: Arc<Mirror<K>>,
    queue: Arc<Queue>,
    expectations: Mutex<Expectations>,
    event_slots: Arc<Semaphore>,
    /// Token buckets of the event spam filter, by owner uid and reason.
    event_tokens: Mutex<EventBuckets>,
}

/// Why a sync failed; the key is retried with a growing delay.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("adopting pod {pod}")]
    Adopt { pod: String, source: kube::Error },
    #[error("releasing pod {pod}")]
    Release { pod: String, source: kube::Error },
    #[error("re-reading the owner before adopting")]
    Recheck(#[source] kube::Error),
    #[error("creating pods")]
    Create(#[source] kube::Error),
    #[error("deleting pods")]
    Delete(#[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
    #[error("the owner has no pod template")]
    NoTemplate,
}

impl SyncError {
    /// The API's message, as upstream puts `err.Error()` in the ReplicaFailure condition.
    fn api_message(&self) -> String {
        match self {
            SyncError::Create(kube::Error::Api(s)) | SyncError::Delete(kube::Error::Api(s)) => {
                s.message.clone()
            }
            SyncError::Create(e) | SyncError::Delete(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

/// Formats an error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn owner_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn split_key(key: &str) -> Key {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    (ns.to_string(), name.to_string())
}

fn pod_key(pod: &Pod) -> String {
    let (ns, name) = key_of(&pod.metadata);
    owner_key(&ns, &name)
}

/// Whether the namespace refused a create because it is terminating (not a failure:
/// the whole namespace is going away).
fn namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 403
                && (s.message.contains("being terminated")
                    || s.details
                        .iter()
                        .flat_map(|d| d.causes.iter())
                        .any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

impl<K: Owner> Controller<K> {
    fn new(client: Client, pods: Arc<Mirror<Pod>>) -> Self {
        Controller {
            recorder: Recorder::new(client.clone(), K::COMPONENT),
            client,
            pods,
            owners: Arc::new(Mirror::default()),
            queue: Arc::new(Queue::default()),
            expectations: Mutex::new(Expectations::default()),
            event_slots: Arc::new(Semaphore::new(EVENT_CONCURRENCY)),
            event_tokens: Mutex::new(HashMap::new()),
        }
    }

    async fn run(self: Arc<Self>) {
        let this = Arc::clone(&self);
        let watch_owners =
            mirror(Api::<K>::all(self.client.clone()), Arc::clone(&self.owners), move |old, new| {
                this.on_owner(old, new)
            });
        let workers = async {
            // Acting on a partial picture would create pods that exist already.
            self.pods.wait_synced().await;
            self.owners.wait_synced().await;
            let workers = (0..WORKERS).map(|_| {
                let this = Arc::clone(&self);
                async move { this.work().await }
            });
            futures::future::join_all(workers).await;
        };
        tokio::join!(watch_owners, workers);
    }

    async fn work(&self) {
        loop {
            let key = self.queue.get().await;
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), owner = %key, error = %chain(&e), "sync failed; retrying");
                    self.queue.add_rate_limited(&key);
                }
            }
            self.queue.done(&key);
        }
    }

    fn on_owner(&self, old: Option<&K>, new: Option<&K>) {
        match (old, new) {
            (_, Some(o)) => {
                let (ns, name) = key_of(o.meta());
                self.queue.add(&owner_key(&ns, &name));
            }
            (Some(o), None) => {
                let (ns, name) = key_of(o.meta());
                let key = owner_key(&ns, &name);
                lock(&self.expectations).forget(&key);
                let uid = o.meta().uid.clone().unwrap_or_default();
                lock(&self.event_tokens).retain(|(u, _), _| *u != uid);
                self.queue.add(&key);
            }
            (None, None) => {}
        }
    }

    /// The key of the owner of our kind that controls `pod`, if it is in the cache
    /// with the same uid (`resolveControllerRef`).
    fn controlling_owner(&self, pod: &Pod) -> Option<String> {
        let r = logic::controller_ref(&pod.metadata)?;
        if r.kind != K::kind(&()) || r.api_version != K::api_version(&()) {
            return None;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let owner = self.owners.get(&(ns.clone(), r.name.clone()))?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then(|| owner_key(&ns, &r.name))
    }

    /// The owners whose selector matches an orphan pod (`getPodReplicaSets`).
    fn matching_owners(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        self.owners
            .in_namespace(&ns)
            .iter()
            .filter(|o| o.selector().matches(pod.metadata.labels.as_ref()))
            .map(|o| owner_key(&ns, o.meta().name.as_deref().unwrap_or_default()))
            .collect()
    }

    fn pod_gone(&self, pod: &Pod) {
        if let Some(key) = self.controlling_owner(pod) {
            lock(&self.expectations).deletion_observed(&key, &pod_key(pod));
            self.queue.add(&key);
        }
    }

    async fn sync(&self, key: &str) -> Result<(), SyncError> {
        let (ns, name) = split_key(key);
        let Some(owner) = self.owners.get(&(ns.clone(), name.clone())) else {
            lock(&self.expectations).forget(key);
            return Ok(());
        };
        let needs_sync = lock(&self.expectations).satisfied(key);
        let selector = owner.selector();
        let active: Vec<Arc<Pod>> =
            self.pods.in_namespace(&ns).into_iter().filter(|p| logic::is_active(p)).collect();
        let claimed = self.claim(&owner, &selector, active).await?;

        let diff = claimed.len() as i64 - owner.replicas() as i64;
        let managed = if needs_sync && owner.meta().deletion_timestamp.is_none() {
            self.manage(key, &owner, &claimed).await
        } else {
            Ok(())
        };

        let now = Timestamp::now();
        let pods: Vec<&Pod> = claimed.iter().map(|p| p.as_ref()).collect();
        let template_labels =
            owner.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
        let (counts, next_available) = logic::count(&pods, template_labels, owner.min_ready_seconds(), now);
        let current = owner.current_status();
        let failure = match &managed {
            Ok(()) => None,
            Err(_) if current.failure.is_some() => current.failure.clone(),
            Err(e) if diff != 0 => Some(Failure {
                reason: if diff < 0 { "FailedCreate" } else { "FailedDelete" }.to_string(),
                message: e.api_message(),
                last_transition_time: Some(now),
            }),
            Err(_) => None,
        };
        let desired = Status { counts, observed_generation: owner.meta().generation.unwrap_or(0), failure };
        if desired != current {
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status_patch(&desired)))
                .await
            {
                Ok(_) => {}
                // Deleted meanwhile: nothing left to report on.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(SyncError::Status(e)),
            }
        }
        if managed.is_ok() {
            if let Some(d) = next_available {
                // Turning available after minReadySeconds is no watch event: look again then.
                self.queue.add_after(key, d);
            }
        }
        managed
    }

    /// Adopts matching orphans and releases owned pods that stopped matching; returns
    /// the active pods the owner now controls (`ClaimPods`).
    async fn claim(
        &self,
        owner: &K,
        selector: &Selector,
        active: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, SyncError> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let mut claimed = Vec::with_capacity(active.len());
        let mut to_adopt = Vec::new();
        let mut to_release = Vec::new();
        for pod in active {
            match logic::claim(&uid, deleting, selector, &pod) {
                logic::Claim::Keep => claimed.push(pod),
                logic::Claim::Adopt => to_adopt.push(pod),
                logic::Claim::Release => to_release.push(pod),
                logic::Claim::Ignore => {}
            }
        }
        if !to_adopt.is_empty() && !self.can_adopt(owner).await? {
            to_adopt.clear();
        }
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let owner_ref = self.owner_reference(owner);
        let adoptions = stream::iter(to_adopt)
            .map(|pod| {
                let api = api.clone();
                let owner_ref = owner_ref.clone();
                async move {
                    let mut refs: Vec<OwnerReference> =
                        pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.retain(|r| r.uid != owner_ref.uid);
                    refs.push(owner_ref);
                    let result = patch_owner_refs(&api, &pod, Some(refs)).await;
                    (pod, result)
                }
            })
            .buffer_unordered(CLAIM_CONCURRENCY)
            .collect::<Vec<_>>();
        let releases = stream::iter(to_release)
            .map(|pod| {
                let api = api.clone();
                let uid = uid.clone();
                async move {
                    let mut refs: Vec<OwnerReference> =
                        pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.retain(|r| r.uid != uid);
                    let result = patch_owner_refs(&api, &pod, (!refs.is_empty()).then_some(refs)).await;
                    (pod, result)
                }
            })
            .buffer_unordered(CLAIM_CONCURRENCY)
            .collect::<Vec<_>>();
        let (adopted, released) = futures::join!(adoptions, releases);
        let mut first_error = None;
        for (pod, result) in adopted {
            match result {
                Ok(p) => claimed.push(Arc::new(p)),
                // Gone meanwhile: nothing to adopt.
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    first_error.get_or_insert(SyncError::Adopt { pod: pod_key(&pod), source: e });
                }
            }
        }
        for (pod, result) in released {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    first_error.get_or_insert(SyncError::Release { pod: pod_key(&pod), source: e });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    /// Re-reads the owner from the API server before adopting (`RecheckDeletionTimestamp`):
    /// the cache may still show an owner that was deleted, or replaced by one with the
    /// same name, and adopting for it would hand pods to the garbage collector.
    async fn can_adopt(&self, owner: &K) -> Result<bool, SyncError> {
        let (ns, name) = key_of(owner.meta());
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(fresh)) => {
                Ok(fresh.meta().uid == owner.meta().uid && fresh.meta().deletion_timestamp.is_none())
            }
            Ok(None) => Ok(false),
            Err(e) => Err(SyncError::Recheck(e)),
        }
    }

    fn owner_reference(&self, owner: &K) -> OwnerReference {
        OwnerReference {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            name: owner.meta().name.clone().unwrap_or_default(),
            uid: owner.meta().uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Creates or deletes pods toward `replicas` (`manageReplicas`).
    async fn manage(&self, key: &str, owner: &K, pods: &[Arc<Pod>]) -> Result<(), SyncError> {
        let diff = logic::replica_diff(pods.len(), owner.replicas());
        if diff > 0 {
            self.create_pods(key, owner, diff as usize).await
        } else if diff < 0 {
            self.delete_pods(key, owner, pods, diff.unsigned_abs() as usize).await
        } else {
            Ok(())
        }
    }

    async fn create_pods(&self, key: &str, owner: &K, count: usize) -> Result<(), SyncError> {
        let Some(template) = owner.template() else { return Err(SyncError::NoTemplate) };
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let pod = logic::pod_from_template(template, self.owner_reference(owner), &ns);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        // Expect them all before the first create: its watch event may come back
        // before the create call returns.
        lock(&self.expectations).expect_creations(key, count);
        let mut created = 0;
        let mut failure = None;
        for batch in logic::slow_start_batches(count, logic::SLOW_START_INITIAL_BATCH) {
            let params = PostParams::default();
            let results = futures::future::join_all((0..batch).map(|_| api.create(&params, &pod))).await;
            let mut batch_failed = false;
            for result in results {
                match result {
                    Ok(p) => {
                        created += 1;
                        let name = p.metadata.name.unwrap_or_default();
                        self.event(
                            owner,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        batch_failed = true;
                        if !namespace_terminating(&e) {
                            let message = match &e {
                                kube::Error::Api(s) => s.message.clone(),
                                other => other.to_string(),
                            };
                            self.event(
                                owner,
                                EventType::Warning,
                                "FailedCreate",
                                format!("Error creating: {message}"),
                            );
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
            if batch_failed {
                break;
            }
        }
        // The pods that failed or were never tried will never be seen.
        {
            let mut exp = lock(&self.expectations);
            for _ in created..count {
                exp.creation_observed(key);
            }
        }
        match failure {
            Some(e) => Err(SyncError::Create(e)),
            None => Ok(()),
        }
    }

    async fn delete_pods(
        &self,
        key: &str,
        owner: &K,
        pods: &[Arc<Pod>],
        count: usize,
    ) -> Result<(), SyncError> {
        let all: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let victims = logic::pods_to_delete(&all, &all, count, Timestamp::now());
        lock(&self.expectations).expect_deletions(key, victims.iter().map(|p| pod_key(p)));
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let results = futures::future::join_all(victims.iter().map(|p| {
            let api = api.clone();
            let name = p.metadata.name.clone().unwrap_or_default();
            async move {
                let result = api.delete(&name, &DeleteParams::default()).await;
                (name, result)
            }
        }))
        .await;
        let mut failure = None;
        for (name, result) in results {
            match result {
                Ok(_) => {
                    self.event(owner, EventType::Normal, "SuccessfulDelete", format!("Deleted pod: {name}"))
                }
                Err(e) => {
                    // The watch will not show this deletion: stop waiting for it.
                    lock(&self.expectations).deletion_observed(key, &owner_key(&ns, &name));
                    if !is_not_found(&e) {
                        let message = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.event(
                            owner,
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {message}"),
                        );
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(SyncError::Delete(e)),
            None => Ok(()),
        }
    }

    /// Records an event on the owner in the background, a few at a time, unless the
    /// spam filter drops it.
    fn event(&self, owner: &K, kind: EventType, reason: &'static str, message: String) {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        if !take_token(&mut lock(&self.event_tokens), (uid, reason), Instant::now()) {
            return;
        }
        let regarding = events::reference(owner);
        let recorder = self.recorder.clone();
        let slots = Arc::clone(&self.event_slots);
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            recorder.record(&regarding, kind, reason, &message).await;
        });
    }
}

/// Takes a token from the bucket of `key`, refilling it for the time elapsed.
fn take_token(buckets: &mut EventBuckets, key: (String, &'static str), now: Instant) -> bool {
    let (tokens, last) = buckets.entry(key).or_insert((EVENT_BURST, now));
    let earned = now.saturating_duration_since(*last).as_secs_f64() / EVENT_REFILL.as_secs_f64();
    *tokens = (*tokens + earned).min(EVENT_BURST);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Sets a pod's ownerReferences (`None` removes them) with a merge patch that carries
/// the cached resourceVersion, so it fails with 409 if the pod changed meanwhile
/// rather than overwrite someone else's edit.
async fn patch_owner_refs(
    api: &Api<Pod>,
    pod: &Pod,
    refs: Option<Vec<OwnerReference>>,
) -> Result<Pod, kube::Error> {
    let patch = json!({
        "metadata": {
            "ownerReferences": refs,
            "resourceVersion": pod.metadata.resource_version,
        }
    });
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await
}

impl<K: Owner> PodHandler for Controller<K> {
    /// Upstream's `addPod`/`updatePod`/`deletePod`: observe expectations and queue the
    /// owners a change can matter to.
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        match (old, new) {
            (None, Some(pod)) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    // Seen first while already terminating (e.g. after a re-list).
                    self.pod_gone(pod);
                } else if let Some(key) = self.controlling_owner(pod) {
                    lock(&self.expectations).creation_observed(&key);
                    self.queue.add(&key);
                } else if logic::controller_ref(&pod.metadata).is_none() {
                    for key in self.matching_owners(pod) {
                        self.queue.add(&key);
                    }
                }
            }
            (Some(old), Some(pod)) => {
                if pod.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                    self.pod_gone(pod);
                }
                let old_owner = self.controlling_owner(old);
                let new_owner = self.controlling_owner(pod);
                if old_owner.is_some() && old_owner != new_owner {
                    self.queue.add(old_owner.as_deref().unwrap_or_default());
                }
                let labels_changed = old.metadata.labels != pod.metadata.labels;
                let ref_changed =
                    logic::controller_ref(&old.metadata) != logic::controller_ref(&pod.metadata);
                if let Some(key) = new_owner {
                    self.queue.add(&key);
                } else if logic::controller_ref(&pod.metadata).is_none() && (labels_changed || ref_changed) {
                    for key in self.matching_owners(pod) {
                        self.queue.add(&key);
                    }
                }
            }
            (Some(old), None) => self.pod_gone(old),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_spam_filter_allows_a_burst_of_25_then_one_per_5_minutes() {
        let mut buckets = HashMap::new();
        let t0 = Instant::now();
        let key = || ("uid".to_string(), "SuccessfulCreate");
        let allowed = (0..100).filter(|_| take_token(&mut buckets, key(), t0)).count();
        assert_eq!(allowed, 25);
        assert!(!take_token(&mut buckets, key(), t0 + Duration::from_secs(100)));
        assert!(take_token(&mut buckets, key(), t0 + Duration::from_secs(301)));
        // Another reason has its own bucket.
        assert!(take_token(&mut buckets, ("uid".to_string(), "SuccessfulDelete"), t0));
    }

    #[test]
    fn status_patch_omits_zero_counts_and_carries_the_failure_condition() {
        let s = Status {
            counts: Counts {
                replicas: 2,
                fully_labeled_replicas: 2,
                ready_replicas: 0,
                available_replicas: 0,
            },
            observed_generation: 4,
            failure: Some(Failure {
                reason: "FailedCreate".into(),
                message: "pods \"x\" is forbidden".into(),
                last_transition_time: None,
            }),
        };
        let p = status_patch(&s);
        assert_eq!(p["status"]["replicas"], 2);
        assert_eq!(p["status"]["readyReplicas"], Value::Null);
        assert_eq!(p["status"]["observedGeneration"], 4);
        assert_eq!(p["status"]["conditions"][0]["type"], "ReplicaFailure");
        assert_eq!(p["status"]["conditions"][0]["reason"], "FailedCreate");
        let ok = Status { failure: None, ..s };
        assert_eq!(status_patch(&ok)["status"]["conditions"], Value::Null);
    }
}
