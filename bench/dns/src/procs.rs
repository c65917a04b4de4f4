//! Everything the benchmark makes on the machine, and its removal: the processes it
//! starts (the pinned Pier server, unbound, dnsperf) and its temporary directory
//! (`pier-bench-dns-<pid>` under the temp dir). All of it is recorded in one
//! registry as it is made and removed by [`Cleanup`] when `main` returns or unwinds,
//! or by the signal thread ([`clean_up_on_signals`]) on Ctrl-C / SIGTERM / SIGHUP.
//! Nothing else is ever touched. The Pier server child also exits by itself when
//! its stdin closes (the benchmark gone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Default)]
struct Registry {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { children: Vec::new(), dirs: Vec::new() });

fn registry() -> MutexGuard<'static, Registry> {
    // A thread that panicked while holding the lock left the lists consistent
    // (every change is one push or one removal).
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn clean(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for mut child in self.children.drain(..).rev() {
            if let Err(e) = kill(&mut child) {
                errors.push(e);
            }
        }
        for dir in self.dirs.drain(..) {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(format!("removing {}: {e}", dir.display()));
                }
                _ => {}
            }
        }
        errors
    }
}

fn kill(child: &mut Child) -> Result<(), String> {
    let pid = child.id();
    if !matches!(child.try_wait(), Ok(Some(_))) {
        child.kill().map_err(|e| format!("killing process {pid}: {e}"))?;
        let _ = child.wait();
    }
    Ok(())
}

/// Removes everything recorded so far when dropped (end of `main`, an error, a panic).
pub struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        for e in registry().clean() {
            eprintln!("cleanup: {e}");
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove everything and exit with status 130.
pub fn clean_up_on_signals() -> anyhow::Result<()> {
    pier_bench_support::on_termination_signals("pbd-signals", |which| {
        let mut reg = registry();
        eprintln!("{which}: stopping the benchmark's processes and removing its files");
        for e in reg.clean() {
            eprintln!("cleanup: {e}");
        }
        std::process::exit(130);
    })
}

/// Makes the benchmark's temporary directory, `pier-bench-dns-<pid>`, and records it.
pub fn temp_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pier-bench-dns-{}", std::process::id()));
    let mut reg = registry();
    std::fs::create_dir(&dir).with_context(|| format!("making {}", dir.display()))?;
    reg.dirs.push(dir.clone());
    Ok(dir)
}

/// Starts `cmd` and records it; the child's PID. `take` gets the child before it
/// is recorded (to take its pipes).
pub fn spawn(mut cmd: Command, take: impl FnOnce(&mut Child)) -> anyhow::Result<u32> {
    let mut reg = registry();
    let mut child = cmd.spawn()?;
    take(&mut child);
    let pid = child.id();
    reg.children.push(child);
    Ok(pid)
}

/// The exit status of a recorded process that has ended.
pub fn exited(pid: u32) -> Option<ExitStatus> {
    let mut reg = registry();
    let child = reg.children.iter_mut().find(|c| c.id() == pid)?;
    child.try_wait().ok().flatten()
}

/// Waits for a recorded process to end, at most `timeout` (then kills it and
/// fails), and forgets it.
pub fn wait(pid: u32, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = exited(pid) {
            registry().children.retain(|c| c.id() != pid);
            return Ok(status);
        }
        if Instant::now() > deadline {
            stop(pid);
            bail!("process {pid} did not end within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a recorded process (if still running) and forgets it.
pub fn stop(pid: u32) {
    let mut reg = registry();
    if let Some(pos) = reg.children.iter().position(|c| c.id() == pid) {
        let mut child = reg.children.remove(pos);
        if let Err(e) = kill(&mut child) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A process's resident set (`VmRSS`) and its peak (`VmHWM`), in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = read(format!("/proc/{pid}/status"));
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no VmRSS for process {pid} (gone?)"),
    }
}

/// CPU time a process used so far (all its threads, user + system), in seconds.
pub fn cpu_secs(pid: u32, ticks_per_sec: f64) -> anyhow::Result<f64> {
    let stat = read(format!("/proc/{pid}/stat"));
    // Fields after the command name (which may hold spaces) start with the state
    // (field 3); utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("no /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => Ok((u + s) as f64 / ticks_per_sec),
        _ => bail!("cannot read CPU time of process {pid}"),
    }
}

/// Per CPU, from `/proc/stat`: (busy, total) ticks since boot, busy being all
/// but idle and iowait.
pub fn cpu_ticks() -> Vec<(u64, u64)> {
    read("/proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// How busy `core` was between two [`cpu_ticks`] readings, as a share.
pub fn busy_between(before: &[(u64, u64)], after: &[(u64, u64)], core: usize) -> f64 {
    match (before.get(core), after.get(core)) {
        (Some(b), Some(a)) if a.1 > b.1 => (a.0 - b.0) as f64 / (a.1 - b.1) as f64,
        _ => f64::NAN,
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// The one-minute load average.
pub fn load1() -> f64 {
    read("/proc/loadavg").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

pub fn kernel() -> String {
    read("/proc/sys/kernel/osrelease").trim().to_string()
}

/// Where `program` is: `/usr/sbin/<program>` or `/usr/bin/<program>` if there, else
/// the first on PATH.
/// This benchmark's binary in one of its internal roles (`--child-...`), pinned to
/// `core` with `taskset` (its threads included).
pub fn this_binary_on(core: usize, role: &str) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(core.to_string()).arg(exe).arg(role);
    Ok(cmd)
}

pub fn find_program(program: &str) -> Option<PathBuf> {
    let fixed = ["/usr/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(program));
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed.chain(on_path).find(|p| p.is_file())
}

/// The first line of `program ARGS`' output that contains `needle` (stdout, then
/// stderr), trimmed.
pub fn version_line(program: &Path, args: &[&str], needle: &str) -> Option<String> {
    let out = Command::new(program).args(args).stdin(std::process::Stdio::null()).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.lines().find(|l| l.contains(needle)).map(|l| l.trim().to_string())
}
