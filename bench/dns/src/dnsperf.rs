//! Load from dnsperf (DNS-OARC, Debian's `dnsperf`), pinned to the client core
//! with `taskset -c`, and what it reports: its summary (queries per second, lost
//! queries, response codes, average latency) and, with `-v`, every response's
//! latency (microsecond resolution), from which the percentiles come.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::procs;

/// How a dnsperf run is made.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub bin: PathBuf,
    pub core: usize,
    /// The servers' core (to report how busy it was).
    pub server_core: usize,
    pub queries: PathBuf,
    pub secs: u64,
    /// `-c`: client sockets.
    pub clients: usize,
    /// `-q`: queries outstanding at most (closed loop at peak).
    pub outstanding: usize,
    /// `-Q`: queries per second at most (None: as fast as answers come).
    pub rate: Option<u64>,
    /// `-v`: each response's latency (for percentiles).
    pub per_query: bool,
}

/// One run's results.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub qps: f64,
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    /// dnsperf's "Response codes" line.
    pub rcodes: String,
    pub noerror: u64,
    pub run_secs: f64,
    pub avg_latency_ms: f64,
    pub max_latency_ms: f64,
    /// CPU the server process used during the run, as a share of one core
    /// (its user + system time over dnsperf's run time).
    pub server_cpu: f64,
    /// How busy the server's core was during the run, by anything (the server
    /// and whatever else ran there), as a share.
    pub server_core_busy: f64,
    /// How busy the client's core was, by anything.
    pub client_core_busy: f64,
    /// Per-response latencies in µs (with `per_query`); not serialized.
    #[serde(skip)]
    pub latencies_us: Vec<f64>,
    /// Responses dnsperf reported as timed out (`T`) in `-v` output.
    pub timeouts: u64,
}

impl Load {
    /// Runs dnsperf against `server` (whose process is `server_pid`) and waits for it.
    pub fn run(&self, server: SocketAddr, server_pid: u32, dir: &Path, label: &str) -> anyhow::Result<Run> {
        let out_path = dir.join(format!("dnsperf-{label}.out"));
        let err_path = dir.join(format!("dnsperf-{label}.err"));
        let out =
            std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let err =
            std::fs::File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(self.core.to_string())
            .arg(&self.bin)
            .args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
            .arg("-d")
            .arg(&self.queries)
            .args(["-l", &self.secs.to_string()])
            .args(["-c", &self.clients.to_string(), "-T", "1"])
            .args(["-q", &self.outstanding.to_string()])
            .args(["-t", "1"]);
        if let Some(rate) = self.rate {
            cmd.args(["-Q", &rate.to_string()]);
        }
        if self.per_query {
            cmd.arg("-v");
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let ticks = procs::ticks_per_sec();
        let cpu_before = procs::cpu_secs(server_pid, ticks)?;
        let cores_before = procs::cpu_ticks();
        let pid = procs::spawn(cmd, |_| ()).context("starting dnsperf (taskset)")?;
        let status = procs::wait(pid, Duration::from_secs(self.secs + 60))?;
        let cpu = procs::cpu_secs(server_pid, ticks)? - cpu_before;
        let cores_after = procs::cpu_ticks();
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("dnsperf failed ({status}): {}", stderr.trim());
        }
        let mut run =
            parse(&stdout).with_context(|| format!("reading dnsperf's output {}", out_path.display()))?;
        run.server_cpu = if run.run_secs > 0.0 { cpu / run.run_secs } else { f64::NAN };
        // Over dnsperf's whole life (reading the query file included), so a little
        // below the share during the run.
        run.server_core_busy = procs::busy_between(&cores_before, &cores_after, self.server_core);
        run.client_core_busy = procs::busy_between(&cores_before, &cores_after, self.core);
        // The -v output is large; only the summary is kept.
        if self.per_query {
            let _ = std::fs::remove_file(&out_path);
        }
        Ok(run)
    }
}

fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim_start().strip_prefix(key)).map(str::trim)
}

fn first_number(text: &str) -> Option<f64> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',')).find_map(|w| w.parse().ok())
}

/// Reads dnsperf 2.x output: the statistics block, and `> RCODE name type latency`
/// lines from `-v`.
pub fn parse(text: &str) -> anyhow::Result<Run> {
    let num = |key: &str| after(text, key).and_then(first_number).with_context(|| format!("no {key:?}"));
    let rcodes = after(text, "Response codes:").unwrap_or_default().to_string();
    let noerror = rcodes
        .split(',')
        .find_map(|part| part.trim().strip_prefix("NOERROR ").and_then(first_number))
        .unwrap_or(0.0) as u64;
    let latency = after(text, "Average Latency (s):").context("no average latency")?;
    let max = latency.split("max ").nth(1).and_then(first_number).unwrap_or(f64::NAN);
    let mut latencies_us = Vec::new();
    let mut timeouts = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("> ") else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.first() {
            Some(&"T") => timeouts += 1,
            Some(_) if words.len() >= 4 => {
                if let Some(secs) = words.last().and_then(|w| w.parse::<f64>().ok()) {
                    latencies_us.push(secs * 1e6);
                }
            }
            _ => {}
        }
    }
    Ok(Run {
        qps: num("Queries per second:")?,
        sent: num("Queries sent:")? as u64,
        completed: num("Queries completed:")? as u64,
        lost: num("Queries lost:")? as u64,
        rcodes,
        noerror,
        run_secs: num("Run time (s):")?,
        avg_latency_ms: first_number(latency).context("no average latency")? * 1000.0,
        max_latency_ms: max * 1000.0,
        server_cpu: f64::NAN,
        server_core_busy: f64::NAN,
        client_core_busy: f64::NAN,
        latencies_us,
        timeouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "DNS Performance Testing Tool\nVersion 2.10.0\n\n[Status] Command line: dnsperf -v\n\
        > NOERROR a.ns.svc.cluster.local A 0.000336\n> NXDOMAIN b.ns.svc.cluster.local A 0.000228\n\
        > T c.ns.svc.cluster.local A\n[Status] Testing complete (time limit)\n\nStatistics:\n\n  \
        Queries sent:         10\n  Queries completed:    9 (90.00%)\n  Queries lost:         1 (10.00%)\n\n  \
        Response codes:       NOERROR 7 (77.78%), NXDOMAIN 2 (22.22%)\n  Average packet size:  request 43, \
        response 62\n  Run time (s):         1.000288\n  Queries per second:   8.997121\n\n  \
        Average Latency (s):  0.000220 (min 0.000153, max 0.000336)\n  Latency StdDev (s):   0.000051\n";

    #[test]
    fn reads_the_summary_and_per_query_latencies() {
        let run = parse(OUTPUT).expect("parses");
        assert_eq!((run.sent, run.completed, run.lost, run.noerror), (10, 9, 1, 7));
        assert!((run.qps - 8.997121).abs() < 1e-9);
        assert!((run.avg_latency_ms - 0.22).abs() < 1e-9);
        assert!((run.max_latency_ms - 0.336).abs() < 1e-9);
        assert_eq!(run.latencies_us.len(), 2);
        assert!((run.latencies_us[0] - 336.0).abs() < 1e-6);
        assert_eq!(run.timeouts, 1);
    }
}
