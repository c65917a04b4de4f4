//! Child processes the benchmark starts (`pier up`, `etcd`): always stopped by their own
//! PID, on success, on error and on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running child process; killed (SIGKILL) if dropped while still running.
pub struct Child {
    inner: std::process::Child,
    name: &'static str,
}

impl Child {
    /// Spawns `cmd` with stdin closed and stderr appended to `log`.
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let inner = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Child { inner, name })
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Takes the child's stdout, if it was piped.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// Whether the child already exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.inner.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    fn terminate(&mut self, grace: Duration) {
        if self.exited() {
            return;
        }
        // std offers only SIGKILL; SIGTERM lets the process shut down cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("warning: {} (pid {}) did not stop after SIGTERM; killing it", self.name, self.pid());
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.inner.kill();
            let _ = self.inner.wait();
        }
    }
}

/// Reads `stdout` to its end on a thread and records when a line starting with `marker`
/// first appeared.
pub fn watch_stdout(stdout: std::process::ChildStdout, marker: &'static str) -> Arc<OnceLock<Instant>> {
    let seen = Arc::new(OnceLock::new());
    let out = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(marker) {
                let _ = out.set(Instant::now());
            }
        }
    });
    seen
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    /// VmRSS, MiB.
    pub rss_mib: f64,
    /// VmHWM (peak resident), MiB.
    pub peak_mib: f64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some(Memory { rss_mib: field("VmRSS:")?, peak_mib: field("VmHWM:")? })
}

/// First line of `cmd --version`-style output, for the report.
pub fn version_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// CPU time (user + system) a process has used so far, seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime field 14 and stime field 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| version_of("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0))
}
