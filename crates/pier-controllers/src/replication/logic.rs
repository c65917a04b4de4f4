//! The pure decisions of the replication controllers, apart from any I/O so they can be
//! tested as tables: which pods a controller owns (adopt, release, ignore), how many to
//! create or delete, which pods go first when scaling down, and the status counts.
//! Each rule follows upstream's `pkg/controller/replicaset` and
//! `pkg/controller/controller_utils.go`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

/// The most pods one sync creates or deletes (upstream's `BurstReplicas`); the rest
/// follow once the watch has shown these.
pub const BURST_REPLICAS: usize = 500;

/// The first slow-start batch (upstream's `SlowStartInitialBatchSize`): one create that
/// fails (quota, admission) stops the sync before it floods the API server.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// The annotation by which users rank pods for deletion (PodDeletionCost, on by default).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pod selector: a ReplicationController's plain map or a ReplicaSet's LabelSelector.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Map(BTreeMap<String, String>),
    Label(LabelSelector),
}

impl Selector {
    /// Whether the selector selects nothing. Upstream: "if a ReplicaSet with a nil or
    /// empty selector creeps in, it should match nothing, not everything".
    pub fn is_empty(&self) -> bool {
        match self {
            Selector::Map(m) => m.is_empty(),
            Selector::Label(s) => crate::labels::is_empty(s),
        }
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.is_empty() {
            return false;
        }
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        match self {
            Selector::Map(m) => m.iter().all(|(k, v)| labels.get(k) == Some(v)),
            // Validation rejects unknown operators; never match on one.
            Selector::Label(s) => crate::labels::matches(s, Some(labels)).unwrap_or(false),
        }
    }
}

/// Whether a pod still counts: not finished and not being deleted (`IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && phase != Some("Succeeded") && phase != Some("Failed")
}

/// The pod's `Ready` condition when it is True.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some()
}

/// When the pod became ready, if it is ready and the time is known.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)?.last_transition_time.as_ref().map(|t| t.0)
}

/// How long until a ready pod counts as available, `None` when it is not ready, zero
/// when it already is available (`IsPodAvailable`: ready for at least minReadySeconds).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    // Upstream treats a ready pod without a transition time as not yet available.
    let since = ready_since(pod)?;
    let ready_for = now.duration_since(since);
    let needed = Duration::from_secs(min_ready_seconds as u64);
    let ready_for = Duration::try_from(ready_for).unwrap_or(Duration::ZERO);
    // Upstream requires strictly more than minReadySeconds ("Before(now)").
    if ready_for > needed {
        Some(Duration::ZERO)
    } else {
        Some(needed - ready_for + Duration::from_millis(1))
    }
}

/// The controller reference of an object, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// What a controller does with one active pod in its namespace (upstream's
/// `ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching: counted.
    Keep,
    /// An orphan that matches: take it (then counted).
    Adopt,
    /// Ours but no longer matching: let it go (remove our ownerReference).
    Release,
    /// Someone else's, or not ours to touch.
    Ignore,
}

/// Decides a pod's fate for the owner with `owner_uid`.
pub fn claim(owner_uid: &str, owner_deleting: bool, selector: &Selector, pod: &Pod) -> Claim {
    let matches = selector.matches(pod.metadata.labels.as_ref());
    match controller_ref(&pod.metadata) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Keep,
        // An owner being deleted keeps its pods (the garbage collector handles them).
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || pod.metadata.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// How many pods to create (positive) or delete (negative) now, capped at a burst.
pub fn replica_diff(active: usize, desired: i32) -> i64 {
    let diff = desired.max(0) as i64 - active as i64;
    diff.clamp(-(BURST_REPLICAS as i64), BURST_REPLICAS as i64)
}

/// The sizes of the slow-start batches for `count` creations: 1, 2, 4, ... as upstream's
/// `slowStartBatch`, each batch only after the previous one fully succeeded.
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut remaining = count;
    let mut batch = initial.max(1);
    while remaining > 0 {
        let size = batch.min(remaining);
        sizes.push(size);
        remaining -= size;
        batch = size * 2;
    }
    sizes
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        // Pending, and an empty phase, count as pending.
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// The log2 bucket of how long ago `t` was: times in one bucket count as equal, so
/// scale-down does not always pick the very newest pods (LogarithmicScaleDown).
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.as_nanosecond() - t.as_nanosecond();
    if nanos > 0 {
        (nanos as f64).log2() as i64
    } else {
        -1
    }
}

/// Compares two optional times where the empty one and then the newer one come first
/// (`afterOrZero`), in log buckets against `now`, ties broken by uid.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>, ua: &str, ub: &str, now: Timestamp) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) if a == b => Ordering::Equal,
        (Some(a), Some(b)) => match log_bucket(a, now).cmp(&log_bucket(b, now)) {
            Ordering::Equal => ua.cmp(ub),
            o => o,
        },
    }
}

/// Upstream's `ActivePodsWithRanks` order: the pods to delete first come first.
/// `rank` is how many of the controller's active pods share the pod's node.
fn deletion_order(a: (&Pod, usize), b: (&Pod, usize), now: Timestamp) -> Ordering {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let (na, nb) = (node(pa), node(pb));
    // 1. Unassigned before assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() { Ordering::Less } else { Ordering::Greater };
    }
    // 2. Pending < Unknown < Running.
    let o = phase_ordinal(pa).cmp(&phase_ordinal(pb));
    if o != Ordering::Equal {
        return o;
    }
    // 3. Not ready before ready.
    let (ya, yb) = (is_ready(pa), is_ready(pb));
    if ya != yb {
        return if ya { Ordering::Greater } else { Ordering::Less };
    }
    // 4. Lower deletion cost first.
    let o = deletion_cost(pa).cmp(&deletion_cost(pb));
    if o != Ordering::Equal {
        return o;
    }
    // 5. Doubled up (more siblings on the same node) first.
    if ra != rb {
        return rb.cmp(&ra);
    }
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    // 6. Ready for a shorter time first.
    if ya && yb {
        let o = newer_first(ready_since(pa), ready_since(pb), &uid(pa), &uid(pb), now);
        if o != Ordering::Equal {
            return o;
        }
    }
    // 7. More container restarts first.
    let o = max_restarts(pb).cmp(&max_restarts(pa));
    if o != Ordering::Equal {
        return o;
    }
    // 8. Newer first.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    newer_first(created(pa), created(pb), &uid(pa), &uid(pb), now)
}

/// The `count` pods to delete from `pods` (upstream's `getPodsToDelete`), ranked by
/// [`deletion_order`] with the sibling counts taken from `related`.
pub fn pods_to_delete<'a>(pods: &[&'a Pod], related: &[&Pod], count: usize, now: Timestamp) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        *on_node.entry(node).or_default() += 1;
    }
    let mut ranked: Vec<(&'a Pod, usize)> = pods
        .iter()
        .map(|p| {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            (*p, on_node.get(&node).copied().unwrap_or(0))
        })
        .collect();
    ranked.sort_by(|a, b| deletion_order(*a, *b, now));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

/// The counts of a ReplicationController's or ReplicaSet's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
}

/// Counts the owned active pods (`calculateStatus`) and says when the next pod turns
/// available, so the controller looks again then (minReadySeconds has no watch event).
pub fn count(
    pods: &[&Pod],
    template_labels: Option<&BTreeMap<String, String>>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> (Counts, Option<Duration>) {
    let mut c = Counts { replicas: pods.len() as i32, ..Counts::default() };
    let mut next: Option<Duration> = None;
    for pod in pods {
        let labels = pod.metadata.labels.as_ref();
        let fully =
            template_labels.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if fully {
            c.fully_labeled_replicas += 1;
        }
        match available_in(pod, min_ready_seconds, now) {
            None => {}
            Some(d) if d.is_zero() => {
                c.ready_replicas += 1;
                c.available_replicas += 1;
            }
            Some(d) => {
                c.ready_replicas += 1;
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
    }
    (c, next)
}

/// A pod for `template`, controlled by the owner (`GetPodFromTemplate`): the template's
/// labels, annotations, finalizers and spec, `generateName: <owner>-`.
pub fn pod_from_template(template: &PodTemplateSpec, owner: OwnerReference, namespace: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests;
