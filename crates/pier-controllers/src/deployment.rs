//! The Deployment controller, as upstream's (`pkg/controller/deployment`): a
//! Deployment's pods are run by ReplicaSets it owns, one per pod template, named
//! `<deployment>-<pod-template-hash>`; a template change is rolled out by moving
//! replicas from the old ReplicaSets to the new one.
//!
//! - **RollingUpdate** grows the new ReplicaSet while the total stays within
//!   `replicas + maxSurge` and shrinks old ones while at least `replicas -
//!   maxUnavailable` pods stay available (percentages: surge rounds up, unavailable
//!   down). Availability, `minReadySeconds` included, is the ReplicaSets'
//!   `availableReplicas`, which the ReplicaSet controller computes.
//! - **Recreate** scales every old ReplicaSet to zero, waits until none of their pods
//!   runs, then creates the new one at full size.
//! - `kubectl scale` mid-rollout spreads the change over the ReplicaSets in proportion
//!   to their sizes; a paused Deployment only scales.
//! - Revisions (`deployment.kubernetes.io/revision`) number the ReplicaSets, which is
//!   what `kubectl rollout history|undo` read; old ReplicaSets beyond
//!   `revisionHistoryLimit` are deleted once empty.
//! - Status carries the counts `kubectl rollout status` waits on and the `Available`
//!   and `Progressing` conditions with upstream's reasons and messages, including
//!   `ProgressDeadlineExceeded`; every scaling is a `ScalingReplicaSet` event.
//!
//! It is an ordinary API client: reflectors on Deployments, ReplicaSets and Pods feed
//! a work queue of Deployment keys, and workers sync one Deployment at a time against
//! the cached state. Every write carries the cached `resourceVersion`, so a decision
//! made on a stale cache fails with a conflict and is retried instead of applied. The
//! only timer is the progress-deadline check.
//!
//! Differences from upstream: the pod-template hash is FNV-32a of the template's
//! canonical JSON (upstream hashes Go's debug print of the struct, which cannot be
//! reproduced), so ReplicaSet names have upstream's shape but other letters; and the
//! revision annotation on the Deployment is written with a merge patch of its
//! metadata, because Pier's status subresource (unlike upstream's) keeps metadata.

mod queue;
mod util;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use tokio::task::JoinSet;

use crate::events::{reference, EventType, Recorder};
use crate::resources::{is_conflict, is_not_found};
use queue::Queue;
use util::*;

const COMPONENT: &str = "deployment-controller";
/// Upstream's `--concurrent-deployment-syncs` default.
const WORKERS: usize = 5;
/// Upstream's `maxRetries`: a Deployment that keeps failing is dropped until its next change.
const MAX_RETRIES: u32 = 15;

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let (deployments, d_writer) = reflector::store::<Deployment>();
    let (replica_sets, rs_writer) = reflector::store::<ReplicaSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        deployments,
        replica_sets,
        pods,
        recorder: Recorder::new(client.clone(), COMPONENT),
        queue: Queue::new(),
    });

    let cfg = watcher::Config::default;
    let d_stream = reflector::reflector(d_writer, watcher(Api::<Deployment>::all(client.clone()), cfg()))
        .default_backoff()
        .map(Change::Deployment);
    let rs_stream = reflector::reflector(rs_writer, watcher(Api::<ReplicaSet>::all(client.clone()), cfg()))
        .default_backoff()
        .map(Change::ReplicaSet);
    let pod_stream = reflector::reflector(pod_writer, watcher(Api::<Pod>::all(client), cfg()))
        .default_backoff()
        .map(Change::Pod);
    let mut changes = stream::select_all([d_stream.boxed(), rs_stream.boxed(), pod_stream.boxed()]);

    // Owned here, so the workers stop when this task is dropped.
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        workers.spawn(ctrl.clone().work());
    }
    let mut seen = HashMap::new();
    while let Some(change) = changes.next().await {
        ctrl.dispatch(&mut seen, change);
    }
}

/// A Deployment's namespace and name: what the work queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    name: String,
}

impl Key {
    fn of<K: Resource>(obj: &K) -> Key {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

enum Change {
    Deployment(Result<watcher::Event<Deployment>, watcher::Error>),
    ReplicaSet(Result<watcher::Event<ReplicaSet>, watcher::Error>),
    Pod(Result<watcher::Event<Pod>, watcher::Error>),
}

/// What the dispatcher last saw of a ReplicaSet, to tell what an update changed
/// (watch events carry only the new object; upstream's informers also give the old).
#[derive(PartialEq)]
struct SeenReplicaSet {
    controller: Option<OwnerReference>,
    labels: Option<BTreeMap<String, String>>,
}

/// Why a sync failed; every variant is retried with backoff.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{action} replica set {namespace}/{name}")]
    ReplicaSet {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action} deployment {namespace}/{name}")]
    Deployment {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("deployment {namespace}/{name} has an invalid spec")]
    Spec {
        namespace: String,
        name: String,
        #[source]
        source: InvalidSpec,
    },
    #[error("replica set {namespace}/{name} exists with another template; collision count raised")]
    HashCollision { namespace: String, name: String },
    #[error("deployment {namespace}/{name} changed during the sync")]
    Stale { namespace: String, name: String },
    #[error("deployment {namespace}/{name} was recreated (uid {found}, wanted {wanted}); not adopting")]
    Recreated { namespace: String, name: String, found: String, wanted: String },
}

impl Error {
    fn is_conflict(&self) -> bool {
        match self {
            Error::ReplicaSet { source, .. } | Error::Deployment { source, .. } => {
                is_conflict(source.as_ref())
            }
            Error::Stale { .. } => true,
            _ => false,
        }
    }
}

fn rs_err<'a>(action: &'static str, rs: &'a ReplicaSet) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::ReplicaSet {
        action,
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    }
}

fn d_err<'a>(action: &'static str, d: &'a Deployment) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::Deployment {
        action,
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        source: Box::new(source),
    }
}

fn spec_err(d: &Deployment) -> impl FnOnce(InvalidSpec) -> Error + '_ {
    move |source| Error::Spec {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        source,
    }
}

fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true))
}

fn selector_of(d: &Deployment) -> LabelSelector {
    d.spec.selector.clone()
}

fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

struct Controller {
    client: Client,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
    queue: Arc<Queue<Key>>,
}

// ---------------------------------------------------------------------------
// Watch events to queued keys (upstream's event handlers)

impl Controller {
    fn dispatch(&self, seen: &mut HashMap<(String, String), SeenReplicaSet>, change: Change) {
        match change {
            Change::Deployment(Ok(event)) => match event {
                watcher::Event::Apply(d) | watcher::Event::InitApply(d) | watcher::Event::Delete(d) => {
                    self.queue.add(Key::of(&d))
                }
                watcher::Event::InitDone => self.enqueue_all(),
                watcher::Event::Init => {}
            },
            Change::ReplicaSet(Ok(event)) => match event {
                watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) => {
                    self.replica_set_changed(seen, &rs)
                }
                watcher::Event::Delete(rs) => {
                    seen.remove(&Key::of(&rs).pair());
                    if let Some(key) = self.owner_of_replica_set(&rs) {
                        self.queue.add(key);
                    }
                }
                // A re-list may have hidden deletions: look at everything again.
                watcher::Event::InitDone => self.enqueue_all(),
                watcher::Event::Init => {}
            },
            Change::Pod(Ok(event)) => match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if matches!(phase, Some("Succeeded") | Some("Failed")) {
                        self.pod_gone(&pod);
                    }
                }
                watcher::Event::Delete(pod) => self.pod_gone(&pod),
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
            Change::Deployment(Err(e)) | Change::ReplicaSet(Err(e)) | Change::Pod(Err(e)) => {
                tracing::debug!(error = %e, "deployment controller watch error; the watcher retries");
            }
        }
    }

    fn enqueue_all(&self) {
        for d in self.deployments.state() {
            self.queue.add(Key::of(d.as_ref()));
        }
    }

    /// `addReplicaSet`/`updateReplicaSet`: the owner (old and new) is synced; an orphan
    /// that appeared or changed labels is offered to every Deployment selecting it.
    fn replica_set_changed(&self, seen: &mut HashMap<(String, String), SeenReplicaSet>, rs: &ReplicaSet) {
        let now = SeenReplicaSet {
            controller: controller_of(&rs.metadata).cloned(),
            labels: rs.metadata.labels.clone(),
        };
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let before = seen.insert(Key::of(rs).pair(), now);
        let Some(now) = seen.get(&Key::of(rs).pair()) else { return };
        if is_deleting(&rs.metadata) {
            if let Some(key) = self.owner_of_replica_set(rs) {
                self.queue.add(key);
            }
            return;
        }
        let controller_changed = before.as_ref().is_some_and(|b| b.controller != now.controller);
        if controller_changed {
            if let Some(old) = before.as_ref().and_then(|b| b.controller.as_ref()) {
                if let Some(key) = self.deployment_for_ref(&ns, old) {
                    self.queue.add(key);
                }
            }
        }
        if let Some(cref) = &now.controller {
            if let Some(key) = self.deployment_for_ref(&ns, cref) {
                self.queue.add(key);
            }
            return;
        }
        let labels_changed = before.as_ref().is_none_or(|b| b.labels != now.labels);
        if labels_changed || controller_changed {
            for d in self.deployments.state() {
                if d.metadata.namespace.as_deref() != Some(ns.as_str()) {
                    continue;
                }
                let sel = selector_of(&d);
                if selector_is_empty(&sel) {
                    continue;
                }
                if selector_matches(&sel, rs.metadata.labels.as_ref()).unwrap_or(false) {
                    self.queue.add(Key::of(d.as_ref()));
                }
            }
        }
    }

    /// `deletePod`: a Recreate rollout waits for old pods to be gone.
    fn pod_gone(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(cref) = controller_of(&pod.metadata) else { return };
        if cref.kind != "ReplicaSet" {
            return;
        }
        let Some(rs) = self.replica_sets.get(&ObjectRef::new(&cref.name).within(&ns)) else { return };
        if rs.metadata.uid.as_deref() != Some(cref.uid.as_str()) {
            return;
        }
        let Some(key) = self.owner_of_replica_set(&rs) else { return };
        let recreate = self
            .deployments
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
            .is_some_and(|d| strategy_type(&d) == "Recreate");
        if recreate {
            self.queue.add(key);
        }
    }

    fn owner_of_replica_set(&self, rs: &ReplicaSet) -> Option<Key> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        self.deployment_for_ref(ns, controller_of(&rs.metadata)?)
    }

    /// `resolveControllerRef`: the cached Deployment a controller reference points at
    /// (same name and uid), if any.
    fn deployment_for_ref(&self, ns: &str, cref: &OwnerReference) -> Option<Key> {
        if cref.kind != "Deployment" || !cref.api_version.starts_with("apps/") {
            return None;
        }
        let d = self.deployments.get(&ObjectRef::new(&cref.name).within(ns))?;
        (d.metadata.uid.as_deref() == Some(cref.uid.as_str())).then(|| Key::of(d.as_ref()))
    }
}

impl Key {
    fn pair(self) -> (String, String) {
        (self.namespace, self.name)
    }
}

// ---------------------------------------------------------------------------
// Workers

impl Controller {
    async fn work(self: Arc<Self>) {
        // Decisions need all three caches; before they are filled, a Deployment would
        // look as if it had no ReplicaSets.
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.replica_sets.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        loop {
            let key = self.queue.get().await;
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    if e.is_conflict() {
                        tracing::debug!(namespace = %key.namespace, name = %key.name, error = %e, "deployment sync hit a stale cache; retrying");
                    } else {
                        tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "syncing deployment");
                    }
                    if self.queue.add_rate_limited(key.clone()) > MAX_RETRIES {
                        tracing::warn!(namespace = %key.namespace, name = %key.name, "dropping deployment out of the queue after {MAX_RETRIES} failures");
                        self.queue.forget(&key);
                    }
                }
            }
            self.queue.done(&key);
        }
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn d_api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default())
    }

    /// `syncDeployment`.
    async fn sync(&self, key: &Key) -> Result<(), Error> {
        let Some(cached) = self.deployments.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
            return Ok(());
        };
        let mut d = (*cached).clone();
        if selector_is_empty(&selector_of(&d)) {
            self.recorder
                .record(
                    &reference(&d),
                    EventType::Warning,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                .await;
            let mut status = status_of(&d);
            if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                status.observed_generation = d.metadata.generation;
                d.status = Some(status);
                self.update_status(&mut d).await?;
            }
            return Ok(());
        }

        let mut rs_list = self.claim_replica_sets(&d).await?;
        let pod_map = self.pod_map(&d, &rs_list)?;

        if is_deleting(&d.metadata) {
            return self.sync_status_only(&mut d, rs_list).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if is_paused(&d) {
            return self.sync_scale(&mut d, rs_list).await;
        }
        // (Upstream's rollbackTo only exists in extensions/v1beta1, which Pier does not
        // serve; kubectl's undo writes the old template into the Deployment instead.)
        if self.is_scaling_event(&mut d, &mut rs_list).await? {
            return self.sync_scale(&mut d, rs_list).await;
        }
        match strategy_type(&d) {
            "Recreate" => self.rollout_recreate(&mut d, rs_list, &pod_map).await,
            "RollingUpdate" => self.rollout_rolling(&mut d, rs_list).await,
            other => Err(spec_err(&d)(InvalidSpec::Strategy(other.to_string()))),
        }
    }

    /// `getReplicaSetsForDeployment`: the ReplicaSets this Deployment controls, adopting
    /// matching orphans and releasing owned ones whose labels stopped matching.
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let sel = selector_of(d);
        let mut claimed = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for rs in self.replica_sets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let matches = selector_matches(&sel, rs.metadata.labels.as_ref()).map_err(spec_err(d))?;
            match controller_of(&rs.metadata) {
                Some(cref) if cref.uid != uid => {}
                Some(_) => {
                    if matches {
                        claimed.push((*rs).clone());
                    } else if !is_deleting(&d.metadata) {
                        self.release(d, &rs).await?;
                    }
                }
                None => {
                    if is_deleting(&d.metadata) || !matches || is_deleting(&rs.metadata) {
                        continue;
                    }
                    if may_adopt.is_none() {
                        may_adopt = Some(self.recheck_may_adopt(d).await?);
                    }
                    if may_adopt == Some(true) {
                        if let Some(adopted) = self.adopt(d, &rs).await? {
                            claimed.push(adopted);
                        }
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// Upstream's `RecheckDeletionTimestamp`: adoption is decided on a live read, so a
    /// Deployment deleted (or recreated) since the cache saw it adopts nothing.
    async fn recheck_may_adopt(&self, d: &Deployment) -> Result<bool, Error> {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let fresh = match self.d_api(d).get(name).await {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(d_err("reading", d)(e)),
        };
        if fresh.metadata.uid != d.metadata.uid {
            return Err(Error::Recreated {
                namespace: d.metadata.namespace.clone().unwrap_or_default(),
                name: name.to_string(),
                found: fresh.metadata.uid.unwrap_or_default(),
                wanted: d.metadata.uid.clone().unwrap_or_default(),
            });
        }
        Ok(!is_deleting(&fresh.metadata))
    }

    async fn adopt(&self, d: &Deployment, rs: &ReplicaSet) -> Result<Option<ReplicaSet>, Error> {
        let mut copy = rs.clone();
        copy.metadata.owner_references.get_or_insert_with(Vec::new).push(controller_ref(d));
        self.replace_rs(&copy, "adopting").await
    }

    async fn release(&self, d: &Deployment, rs: &ReplicaSet) -> Result<(), Error> {
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let mut copy = rs.clone();
        if let Some(refs) = copy.metadata.owner_references.as_mut() {
            refs.retain(|r| r.uid != uid);
        }
        self.replace_rs(&copy, "releasing").await.map(|_| ())
    }

    /// Writes a ReplicaSet (with its cached resourceVersion); `None` when it is gone.
    async fn replace_rs(&self, rs: &ReplicaSet, action: &'static str) -> Result<Option<ReplicaSet>, Error> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        match self.rs_api(ns).replace(name, &PostParams::default(), rs).await {
            Ok(updated) => Ok(Some(updated)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(rs_err(action, rs)(e)),
        }
    }

    /// `getPodMapForDeployment`: the Deployment's pods by owning ReplicaSet uid.
    fn pod_map(
        &self,
        d: &Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<HashMap<String, Vec<Arc<Pod>>>, Error> {
        let mut map: HashMap<String, Vec<Arc<Pod>>> =
            rs_list.iter().filter_map(|rs| rs.metadata.uid.clone()).map(|uid| (uid, Vec::new())).collect();
        let ns = d.metadata.namespace.as_deref();
        let sel = selector_of(d);
        for pod in self.pods.state() {
            if pod.metadata.namespace.as_deref() != ns {
                continue;
            }
            if !selector_matches(&sel, pod.metadata.labels.as_ref()).map_err(spec_err(d))? {
                continue;
            }
            let Some(cref) = controller_of(&pod.metadata) else { continue };
            if let Some(list) = map.get_mut(&cref.uid) {
                list.push(pod);
            }
        }
        Ok(map)
    }
}

fn controller_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

// ---------------------------------------------------------------------------
// ReplicaSets of a Deployment: finding and creating the new one (sync.go)

impl Controller {
    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when `create`)
    /// and all old ones. An existing new ReplicaSet whose annotations were brought up
    /// to date replaces its entry in `rs_list`, so later steps of the same sync do not
    /// write from the stale copy.
    async fn all_replica_sets(
        &self,
        d: &mut Deployment,
        rs_list: &mut [ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let new_idx = find_new_replica_set(d, rs_list);
        let old: Vec<ReplicaSet> = rs_list
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| rs.clone())
            .collect();
        let new = self.new_replica_set(d, rs_list, new_idx, &old, create).await?;
        Ok((new, old))
    }

    /// `getNewReplicaSet`.
    async fn new_replica_set(
        &self,
        d: &mut Deployment,
        rs_list: &mut [ReplicaSet],
        new_idx: Option<usize>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let new_revision = max_revision(&old_refs) + 1;
        let now = Timestamp::now();
        let min_ready = min_ready_seconds(d);

        if let Some(idx) = new_idx {
            let mut rs = rs_list[idx].clone();
            let annotations_updated = set_new_replica_set_annotations(d, &mut rs, new_revision, true);
            let spec = &mut rs.spec;
            let min_ready_changed = spec.min_ready_seconds.filter(|s| *s != 0) != min_ready;
            if annotations_updated || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                let Some(updated) = self.replace_rs(&rs, "updating").await? else { return Ok(None) };
                rs_list[idx] = updated.clone();
                return Ok(Some(updated));
            }
            let revision =
                rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
            self.set_deployment_revision(d, &revision).await?;
            let mut status = status_of(d);
            if has_progress_deadline(d) && get_condition(&status, PROGRESSING).is_none() {
                let name = rs.metadata.name.clone().unwrap_or_default();
                let c = new_condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_RS,
                    format!("Found new replica set {name:?}"),
                    now,
                );
                set_condition(&mut status, c);
                d.status = Some(status);
                self.update_status(d).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        let spec = d.spec.clone();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = template_meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = format!("{}-{}", d.metadata.name.as_deref().unwrap_or_default(), hash);
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                // Deterministic, so a repeated create cannot make a second one.
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![controller_ref(d)]),
                labels,
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            },
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new_rs)).collect();
        let replicas = new_rs_new_replicas(d, &all, &new_rs).map_err(spec_err(d))?;
        new_rs.spec.replicas = Some(replicas);
        set_new_replica_set_annotations(d, &mut new_rs, new_revision, false);

        let mut already_exists = false;
        let created = match self.rs_api(&ns).create(&PostParams::default(), &new_rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A slow cache or a hash collision: ours if we control it and its
                // template is ours; otherwise bump collisionCount and try another name.
                let existing = self.rs_api(&ns).get(&name).await.map_err(rs_err("reading", &new_rs))?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|c| Some(&c.uid) == d.metadata.uid.as_ref());
                let same =
                    existing.spec.template.as_ref().is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    let mut status = status_of(d);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    d.status = Some(status);
                    self.update_status(d).await?;
                    return Err(Error::HashCollision { namespace: ns, name });
                }
                already_exists = true;
                existing
            }
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => {
                // Every create in a terminating namespace fails; nothing to report.
                return Err(rs_err("creating", &new_rs)(kube::Error::Api(s)));
            }
            Err(e) => {
                let message = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                let msg = format!("Failed to create new replica set {name:?}: {message}");
                if has_progress_deadline(d) {
                    let mut status = status_of(d);
                    set_condition(
                        &mut status,
                        new_condition(PROGRESSING, "False", FAILED_RS_CREATE, msg.clone(), now),
                    );
                    d.status = Some(status);
                    // The create failure is the thing to report; a failed status write adds nothing.
                    let _ = self.update_status(d).await;
                }
                self.recorder.record(&reference(d), EventType::Warning, FAILED_RS_CREATE, &msg).await;
                return Err(rs_err("creating", &new_rs)(e));
            }
        };
        if !already_exists && replicas > 0 {
            let msg = format!("Scaled up replica set {name} from 0 to {replicas}");
            self.recorder.record(&reference(d), EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        self.set_deployment_revision(d, &new_revision.to_string()).await?;
        if !already_exists && has_progress_deadline(d) {
            let mut status = status_of(d);
            let c = new_condition(
                PROGRESSING,
                "True",
                NEW_REPLICA_SET,
                format!("Created new replica set {name:?}"),
                now,
            );
            set_condition(&mut status, c);
            d.status = Some(status);
            self.update_status(d).await?;
        }
        Ok(Some(created))
    }

    /// `SetDeploymentRevision`, written at once (see the module docs for why a patch).
    async fn set_deployment_revision(&self, d: &mut Deployment, revision: &str) -> Result<(), Error> {
        if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str) == Some(revision)
        {
            return Ok(());
        }
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({ "metadata": { "annotations": { REVISION: revision } } });
        let patched = self
            .d_api(d)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(d_err("annotating the revision of", d))?;
        if patched.metadata.generation != d.metadata.generation {
            // The spec moved on; the watch event for that queues a fresh sync.
            return Err(Error::Stale { namespace: d.metadata.namespace.clone().unwrap_or_default(), name });
        }
        d.metadata.annotations = patched.metadata.annotations;
        d.metadata.resource_version = patched.metadata.resource_version;
        Ok(())
    }

    /// Writes `d.status` through the status subresource, with `d`'s resourceVersion.
    async fn update_status(&self, d: &mut Deployment) -> Result<(), Error> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let updated = self
            .d_api(d)
            .replace_status(&name, &PostParams::default(), d)
            .await
            .map_err(d_err("updating the status of", d))?;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Scaling (sync.go)

impl Controller {
    /// `sync`: scaling events and paused Deployments.
    async fn sync_scale(&self, d: &mut Deployment, mut rs_list: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = self.all_replica_sets(d, &mut rs_list, false).await?;
        self.scale(d, new.as_ref(), &old).await?;
        if is_paused(d) {
            self.cleanup_deployment(&old, d).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref(), d).await
    }

    async fn sync_status_only(&self, d: &mut Deployment, mut rs_list: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = self.all_replica_sets(d, &mut rs_list, false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref(), d).await
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another `spec.replicas`.
    async fn is_scaling_event(&self, d: &mut Deployment, rs_list: &mut [ReplicaSet]) -> Result<bool, Error> {
        let (new, old) = self.all_replica_sets(d, rs_list, false).await?;
        let want = desired(d);
        Ok(old
            .iter()
            .chain(new.as_ref())
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| desired_replicas_annotation(rs).is_some_and(|a| a != want)))
    }

    /// `scale`: one active ReplicaSet takes the new size; a saturated new one takes
    /// all; otherwise (rolling) the change is spread proportionally.
    async fn scale(&self, d: &Deployment, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        if let Some(rs) = find_active_or_latest(new, &old_refs) {
            if rs_replicas(rs) != desired(d) {
                self.scale_and_record(rs, desired(d), d).await?;
            }
            return Ok(());
        }
        if is_saturated(d, new) {
            for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
                self.scale_and_record(rs, 0, d).await?;
            }
            return Ok(());
        }
        if is_rolling_update(d) {
            let active: Vec<&ReplicaSet> =
                old_refs.iter().copied().chain(new).filter(|rs| rs_replicas(rs) > 0).collect();
            for (name, size) in proportional_sizes(d, &active) {
                if let Some(rs) = active.iter().find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
                {
                    self.scale_replica_set(rs, size, d).await?;
                }
            }
        }
        Ok(())
    }

    /// `scaleReplicaSetAndRecordEvent`: scales when the size differs.
    async fn scale_and_record(
        &self,
        rs: &ReplicaSet,
        size: i32,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), Error> {
        if rs_replicas(rs) == size {
            return Ok((false, rs.clone()));
        }
        self.scale_replica_set(rs, size, d).await
    }

    /// `scaleReplicaSet`: writes the size and the replicas annotations; a size change
    /// is a `ScalingReplicaSet` event.
    async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        size: i32,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), Error> {
        let want = desired(d);
        let max = want + max_surge(d);
        let size_changed = rs_replicas(rs) != size;
        if !size_changed && !replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let before = rs_replicas(rs);
        let mut copy = rs.clone();
        copy.spec.replicas = Some(size);
        set_replicas_annotations(&mut copy, want, max);
        let Some(updated) = self.replace_rs(&copy, "scaling").await? else { return Ok((false, rs.clone())) };
        if size_changed {
            let direction = if before < size { "up" } else { "down" };
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            let msg = format!("Scaled {direction} replica set {name} from {before} to {size}");
            self.recorder.record(&reference(d), EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        Ok((size_changed, updated))
    }

    /// `cleanupDeployment`: deletes the oldest empty ReplicaSets beyond
    /// `revisionHistoryLimit`.
    async fn cleanup_deployment(&self, old: &[ReplicaSet], d: &Deployment) -> Result<(), Error> {
        let Some(limit) = d.spec.revision_history_limit else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|rs| !is_deleting(&rs.metadata)).collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess as usize) {
            let status = rs.status.clone().unwrap_or_default();
            let observed = status.observed_generation.unwrap_or(0);
            if status.replicas != 0 || rs_replicas(rs) != 0 || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            match self.rs_api(ns).delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                // Stop at the first failure rather than pile more deletes on the server.
                Err(e) => return Err(rs_err("deleting old", rs)(e)),
            }
        }
        Ok(())
    }

    /// `syncDeploymentStatus`.
    async fn sync_deployment_status(
        &self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<(), Error> {
        let status = calculate_status(all, new, d, Timestamp::now());
        if status == normalize_status(status_of(d)) {
            return Ok(());
        }
        d.status = Some(status);
        self.update_status(d).await
    }

    /// `checkPausedConditions`: Progressing turns Unknown while paused, so the time
    /// spent paused never counts against the progress deadline.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), Error> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let mut status = status_of(d);
        let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED);
        let now = Timestamp::now();
        let cond = if is_paused(d) && !paused_recorded {
            new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now)
        } else if !is_paused(d) && paused_recorded {
            new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now)
        } else {
            return Ok(());
        };
        set_condition(&mut status, cond);
        d.status = Some(status);
        self.update_status(d).await
    }
}

// ---------------------------------------------------------------------------
// Rollouts (rolling.go, recreate.go, progress.go)

impl Controller {
    /// `rolloutRolling`: one step up or one step down per sync, then status.
    async fn rollout_rolling(&self, d: &mut Deployment, mut rs_list: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = self.all_replica_sets(d, &mut rs_list, true).await?;
        let Some(new) = new else { return Ok(()) };
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();

        if self.reconcile_new_replica_set(&all, &new, d).await? {
            return self.sync_rollout_status(&all, Some(&new), d).await;
        }
        let active_old: Vec<ReplicaSet> = old.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect();
        if self.reconcile_old_replica_sets(&all, active_old, &new, d).await? {
            return self.sync_rollout_status(&all, Some(&new), d).await;
        }
        if deployment_complete(d, &status_of(d)) {
            self.cleanup_deployment(&old, d).await?;
        }
        self.sync_rollout_status(&all, Some(&new), d).await
    }

    /// `reconcileNewReplicaSet`.
    async fn reconcile_new_replica_set(
        &self,
        all: &[&ReplicaSet],
        new: &ReplicaSet,
        d: &Deployment,
    ) -> Result<bool, Error> {
        let want = desired(d);
        if rs_replicas(new) == want {
            return Ok(false);
        }
        if rs_replicas(new) > want {
            return Ok(self.scale_and_record(new, want, d).await?.0);
        }
        let size = new_rs_new_replicas(d, all, new).map_err(spec_err(d))?;
        Ok(self.scale_and_record(new, size, d).await?.0)
    }

    /// `reconcileOldReplicaSets`: first drop old replicas that are not available
    /// (that cannot hurt availability), then scale old sets down as far as
    /// maxUnavailable allows.
    async fn reconcile_old_replica_sets(
        &self,
        all: &[&ReplicaSet],
        mut old: Vec<ReplicaSet>,
        new: &ReplicaSet,
        d: &Deployment,
    ) -> Result<bool, Error> {
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        if replica_count(&old_refs) == 0 {
            return Ok(false);
        }
        let max_down = max_scaled_down(d, all, new);
        if max_down <= 0 {
            return Ok(false);
        }
        old.sort_by(by_creation);
        let sorted: Vec<&ReplicaSet> = old.iter().collect();
        let (plan, cleaned) = unhealthy_cleanup_plan(&sorted, max_down);
        for (i, size) in plan {
            match self.scale_and_record(&old[i], size, d).await {
                Ok((_, updated)) => old[i] = updated,
                Err(e) => {
                    // Upstream swallows this and lets the next sync retry; say what happened.
                    tracing::debug!(error = %e, "cleaning up unhealthy old replicas");
                    return Ok(false);
                }
            }
        }
        let sorted: Vec<&ReplicaSet> = old.iter().collect();
        let with_new: Vec<&ReplicaSet> = sorted.iter().copied().chain(std::iter::once(new)).collect();
        let (plan, scaled) = scale_down_old_plan(d, &with_new, &sorted);
        for (i, size) in plan {
            if let Err(e) = self.scale_and_record(&old[i], size, d).await {
                tracing::debug!(error = %e, "scaling down old replica sets");
                return Ok(false);
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// `rolloutRecreate`.
    async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        mut rs_list: Vec<ReplicaSet>,
        pod_map: &HashMap<String, Vec<Arc<Pod>>>,
    ) -> Result<(), Error> {
        // No new ReplicaSet yet: nothing may scale up before the old ones are down.
        let (mut new, mut old) = self.all_replica_sets(d, &mut rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
            scaled_down |= self.scale_and_record(rs, 0, d).await?.0;
        }
        if scaled_down {
            let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
            return self.sync_rollout_status(&all, new.as_ref(), d).await;
        }
        if old_pods_running(new.as_ref(), &old, pod_map) {
            let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
            return self.sync_rollout_status(&all, new.as_ref(), d).await;
        }
        if new.is_none() {
            (new, old) = self.all_replica_sets(d, &mut rs_list, true).await?;
        }
        if let Some(rs) = new.as_ref() {
            self.scale_and_record(rs, desired(d), d).await?;
        }
        if deployment_complete(d, &status_of(d)) {
            self.cleanup_deployment(&old, d).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_rollout_status(&all, new.as_ref(), d).await
    }

    /// `syncRolloutStatus`: writes the status when it changed; otherwise, for a rollout
    /// still under way, schedules the check that notices its deadline passing.
    async fn sync_rollout_status(
        &self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let status = rollout_status(d, all, new, now);
        if status == normalize_status(status_of(d)) {
            if let Some(after) = progress_check_after(d, &status, now) {
                self.queue.add_after(Key::of(d), after);
            }
            return Ok(());
        }
        d.status = Some(status);
        self.update_status(d).await
    }
}

/// `oldPodsRunning`: old ReplicaSets still report pods, or pods of theirs are not
/// finished.
fn old_pods_running(
    new: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    pod_map: &HashMap<String, Vec<Arc<Pod>>>,
) -> bool {
    let old_refs: Vec<&ReplicaSet> = old.iter().collect();
    if actual_replica_count(&old_refs) > 0 {
        return true;
    }
    let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
    pod_map.iter().filter(|(uid, _)| Some(uid.as_str()) != new_uid).flat_map(|(_, pods)| pods).any(|pod| {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Failed") | Some("Succeeded"))
    })
}
