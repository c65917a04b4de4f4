//! The deployment controller's decisions, free of I/O: the pod-template hash, which
//! ReplicaSet is new, how far a rollout step may scale up or down, proportional scaling,
//! revision annotations and status conditions. Each function follows its namesake in
//! upstream's `pkg/controller/deployment` (mostly `util/deployment_util.go`), so the
//! numbers Pier computes are the numbers upstream computes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

#[cfg(test)]
mod tests;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// A ReplicaSet's place in its Deployment's rollout history (also on the Deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet served, when a rollback made it new again.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled by it.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled: the base of
/// proportional scaling.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Upstream's `maxRevHistoryLengthInChars`: the revision-history annotation stays short.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// A value the API should have rejected; reported rather than guessed around.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    #[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
    NotAPercentage(String),
    #[error("invalid value for IntOrString: invalid value {0:?}")]
    BadPercentage(String),
    #[error("{0:?} is not a valid label selector operator")]
    SelectorOperator(String),
    #[error("deployment type {0:?} isn't supported")]
    Strategy(String),
}

// ---------------------------------------------------------------------------
// Pod-template hash and template equality

/// `controller.ComputeHash`: FNV-32a over the template (and the collision count, as
/// eight little-endian bytes), printed in decimal and spelled with the safe alphabet
/// of `rand.SafeEncodeString` (no vowels, so no words).
///
/// Upstream hashes the Go struct's debug print, which cannot be reproduced outside Go;
/// Pier hashes the template's canonical JSON (sorted keys, empty values dropped), so
/// names have upstream's shape and stability but not upstream's exact letters.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::new();
    let mut canonical = String::new();
    write_canonical(&normalized(template), &mut canonical);
    hasher.write(canonical.as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hasher.write(&bytes);
    }
    safe_encode(&hasher.finish().to_string())
}

struct Fnv32a(u32);

impl Fnv32a {
    fn new() -> Self {
        Fnv32a(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(&self) -> u32 {
        self.0
    }
}

/// `rand.SafeEncodeString`: each character becomes one of 27 letters and digits that
/// cannot spell words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars().map(|c| char::from(ALPHANUMS[(c as usize) % ALPHANUMS.len()])).collect()
}

/// A template as JSON without nulls, empty lists and empty maps: Go's semantic
/// equality treats nil and empty alike, and a template that went through kubectl's JSON
/// patch (`rollout undo`) carries `creationTimestamp: null`.
fn normalized(template: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(template).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

/// Removes nulls, empty arrays and empty objects; true when `v` itself is now empty.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, child| !prune(child));
            map.is_empty()
        }
        _ => false,
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `EqualIgnoreHash`: whether two templates are the same apart from the
/// pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(&without_hash(a)) == normalized(&without_hash(b))
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

// ---------------------------------------------------------------------------
// Label selectors

/// Whether a selector selects everything (no matchLabels, no matchExpressions).
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    crate::labels::is_empty(sel)
}

/// `LabelSelectorAsSelector(...).Matches(labels)`.
pub fn selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, InvalidSpec> {
    crate::labels::matches(sel, labels).map_err(|e| InvalidSpec::SelectorOperator(e.0))
}

// ---------------------------------------------------------------------------
// Accessors with the API's defaults

/// `spec.replicas` (defaulted to 1 by the API).
pub fn desired(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (defaulted to 1 by the API).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.paused.unwrap_or(false)
}

/// `HasProgressDeadline`: set and not MaxInt32 (upstream's "never").
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline(d).is_some()
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

pub fn min_ready_seconds(d: &Deployment) -> Option<i32> {
    d.spec.min_ready_seconds.filter(|s| *s != 0)
}

pub fn status_of(d: &Deployment) -> DeploymentStatus {
    d.status.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// maxSurge and maxUnavailable

/// `intstr.GetScaledValueFromIntOrPercent`: an integer as is, a percentage of `total`
/// rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, InvalidSpec> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err(InvalidSpec::NotAPercentage(s.clone()));
            };
            let pct: i64 = digits.parse().map_err(|_| InvalidSpec::BadPercentage(s.clone()))?;
            let product = pct * i64::from(total);
            let scaled = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable down, and when both come
/// out zero maxUnavailable becomes 1 so the rollout can still move.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), InvalidSpec> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.as_ref());
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref());
    // Validation rejects malformed values; a stored one that slipped through counts as 0,
    // as upstream ignores the error here.
    resolve_fenceposts(surge, unavailable, desired(d)).unwrap_or((0, 1))
}

/// `MaxSurge`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// `MaxUnavailable`: 0 unless rolling with replicas, and never more than the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || desired(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired(d))
}

// ---------------------------------------------------------------------------
// Replica counts over sets of ReplicaSets

pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

pub fn actual_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_status_replicas(rs)).sum()
}

pub fn available_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_available(rs)).sum()
}

fn ready_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_ready(rs)).sum()
}

/// `NewRSNewReplicas`: how big the new ReplicaSet may be now. Rolling: up to
/// `replicas + maxSurge` pods in all, never more than `replicas` in the new set.
/// Recreate: all at once.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, InvalidSpec> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge = max_surge(d);
            let current = replica_count(all);
            let max_total = desired(d) + surge;
            if current >= max_total {
                return Ok(rs_replicas(new_rs));
            }
            let up = (max_total - current).min(desired(d) - rs_replicas(new_rs));
            Ok(rs_replicas(new_rs) + up)
        }
        "Recreate" => Ok(desired(d)),
        other => Err(InvalidSpec::Strategy(other.to_string())),
    }
}

/// `IsSaturated`: the new ReplicaSet has all the replicas, was sized for this
/// `spec.replicas`, and all are available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(annotated) = desired_replicas_annotation(rs) else { return false };
    rs_replicas(rs) == desired(d) && annotated == desired(d) && rs_available(rs) == desired(d)
}

/// `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = desired(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones,
/// than the status last recorded.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = status_of(d);
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// `DeploymentTimedOut`: no progress recorded for `progressDeadlineSeconds`.
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(cond) = get_condition(new, PROGRESSING) else { return false };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = cond.last_update_time.as_ref() else { return false };
    from.0.as_millisecond() + i64::from(deadline) * 1000 < now.as_millisecond()
}

// ---------------------------------------------------------------------------
// Orders and selections of ReplicaSets

/// `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ts = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (ts(a), ts(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}

/// `ReplicaSetsBySizeOlder`: largest first, then oldest first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

/// `ReplicaSetsBySizeNewer`: largest first, then newest first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

/// `ReplicaSetsByRevision`: lowest revision first, then oldest.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let (ra, rb) = (revision(a).unwrap_or(0), revision(b).unwrap_or(0));
    if ra == rb {
        by_creation(a, b)
    } else {
        ra.cmp(&rb)
    }
}

/// `FindNewReplicaSet`: the oldest ReplicaSet whose template equals the Deployment's.
pub fn find_new_replica_set(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let template = &d.spec.template;
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|&a, &b| by_creation(&rss[a], &rss[b]));
    idx.into_iter().find(|&i| rss[i].spec.template.as_ref().is_some_and(|t| equal_ignore_hash(t, template)))
}

/// `FindActiveOrLatest`: with at most one ReplicaSet that has replicas, that one (or
/// the newest when none has); `None` when several do and scaling must be proportional.
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted: Vec<&ReplicaSet> = old.to_vec();
    old_sorted.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> =
        old_sorted.iter().copied().chain(new_rs).filter(|rs| rs_replicas(rs) > 0).collect();
    match active.len() {
        0 => new_rs.or_else(|| old_sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Scaling plans: the sizes upstream's rollout steps would write, in order

/// `scale()`'s proportional branch: when several ReplicaSets have replicas and
/// `spec.replicas` changed, spread the difference in proportion to their sizes (read
/// against the max-replicas annotation) and give the rounding leftover to the largest.
/// Returns every active ReplicaSet's new size, in the order upstream writes them.
pub fn proportional_sizes(d: &Deployment, active: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let mut all: Vec<&ReplicaSet> = active.to_vec();
    let current = replica_count(&all);
    let allowed = if desired(d) > 0 { desired(d) + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    match to_add.cmp(&0) {
        Ordering::Greater => all.sort_by(|a, b| by_size_newer(a, b)),
        Ordering::Less => all.sort_by(|a, b| by_size_older(a, b)),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(all.len());
    for rs in &all {
        let size = if to_add != 0 {
            let p = replica_set_proportion(rs, d, to_add, added);
            added += p;
            rs_replicas(rs) + p
        } else {
            rs_replicas(rs)
        };
        sizes.push((rs.metadata.name.clone().unwrap_or_default(), size));
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// `GetReplicaSetProportion`: this ReplicaSet's share of `to_add`, bounded by what is
/// still left to add (or remove).
pub fn replica_set_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if desired(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = desired(d) + max_surge(d);
    let before = match max_replicas_annotation(rs) {
        Some(v) if v != 0 => v,
        // Tampered or missing: fall back to the current size, as upstream does.
        _ => status_of(d).replicas.unwrap_or(0),
    };
    if before == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(before);
    // Go's math.Round: halves away from zero, as f64::round.
    size.round() as i32 - rs_replicas(rs)
}

/// `cleanupUnhealthyReplicas`: old ReplicaSets (oldest first) lose their unavailable
/// replicas, at most `max_cleanup` in all; removing them cannot lower availability.
/// Returns (index into `old_sorted`, new size) per ReplicaSet to scale, and the total.
pub fn unhealthy_cleanup_plan(old_sorted: &[&ReplicaSet], max_cleanup: i32) -> (Vec<(usize, i32)>, i32) {
    let mut plan = Vec::new();
    let mut total = 0;
    for (i, rs) in old_sorted.iter().enumerate() {
        if total >= max_cleanup {
            break;
        }
        let replicas = rs_replicas(rs);
        if replicas == 0 || replicas == rs_available(rs) {
            continue;
        }
        let count = (max_cleanup - total).min(replicas - rs_available(rs));
        plan.push((i, replicas - count));
        total += count;
    }
    (plan, total)
}

/// `scaleDownOldReplicaSetsForRollingUpdate`: with more than `replicas - maxUnavailable`
/// pods available in all, old ReplicaSets (oldest first) give up the surplus.
pub fn scale_down_old_plan(
    d: &Deployment,
    all: &[&ReplicaSet],
    old_sorted: &[&ReplicaSet],
) -> (Vec<(usize, i32)>, i32) {
    let min_available = desired(d) - max_unavailable(d);
    let available = available_replica_count(all);
    if available <= min_available {
        return (Vec::new(), 0);
    }
    let target = available - min_available;
    let mut plan = Vec::new();
    let mut total = 0;
    for (i, rs) in old_sorted.iter().enumerate() {
        if total >= target {
            break;
        }
        let replicas = rs_replicas(rs);
        if replicas == 0 {
            continue;
        }
        let count = replicas.min(target - total);
        plan.push((i, replicas - count));
        total += count;
    }
    (plan, total)
}

/// How many old replicas a rolling step may remove at most (`reconcileOldReplicaSets`):
/// everything above `replicas - maxUnavailable`, less the new set's unavailable pods.
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let min_available = desired(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    replica_count(all) - min_available - new_unavailable
}

// ---------------------------------------------------------------------------
// Annotations

/// The revision annotation as a number (absent counts as 0); `None` when unparsable.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// `MaxRevision` (unparsable revisions are skipped).
pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().filter_map(|rs| revision(rs)).max().unwrap_or(0).max(0)
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS)
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, MAX_REPLICAS)
}

fn skip_copy(key: &str) -> bool {
    matches!(key, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO)
}

/// `ReplicasAnnotationsNeedUpdate`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k)).cloned();
    get(DESIRED_REPLICAS) != Some(desired.to_string()) || get(MAX_REPLICAS) != Some(max.to_string())
}

/// `SetReplicasAnnotations`; true when something changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired.to_string()), (MAX_REPLICAS, max.to_string())] {
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations (but its own
/// bookkeeping ones), raises the revision to `new_revision` (remembering the old one in
/// the revision history, as a rollback does), and for a set about to be created the
/// replicas annotations. True when anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            // Upstream gives up on a ReplicaSet whose revision is not a number.
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        a.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                a.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut entries: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
                    total -= entries[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    entries = entries.split_off(start);
                    entries.push(&old);
                    let joined = entries.join(",");
                    a.insert(REVISION_HISTORY.to_string(), joined);
                }
            }
        }
    }
    if !exists {
        let want = desired(d);
        if set_replicas_annotations(rs, want, want + max_surge(d)) {
            changed = true;
        }
    }
    changed
}

// ---------------------------------------------------------------------------
// Conditions and status

/// A timestamp at the API's resolution (seconds), so what is written reads back equal.
fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `NewDeploymentCondition`, with both times `now` (to the second).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let now = seconds(now);
    DeploymentCondition {
        type_: Some(type_.to_string()),
        status: Some(status.to_string()),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some(type_))
}

/// `SetDeploymentCondition`: unchanged when status and reason are the same; otherwise
/// replaces the condition (moving it last), keeping the transition time when only the
/// reason changed.
pub fn set_condition(s: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let Some(type_) = cond.type_.clone() else { return };
    if let Some(cur) = get_condition(s, &type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &type_);
    s.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|c| c.type_.as_deref() != Some(type_));
        if c.is_empty() {
            s.conditions = None;
        }
    }
}

fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    if v == T::default() {
        None
    } else {
        Some(v)
    }
}

/// A status as the API round-trips it: zero counts are omitted (`omitempty`).
pub fn normalize_status(mut s: DeploymentStatus) -> DeploymentStatus {
    for f in [
        &mut s.available_replicas,
        &mut s.ready_replicas,
        &mut s.replicas,
        &mut s.unavailable_replicas,
        &mut s.updated_replicas,
        &mut s.terminating_replicas,
    ] {
        *f = f.and_then(nonzero);
    }
    s.observed_generation = s.observed_generation.and_then(nonzero);
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

/// `calculateStatus`: counts from the ReplicaSets and the Available condition.
pub fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all);
    let total = replica_count(all);
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_replica_count(all)),
        updated_replicas: Some(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: Some(ready_replica_count(all)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    if available >= desired(d) - max_unavailable(d) {
        let c = new_condition(
            AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        );
        set_condition(&mut s, c);
    } else {
        let c = new_condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        );
        set_condition(&mut s, c);
    }
    normalize_status(s)
}

/// `syncRolloutStatus`'s computation: `calculateStatus` plus the Progressing condition
/// (complete, progressing or timed out) and ReplicaSets' ReplicaFailure conditions.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut s = calculate_status(all, new_rs, d, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut s, PROGRESSING);
    }
    let old = status_of(d);
    let current = get_condition(&old, PROGRESSING);
    let complete_before = s.replicas == s.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let subject = |what: &str| match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(rs) => format!("ReplicaSet {rs:?} {what}"),
        None => format!("Deployment {name:?} {what}"),
    };
    if has_progress_deadline(d) && !complete_before {
        if deployment_complete(d, &s) {
            let c = new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                subject("has successfully progressed."),
                now,
            );
            set_condition(&mut s, c);
        } else if deployment_progressing(d, &s) {
            let mut c =
                new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, subject("is progressing."), now);
            // Progress moves lastUpdateTime even with the same reason, which
            // set_condition would not; keep the transition time of a True condition.
            if let Some(cur) = current {
                if cur.status.as_deref() == Some("True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if deployment_timed_out(d, &s, now) {
            let c =
                new_condition(PROGRESSING, "False", TIMED_OUT, subject("has timed out progressing."), now);
            set_condition(&mut s, c);
        }
    }
    match replica_failure(all, new_rs) {
        Some(c) => set_condition(&mut s, c),
        None => remove_condition(&mut s, REPLICA_FAILURE),
    }
    normalize_status(s)
}

/// `getReplicaFailures`: the new ReplicaSet's ReplicaFailure condition, else any old one's.
fn replica_failure(all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some(REPLICA_FAILURE))
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.clone(),
                last_update_time: c.last_transition_time.clone(),
            })
    };
    new_rs.and_then(failure).or_else(|| all.iter().find_map(|rs| failure(rs)))
}

/// `requeueStuckDeployment`: when a rollout in progress must be looked at again to
/// notice its progress deadline passing. `Some(ZERO)` means now.
pub fn progress_check_after(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let old = status_of(d);
    let cond = get_condition(&old, PROGRESSING)?;
    if deployment_complete(d, new) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let last = cond.last_update_time.as_ref()?.0;
    let due_ms = (last.as_millisecond() + i64::from(deadline) * 1000) - now.as_millisecond();
    if due_ms < 1000 {
        return Some(Duration::ZERO);
    }
    // A second more, as upstream, so the check lands after the deadline, not on it.
    Some(Duration::from_millis(due_ms as u64) + Duration::from_secs(1))
}
