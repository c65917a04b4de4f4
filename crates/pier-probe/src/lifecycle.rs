//! `postStart` and `preStop` hooks (`exec`, `httpGet`, `sleep`), as upstream's `handlerRunner`.
//!
//! Unlike probes, hooks have no timeout of their own and an HTTP hook's status code is ignored: only
//! a transport error fails it. The caller bounds a preStop hook by the grace period by dropping the
//! future (which also cuts a `sleep` short).

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use crate::exec::{timed_out, ExecError, ExecRunner};
use crate::gofmt;
use crate::http::{fetch, read_body, Prepared, Purpose};
use crate::target::Target;

/// Which hook runs: decides the event the kubelet records when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `lifecycle.postStart`: on failure the container is killed (and restarted per policy).
    PostStart,
    /// `lifecycle.preStop`: on failure termination simply continues.
    PreStop,
}

impl HookKind {
    /// The Warning event's reason on failure: `FailedPostStartHook` / `FailedPreStopHook`.
    pub fn failure_reason(self) -> &'static str {
        match self {
            HookKind::PostStart => "FailedPostStartHook",
            HookKind::PreStop => "FailedPreStopHook",
        }
    }

    /// The Warning event's message on failure. Upstream keeps the detailed message out of events
    /// (it may hold secrets), so this is fixed: `PostStartHook failed` / `PreStopHook failed`.
    pub fn failure_event_message(self) -> &'static str {
        match self {
            HookKind::PostStart => "PostStartHook failed",
            HookKind::PreStop => "PreStopHook failed",
        }
    }
}

/// Upstream's reason for the kill after a failed postStart hook, and the waiting reason shown.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// The warning event reason when an HTTPS hook was answered over plain HTTP and retried.
pub const LIFECYCLE_HTTP_FALLBACK: &str = "LifecycleHTTPFallback";

/// What running a hook produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookOutcome {
    /// `Err` holds upstream's detailed message, e.g. `HTTP lifecycle hook (/stop) for Container
    /// "app" in Pod "web_default(uid)" failed - error: ...`, for logs and the container status.
    pub result: Result<(), String>,
    /// A `LifecycleHTTPFallback` Warning event message for the pod, when an HTTPS hook was retried
    /// over HTTP and that succeeded.
    pub fallback_warning: Option<String>,
}

impl HookOutcome {
    fn done(result: Result<(), String>) -> Self {
        HookOutcome { result, fallback_warning: None }
    }
}

/// Runs a lifecycle hook for `target`'s container.
pub async fn run_hook(handler: &LifecycleHandler, target: &Target, runner: &dyn ExecRunner) -> HookOutcome {
    let failed = |what: String, err: String| {
        format!(
            "{what} for Container {} in Pod {} failed - error: {err}",
            gofmt::quote(&target.container),
            gofmt::quote(&target.pod.to_string())
        )
    };
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let (err, output) = match runner.exec(&command, Duration::ZERO).await {
            Ok(done) if done.exit_code == 0 => return HookOutcome::done(Ok(())),
            Ok(done) => {
                let output = String::from_utf8_lossy(&done.output).into_owned();
                (format!("command '{}' exited with {}: {output}", command.join(" "), done.exit_code), output)
            }
            Err(ExecError::TimedOut) => (timed_out(&command), String::new()),
            Err(ExecError::Start(message)) => (message, String::new()),
        };
        let what = format!("Exec lifecycle hook ([{}])", command.join(" "));
        return HookOutcome::done(Err(format!("{}, message: {}", failed(what, err), gofmt::quote(&output))));
    }
    if let Some(action) = &handler.http_get {
        let what = format!("HTTP lifecycle hook ({})", action.path.as_deref().unwrap_or_default());
        let no_host = action.host.as_deref().is_none_or(str::is_empty);
        if no_host && target.pod_ip.is_none() {
            return HookOutcome::done(Err(failed(
                what,
                "failed to find networking container: no pod IP".into(),
            )));
        }
        let prepared = match Prepared::new(action, target, Purpose::Lifecycle) {
            Ok(p) => p,
            Err(err) => return HookOutcome::done(Err(failed(what, err))),
        };
        return match http_hook(&prepared).await {
            Ok(fallback_warning) => HookOutcome { result: Ok(()), fallback_warning },
            Err(err) => HookOutcome::done(Err(failed(what, err))),
        };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0))).await;
        return HookOutcome::done(Ok(()));
    }
    let err = "invalid handler: no exec, httpGet or sleep action".to_string();
    HookOutcome::done(Err(format!("Cannot run handler: {err}")))
}

/// Sends the hook's request; any response counts. Returns the fallback warning, if one applies.
async fn http_hook(prepared: &Prepared) -> Result<Option<String>, String> {
    match fetch(prepared, None).await {
        Ok(fetched) => {
            drain(fetched.response).await;
            Ok(None)
        }
        Err(err) if err.is_http_response_to_https() => {
            let plain = prepared.downgraded();
            match fetch(&plain, None).await {
                Ok(fetched) => {
                    drain(fetched.response).await;
                    Ok(Some(format!(
                        "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                        plain.url.authority()
                    )))
                }
                // Upstream reports the original HTTPS error when the retry fails too.
                Err(_) => Err(err.to_string()),
            }
        }
        Err(err) => Err(err.to_string()),
    }
}

async fn drain(response: http::Response<hyper::body::Incoming>) {
    let _ = read_body(response.into_body(), None).await;
}
