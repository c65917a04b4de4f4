//! Probe workers for one container instance, with upstream's timing (`prober/worker.go`).
//!
//! Each configured probe gets its own task, ticking every `periodSeconds` from the moment the
//! workers are spawned. A tick does nothing before `initialDelaySeconds` have passed since the
//! container started, nor while the startup probe gates the others. Results only change state after
//! `successThreshold`/`failureThreshold` consecutive equal results; attempts that error (see
//! [`Outcome::Errored`]) are discarded.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::action::probe_once;
use crate::exec::ExecRunner;
use crate::outcome::Outcome;
use crate::settings::{ProbeKind, ProbeSettings};
use crate::target::Target;

/// What [`ContainerProbes`] needs to probe one container instance.
#[derive(Clone)]
pub struct ProbeConfig {
    /// The container spec; its `startupProbe`, `livenessProbe` and `readinessProbe` are used.
    pub container: Container,
    /// Where the handlers connect.
    pub target: Target,
    /// Runs exec probes inside the container.
    pub exec: Arc<dyn ExecRunner>,
    /// When this container instance started running; `initialDelaySeconds` counts from here.
    pub started_at: Instant,
    /// When the node agent started, if it may have just restarted: each worker then waits a random
    /// part of its period before its first probe while the agent is younger than one period, so
    /// probes of adopted containers do not all fire at once (upstream's jitter). `None`: no jitter.
    pub agent_started_at: Option<Instant>,
    /// Whether a container killed for a failed liveness/startup probe will be restarted (the pod's
    /// restart policy); only changes the `Killing` message.
    pub will_restart: bool,
}

/// A change reported by the workers. The first two updates are always the initial `Started` and
/// `Ready` values; later ones are sent on change (or per attempt, for the event-like variants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeUpdate {
    /// The container's `started` status: true at once without a startup probe, else when it passes.
    Started(bool),
    /// The container's `ready` status: started and (no readiness probe, or readiness passing).
    Ready(bool),
    /// An attempt failed (a Warning `Unhealthy` event: `<Kind> probe failed: <message>`).
    Unhealthy {
        /// The probe.
        kind: ProbeKind,
        /// The handler's failure text.
        message: String,
    },
    /// An attempt errored and was discarded (Warning `Unhealthy`: `<Kind> probe errored and
    /// resulted in <state> state: <message>`).
    Errored {
        /// The probe.
        kind: ProbeKind,
        /// `unknown` or `failure`.
        state: &'static str,
        /// The error text.
        message: String,
    },
    /// An attempt passed with a caveat (Warning `ProbeWarning`: `<Kind> probe warning: <message>`).
    Warning {
        /// The probe.
        kind: ProbeKind,
        /// The warning text.
        message: String,
    },
    /// The liveness or startup probe reached its failure threshold: kill the container (and
    /// restart it per policy). That probe stops; readiness keeps running until the workers are
    /// dropped. Sent at most once per kind.
    Restart {
        /// `Liveness` or `Startup`.
        kind: ProbeKind,
        /// The Normal `Killing` event message, e.g. `Container app failed liveness probe, will be
        /// restarted`.
        message: String,
        /// The probe's own `terminationGracePeriodSeconds`, which overrides the pod's for this kill.
        grace_period_seconds: Option<i64>,
    },
}

/// An event the kubelet would record for the container, rendered from a [`ProbeUpdate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// `Warning` or `Normal`.
    pub type_: &'static str,
    /// `Unhealthy`, `ProbeWarning` or `Killing`.
    pub reason: &'static str,
    /// The message, in upstream's words.
    pub message: String,
}

impl ProbeUpdate {
    /// The event to record for this update, if any.
    pub fn event(&self) -> Option<ProbeEvent> {
        let warning = |reason, message| Some(ProbeEvent { type_: "Warning", reason, message });
        match self {
            ProbeUpdate::Started(_) | ProbeUpdate::Ready(_) => None,
            ProbeUpdate::Unhealthy { kind, message } => {
                warning("Unhealthy", format!("{kind} probe failed: {message}"))
            }
            ProbeUpdate::Errored { kind, state, message } => {
                warning("Unhealthy", format!("{kind} probe errored and resulted in {state} state: {message}"))
            }
            ProbeUpdate::Warning { kind, message } => {
                warning("ProbeWarning", format!("{kind} probe warning: {message}"))
            }
            ProbeUpdate::Restart { message, .. } => {
                Some(ProbeEvent { type_: "Normal", reason: "Killing", message: message.clone() })
            }
        }
    }
}

/// The `Killing` message for a container that failed its liveness or startup probe.
pub fn killing_message(container: &str, kind: ProbeKind, will_restart: bool) -> String {
    let probe = if kind == ProbeKind::Startup { "startup" } else { "liveness" };
    let mut message = format!("Container {container} failed {probe} probe");
    if will_restart {
        message.push_str(", will be restarted");
    }
    message
}

type Sink = Box<dyn Fn(ProbeUpdate) + Send + Sync>;

/// The probe workers of one container instance. Dropping it stops them.
///
/// Spawn a new one for each container instance (after a restart, drop the old one first): results,
/// thresholds and the startup gate all start over, as upstream resets a worker on a new container ID.
pub struct ContainerProbes {
    tasks: Vec<JoinHandle<()>>,
    terminating: watch::Sender<bool>,
}

impl ContainerProbes {
    /// Starts the workers on the current tokio runtime, sending updates to `updates`.
    pub fn spawn(config: ProbeConfig, updates: mpsc::UnboundedSender<ProbeUpdate>) -> Self {
        Self::spawn_with(config, move |update| {
            let _ = updates.send(update);
        })
    }

    /// Starts the workers, handing each update to `sink` (called from the worker tasks; keep it quick).
    pub fn spawn_with(config: ProbeConfig, sink: impl Fn(ProbeUpdate) + Send + Sync + 'static) -> Self {
        let c = &config.container;
        let probes = [
            (ProbeKind::Startup, c.startup_probe.clone()),
            (ProbeKind::Liveness, c.liveness_probe.clone()),
            (ProbeKind::Readiness, c.readiness_probe.clone()),
        ];
        let started = c.startup_probe.is_none();
        let has_readiness = c.readiness_probe.is_some();
        let ready = started && !has_readiness;
        sink(ProbeUpdate::Started(started));
        sink(ProbeUpdate::Ready(ready));
        let (started_tx, _) = watch::channel(started);
        let shared = Arc::new(Shared {
            sink: Box::new(sink),
            state: Mutex::new(State { started, readiness_ok: false, has_readiness, ready }),
            started: started_tx,
        });
        let (terminating, _) = watch::channel(false);
        let tasks = probes
            .into_iter()
            .filter_map(|(kind, probe)| probe.map(|p| (kind, p)))
            .map(|(kind, probe)| {
                let worker = Worker {
                    kind,
                    settings: ProbeSettings::from(&probe),
                    probe,
                    config: config.clone(),
                    shared: Arc::clone(&shared),
                    run: 0,
                    last: None,
                    on_hold: false,
                };
                tokio::spawn(worker.run(shared.started.subscribe(), terminating.subscribe()))
            })
            .collect();
        ContainerProbes { tasks, terminating }
    }

    /// The pod is being deleted: liveness and startup probes stop (upstream treats them as passing
    /// so the container is not restarted mid-shutdown); readiness keeps probing.
    pub fn pod_terminating(&self) {
        self.terminating.send_replace(true);
    }
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct State {
    started: bool,
    readiness_ok: bool,
    has_readiness: bool,
    ready: bool,
}

struct Shared {
    sink: Sink,
    state: Mutex<State>,
    started: watch::Sender<bool>,
}

impl Shared {
    fn emit(&self, update: ProbeUpdate) {
        (self.sink)(update);
    }

    fn is_started(&self) -> bool {
        self.state.lock().map(|s| s.started).unwrap_or(false)
    }

    /// Applies a change under the lock and emits what changed, so `Ready` updates stay ordered.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let Ok(mut state) = self.state.lock() else { return };
        let was_started = state.started;
        change(&mut state);
        if state.started && !was_started {
            self.emit(ProbeUpdate::Started(true));
        }
        let ready = state.started && (!state.has_readiness || state.readiness_ok);
        if ready != state.ready {
            state.ready = ready;
            self.emit(ProbeUpdate::Ready(ready));
        }
        let started = state.started;
        drop(state);
        if started && !was_started {
            self.started.send_replace(true);
        }
    }
}

struct Worker {
    kind: ProbeKind,
    probe: Probe,
    settings: ProbeSettings,
    config: ProbeConfig,
    shared: Arc<Shared>,
    /// How many consecutive attempts returned `last`.
    run: u32,
    last: Option<bool>,
    /// Set once a liveness/startup result took effect: nothing more to do for this instance.
    on_hold: bool,
}

impl Worker {
    async fn run(mut self, mut started: watch::Receiver<bool>, mut terminating: watch::Receiver<bool>) {
        let period = self.settings.period;
        if let Some(agent) = self.config.agent_started_at {
            if period > agent.elapsed() {
                tokio::time::sleep(period.mul_f64(rand::random::<f64>())).await;
            }
        }
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut watch_started = self.kind == ProbeKind::Readiness;
        let mut watch_terminating = self.kind != ProbeKind::Readiness;
        loop {
            let is_terminating = *terminating.borrow();
            if !self.do_probe(is_terminating).await {
                return;
            }
            tokio::select! {
                _ = ticker.tick() => {}
                // Upstream triggers readiness right away when the container becomes started, and
                // restarts the period from there.
                changed = started.changed(), if watch_started => {
                    if changed.is_err() { watch_started = false; continue; }
                    if !*started.borrow_and_update() { continue; }
                    ticker.reset();
                }
                changed = terminating.changed(), if watch_terminating => {
                    if changed.is_err() { watch_terminating = false; }
                }
            }
        }
    }

    /// One tick, as upstream's `doProbe`. Returns whether to keep going.
    async fn do_probe(&mut self, terminating: bool) -> bool {
        if terminating && self.kind != ProbeKind::Readiness {
            return false;
        }
        if self.on_hold {
            return true;
        }
        // Upstream compares whole seconds since the container started.
        let running = self.config.started_at.elapsed().as_secs();
        if running < self.settings.initial_delay.as_secs() {
            return true;
        }
        let started = self.shared.is_started();
        if started == (self.kind == ProbeKind::Startup) {
            // Startup stops once passed; the others wait for it.
            return true;
        }

        let outcome = probe_once(&self.probe, &self.config.target, self.config.exec.as_ref()).await;
        let kind = self.kind;
        let success = match outcome {
            Outcome::Success(_) => true,
            Outcome::Warning(message) => {
                self.shared.emit(ProbeUpdate::Warning { kind, message });
                true
            }
            Outcome::Failure(message) => {
                self.shared.emit(ProbeUpdate::Unhealthy { kind, message });
                false
            }
            Outcome::Errored { state, message } => {
                self.shared.emit(ProbeUpdate::Errored { kind, state, message });
                return true;
            }
        };
        if self.last == Some(success) {
            self.run += 1;
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold =
            if success { self.settings.success_threshold } else { self.settings.failure_threshold };
        if self.run < threshold {
            return true;
        }

        match (kind, success) {
            (ProbeKind::Readiness, ok) => self.shared.update(|s| s.readiness_ok = ok),
            (ProbeKind::Liveness, true) => {}
            (ProbeKind::Startup, true) => {
                self.shared.update(|s| s.started = true);
                self.on_hold = true;
            }
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.shared.emit(ProbeUpdate::Restart {
                    kind,
                    message: killing_message(&self.config.target.container, kind, self.config.will_restart),
                    grace_period_seconds: self.settings.termination_grace_period_seconds,
                });
                self.on_hold = true;
            }
        }
        true
    }
}
