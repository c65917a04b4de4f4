//! One container instance: a process started in the pod's sandbox, its output
//! captured to a log file, its exit reported to the pod worker.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pier_sandbox::{spawn, ContainerCommand, SandboxSpec, SpawnError, Stdio};
use tokio::sync::{mpsc, watch};

use crate::sandbox::Sandbox;
use crate::status::Terminated;

/// What to run, after the image table and the environment were applied.
#[derive(Debug, Clone)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

/// A running (or just ended) container process.
#[derive(Debug)]
pub struct Instance {
    pub pid: u32,
    pub id: String,
    pub started_at: Timestamp,
    pub log_path: PathBuf,
    /// Wakes `kubectl logs -f` readers of this instance's log.
    pub follower: pier_logs::LogFollower,
    pub exited: watch::Receiver<Option<Terminated>>,
}

impl Instance {
    /// Whether the process has ended.
    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Sends `signal` to the container's process group (its main process leads it)
    /// unless the main process already ended (its PID may be reused then).
    pub fn signal(&self, signal: Signal) {
        if !self.has_exited() {
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = kill(Pid::from_raw(-pid), signal);
            }
        }
    }

    /// Waits until the process ended, or `deadline` passes; true if it ended.
    pub async fn wait_until(&mut self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.exited.wait_for(Option::is_some)).await.is_ok()
    }
}

/// Upstream's text for a program that cannot be started, as the runtime reports it.
pub fn start_error_message(e: &SpawnError) -> String {
    match e {
        SpawnError::Exec { program, source } if source.kind() == std::io::ErrorKind::NotFound => {
            format!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: \
                 runc create failed: unable to start container process: exec: \"{program}\": \
                 executable file not found in $PATH: unknown"
            )
        }
        SpawnError::Exec { program, source } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: \
                 runc create failed: unable to start container process: exec: \"{program}\": permission denied: unknown"
            )
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            format!("failed to start container process: {text}")
        }
    }
}

/// Starts the process; `notify` gets `key` when it exits.
pub fn start<K: Clone + Send + 'static>(
    sandbox: &Sandbox,
    launch: Launch,
    id: String,
    log_path: &Path,
    notify: mpsc::UnboundedSender<K>,
    key: K,
) -> Result<Instance, Box<Terminated>> {
    let started_at = Timestamp::now();
    let fail = |message: String| {
        Box::new(Terminated {
            exit_code: 128,
            signal: None,
            reason: "StartError".to_string(),
            message: Some(message),
            started_at: Some(started_at),
            finished_at: Timestamp::now(),
            container_id: Some(id.clone()),
        })
    };
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("creating log directory {}: {e}", dir.display())))?;
    }
    let spec = SandboxSpec {
        netns: sandbox.netns.clone(),
        hostname: sandbox.hostname.clone(),
        rootfs: sandbox.rootfs.clone(),
    };
    let mut cmd = ContainerCommand::new(launch.argv);
    cmd.env = launch.env;
    cmd.working_dir = launch.working_dir;
    cmd.stdin = Stdio::null();
    // Starting waits for the child's exec (the sandbox steps run before it), so it
    // runs off the async workers.
    let spawned = tokio::task::block_in_place(|| spawn(&spec, cmd));
    let mut child = spawned.map_err(|e| fail(start_error_message(&e)))?;
    let pid = child.id();
    let writer = pier_logs::LogWriter::create(log_path)
        .map_err(|e| fail(format!("opening {}: {e}", log_path.display())))?;
    let follower = writer.follower();
    let source = |pipe: Option<std::fs::File>| -> Option<pier_logs::Source> {
        match tokio::net::unix::pipe::Receiver::from_file(pipe?) {
            Ok(r) => Some(Box::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "reading a container's output pipe");
                None
            }
        }
    };
    let stdout = source(child.stdout.take());
    let stderr = source(child.stderr.take());
    // Copy from the start: a full pipe would block the container.
    let copying = tokio::spawn(writer.capture(stdout, stderr));
    let (tx, rx) = watch::channel(None);
    let cid = id.clone();
    tokio::spawn(async move {
        let status = child.wait_async().await;
        // As when a container's init ends: what it left running goes with it. The
        // group cannot have been reused yet: its leader was reaped only just now and
        // the group lives on while members remain.
        if let Ok(pgid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
        // The log is complete once both pipes reached EOF; wait so `logs` after exit
        // shows everything.
        if let Ok(Err(e)) = copying.await {
            tracing::debug!(error = %e, "capturing container output");
        }
        let finished_at = Timestamp::now();
        let (exit_code, signal) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(sig)) => (128 + sig, Some(sig)),
                (None, None) => (-1, None),
            },
            Err(_) => (-1, None),
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let _ = tx.send(Some(Terminated {
            exit_code,
            signal,
            reason: reason.to_string(),
            message: None,
            started_at: Some(started_at),
            finished_at,
            container_id: Some(cid),
        }));
        let _ = notify.send(key);
    });
    Ok(Instance { pid, id, started_at, log_path: log_path.to_path_buf(), follower, exited: rx })
}
