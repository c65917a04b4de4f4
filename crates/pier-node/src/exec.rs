//! Running a command inside a running container for exec probes and lifecycle hooks.

use pier_sandbox::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pier_probe::{ExecError, ExecResult, ExecRunner, MAX_OUTPUT};
use pier_sandbox::ContainerCommand;
use tokio::io::AsyncReadExt;

/// Runs commands in the container whose main process is `pid`, with its environment
/// and working directory.
pub struct ContainerExec {
    pub pid: u32,
    pub env: Vec<(String, String)>,
    pub working_dir: std::path::PathBuf,
}

async fn read_capped(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = r {
        let _ = r.take(MAX_OUTPUT as u64 * 2).read_to_end(&mut out).await;
    }
    out
}

#[async_trait]
impl ExecRunner for ContainerExec {
    async fn exec(&self, command: &[String], timeout: Duration) -> Result<ExecResult, ExecError> {
        let mut cmd = ContainerCommand::new(command.to_vec());
        cmd.env = self.env.clone();
        cmd.working_dir = self.working_dir.clone();
        cmd.stdin = Stdio::null();
        let mut child = pier_sandbox::join::spawn_in_tokio(self.pid, cmd).map_err(|e| {
            ExecError::Start(format!(
                "OCI runtime exec failed: exec failed: unable to start container process: {e}: unknown"
            ))
        })?;
        let child_pid = child.id();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let (out, err, status) = tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (out, err, status)
        };
        let finished =
            if timeout.is_zero() { Some(run.await) } else { tokio::time::timeout(timeout, run).await.ok() };
        let Some((mut out, err, status)) = finished else {
            if let Some(pid) = child_pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(ExecError::TimedOut);
        };
        out.extend_from_slice(&err);
        let status = status.map_err(|e| ExecError::Start(e.to_string()))?;
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecResult { exit_code, output: out })
    }
}
