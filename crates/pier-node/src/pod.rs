//! The pod worker: one task per pod bound to this node. It makes the sandbox, starts
//! the containers, restarts them per `restartPolicy` with the kubelet's crash-loop
//! back-off, writes the pod's status whenever it changes, and on deletion stops the
//! containers within the grace period, removes the sandbox and deletes the pod.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use pier_controllers::events::{reference, EventType};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::container::{self, Instance, Launch};
use crate::exec::ContainerExec;
use crate::sandbox::{self, Sandbox};
use crate::status::{self, ContainerView, PodView, State, Terminated};
use crate::Node;

/// The kubelet's crash-loop back-off: 10 s doubling to 5 min, forgotten after a
/// container ran 10 min.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The next back-off after one of `current` (None: the first restart is immediate).
pub fn next_backoff(current: Option<Duration>) -> Duration {
    match current {
        None => BACKOFF_INITIAL,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    }
}

/// Whether a container that ended with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// What the node knows about one container of the pod.
struct ContainerSlot {
    spec: Container,
    state: State,
    last: Option<Terminated>,
    restart_count: i32,
    ready: bool,
    started: bool,
    ever_ran: bool,
    instance: Option<Instance>,
    /// Back-off for the next restart: None until the first restart happened.
    backoff: Option<Duration>,
    /// When the container may (re)start; None: not scheduled.
    start_at: Option<Instant>,
    generation: u64,
    /// The running instance's probe workers.
    probes: Option<pier_probe::ContainerProbes>,
    /// How the running instance was started (environment, working directory).
    launch: Option<Launch>,
}

/// Messages to the worker.
#[derive(Debug, Clone)]
pub enum PodEvent {
    /// Container `index`'s instance `generation` exited.
    Exited { index: usize, generation: u64 },
    /// A probe of that instance reported.
    Probe { index: usize, generation: u64, update: pier_probe::ProbeUpdate },
    /// Its postStart hook failed with this message.
    PostStartFailed { index: usize, generation: u64, message: String },
}

/// The handle the node keeps for a pod (for exec, logs, port-forward lookups).
#[derive(Debug, Default)]
pub struct PodShared {
    /// The pod's network namespace, once the sandbox exists.
    pub netns: Option<pier_sandbox::NetnsName>,
    /// Per container: the main process PID while running, and its log files
    /// (current last).
    pub containers: BTreeMap<String, SharedContainer>,
    /// Processes started by `kubectl exec`, killed when the pod stops.
    pub exec_pids: std::collections::BTreeSet<u32>,
}

/// A container as exec/logs see it.
#[derive(Debug, Default, Clone)]
pub struct SharedContainer {
    pub pid: Option<u32>,
    /// Follows the current instance's log while it runs.
    pub follower: Option<pier_logs::LogFollower>,
    pub working_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub logs: Vec<PathBuf>,
    pub running: bool,
    /// The state reason while not running (for `logs` of a waiting container).
    pub waiting_reason: Option<String>,
}

pub struct PodWorker {
    node: Arc<Node>,
    pod: Pod,
    uid: String,
    sandbox: Option<Sandbox>,
    containers: Vec<ContainerSlot>,
    events_tx: mpsc::UnboundedSender<PodEvent>,
    events: mpsc::UnboundedReceiver<PodEvent>,
    last_written: Option<PodStatus>,
    start_time: Timestamp,
    shared: Arc<tokio::sync::Mutex<PodShared>>,
}

impl PodWorker {
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string())
    }

    fn restart_policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".to_string())
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Records an event without waiting for it: status writes must not queue behind
    /// events.
    fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.record(reference(&self.pod), kind, reason, message);
    }

    fn container_event(&self, index: usize, kind: EventType, reason: &str, message: &str) {
        let mut r = reference(&self.pod);
        r.field_path = Some(format!("spec.containers{{{}}}", self.containers[index].spec.name));
        self.record(r, kind, reason, message);
    }

    fn record(
        &self,
        regarding: k8s_openapi::api::core::v1::ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.node.events.push(regarding, kind, reason, message);
    }

    fn view(&self) -> PodView {
        PodView {
            host_ip: self.node.config.node_ip.to_string(),
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.to_string()),
            start_time: self.start_time,
            sandbox_ready: self.sandbox.is_some(),
            restart_policy: self.restart_policy(),
            containers: self
                .containers
                .iter()
                .map(|c| ContainerView {
                    name: c.spec.name.clone(),
                    image: c.spec.image.clone().unwrap_or_default(),
                    state: c.state.clone(),
                    last: c.last.clone(),
                    restart_count: c.restart_count,
                    ready: c.ready,
                    started: c.started,
                    ever_ran: c.ever_ran,
                    container_id: c.instance.as_ref().map(|i| i.id.clone()),
                })
                .collect(),
        }
    }

    /// Writes the status if it differs from what was last written.
    async fn write_status(&mut self) {
        let status = status::pod_status(&self.pod, &self.view(), Timestamp::now());
        if self.last_written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.namespace());
        let patch = serde_json::json!({ "status": status });
        match api.patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(p) => {
                self.pod.status = p.status;
                self.last_written = Some(status);
            }
            Err(e) => tracing::debug!(pod = %self.name(), error = %e, "writing pod status"),
        }
    }

    async fn publish(&self) {
        let mut shared = self.shared.lock().await;
        shared.netns = self.sandbox.as_ref().map(|s| s.netns.clone());
        for c in &self.containers {
            let entry = shared.containers.entry(c.spec.name.clone()).or_default();
            entry.pid = c.instance.as_ref().filter(|i| !i.has_exited()).map(|i| i.pid);
            entry.follower = c.instance.as_ref().map(|i| i.follower.clone());
            entry.running = matches!(c.state, State::Running { .. });
            entry.waiting_reason = match &c.state {
                State::Waiting { reason, .. } => Some(reason.clone()),
                _ => None,
            };
            if let Some(i) = &c.instance {
                if entry.logs.last() != Some(&i.log_path) {
                    entry.logs.push(i.log_path.clone());
                }
            }
        }
    }

    /// Where the pod's container logs live, as the kubelet's `/var/log/pods/<ns>_<name>_<uid>`.
    fn log_dir(&self) -> PathBuf {
        self.node.config.dir.join("logs").join(format!("{}_{}_{}", self.namespace(), self.name(), self.uid))
    }

    fn log_path(&self, index: usize) -> PathBuf {
        let c = &self.containers[index];
        self.log_dir().join(&c.spec.name).join(format!("{}.log", c.restart_count))
    }

    async fn start_container(&mut self, index: usize) {
        let Some(sandbox) = self.sandbox.clone() else { return };
        self.containers[index].start_at = None;
        let spec = self.containers[index].spec.clone();
        let launch = match self.node.resolve(&self.pod, &spec, &sandbox).await {
            Ok(l) => l,
            Err(failure) => {
                self.containers[index].state =
                    State::Waiting { reason: failure.reason.clone(), message: Some(failure.message.clone()) };
                self.containers[index].start_at = Some(Instant::now() + BACKOFF_INITIAL);
                self.container_event(
                    index,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {}", failure.message),
                );
                return;
            }
        };
        {
            let mut shared = self.shared.lock().await;
            let entry = shared.containers.entry(spec.name.clone()).or_default();
            entry.working_dir = launch.working_dir.clone();
            entry.env = launch.env.clone();
        }
        let launch_copy = launch.clone();
        let image = spec.image.clone().unwrap_or_default();
        self.container_event(
            index,
            EventType::Normal,
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
        );
        let generation = self.containers[index].generation + 1;
        self.containers[index].generation = generation;
        let id = format!("pier://{}-{}-{}", &self.uid, spec.name, self.containers[index].restart_count);
        let log_path = self.log_path(index);
        match container::start(
            &sandbox,
            launch,
            id,
            &log_path,
            self.events_tx.clone(),
            PodEvent::Exited { index, generation },
        ) {
            Ok(instance) => {
                let pid = instance.pid;
                let slot = &mut self.containers[index];
                slot.state = State::Running { started_at: instance.started_at };
                slot.ever_ran = true;
                // Without probes a running container is started and ready at once;
                // with them, the workers decide.
                slot.started = spec.startup_probe.is_none();
                slot.ready = slot.started && spec.readiness_probe.is_none();
                slot.instance = Some(instance);
                slot.launch = Some(launch_copy.clone());
                self.start_probes_and_hooks(index, generation, pid, &spec, &sandbox, &launch_copy);
                self.container_event(
                    index,
                    EventType::Normal,
                    "Created",
                    &format!("Created container {}", spec.name),
                );
                self.container_event(
                    index,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {}", spec.name),
                );
            }
            Err(term) => {
                let message = term.message.clone().unwrap_or_default();
                self.container_event(index, EventType::Warning, "Failed", &format!("Error: {message}"));
                self.containers[index].ever_ran = true;
                self.containers[index].instance = None;
                self.after_exit(index, *term).await;
            }
        }
    }

    /// Decides what happens after container `index` ended with `term`.
    async fn after_exit(&mut self, index: usize, term: Terminated) {
        let policy = self.restart_policy();
        let deleting = self.deleting();
        let slot = &mut self.containers[index];
        slot.ready = false;
        slot.started = false;
        slot.probes = None;
        let ran_for =
            term.started_at.map(|s| term.finished_at.duration_since(s).unsigned_abs()).unwrap_or_default();
        if ran_for >= BACKOFF_RESET {
            slot.backoff = None;
        }
        if !should_restart(&policy, term.exit_code) || deleting {
            slot.state = State::Terminated(term);
            return;
        }
        let delay = match slot.backoff {
            None => Duration::ZERO,
            Some(d) => d,
        };
        slot.backoff = Some(next_backoff(slot.backoff));
        slot.last = Some(term.clone());
        slot.restart_count += 1;
        slot.start_at = Some(Instant::now() + delay);
        if delay.is_zero() {
            slot.state = State::Terminated(term);
        } else {
            let name = slot.spec.name.clone();
            let message = format!(
                "back-off {}s restarting failed container={name} pod={}_{}({})",
                delay.as_secs(),
                self.name(),
                self.namespace(),
                self.uid
            );
            self.containers[index].state =
                State::Waiting { reason: "CrashLoopBackOff".into(), message: Some(message) };
            self.container_event(
                index,
                EventType::Warning,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    self.name(),
                    self.namespace(),
                    self.uid
                ),
            );
        }
    }

    async fn handle(&mut self, event: PodEvent) {
        match event {
            PodEvent::Exited { index, generation } => {
                let Some(slot) = self.containers.get_mut(index) else { return };
                if slot.generation != generation {
                    return;
                }
                let Some(term) = slot.instance.as_ref().and_then(|i| i.exited.borrow().clone()) else {
                    return;
                };
                self.after_exit(index, term).await;
            }
            PodEvent::Probe { index, generation, update } => {
                let Some(slot) = self.containers.get_mut(index) else { return };
                if slot.generation != generation || !matches!(slot.state, State::Running { .. }) {
                    return;
                }
                match &update {
                    pier_probe::ProbeUpdate::Ready(ready) => slot.ready = *ready,
                    pier_probe::ProbeUpdate::Started(started) => slot.started = *started,
                    _ => {}
                }
                if let Some(ev) = update.event() {
                    let kind = if ev.type_ == "Warning" { EventType::Warning } else { EventType::Normal };
                    self.container_event(index, kind, ev.reason, &ev.message);
                }
                if let pier_probe::ProbeUpdate::Restart { grace_period_seconds, .. } = update {
                    let grace = grace_period_seconds
                        .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                        .unwrap_or(30);
                    self.kill_instance(index, Duration::from_secs(u64::try_from(grace).unwrap_or(0)));
                }
            }
            PodEvent::PostStartFailed { index, generation, message } => {
                let Some(slot) = self.containers.get(index) else { return };
                if slot.generation != generation {
                    return;
                }
                tracing::info!(pod = %self.name(), %message, "postStart hook failed");
                let hook = pier_probe::HookKind::PostStart;
                self.container_event(
                    index,
                    EventType::Warning,
                    hook.failure_reason(),
                    hook.failure_event_message(),
                );
                self.kill_instance(index, Duration::ZERO);
            }
        }
    }

    /// Starts the probe workers and the postStart hook of a new instance.
    fn start_probes_and_hooks(
        &mut self,
        index: usize,
        generation: u64,
        pid: u32,
        spec: &Container,
        sandbox: &Sandbox,
        launch: &Launch,
    ) {
        let exec =
            Arc::new(ContainerExec { pid, env: launch.env.clone(), working_dir: launch.working_dir.clone() });
        let target = self.target(spec, sandbox);
        if spec.startup_probe.is_some() || spec.liveness_probe.is_some() || spec.readiness_probe.is_some() {
            let tx = self.events_tx.clone();
            let config = pier_probe::ProbeConfig {
                container: spec.clone(),
                target: target.clone(),
                exec: exec.clone(),
                started_at: Instant::now(),
                agent_started_at: Some(self.node.started_at),
                will_restart: self.restart_policy() != "Never",
            };
            self.containers[index].probes =
                Some(pier_probe::ContainerProbes::spawn_with(config, move |update| {
                    let _ = tx.send(PodEvent::Probe { index, generation, update });
                }));
        }
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                let outcome = pier_probe::run_hook(&hook, &target, exec.as_ref()).await;
                if let Err(message) = outcome.result {
                    let _ = tx.send(PodEvent::PostStartFailed { index, generation, message });
                }
            });
        }
    }

    /// Stops the running instance of container `index` in the background: SIGTERM,
    /// then SIGKILL after `grace`. Its exit arrives as an ordinary `Exited` event.
    fn kill_instance(&mut self, index: usize, grace: Duration) {
        let slot = &mut self.containers[index];
        slot.probes = None;
        slot.ready = false;
        let Some(inst) = slot.instance.as_ref() else { return };
        let pid = inst.pid;
        let mut exited = inst.exited.clone();
        inst.signal(Signal::SIGTERM);
        tokio::spawn(async move {
            if tokio::time::timeout(grace, exited.wait_for(Option::is_some)).await.is_err() {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), Signal::SIGKILL);
                }
            }
        });
    }

    /// What probes and hooks of container `spec` act on.
    fn target(&self, spec: &Container, sandbox: &Sandbox) -> pier_probe::Target {
        let pod =
            pier_probe::PodRef { name: self.name(), namespace: self.namespace(), uid: self.uid.clone() };
        pier_probe::Target::new(pod, spec, Some(std::net::IpAddr::V4(sandbox.ip)))
    }

    fn next_wake(&self) -> Option<Instant> {
        self.containers.iter().filter_map(|c| c.start_at).min()
    }

    /// Stops every container within the grace period (SIGTERM, then SIGKILL).
    async fn stop_containers(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut hooks = Vec::new();
        for i in 0..self.containers.len() {
            if let Some(p) = &self.containers[i].probes {
                p.pod_terminating();
            }
            let running = self.containers[i].instance.as_ref().is_some_and(|inst| !inst.has_exited());
            if !running {
                continue;
            }
            let name = self.containers[i].spec.name.clone();
            self.container_event(i, EventType::Normal, "Killing", &format!("Stopping container {name}"));
            let pre_stop = self.containers[i].spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
            match (pre_stop, self.sandbox.clone(), &self.containers[i].instance, &self.containers[i].launch) {
                (Some(hook), Some(sandbox), Some(inst), Some(launch)) => {
                    let target = self.target(&self.containers[i].spec, &sandbox);
                    let exec = ContainerExec {
                        pid: inst.pid,
                        env: launch.env.clone(),
                        working_dir: launch.working_dir.clone(),
                    };
                    hooks.push(async move {
                        // The hook may use all of the grace period; SIGTERM follows it.
                        let run = pier_probe::run_hook(&hook, &target, &exec);
                        let outcome = tokio::time::timeout_at(deadline, run).await;
                        (i, outcome.ok().and_then(|o| o.result.err()))
                    });
                }
                _ => {
                    if let Some(inst) = &self.containers[i].instance {
                        inst.signal(Signal::SIGTERM);
                    }
                }
            }
        }
        for (i, failure) in futures::future::join_all(hooks).await {
            if let Some(message) = failure {
                tracing::info!(pod = %self.name(), %message, "preStop hook failed");
                let hook = pier_probe::HookKind::PreStop;
                self.container_event(
                    i,
                    EventType::Warning,
                    hook.failure_reason(),
                    hook.failure_event_message(),
                );
            }
            if let Some(inst) = &self.containers[i].instance {
                inst.signal(Signal::SIGTERM);
            }
        }
        for c in &mut self.containers {
            if let Some(inst) = c.instance.as_mut() {
                if !inst.wait_until(deadline).await {
                    inst.signal(Signal::SIGKILL);
                    inst.wait_until(Instant::now() + Duration::from_secs(5)).await;
                }
                if let Some(t) = inst.exited.borrow().clone() {
                    c.state = State::Terminated(t);
                }
            }
            c.start_at = None;
            c.ready = false;
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// Deletion: stop, clean up, then remove the pod object (grace 0, this uid only).
    async fn terminate(&mut self, delete_object: bool) {
        let grace = if delete_object { self.grace() } else { Duration::ZERO };
        self.stop_containers(grace).await;
        // Processes `kubectl exec` started are the agent's children, not the
        // container's: they go with the pod.
        for pid in std::mem::take(&mut self.shared.lock().await.exec_pids) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Some(sb) = self.sandbox.take() {
            sandbox::destroy(&self.node, &sb, &self.uid).await;
        }
        let _ = std::fs::remove_dir_all(self.log_dir());
        if delete_object {
            let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&self.name(), &params).await {
                tracing::debug!(pod = %self.name(), error = %e, "final pod delete");
            }
        }
    }

    fn terminal(&self) -> bool {
        let phase = status::phase(&self.view());
        phase == "Succeeded" || phase == "Failed"
    }
}

/// Runs a pod until it is deleted. `updates` carries the latest object; its sender
/// being dropped means the pod is gone from the API (or the node is stopping).
pub async fn run(
    node: Arc<Node>,
    mut updates: watch::Receiver<Pod>,
    shared: Arc<tokio::sync::Mutex<PodShared>>,
) {
    let pod = updates.borrow().clone();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|spec| ContainerSlot {
            spec,
            state: State::Waiting { reason: "ContainerCreating".into(), message: None },
            last: None,
            restart_count: 0,
            ready: false,
            started: false,
            ever_ran: false,
            instance: None,
            backoff: None,
            start_at: Some(Instant::now()),
            generation: 0,
            probes: None,
            launch: None,
        })
        .collect();
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut w = PodWorker {
        node,
        pod,
        uid,
        sandbox: None,
        containers,
        events_tx,
        events,
        last_written: None,
        start_time: Timestamp::now(),
        shared,
    };
    // Until the first status write, this pod's start holds the node's events back.
    let mut starting = Some(w.node.starting.enter());
    if !w.deleting() {
        let t0 = std::time::Instant::now();
        let created = sandbox::create(&w.node, &w.pod, &w.uid).await;
        tracing::debug!(pod = %w.name(), took_ms = t0.elapsed().as_millis() as u64, "sandbox");
        match created {
            Ok(sb) => w.sandbox = Some(sb),
            Err(message) => {
                w.event(EventType::Warning, "FailedCreatePodSandBox", &message);
                tracing::warn!(pod = %w.name(), error = %message, "creating the sandbox");
            }
        }
    }
    loop {
        if w.deleting() {
            w.terminate(true).await;
            w.publish().await;
            return;
        }
        if w.sandbox.is_some() && !w.terminal() {
            let now = Instant::now();
            for i in 0..w.containers.len() {
                if w.containers[i].start_at.is_some_and(|t| t <= now) {
                    w.start_container(i).await;
                }
            }
        }
        w.publish().await;
        w.write_status().await;
        starting.take();
        let wake = w.next_wake();
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    // Removed from the API (or the node stops): nothing to report to.
                    w.terminate(false).await;
                    return;
                }
                w.pod = updates.borrow_and_update().clone();
            }
            Some(ev) = w.events.recv() => w.handle(ev).await,
            _ = async { if let Some(t) = wake { tokio::time::sleep_until(t).await } else { std::future::pending::<()>().await } } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_back_off_doubles_to_five_minutes() {
        let mut current = None;
        let mut seen = Vec::new();
        for _ in 0..7 {
            let next = next_backoff(current);
            seen.push(next.as_secs());
            current = Some(next);
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("Always", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 137));
        assert!(!should_restart("Never", 1));
    }
}
