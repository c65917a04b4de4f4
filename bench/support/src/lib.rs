//! What the benchmarks share: latency summaries with nearest-rank percentiles,
//! medians of repeated runs, the machine facts every report starts with, and reading
//! a helper child's JSON report.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs `child` (stdin from /dev/null, stderr shown) and decodes the JSON report it
/// prints; `what` names it in errors.
pub fn json_report_of<T: DeserializeOwned>(
    mut child: std::process::Command,
    what: &str,
) -> anyhow::Result<T> {
    let out = child
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("reading {what}'s report"))
}

/// Nearest-rank percentiles of a sample; the unit is in the name of the field that
/// holds the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of `values`.
    ///
    /// # Errors
    ///
    /// When there are no values.
    pub fn of(values: &[f64]) -> anyhow::Result<Summary> {
        if values.is_empty() {
            bail!("no samples");
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Ok(Summary {
            n: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }

    /// `p50 .. µs, p99 .. µs (max ..)`, for samples in microseconds.
    pub fn us(&self) -> String {
        format!("p50 {:.0} µs, p99 {:.0} µs (max {:.0})", self.p50, self.p99, self.max)
    }

    /// `p50 .. ms, p99 .. ms (max ..)`, for samples in milliseconds.
    pub fn ms(&self) -> String {
        format!("p50 {:.1} ms, p99 {:.1} ms (max {:.1})", self.p50, self.p99, self.max)
    }
}

/// The median (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, m)| m.trim().to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// On SIGINT, SIGTERM or SIGHUP, calls `on_signal` with the signal's name on a thread
/// of its own (named `thread`); `on_signal` removes what the benchmark made and exits.
/// The signals are registered before this returns, so from then on none is missed.
pub fn on_termination_signals(
    thread: &str,
    on_signal: impl FnOnce(&'static str) + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (mut int, mut term, mut hup) = {
        let _entered = rt.enter();
        (
            signal(SignalKind::interrupt()).context("handling SIGINT")?,
            signal(SignalKind::terminate()).context("handling SIGTERM")?,
            signal(SignalKind::hangup()).context("handling SIGHUP")?,
        )
    };
    std::thread::Builder::new()
        .name(thread.to_string())
        .spawn(move || {
            let which = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                }
            });
            on_signal(which);
        })
        .context("starting the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_medians_average_the_middle() {
        let s = Summary::of(&(1..=1000).map(f64::from).collect::<Vec<_>>()).expect("samples");
        assert_eq!((s.n, s.p50, s.p99, s.p999, s.max), (1000, 500.0, 990.0, 999.0, 1000.0));
        assert!(Summary::of(&[]).is_err());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
