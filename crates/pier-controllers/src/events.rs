//! Recording core/v1 Events, so `kubectl describe` and `kubectl get events` tell what
//! the controllers did, with upstream's reasons (`SuccessfulCreate`, `Scheduled`, ...).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::sync::{mpsc, Notify};

/// Normal or Warning, as upstream's `EventTypeNormal`/`EventTypeWarning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes Events on behalf of one component (`replication-controller`, `default-scheduler`, ...).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    host: Option<String>,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Recorder { client, component: component.to_string(), host: None }
    }

    /// The same recorder, naming the node it runs on (as the kubelet's events do).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Records an event about `regarding`. Failures are logged, never returned: an
    /// event that cannot be written must not stop the controller's real work.
    pub async fn record(&self, regarding: &ObjectReference, kind: EventType, reason: &str, message: &str) {
        self.record_at(regarding, kind, reason, message, Timestamp::now()).await;
    }

    /// [`Recorder::record`] for something that happened at `now` (a queued event).
    pub async fn record_at(
        &self,
        regarding: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
        let name =
            format!("{}.{:x}", regarding.name.as_deref().unwrap_or("unknown"), now.as_nanosecond() as u128);
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(ns.clone()), ..ObjectMeta::default() },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource { component: Some(self.component.clone()), host: self.host.clone() }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            action: None,
            related: None,
            series: None,
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(reason, error = %e, "recording an event");
        }
    }
}

/// Work that events must not slow down (pods starting, bindings in flight): while any
/// is under way, an [`EventQueue`] holds its events back.
#[derive(Clone, Default)]
pub struct Busy(Arc<BusyState>);

#[derive(Default)]
struct BusyState {
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Busy {
    /// Marks one piece of work under way until the guard is dropped.
    pub fn enter(&self) -> BusyGuard {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    /// Returns once no work is under way.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between still wakes us.
            notified.as_mut().enable();
            if self.0.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One piece of work under way (see [`Busy::enter`]).
pub struct BusyGuard(Busy);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0 .0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

struct Queued {
    regarding: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
    at: Timestamp,
    queued: tokio::time::Instant,
}

/// Events written one at a time, in order, behind the owner's urgent work, as the
/// kubelet's event broadcaster queues them (and rate-limits them, 50/s by default).
/// In a burst of 100 pod starts the node and scheduler would otherwise send 400 events
/// while the pods' own writes wait; here an event waits until nothing is [`Busy`], or
/// at most `max_delay`, so none is held back for long. Each keeps the time it
/// happened.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::UnboundedSender<Queued>,
}

impl EventQueue {
    /// Starts the sender task; it ends when every clone of the queue is dropped.
    pub fn start(recorder: Recorder, busy: Busy, max_delay: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let sender = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                tokio::select! {
                    _ = busy.idle() => {}
                    _ = tokio::time::sleep_until(e.queued + max_delay) => {}
                }
                recorder.record_at(&e.regarding, e.kind, &e.reason, &e.message, e.at).await;
            }
        });
        (EventQueue { tx }, sender)
    }

    /// Queues an event about `regarding`, stamped now.
    pub fn push(&self, regarding: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let _ = self.tx.send(Queued {
            regarding,
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
            at: Timestamp::now(),
            queued: tokio::time::Instant::now(),
        });
    }
}

/// An `ObjectReference` to a typed object, as events and endpoints' `targetRef` use.
pub fn reference<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}
