//! One probe attempt: pick the handler the probe names and run it, with upstream's retries.

use k8s_openapi::api::core::v1::Probe;

use crate::exec::{exec_probe, ExecRunner};
use crate::grpc::grpc;
use crate::http::http_get;
use crate::outcome::Outcome;
use crate::settings::ProbeSettings;
use crate::target::Target;
use crate::tcp::tcp_socket;

/// Upstream runs an attempt up to this many times while it errors (`maxProbeRetries`).
const MAX_ATTEMPTS: usize = 3;

/// Runs `probe`'s handler once against `target`, with the probe's `timeoutSeconds`.
pub async fn run_probe(probe: &Probe, target: &Target, runner: &dyn ExecRunner) -> Outcome {
    let timeout = ProbeSettings::from(probe).timeout;
    if let Some(action) = &probe.exec {
        exec_probe(action, target, runner, timeout).await
    } else if let Some(action) = &probe.http_get {
        http_get(action, target, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp_socket(action, target, timeout).await
    } else if let Some(action) = &probe.grpc {
        grpc(action, target, timeout).await
    } else {
        Outcome::unknown(format!("missing probe handler for {}:{}", target.pod, target.container))
    }
}

/// Runs `probe` as the kubelet does per period: errored attempts are retried, up to 3 in all, and
/// the last outcome is returned.
pub async fn probe_once(probe: &Probe, target: &Target, runner: &dyn ExecRunner) -> Outcome {
    let mut outcome = run_probe(probe, target, runner).await;
    for _ in 1..MAX_ATTEMPTS {
        if !matches!(outcome, Outcome::Errored { .. }) {
            break;
        }
        outcome = run_probe(probe, target, runner).await;
    }
    outcome
}
