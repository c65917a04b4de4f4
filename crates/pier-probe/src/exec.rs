//! The `exec` handler: the node runs the command inside the container through [`ExecRunner`].

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ExecAction;

use crate::gofmt;
use crate::outcome::Outcome;
use crate::target::Target;

/// Upstream keeps at most this much of an exec probe's combined output (`maxReadLength`).
pub const MAX_OUTPUT: usize = 10 * 1024;

/// What a command run inside a container produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit code; 0 is success.
    pub exit_code: i32,
    /// Stdout and stderr interleaved; runners may cap it, and it is cut to [`MAX_OUTPUT`] here.
    pub output: Vec<u8>,
}

/// Why a command did not produce an exit code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The command was still running at the timeout; the runner should have killed it.
    #[error("command timed out")]
    TimedOut,
    /// The command could not be started (no such executable, the container is gone, ...).
    #[error("{0}")]
    Start(String),
}

/// Runs commands inside the container a handler targets; implemented by the node.
#[async_trait]
pub trait ExecRunner: Send + Sync {
    /// Runs `command` (argv, no shell) in the container and waits for it to exit.
    ///
    /// `timeout` bounds the run; `Duration::ZERO` means no timeout (lifecycle hooks, which
    /// upstream bounds only by the termination grace period: drop the future to stop waiting).
    ///
    /// # Errors
    ///
    /// [`ExecError::TimedOut`] when the timeout passed, [`ExecError::Start`] when the command
    /// could not run at all.
    async fn exec(&self, command: &[String], timeout: Duration) -> Result<ExecResult, ExecError>;
}

/// Runs an `exec` probe, as upstream's exec prober over CRI `ExecSync`.
pub async fn exec_probe(
    action: &ExecAction,
    target: &Target,
    runner: &dyn ExecRunner,
    timeout: Duration,
) -> Outcome {
    let command = expand(action.command.as_deref().unwrap_or_default(), &target.env);
    // The runner owns the timeout; this bound only guards against a runner that ignores it.
    let run = tokio::time::timeout(timeout + Duration::from_secs(1), runner.exec(&command, timeout));
    let result = match run.await {
        Ok(result) => result,
        Err(_) => Err(ExecError::TimedOut),
    };
    match result {
        Ok(done) => {
            let output = capped(&done.output);
            if done.exit_code == 0 {
                Outcome::Success(output)
            } else {
                Outcome::Failure(output)
            }
        }
        // Upstream's exec probe timeout reports the CRI's text as the failure output.
        Err(ExecError::TimedOut) => Outcome::Failure(timed_out(&command)),
        Err(ExecError::Start(message)) => Outcome::unknown(message),
    }
}

/// The CRI runtime's text for a timed-out `ExecSync`: `command "sh -c sleep 10" timed out`.
pub(crate) fn timed_out(command: &[String]) -> String {
    format!("command {} timed out", gofmt::quote(&command.join(" ")))
}

fn capped(output: &[u8]) -> String {
    String::from_utf8_lossy(&output[..output.len().min(MAX_OUTPUT)]).into_owned()
}

/// Kubernetes' `$(VAR)` expansion against the container's env: `$$` escapes `$`, unknown
/// references stay as written (upstream's `ExpandContainerCommandOnlyStatic`).
pub fn expand(command: &[String], env: &[(String, String)]) -> Vec<String> {
    command.iter().map(|arg| expand_one(arg, env)).collect()
}

fn expand_one(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    // Later definitions win, as upstream builds a map from the list.
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_upstream() {
        let env = vec![("PORT".to_string(), "8080".to_string())];
        let cmd = vec!["curl".to_string(), "localhost:$(PORT)/$(NOPE)/$$(PORT)/$x".to_string()];
        assert_eq!(expand(&cmd, &env)[1], "localhost:8080/$(NOPE)/$(PORT)/$x");
        assert_eq!(
            timed_out(&["sh".into(), "-c".into(), "sleep 5".into()]),
            r#"command "sh -c sleep 5" timed out"#
        );
    }
}
