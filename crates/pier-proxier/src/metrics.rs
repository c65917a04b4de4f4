//! The proxy's Prometheus metrics, named as kube-proxy names them so existing
//! dashboards read them: sync durations (full and partial), rules programmed, sync
//! failures, and network programming latency.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use pier_proxy::SyncKind;

/// Upper bounds of the sync-duration buckets, in seconds (1 ms doubling to ~16 s, as
/// kube-proxy's `ExponentialBuckets(0.001, 2, 15)`).
const SYNC_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384,
];
/// Network programming latency buckets, in seconds: from a millisecond, since a Pier
/// sync takes milliseconds, up to the minutes kube-proxy's buckets reach.
const PROGRAMMING_BUCKETS: [f64; 16] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A cumulative histogram.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Clone)]
struct State {
    full: Histogram,
    partial: Histogram,
    programming: Histogram,
    failures: u64,
    rules: usize,
    chains: usize,
    last_sync_unix: f64,
}

/// The proxy's metrics, shared between the sync loop and the metrics endpoint.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                full: Histogram::new(&SYNC_BUCKETS),
                partial: Histogram::new(&SYNC_BUCKETS),
                programming: Histogram::new(&PROGRAMMING_BUCKETS),
                failures: 0,
                rules: 0,
                chains: 0,
                last_sync_unix: 0.0,
            }),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }

    /// A sync of `kind` that took `took` and left `rules` rules in `chains` chains.
    pub fn synced(&self, kind: SyncKind, took: Duration, rules: usize, chains: usize, now_unix: f64) {
        self.with(|s| {
            match kind {
                SyncKind::Full => s.full.observe(took.as_secs_f64()),
                SyncKind::Partial => s.partial.observe(took.as_secs_f64()),
            }
            s.rules = rules;
            s.chains = chains;
            s.last_sync_unix = now_unix;
        })
    }

    /// A sync that nft refused or that could not run.
    pub fn failed(&self) {
        self.with(|s| s.failures += 1)
    }

    /// An endpoint change that reached the kernel `latency` after it happened.
    pub fn programmed(&self, latency: Duration) {
        self.with(|s| s.programming.observe(latency.as_secs_f64()))
    }

    /// How many syncs failed so far.
    pub fn failures(&self) -> u64 {
        self.with(|s| s.failures)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let s = self.with(|s| s.clone());
        let mut out = String::new();
        s.full.render(
            &mut out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
        );
        s.partial.render(
            &mut out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        );
        s.programming.render(
            &mut out,
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
        );
        let _ = writeln!(
            out,
            "# HELP kubeproxy_sync_proxy_rules_nftables_sync_failures_total Syncs nft refused or could not run\n\
             # TYPE kubeproxy_sync_proxy_rules_nftables_sync_failures_total counter\n\
             kubeproxy_sync_proxy_rules_nftables_sync_failures_total {}",
            s.failures
        );
        let _ = writeln!(
            out,
            "# HELP kubeproxy_sync_proxy_rules_nftables_objects Objects in the proxy's nftables table\n\
             # TYPE kubeproxy_sync_proxy_rules_nftables_objects gauge\n\
             kubeproxy_sync_proxy_rules_nftables_objects{{kind=\"rules\"}} {}\n\
             kubeproxy_sync_proxy_rules_nftables_objects{{kind=\"chains\"}} {}",
            s.rules, s.chains
        );
        let _ = writeln!(
            out,
            "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced\n\
             # TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n\
             kubeproxy_sync_proxy_rules_last_timestamp_seconds {}",
            s.last_sync_unix
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_text_is_prometheus() {
        let m = Metrics::default();
        m.synced(SyncKind::Full, Duration::from_millis(3), 42, 7, 1_700_000_000.0);
        m.synced(SyncKind::Partial, Duration::from_micros(500), 43, 7, 1_700_000_001.0);
        m.programmed(Duration::from_millis(15));
        m.failed();
        let text = m.render();
        for line in [
            "kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le=\"0.001\"} 1",
            "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.01\"} 0",
            "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.02\"} 1",
            "kubeproxy_network_programming_duration_seconds_count 1",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
            "kubeproxy_sync_proxy_rules_nftables_objects{kind=\"rules\"} 43",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1700000001",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
