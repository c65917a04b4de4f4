//! What the benchmark reads from `/proc`: the node agent's PID, its descendants (the
//! pods' processes), resident memory and CPU time.

use std::path::Path;

use anyhow::{bail, Context};

/// The command line of a process, split at NULs (empty when it is gone or a kernel thread).
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn pids() -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry.context("reading /proc")?;
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// The node agent of the cluster whose data directory is `data_dir`: the process
/// `pier node --name <node> ...` (the child of `pier node-init`) whose arguments name
/// that directory.
pub fn find_agent(data_dir: &Path, node: &str) -> anyhow::Result<u32> {
    let dir = data_dir.to_string_lossy();
    let mut found = Vec::new();
    for pid in pids()? {
        let args = cmdline(pid);
        let is_agent = args.get(1).is_some_and(|a| a == "node")
            && args.windows(2).any(|w| w[0] == "--name" && w[1] == node)
            && args.iter().any(|a| a.starts_with(dir.as_ref()));
        if is_agent {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no `pier node --name {node}` process with {dir} in its arguments"),
        many => bail!("several node agents for {node} under {dir}: {many:?}"),
    }
}

/// Every descendant of `pid` (not `pid` itself), from `/proc/<pid>/task/*/children`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in text.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

/// A `kB` field of `/proc/<pid>/status` or `smaps_rollup`, in KiB.
fn kib_field(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
        .with_context(|| format!("reading VmRSS of process {pid}"))
}

/// Total RSS and PSS (shared pages split among their users) of some processes, in
/// KiB; processes that are gone count nothing.
pub fn rss_pss_kib(pids: &[u32]) -> (u64, u64) {
    pids.iter().fold((0, 0), |(rss, pss), &p| {
        (
            rss + kib_field(&format!("/proc/{p}/status"), "VmRSS:").unwrap_or(0),
            pss + kib_field(&format!("/proc/{p}/smaps_rollup"), "Pss:").unwrap_or(0),
        )
    })
}

/// User plus system CPU time of a process, in clock ticks (`utime + stime` of
/// `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime 14 and stime 15 (1-based over the whole line).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time all CPUs spent busy (user, nice, system, irq, softirq, steal), in clock
/// ticks, from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    Some(busy)
}

/// CPU time of a process's live threads in nanoseconds, summed from
/// `/proc/<pid>/task/*/schedstat` (exact, where `utime + stime` counts whole clock
/// ticks and misses a process that ran for a few milliseconds).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(total)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when that fails).
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
