//! Container probes and lifecycle handlers: exec, httpGet, tcpSocket, grpc, with upstream's timing and
//! thresholds.
//!
//! - Handlers, each returning an [`Outcome`] in the kubelet's words: [`http_get`], [`tcp_socket`],
//!   [`grpc()`], [`exec_probe`] (through the node's [`ExecRunner`]); [`run_probe`] picks the one a
//!   `Probe` names and [`probe_once`] adds upstream's retries of errored attempts.
//! - Lifecycle hooks: [`run_hook`] for `postStart`/`preStop` (`exec`, `httpGet`, `sleep`).
//! - Workers: [`ContainerProbes`] probes one container instance on upstream's schedule and reports
//!   [`ProbeUpdate`]s (ready/started changes, events, restart requests).
//!
//! Handlers connect from the agent's network namespace straight to the pod IP in [`Target`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod action;
mod exec;
mod gofmt;
mod grpc;
mod http;
mod lifecycle;
mod net;
mod outcome;
mod settings;
mod target;
mod tcp;
mod tls;
mod url;
mod worker;

#[cfg(test)]
mod tests;

pub use action::{probe_once, run_probe};
pub use exec::{exec_probe, expand, ExecError, ExecResult, ExecRunner, MAX_OUTPUT};
pub use grpc::grpc;
pub use http::{http_get, MAX_BODY};
pub use lifecycle::{run_hook, HookKind, HookOutcome, LIFECYCLE_HTTP_FALLBACK, POST_START_HOOK_ERROR};
pub use outcome::Outcome;
pub use settings::{ProbeKind, ProbeSettings};
pub use target::{ContainerPort, PodRef, PortError, Target};
pub use tcp::tcp_socket;
pub use worker::{killing_message, ContainerProbes, ProbeConfig, ProbeEvent, ProbeUpdate};

/// The Kubernetes version the agent reports in `kube-probe/<major.minor>` user agents.
pub const KUBE_VERSION: &str = "1.33";
