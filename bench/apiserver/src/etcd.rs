//! The anchor: the same raw operations against etcd (plain gRPC on 127.0.0.1, its
//! default fsync-per-commit durability). Creates are the transaction upstream's API
//! server sends for a create: `If(CreateRevision(key) == 0) Then(Put(key, value))`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, KvClient, Txn, TxnOp, WatchOptions};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::process::{self, Child, Memory};
use crate::stats::{ListLatency, Summary, Throughput, WatchLatency};
use crate::workload::{self, Pacing, Seen, Settings, WARMUP};

/// Largest response the benchmark accepts (a 10,000-key range is ~4 MB, over tonic's
/// 4 MiB default).
const MAX_MESSAGE: usize = 256 << 20;

/// An `etcd` process on 127.0.0.1 with a fresh data directory.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    /// Spawn to the first successful KV read.
    pub startup_ms: f64,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start(bin: &Path, root: &Path, timeout: Duration) -> anyhow::Result<Etcd> {
        let dir =
            tempfile::Builder::new().prefix("etcd-bench-").tempdir_in(root).context("making a data dir")?;
        let (client_port, peer_port) = (process::free_port()?, process::free_port()?);
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data: PathBuf = dir.path().join("data");
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg("bench")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(&endpoint)
            .arg("--advertise-client-urls")
            .arg(&endpoint)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("bench={peer}"))
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdout(Stdio::null());
        let started = Instant::now();
        let mut child = Child::spawn("etcd", &mut cmd, &dir.path().join("etcd.log"))?;
        let deadline = started + timeout;
        loop {
            if child.exited() {
                bail!("etcd exited during startup (see its log in {})", dir.path().display());
            }
            if Instant::now() > deadline {
                child.stop(Duration::from_secs(5));
                bail!("etcd did not answer within {timeout:?}");
            }
            let probe = async {
                let mut c = Client::connect([endpoint.as_str()], None).await?;
                c.get("/bench/probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let startup_ms = crate::stats::ms(started.elapsed());
        Ok(Etcd { child, endpoint, startup_ms, _dir: dir })
    }

    pub fn memory(&self) -> Option<Memory> {
        process::memory(self.child.pid())
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect([self.endpoint.as_str()], None).await.context("connecting to etcd")
    }

    pub fn stop(self) {
        self.child.stop(Duration::from_secs(10));
    }
}

fn key(ns: &str, name: &str) -> String {
    format!("/registry/configmaps/{ns}/{name}")
}

async fn create(kv: &mut KvClient, ns: &str, name: &str, i: usize) -> anyhow::Result<()> {
    let key = key(ns, name);
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.as_str(), workload::stored_configmap(ns, name, i), None)]);
    let resp = kv.txn(txn).await?;
    if !resp.succeeded() {
        bail!("{key} already exists");
    }
    Ok(())
}

/// Key creates from `clients` clients (each its own connection), `total` in all.
pub async fn creates(
    etcd: &Etcd,
    ns: &str,
    prefix: &str,
    clients: usize,
    total: usize,
    deadline: Duration,
) -> anyhow::Result<Throughput> {
    let mut kvs = Vec::new();
    for _ in 0..clients {
        let mut kv = etcd.client().await?.kv_client();
        kv.get("/bench/warmup", None).await.context("warming up a client")?;
        kvs.push(kv);
    }
    let (ns, prefix) = (ns.to_string(), prefix.to_string());
    let (server, me) = (Some(etcd.child.pid()), std::process::id());
    let cpu_before = (server.and_then(process::cpu_seconds), process::cpu_seconds(me));
    let (elapsed, latencies, failed, first_error) =
        workload::spread_writes(kvs, total, deadline, move |mut kv: KvClient, i| {
            let (ns, name) = (ns.clone(), workload::object_name(&prefix, i));
            async move {
                let r = create(&mut kv, &ns, &name, i).await;
                (kv, r)
            }
        })
        .await;
    if let Some(e) = first_error {
        eprintln!("etcd: {failed} creates failed; first error: {e}");
    }
    let cpu_after = (server.and_then(process::cpu_seconds), process::cpu_seconds(me));
    let pair = |a: Option<f64>, b: Option<f64>| a.zip(b);
    Ok(Throughput::new(clients, total, elapsed, &latencies, failed)
        .with_cpu(pair(cpu_before.0, cpu_after.0), pair(cpu_before.1, cpu_after.1)))
}

/// Makes sure the prefix of `ns` holds at least `want` keys.
pub async fn fill(
    etcd: &Etcd,
    ns: &str,
    want: usize,
    clients: usize,
    deadline: Duration,
) -> anyhow::Result<usize> {
    let have = count(etcd, ns).await?;
    if have < want {
        let t = creates(etcd, ns, "fill", clients, want - have, deadline).await?;
        if t.failed > 0 {
            bail!("{} of the fill creates failed", t.failed);
        }
    }
    count(etcd, ns).await
}

async fn count(etcd: &Etcd, ns: &str) -> anyhow::Result<usize> {
    let mut kv = etcd.client().await?.kv_client();
    let resp = kv.get(key(ns, ""), Some(GetOptions::new().with_prefix().with_count_only())).await?;
    Ok(usize::try_from(resp.count()).unwrap_or(0))
}

/// Repeated prefix reads of `ns`, all keys or the first `limit`, decoded by the client.
pub async fn list_latency(
    etcd: &Etcd,
    ns: &str,
    limit: Option<usize>,
    repeats: usize,
    deadline: Duration,
) -> anyhow::Result<ListLatency> {
    let mut kv = etcd.client().await?.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let options = || {
        let o = GetOptions::new().with_prefix();
        match limit {
            Some(l) => o.with_limit(i64::try_from(l).unwrap_or(i64::MAX)),
            None => o,
        }
    };
    let first = kv.get(key(ns, ""), Some(options())).await.context("etcd range")?;
    let returned = first.kvs().len();
    let response_bytes = first.kvs().iter().map(|kv| kv.key().len() + kv.value().len()).sum();
    let stop_at = Instant::now() + deadline;
    let mut latencies = Vec::new();
    for _ in 0..repeats {
        if Instant::now() > stop_at {
            break;
        }
        let t = Instant::now();
        let resp = kv.get(key(ns, ""), Some(options())).await.context("etcd range")?;
        latencies.push(t.elapsed());
        std::hint::black_box(resp);
    }
    Ok(ListLatency { objects: 0, returned, response_bytes, latency_ms: Summary::of_durations(&latencies) })
}

async fn watcher(
    id: usize,
    endpoint: String,
    prefix: String,
    tx: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let mut client = Client::connect([endpoint.as_str()], None).await?;
    let mut stream = client.watch(prefix, Some(WatchOptions::new().with_prefix())).await?;
    while let Some(resp) = stream.message().await? {
        let t = Instant::now();
        for event in resp.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            let Some(kv) = event.kv() else { continue };
            let name = String::from_utf8_lossy(kv.key());
            let seq = if name.ends_with("/warmup") {
                WARMUP
            } else {
                workload::sequence_of(&name).unwrap_or(WARMUP - 1)
            };
            if tx.send((id, seq, t)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `settings.watchers` watches (each its own client and connection) on the prefix, then
/// sequential key creates, first in lockstep, then back to back.
pub async fn watch_latency(etcd: &Etcd, ns: &str, settings: &Settings) -> anyhow::Result<Vec<WatchLatency>> {
    let mut writer = etcd.client().await?.kv_client();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for id in 0..settings.watchers {
        let (tx, endpoint, prefix) = (tx.clone(), etcd.endpoint.clone(), key(ns, ""));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = watcher(id, endpoint, prefix, tx).await {
                eprintln!("etcd watcher {id}: {e:#}");
            }
        }));
    }
    drop(tx);
    let result = async {
        // Until every watch is established, warm-up writes repeat (a watch without a
        // start revision only sees writes after it is created).
        let mut ready = 0;
        for attempt in 0..30 {
            let name = "warmup";
            let k = key(ns, name);
            writer.put(k.as_str(), workload::stored_configmap(ns, name, attempt), None).await?;
            ready = workload::await_all(&mut rx, WARMUP, settings.watchers, Duration::from_secs(1)).await;
            if ready == settings.watchers {
                break;
            }
        }
        if ready < settings.watchers {
            bail!("only {ready} of {} etcd watchers saw a warm-up write", settings.watchers);
        }
        let mut runs = Vec::new();
        for (run, pacing) in [Pacing::Lockstep, Pacing::BackToBack].into_iter().enumerate() {
            let first = run * settings.watch_writes;
            let latency = workload::sequential_writes(settings, &mut rx, first, pacing, |seq| {
                let mut writer = writer.clone();
                let ns = ns.to_string();
                async move { create(&mut writer, &ns, &workload::object_name("w", seq), seq).await }
            })
            .await?;
            runs.push(latency);
        }
        Ok(runs)
    }
    .await;
    for t in &tasks {
        t.abort();
    }
    futures::future::join_all(tasks).await;
    result
}

/// What etcd's numbers were, for the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EtcdResults {
    pub version: String,
    pub startup_ms: Option<f64>,
    pub memory_idle: Option<Memory>,
    pub memory_after_load: Option<Memory>,
    pub creates_sequential: Option<Throughput>,
    pub creates_concurrent: Option<Throughput>,
    pub list_full: Option<ListLatency>,
    pub list_page: Option<ListLatency>,
    pub watch_lockstep: Option<WatchLatency>,
    pub watch_back_to_back: Option<WatchLatency>,
}
