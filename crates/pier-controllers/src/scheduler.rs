//! The scheduler: binds each pod that has no `spec.nodeName` (and asks for the
//! default scheduler) to a node, as upstream's `default-scheduler` does with its basic
//! filters:
//!
//! - a node must be schedulable (`spec.unschedulable` unset, or tolerated), Ready (a
//!   node that is not is treated as tainted `node.kubernetes.io/not-ready` or
//!   `node.kubernetes.io/unreachable`, as upstream's node lifecycle controller taints
//!   it), have every `NoSchedule`/`NoExecute` taint tolerated, and match the pod's
//!   `nodeSelector`;
//! - among the nodes that fit, the one with the fewest pods wins (ties go to the
//!   first by name, so placement is predictable);
//! - binding goes through the pods' `binding` subresource, as upstream's does (it sets
//!   `spec.nodeName` once and the `PodScheduled` condition), and records a `Scheduled`
//!   event;
//! - a pod that fits nowhere stays Pending with a `PodScheduled=False` condition
//!   (reason `Unschedulable`) and a `FailedScheduling` warning in upstream's words, and
//!   is tried again when a node is added or changes in a way that matters.
//!
//! Pods and nodes come from watches, held in memory. Placement is decided in one task
//! (so two pods never race for the same count) and bound in parallel: a pod is
//! "assumed" on its node as soon as it is chosen, as upstream's scheduler cache does,
//! so the next decision already counts it.

mod filter;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::events::{self, Busy, EventQueue, EventType, Recorder};
use crate::resources::is_not_found;
use filter::{NodeFacts, Unfit};

/// The scheduler's name: pods asking for another one are left alone.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Bindings in flight at once (each is one HTTP request on its own connection).
const BIND_CONCURRENCY: usize = 64;
/// Event and condition writes in flight at once.
const REPORT_CONCURRENCY: usize = 8;
/// The longest a `Scheduled` event waits behind bindings in flight.
const EVENT_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a pod whose binding failed waits before it is tried again.
const BIND_RETRY: Duration = Duration::from_secs(1);

type PodKey = String;

fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What comes back to the scheduling task from the binding tasks.
enum Outcome {
    /// The binding failed; the assumption must be undone.
    BindFailed { key: PodKey, node: String, retry: bool },
    /// Time to try a pod again after a failed binding.
    Retry(PodKey),
}

/// Runs the scheduler until the task is dropped.
pub async fn run(client: Client) {
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let mut pods =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let mut nodes =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let mut s = Scheduler::new(client, tx);
    loop {
        tokio::select! {
            Some(e) = pods.next() => match e {
                Ok(e) => s.on_pod_event(e),
                Err(e) => tracing::debug!(error = %e, "scheduler pod watch error; the watcher retries"),
            },
            Some(e) = nodes.next() => match e {
                Ok(e) => s.on_node_event(e),
                Err(e) => tracing::debug!(error = %e, "scheduler node watch error; the watcher retries"),
            },
            Some(o) = outcomes.recv() => s.on_outcome(o),
            else => break,
        }
        s.schedule();
    }
}

struct Scheduler {
    client: Client,
    recorder: Recorder,
    /// `Scheduled` events, sent once no binding is in flight (`binds`).
    events: EventQueue,
    binds: Busy,
    outcomes: mpsc::UnboundedSender<Outcome>,
    bind_slots: Arc<Semaphore>,
    report_slots: Arc<Semaphore>,
    nodes: BTreeMap<String, Arc<Node>>,
    /// Where each pod that occupies a node is (bound, or assumed while binding).
    placed: HashMap<PodKey, String>,
    per_node: HashMap<String, usize>,
    /// Unbound pods this scheduler is responsible for, as last seen.
    waiting: HashMap<PodKey, Arc<Pod>>,
    active: VecDeque<PodKey>,
    queued: HashSet<PodKey>,
    /// Pods that fit nowhere; they move back to `active` when nodes change.
    unschedulable: HashSet<PodKey>,
    binding: HashSet<PodKey>,
    pods_synced: bool,
    nodes_synced: bool,
    /// Keys seen since a re-list began, to find what vanished meanwhile.
    pods_relist: Option<HashSet<PodKey>>,
    nodes_relist: Option<HashSet<String>>,
}

impl Scheduler {
    fn new(client: Client, outcomes: mpsc::UnboundedSender<Outcome>) -> Self {
        let recorder = Recorder::new(client.clone(), DEFAULT_SCHEDULER);
        let binds = Busy::default();
        // The sender task ends when the scheduler (the queue's only owner) is dropped.
        let (events, _sender) = EventQueue::start(recorder.clone(), binds.clone(), EVENT_MAX_DELAY);
        Scheduler {
            recorder,
            events,
            binds,
            client,
            outcomes,
            bind_slots: Arc::new(Semaphore::new(BIND_CONCURRENCY)),
            report_slots: Arc::new(Semaphore::new(REPORT_CONCURRENCY)),
            nodes: BTreeMap::new(),
            placed: HashMap::new(),
            per_node: HashMap::new(),
            waiting: HashMap::new(),
            active: VecDeque::new(),
            queued: HashSet::new(),
            unschedulable: HashSet::new(),
            binding: HashSet::new(),
            pods_synced: false,
            nodes_synced: false,
            pods_relist: None,
            nodes_relist: None,
        }
    }

    fn place(&mut self, key: &str, node: &str) {
        if self.placed.get(key).map(String::as_str) == Some(node) {
            return;
        }
        self.unplace(key);
        self.placed.insert(key.to_string(), node.to_string());
        *self.per_node.entry(node.to_string()).or_default() += 1;
    }

    fn unplace(&mut self, key: &str) {
        if let Some(node) = self.placed.remove(key) {
            if let Some(n) = self.per_node.get_mut(&node) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn enqueue(&mut self, key: &str) {
        if self.queued.insert(key.to_string()) {
            self.active.push_back(key.to_string());
        }
    }

    fn on_pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.pods_relist = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                if let Some(seen) = self.pods_relist.as_mut() {
                    seen.insert(pod_key(&pod));
                }
                self.pod_applied(pod);
            }
            watcher::Event::Delete(pod) => self.pod_deleted(&pod_key(&pod)),
            watcher::Event::InitDone => {
                let seen = self.pods_relist.take().unwrap_or_default();
                let known: HashSet<PodKey> = self.placed.keys().chain(self.waiting.keys()).cloned().collect();
                for key in known.difference(&seen) {
                    self.pod_deleted(key);
                }
                self.pods_synced = true;
            }
        }
    }

    fn pod_applied(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod no longer occupies its node.
            self.pod_deleted(&key);
            return;
        }
        let spec = pod.spec.as_ref();
        if let Some(node) = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            let node = node.to_string();
            self.place(&key, &node);
            self.waiting.remove(&key);
            self.unschedulable.remove(&key);
            return;
        }
        let scheduler = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(DEFAULT_SCHEDULER);
        if scheduler != DEFAULT_SCHEDULER || pod.metadata.deletion_timestamp.is_some() {
            self.waiting.remove(&key);
            self.unschedulable.remove(&key);
            if !self.binding.contains(&key) {
                self.unplace(&key);
            }
            return;
        }
        self.waiting.insert(key.clone(), Arc::new(pod));
        // Updates of a pod that fits nowhere (our own condition write among them)
        // do not make it fit; node changes do.
        if !self.unschedulable.contains(&key) && !self.binding.contains(&key) {
            self.enqueue(&key);
        }
    }

    fn pod_deleted(&mut self, key: &str) {
        self.unplace(key);
        self.waiting.remove(key);
        self.unschedulable.remove(key);
    }

    fn on_node_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.nodes_relist = Some(HashSet::new()),
            watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                let Some(name) = node.metadata.name.clone() else { return };
                if let Some(seen) = self.nodes_relist.as_mut() {
                    seen.insert(name.clone());
                }
                let node = Arc::new(node);
                let old = self.nodes.insert(name, Arc::clone(&node));
                let changed = old.is_none_or(|o| NodeFacts::of(&o) != NodeFacts::of(&node));
                if changed {
                    self.retry_unschedulable();
                }
            }
            watcher::Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    self.nodes.remove(name);
                }
            }
            watcher::Event::InitDone => {
                let seen = self.nodes_relist.take().unwrap_or_default();
                self.nodes.retain(|name, _| seen.contains(name));
                self.nodes_synced = true;
                self.retry_unschedulable();
            }
        }
    }

    /// A node appeared or changed: every pod that fit nowhere gets another chance.
    fn retry_unschedulable(&mut self) {
        let keys: Vec<PodKey> = self.unschedulable.drain().collect();
        for key in keys {
            self.enqueue(&key);
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::BindFailed { key, node, retry } => {
                self.binding.remove(&key);
                if self.placed.get(&key) == Some(&node) && self.waiting.contains_key(&key) {
                    self.unplace(&key);
                }
                if retry {
                    let tx = self.outcomes.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(BIND_RETRY).await;
                        let _ = tx.send(Outcome::Retry(key));
                    });
                }
            }
            Outcome::Retry(key) => {
                if self.waiting.contains_key(&key) {
                    self.enqueue(&key);
                }
            }
        }
    }

    /// Places every queued pod: binds it, or reports why it fits nowhere.
    fn schedule(&mut self) {
        if !self.pods_synced || !self.nodes_synced {
            return;
        }
        while let Some(key) = self.active.pop_front() {
            self.queued.remove(&key);
            let Some(pod) = self.waiting.get(&key).cloned() else { continue };
            if self.binding.contains(&key) {
                continue;
            }
            let nodes: Vec<&Node> = self.nodes.values().map(|n| n.as_ref()).collect();
            match filter::pick(&pod, &nodes, &self.per_node) {
                Ok(node) => {
                    self.place(&key, &node);
                    self.binding.insert(key.clone());
                    self.bind(key, pod, node);
                }
                Err(unfit) => {
                    self.unschedulable.insert(key);
                    self.report_unschedulable(pod, unfit);
                }
            }
        }
    }

    fn bind(&self, key: PodKey, pod: Arc<Pod>, node: String) {
        let client = self.client.clone();
        let events = self.events.clone();
        let in_flight = self.binds.enter();
        let slots = Arc::clone(&self.bind_slots);
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let result = {
                let _slot = slots.acquire().await;
                let binding = json!({
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": { "name": name, "namespace": ns },
                    "target": { "apiVersion": "v1", "kind": "Node", "name": node },
                });
                api.create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            };
            drop(in_flight);
            match result {
                Ok(_) => {
                    // The binding also marked the pod PodScheduled, as upstream's does.
                    let message = format!("Successfully assigned {ns}/{name} to {node}");
                    events.push(events::reference(pod.as_ref()), EventType::Normal, "Scheduled", &message);
                }
                Err(e) => {
                    // Gone, or bound by someone else meanwhile: the watch shows what
                    // happened. Anything else is retried.
                    let settled = is_not_found(&e)
                        || matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 422);
                    if !settled {
                        tracing::warn!(pod = %key, %node, error = %e, "binding failed; retrying");
                    }
                    let _ = outcomes.send(Outcome::BindFailed { key, node, retry: !settled });
                }
            }
        });
    }

    fn report_unschedulable(&self, pod: Arc<Pod>, unfit: Unfit) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let slots = Arc::clone(&self.report_slots);
        tokio::spawn(async move {
            let _slot = slots.acquire().await;
            let message = unfit.message();
            recorder
                .record(&events::reference(pod.as_ref()), EventType::Warning, "FailedScheduling", &message)
                .await;
            let reason = unfit.reason();
            let current = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "PodScheduled")
                    .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            });
            if current == Some(("False".to_string(), Some(reason.to_string()), Some(message.clone()))) {
                return;
            }
            let condition = json!({
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": Time(Timestamp::now()),
            });
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let patch = json!({ "status": { "conditions": [condition] } });
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "writing the PodScheduled condition"),
            }
        });
    }
}
