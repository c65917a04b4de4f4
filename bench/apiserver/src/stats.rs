//! Summaries of latency samples and throughput runs.

use std::time::Duration;

use serde::Serialize;

/// Order statistics of a set of samples, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Nearest-rank percentiles; `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |p: f64| sorted[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Summary {
            n,
            min: sorted[0],
            p50: rank(50.0),
            p99: rank(99.0),
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
        })
    }

    /// Summary of durations, in milliseconds.
    pub fn of_durations(samples: &[Duration]) -> Option<Summary> {
        Summary::of(&samples.iter().map(|d| ms(*d)).collect::<Vec<_>>())
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A bounded run of writes: how many succeeded in how long, and each one's latency.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub clients: usize,
    pub requested: usize,
    pub completed: usize,
    pub failed: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Latency of one write as its client saw it.
    pub latency_ms: Option<Summary>,
    /// CPU time the server process used per completed write (ms), when its PID is known.
    pub server_cpu_ms_per_write: Option<f64>,
    /// CPU time the benchmark process (the clients) used per completed write (ms).
    pub client_cpu_ms_per_write: Option<f64>,
}

impl Throughput {
    pub fn new(
        clients: usize,
        requested: usize,
        elapsed: Duration,
        latencies: &[Duration],
        failed: usize,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        Throughput {
            clients,
            requested,
            completed: latencies.len(),
            failed,
            seconds,
            per_second: if seconds > 0.0 { latencies.len() as f64 / seconds } else { 0.0 },
            latency_ms: Summary::of_durations(latencies),
            server_cpu_ms_per_write: None,
            client_cpu_ms_per_write: None,
        }
    }

    /// Records the CPU the server and the clients used for this run (seconds, before and
    /// after).
    pub fn with_cpu(mut self, server: Option<(f64, f64)>, client: Option<(f64, f64)>) -> Self {
        let per = |(before, after): (f64, f64)| {
            (self.completed > 0).then(|| (after - before) * 1000.0 / self.completed as f64)
        };
        self.server_cpu_ms_per_write = server.and_then(per);
        self.client_cpu_ms_per_write = client.and_then(per);
        self
    }
}

/// Repeated reads of one collection.
#[derive(Debug, Clone, Serialize)]
pub struct ListLatency {
    /// Objects in the collection.
    pub objects: usize,
    /// Objects returned per request (the page size, or all).
    pub returned: usize,
    /// Size of one response body as received (bytes).
    pub response_bytes: usize,
    pub latency_ms: Option<Summary>,
}

/// Delivery of sequential writes to many watchers.
#[derive(Debug, Clone, Serialize)]
pub struct WatchLatency {
    pub pacing: crate::workload::Pacing,
    pub watchers: usize,
    pub writes: usize,
    /// (watcher, event) pairs measured.
    pub pairs: usize,
    /// Pairs whose event had not arrived within the per-write timeout.
    pub missed: usize,
    /// Write acknowledged (response received) to event received. Negative when the event
    /// reached the watcher before the writer heard its acknowledgement.
    pub from_ack_ms: Option<Summary>,
    /// Just before sending the write to event received.
    pub from_send_ms: Option<Summary>,
    /// The write itself, send to acknowledgement.
    pub write_ms: Option<Summary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&samples).expect("samples");
        assert_eq!((s.min, s.p50, s.p99, s.max), (1.0, 50.0, 99.0, 100.0));
        let one = Summary::of(&[7.0]).expect("one sample");
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }
}
