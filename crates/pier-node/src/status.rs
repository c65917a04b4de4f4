//! Pod status from what the node knows about its containers, as the kubelet computes
//! it (`getPhase`, `generateAPIPodStatus`): phase, conditions and container statuses.
//! Pure, so every rule is unit-tested.

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A container's current state, as the node tracks it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running; `reason` is e.g. `ContainerCreating`, `CrashLoopBackOff`.
    Waiting { reason: String, message: Option<String> },
    /// Running since `started_at`.
    Running { started_at: Timestamp },
    /// Ended.
    Terminated(Terminated),
}

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`, `StartError`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

/// Everything the status needs about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
    /// Startup probe passed (or there is none) while running.
    pub started: bool,
    /// Whether the container ever started (for the phase: a container that never ran
    /// keeps the pod Pending).
    pub ever_ran: bool,
    pub container_id: Option<String>,
}

/// The pod-level facts.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub host_ip: String,
    pub pod_ip: Option<String>,
    pub start_time: Timestamp,
    /// The sandbox (network, files) is up.
    pub sandbox_ready: bool,
    pub restart_policy: String,
    pub containers: Vec<ContainerView>,
}

/// The API carries times to the second; a status computed with finer times would never
/// equal the one read back, and every recomputation would write it again (the kubelet's
/// status manager normalizes to seconds for the same reason).
fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(time),
        finished_at: Some(time(t.finished_at)),
        container_id: t.container_id.clone(),
    }
}

fn api_state(s: &State) -> ApiState {
    match s {
        State::Waiting { reason, message } => ApiState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
            ..ApiState::default()
        },
        State::Running { started_at } => ApiState {
            running: Some(ContainerStateRunning { started_at: Some(time(*started_at)) }),
            ..ApiState::default()
        },
        State::Terminated(t) => ApiState { terminated: Some(terminated(t)), ..ApiState::default() },
    }
}

/// The pod phase, after the kubelet's `getPhase` (no init containers).
pub fn phase(view: &PodView) -> &'static str {
    let mut pending = 0;
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for c in &view.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => {
                if c.ever_ran || c.last.is_some() {
                    waiting += 1;
                } else {
                    pending += 1;
                }
            }
        }
    }
    let total = view.containers.len();
    if pending > 0 || !view.sandbox_ready {
        return "Pending";
    }
    if running > 0 && waiting == 0 && pending == 0 {
        return "Running";
    }
    if running > 0 || waiting > 0 {
        // Some are restarting (CrashLoopBackOff): the pod still counts as running.
        return "Running";
    }
    if stopped == total && total > 0 {
        return match view.restart_policy.as_str() {
            "Always" => "Running",
            "OnFailure" if succeeded == total => "Succeeded",
            "OnFailure" => "Running",
            _ if succeeded == total => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// Keeps a condition's `lastTransitionTime` when its status did not change.
fn condition(
    previous: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let earlier = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        last_transition_time: Some(earlier.unwrap_or(time(now))),
        last_probe_time: None,
        message: None,
        observed_generation: None,
    }
}

/// The container names that are not ready, as upstream's condition message lists them.
fn not_ready(view: &PodView) -> Vec<&str> {
    view.containers.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect()
}

/// The whole status the node writes for a pod.
pub fn pod_status(pod: &Pod, view: &PodView, now: Timestamp) -> PodStatus {
    let previous = pod.status.as_ref();
    let phase = phase(view);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready = not_ready(view);
    let containers_ready = unready.is_empty();
    let reason = if containers_ready {
        None
    } else if terminal {
        Some("PodCompleted")
    } else {
        Some("ContainersNotReady")
    };
    let mut conditions = vec![
        condition(previous, "PodReadyToStartContainers", view.sandbox_ready && !terminal, None, now),
        condition(previous, "Initialized", true, None, now),
        condition(previous, "Ready", containers_ready, reason, now),
        condition(previous, "ContainersReady", containers_ready, reason, now),
        condition(previous, "PodScheduled", true, None, now),
    ];
    if !containers_ready && !terminal {
        let message = format!("containers with unready status: [{}]", unready.join(" "));
        conditions[2].message = Some(message.clone());
        conditions[3].message = Some(message);
    }
    let statuses = view
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: format!("pier-image://{}", c.image),
            container_id: c.container_id.clone(),
            ready: c.ready,
            started: Some(c.started && matches!(c.state, State::Running { .. })),
            restart_count: c.restart_count,
            state: Some(api_state(&c.state)),
            last_state: Some(
                c.last
                    .as_ref()
                    .map(|t| ApiState { terminated: Some(terminated(t)), ..ApiState::default() })
                    .unwrap_or_default(),
            ),
            ..ContainerStatus::default()
        })
        .collect();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: view.host_ip.clone() }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(time(view.start_time)),
        container_statuses: Some(statuses),
        qos_class: Some(qos_class(pod).to_string()),
        ..PodStatus::default()
    }
}

/// `BestEffort` without requests or limits, `Guaranteed` when every container's
/// requests equal its limits for cpu and memory, else `Burstable`.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else { return "BestEffort" };
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let res = c.resources.clone().unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            match (limits.get(r), requests.get(r)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(state: State) -> ContainerView {
        ContainerView {
            name: "kubia".into(),
            image: "luksa/kubia".into(),
            ready: matches!(state, State::Running { .. }),
            started: true,
            ever_ran: !matches!(state, State::Waiting { .. }),
            state,
            last: None,
            restart_count: 0,
            container_id: None,
        }
    }

    fn view(policy: &str, containers: Vec<ContainerView>) -> PodView {
        PodView {
            host_ip: "172.30.0.10".into(),
            pod_ip: Some("10.244.0.2".into()),
            start_time: Timestamp::UNIX_EPOCH,
            sandbox_ready: true,
            restart_policy: policy.into(),
            containers,
        }
    }

    fn ended(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: None,
        })
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let creating = State::Waiting { reason: "ContainerCreating".into(), message: None };
        assert_eq!(phase(&view("Always", vec![container(creating)])), "Pending");
        let running = State::Running { started_at: Timestamp::UNIX_EPOCH };
        assert_eq!(phase(&view("Always", vec![container(running)])), "Running");
        assert_eq!(phase(&view("Never", vec![container(ended(0))])), "Succeeded");
        assert_eq!(phase(&view("Never", vec![container(ended(1))])), "Failed");
        assert_eq!(phase(&view("OnFailure", vec![container(ended(1))])), "Running");
        assert_eq!(phase(&view("Always", vec![container(ended(0))])), "Running");
        let mut backoff = container(State::Waiting { reason: "CrashLoopBackOff".into(), message: None });
        backoff.ever_ran = true;
        assert_eq!(phase(&view("Always", vec![backoff])), "Running");
        let mut v = view("Always", vec![]);
        v.sandbox_ready = false;
        assert_eq!(phase(&v), "Pending");
    }

    #[test]
    fn conditions_keep_their_transition_times() {
        let pod = Pod::default();
        let running = State::Running { started_at: Timestamp::UNIX_EPOCH };
        let first =
            pod_status(&pod, &view("Always", vec![container(running.clone())]), Timestamp::UNIX_EPOCH);
        let pod = Pod { status: Some(first.clone()), ..Pod::default() };
        let later = Timestamp::UNIX_EPOCH + std::time::Duration::from_secs(60);
        let second = pod_status(&pod, &view("Always", vec![container(running)]), later);
        assert_eq!(first.conditions, second.conditions);
        let ready = |s: &PodStatus| {
            s.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned()).expect("Ready")
        };
        assert_eq!(ready(&second).status, "True");
        let mut unready = container(State::Running { started_at: Timestamp::UNIX_EPOCH });
        unready.ready = false;
        let third = pod_status(&pod, &view("Always", vec![unready]), later);
        assert_eq!(ready(&third).status, "False");
        assert_eq!(ready(&third).reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(ready(&third).message.as_deref(), Some("containers with unready status: [kubia]"));
        assert_eq!(ready(&third).last_transition_time, Some(Time(later)));
    }

    #[test]
    fn a_status_read_back_from_the_api_is_not_written_again() {
        let started =
            Timestamp::from_second(1_800_000_000).expect("time") + std::time::Duration::from_millis(250);
        let now = started + std::time::Duration::from_millis(500);
        let mut v = view("Always", vec![container(State::Running { started_at: started })]);
        v.start_time = started;
        let written = pod_status(&Pod::default(), &v, now);
        let json = serde_json::to_string(&written).expect("encode");
        let read_back: PodStatus = serde_json::from_str(&json).expect("decode");
        let pod = Pod { status: Some(read_back), ..Pod::default() };
        let again = pod_status(&pod, &v, now + std::time::Duration::from_millis(100));
        assert_eq!(again, written);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&Pod::default()), "BestEffort");
    }
}
