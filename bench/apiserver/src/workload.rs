//! What both systems are asked to do: the settings, the objects written, and the parts
//! of the measurement that do not depend on the system (write loops, watch pacing).

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::stats::{ms, Summary, WatchLatency};

/// Sizes and bounds of one benchmark run. Every loop is bounded by a count and by
/// `phase_timeout`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub startup_runs: usize,
    pub sequential_creates: usize,
    pub concurrent_creates: usize,
    pub clients: usize,
    pub list_objects: usize,
    pub list_repeats: usize,
    pub page_repeats: usize,
    pub page_limit: usize,
    pub watchers: usize,
    pub watch_writes: usize,
    #[serde(serialize_with = "secs")]
    pub phase_timeout: Duration,
    #[serde(serialize_with = "secs")]
    pub startup_timeout: Duration,
    /// How long a write waits for every watcher to see it before it counts the rest as missed.
    #[serde(serialize_with = "secs")]
    pub per_write_timeout: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Name of the `i`th object of a run.
pub fn object_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:06}")
}

/// The sequence number in a name made by [`object_name`].
pub fn sequence_of(name: &str) -> Option<usize> {
    name.rsplit('-').next()?.parse().ok()
}

/// The ConfigMap data every benchmark object carries (about 100 bytes).
pub fn configmap_data(i: usize) -> std::collections::BTreeMap<String, String> {
    [("index".to_string(), i.to_string()), ("payload".to_string(), "p".repeat(80))].into_iter().collect()
}

/// The bytes written to etcd for the `i`th object: the JSON Pier (and upstream's API
/// server, in JSON mode) stores for the same ConfigMap, so both systems move the same
/// amount of data.
pub fn stored_configmap(ns: &str, name: &str, i: usize) -> Vec<u8> {
    let value = serde_json::json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "3f7c1a52-5d2e-4d6b-9a8e-0c1b2d3e4f50",
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "data": configmap_data(i),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The signed difference `later - earlier` in milliseconds.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => ms(d),
        None => -ms(earlier - later),
    }
}

/// One event seen by one watcher: (watcher, sequence number, when).
pub type Seen = (usize, usize, Instant);

/// Sequence number of the warm-up write that proves every watch is established.
pub const WARMUP: usize = usize::MAX;

/// Waits until `watchers` distinct watchers reported `seq`, or `timeout`. Returns how
/// many did.
pub async fn await_all(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    seq: usize,
    watchers: usize,
    timeout: Duration,
) -> usize {
    let mut seen = vec![false; watchers];
    let mut count = 0;
    let until = tokio::time::Instant::now() + timeout;
    while count < watchers {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some((w, s, _))) if s == seq && w < watchers && !seen[w] => {
                seen[w] = true;
                count += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    count
}

/// How sequential watch writes are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pacing {
    /// Write, wait until every watcher saw it, then the next: each event is delivered on
    /// its own, without queueing behind the next write.
    Lockstep,
    /// Each write starts as soon as the previous one is acknowledged; deliveries overlap
    /// the next writes (a steady stream of writes, one client).
    BackToBack,
}

/// Sequential writes `first..first + watch_writes` (sequence numbers), paced as asked,
/// and the delivery of each to every watcher.
pub async fn sequential_writes<W, F>(
    settings: &Settings,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    first: usize,
    pacing: Pacing,
    mut write: W,
) -> anyhow::Result<WatchLatency>
where
    W: FnMut(usize) -> F,
    F: Future<Output = anyhow::Result<()>>,
{
    let (watchers, writes) = (settings.watchers, settings.watch_writes);
    let deadline = Instant::now() + settings.phase_timeout;
    let mut received: Vec<Vec<Option<Instant>>> = vec![vec![None; watchers]; writes];
    let mut pending = 0usize; // pairs expected but not yet received, of the writes sent
    let note = |(w, s, t): Seen, received: &mut Vec<Vec<Option<Instant>>>, pending: &mut usize| {
        if let Some(row) = s.checked_sub(first).filter(|i| *i < writes) {
            if w < watchers && received[row][w].is_none() {
                received[row][w] = Some(t);
                *pending = pending.saturating_sub(1);
            }
        }
    };
    let mut sent = Vec::with_capacity(writes);
    for i in 0..writes {
        if Instant::now() > deadline {
            break;
        }
        let t_send = Instant::now();
        write(first + i).await?;
        let t_ack = Instant::now();
        sent.push((t_send, t_ack));
        pending += watchers;
        match pacing {
            Pacing::Lockstep => {
                let until = tokio::time::Instant::now() + settings.per_write_timeout;
                while received[i].iter().any(Option::is_none) {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(seen)) => note(seen, &mut received, &mut pending),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Pacing::BackToBack => {
                // Timestamps are taken by the watchers; just keep the channel short.
                while let Ok(seen) = rx.try_recv() {
                    note(seen, &mut received, &mut pending);
                }
            }
        }
    }
    // Whatever is still on its way (back-to-back, or a lockstep write that timed out).
    let until = tokio::time::Instant::now() + settings.per_write_timeout;
    while pending > 0 {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(seen)) => note(seen, &mut received, &mut pending),
            Ok(None) | Err(_) => break,
        }
    }
    let (mut from_ack, mut from_send, mut write_ms, mut missed) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (i, (t_send, t_ack)) in sent.iter().enumerate() {
        write_ms.push(ms(*t_ack - *t_send));
        for t in &received[i] {
            match t {
                Some(t) => {
                    from_ack.push(signed_ms(*t, *t_ack));
                    from_send.push(signed_ms(*t, *t_send));
                }
                None => missed += 1,
            }
        }
    }
    Ok(WatchLatency {
        pacing,
        watchers,
        writes: sent.len(),
        pairs: from_ack.len(),
        missed,
        from_ack_ms: Summary::of(&from_ack),
        from_send_ms: Summary::of(&from_send),
        write_ms: Summary::of(&write_ms),
    })
}

/// Runs `total` writes spread over `clients` tasks (client `c` writes indexes
/// `c, c + clients, ...`), each task sequential, all bounded by `deadline`. Returns the
/// wall time, the latency of each successful write, the failures and the first error.
pub async fn spread_writes<C, W, F>(
    clients: Vec<C>,
    total: usize,
    deadline: Duration,
    write: W,
) -> (Duration, Vec<Duration>, usize, Option<String>)
where
    C: Send + 'static,
    W: Fn(C, usize) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = (C, anyhow::Result<()>)> + Send,
{
    let n = clients.len().max(1);
    let start = Instant::now();
    let stop_at = start + deadline;
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0usize, None);
            for i in (c..total).step_by(n) {
                if Instant::now() > stop_at {
                    break;
                }
                let t = Instant::now();
                let (back, result) = write(client, i).await;
                client = back;
                match result {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (latencies, failed, first_error)
        }));
    }
    let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0, None);
    for task in tasks {
        match task.await {
            Ok((l, f, e)) => {
                latencies.extend(l);
                failed += f;
                if first_error.is_none() {
                    first_error = e;
                }
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("writer task: {e}"));
            }
        }
    }
    (start.elapsed(), latencies, failed, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_sequence_number() {
        assert_eq!(object_name("cm", 42), "cm-000042");
        assert_eq!(sequence_of(&object_name("w", 7)), Some(7));
        assert_eq!(sequence_of("/registry/configmaps/ns/w-000123"), Some(123));
        assert_eq!(sequence_of("warmup"), None);
    }

    #[test]
    fn stored_configmap_is_json_of_fixed_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&stored_configmap("ns", "cm-000001", 1)).expect("json");
        assert_eq!(v["metadata"]["name"], "cm-000001");
        assert_eq!(v["data"]["index"], "1");
    }
}
