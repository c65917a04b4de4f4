//! Worker timing on tokio's paused clock. Observations are made between ticks (at `x.5` s) so no
//! assertion depends on the order of timers that fire at the same instant.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, Probe};
use tokio::time::Instant;

use super::support::{target, Behave, FakeRunner};
use crate::{exec_probe, ContainerProbes, Outcome, ProbeConfig, ProbeKind, ProbeUpdate};

fn exec(command: &str, period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec![command.to_string()]) }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

struct Harness {
    t0: Instant,
    runner: Arc<FakeRunner>,
    updates: Arc<Mutex<Vec<(u64, ProbeUpdate)>>>,
    probes: Option<ContainerProbes>,
}

impl Harness {
    fn start(container: Container, jitter: bool) -> Harness {
        let t0 = Instant::now();
        let runner = Arc::new(FakeRunner::default());
        let updates = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&updates);
        let config = ProbeConfig {
            container,
            target: target(&[]),
            exec: Arc::clone(&runner) as Arc<dyn crate::ExecRunner>,
            started_at: t0,
            agent_started_at: jitter.then_some(t0),
            will_restart: true,
        };
        let probes = ContainerProbes::spawn_with(config, move |u| {
            sink.lock().unwrap().push(((Instant::now() - t0).as_secs(), u));
        });
        Harness { t0, runner, updates, probes: Some(probes) }
    }

    /// Lets virtual time run until `secs` after the start.
    async fn at(&self, secs: f64) {
        tokio::time::sleep_until(self.t0 + Duration::from_secs_f64(secs)).await;
    }

    fn calls(&self, command: &str) -> Vec<u64> {
        self.runner.calls_of(command, self.t0)
    }

    fn updates(&self) -> Vec<(u64, ProbeUpdate)> {
        self.updates.lock().unwrap().clone()
    }

    /// Only `Ready`/`Started` changes.
    fn states(&self) -> Vec<(u64, ProbeUpdate)> {
        self.updates()
            .into_iter()
            .filter(|(_, u)| matches!(u, ProbeUpdate::Ready(_) | ProbeUpdate::Started(_)))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn initial_delay_holds_the_first_probe_until_a_tick_after_it() {
    let mut probe = exec("ready", 10);
    probe.initial_delay_seconds = Some(5);
    let h = Harness::start(
        Container { name: "app".into(), readiness_probe: Some(probe), ..Container::default() },
        false,
    );
    h.at(25.5).await;
    // Ticks at 0 (before the delay), 10, 20: upstream probes on ticks, not when the delay ends.
    assert_eq!(h.calls("ready"), vec![10, 20]);
    assert_eq!(
        h.states(),
        vec![(0, ProbeUpdate::Started(true)), (0, ProbeUpdate::Ready(false)), (10, ProbeUpdate::Ready(true))]
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_restarts_after_failure_threshold_then_holds() {
    let mut probe = exec("live", 10);
    probe.termination_grace_period_seconds = Some(7);
    let h = Harness::start(
        Container { name: "app".into(), liveness_probe: Some(probe), ..Container::default() },
        false,
    );
    h.runner.set("live", Behave::Exit(1, "not ok"));
    h.at(55.5).await;
    assert_eq!(h.calls("live"), vec![0, 10, 20], "no probes after the restart request");
    let updates = h.updates();
    let unhealthy: Vec<u64> =
        updates.iter().filter(|(_, u)| matches!(u, ProbeUpdate::Unhealthy { .. })).map(|(t, _)| *t).collect();
    assert_eq!(unhealthy, vec![0, 10, 20]);
    let restart = ProbeUpdate::Restart {
        kind: ProbeKind::Liveness,
        message: "Container app failed liveness probe, will be restarted".into(),
        grace_period_seconds: Some(7),
    };
    assert_eq!(updates.iter().filter(|(_, u)| matches!(u, ProbeUpdate::Restart { .. })).count(), 1);
    assert!(updates.contains(&(20, restart.clone())));
    assert_eq!(restart.event().unwrap().reason, "Killing");
    let event = updates[2].1.event().unwrap();
    assert_eq!(
        (event.type_, event.reason, event.message.as_str()),
        ("Warning", "Unhealthy", "Liveness probe failed: not ok")
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_failures_must_be_consecutive() {
    let h = Harness::start(
        Container { name: "app".into(), liveness_probe: Some(exec("live", 10)), ..Container::default() },
        false,
    );
    h.runner.set("live", Behave::Exit(1, ""));
    h.at(15.5).await; // failures at 0, 10
    h.runner.set("live", Behave::Exit(0, ""));
    h.at(25.5).await; // success at 20 resets the run
    h.runner.set("live", Behave::Exit(1, ""));
    h.at(45.5).await; // failures at 30, 40: still below 3
    assert!(!h.updates().iter().any(|(_, u)| matches!(u, ProbeUpdate::Restart { .. })));
    h.at(55.5).await;
    assert!(h.updates().iter().any(|(t, u)| *t == 50 && matches!(u, ProbeUpdate::Restart { .. })));
}

#[tokio::test(start_paused = true)]
async fn readiness_flips_within_one_period() {
    let mut probe = exec("ready", 10);
    probe.failure_threshold = Some(1);
    let h = Harness::start(
        Container { name: "app".into(), readiness_probe: Some(probe), ..Container::default() },
        false,
    );
    h.at(13.0).await;
    h.runner.set("ready", Behave::Exit(1, "db down"));
    h.at(23.0).await;
    h.runner.set("ready", Behave::Exit(0, ""));
    h.at(35.5).await;
    assert_eq!(
        h.states(),
        vec![
            (0, ProbeUpdate::Started(true)),
            (0, ProbeUpdate::Ready(false)),
            (0, ProbeUpdate::Ready(true)),
            (20, ProbeUpdate::Ready(false)),
            (30, ProbeUpdate::Ready(true)),
        ]
    );
    let failed = h.updates().iter().find_map(|(_, u)| u.event()).unwrap();
    assert_eq!(failed.message, "Readiness probe failed: db down");
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let mut startup = exec("start", 10);
    startup.failure_threshold = Some(10);
    let container = Container {
        name: "app".into(),
        startup_probe: Some(startup),
        liveness_probe: Some(exec("live", 7)),
        readiness_probe: Some(exec("ready", 10)),
        ..Container::default()
    };
    let h = Harness::start(container, false);
    h.runner.set("start", Behave::Exit(1, ""));
    h.at(25.5).await;
    assert!(h.calls("live").is_empty() && h.calls("ready").is_empty());
    h.runner.set("start", Behave::Exit(0, ""));
    h.at(50.5).await;
    assert_eq!(h.calls("start"), vec![0, 10, 20, 30], "startup stops once passed");
    assert_eq!(h.calls("ready").first(), Some(&30), "readiness runs as soon as the container started");
    assert_eq!(h.calls("live").first(), Some(&35), "liveness waits for its next tick");
    assert_eq!(
        h.states(),
        vec![
            (0, ProbeUpdate::Started(false)),
            (0, ProbeUpdate::Ready(false)),
            (30, ProbeUpdate::Started(true)),
            (30, ProbeUpdate::Ready(true)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn startup_failure_requests_restart() {
    let container =
        Container { name: "app".into(), startup_probe: Some(exec("start", 5)), ..Container::default() };
    let h = Harness::start(container, false);
    h.runner.set("start", Behave::Exit(1, ""));
    h.at(30.5).await;
    assert_eq!(h.calls("start"), vec![0, 5, 10]);
    let restart = ProbeUpdate::Restart {
        kind: ProbeKind::Startup,
        message: "Container app failed startup probe, will be restarted".into(),
        grace_period_seconds: None,
    };
    assert!(h.updates().contains(&(10, restart)));
}

#[tokio::test(start_paused = true)]
async fn errored_attempts_are_retried_and_discarded() {
    let h = Harness::start(
        Container { name: "app".into(), liveness_probe: Some(exec("live", 10)), ..Container::default() },
        false,
    );
    h.runner.set("live", Behave::CannotStart);
    h.at(45.5).await;
    assert_eq!(h.calls("live"), vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40]);
    let updates = h.updates();
    assert!(!updates.iter().any(|(_, u)| matches!(u, ProbeUpdate::Restart { .. })));
    let event = updates.iter().find_map(|(_, u)| u.event()).unwrap();
    assert_eq!(
        event.message,
        "Liveness probe errored and resulted in unknown state: exec: \"live\": executable file not found in $PATH"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_only_the_first_probe_after_an_agent_restart() {
    let h = Harness::start(
        Container { name: "app".into(), liveness_probe: Some(exec("live", 10)), ..Container::default() },
        true,
    );
    h.at(40.0).await;
    let calls = h.calls("live");
    assert!(calls[0] < 10, "{calls:?}");
    assert!(calls.windows(2).all(|w| w[1] - w[0] == 10), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn termination_stops_liveness_and_drop_stops_everything() {
    let container = Container {
        name: "app".into(),
        liveness_probe: Some(exec("live", 10)),
        readiness_probe: Some(exec("ready", 10)),
        ..Container::default()
    };
    let mut h = Harness::start(container, false);
    h.at(15.5).await;
    h.probes.as_ref().unwrap().pod_terminating();
    h.at(35.5).await;
    assert_eq!(h.calls("live"), vec![0, 10]);
    assert_eq!(h.calls("ready"), vec![0, 10, 20, 30]);
    h.probes = None;
    h.at(65.5).await;
    assert_eq!(h.calls("ready"), vec![0, 10, 20, 30]);
}

#[tokio::test(start_paused = true)]
async fn exec_probe_timeout_message() {
    let runner = FakeRunner::default();
    runner.set("sh", Behave::TimeOut);
    let action = ExecAction { command: Some(vec!["sh".into(), "-c".into(), "sleep 5".into()]) };
    let outcome = exec_probe(&action, &target(&[]), &runner, Duration::from_secs(1)).await;
    assert_eq!(outcome, Outcome::Failure("command \"sh -c sleep 5\" timed out".into()));
}
