//! Pier through its full API server (TLS, JSON, admission): startup, memory, creates,
//! lists and watch delivery, driven by `kube` clients and the real `kubectl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::process::{self, Child, Memory};
use crate::stats::{ms, ListLatency, Summary, Throughput, WatchLatency};
use crate::workload::{self, Pacing, Seen, Settings, WARMUP};

/// How to reach the cluster under test.
pub enum Target {
    /// Start `pier up` from this binary in a fresh data directory under `root`.
    Spawn { bin: PathBuf, root: PathBuf },
    /// Use an already running cluster.
    Kubeconfig(PathBuf),
}

/// A `pier up` process in its own data directory.
pub struct Spawned {
    pub child: Child,
    pub data_dir: PathBuf,
    pub kubeconfig_path: PathBuf,
    pub started: Instant,
    pub up_line: Arc<OnceLock<Instant>>,
    _dir: tempfile::TempDir,
}

/// Starts `pier up --data-dir D --api-port 0` with D fresh under `root`.
pub fn spawn(bin: &Path, root: &Path) -> anyhow::Result<Spawned> {
    let dir = tempfile::Builder::new().prefix("pier-bench-").tempdir_in(root).context("making a data dir")?;
    let data_dir = dir.path().join("data");
    let mut cmd = Command::new(bin);
    cmd.args(["up", "--api-port", "0", "--data-dir"]).arg(&data_dir).stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = Child::spawn("pier", &mut cmd, &dir.path().join("pier.log"))?;
    let stdout = child.take_stdout().context("pier's stdout was not piped")?;
    let up_line = process::watch_stdout(stdout, "Pier is up");
    Ok(Spawned { child, kubeconfig_path: data_dir.join("kubeconfig"), data_dir, started, up_line, _dir: dir })
}

/// A `kube` client from kubeconfig text (as `pier-testkit` builds one).
pub async fn client_from(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    kube::Client::try_from(cfg).context("building the client")
}

/// `kubectl get ns` once; true when it listed the `default` namespace.
async fn kubectl_get_ns(kubectl: &str, kubeconfig: &Path, cache_dir: &Path) -> bool {
    let mut cmd = tokio::process::Command::new(kubectl);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(["--request-timeout=5s", "get", "ns"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
        Ok(Ok(out)) => out.status.success() && String::from_utf8_lossy(&out.stdout).contains("default"),
        _ => false,
    }
}

/// One kube-client call: list namespaces; true when `default` is there.
async fn client_lists_namespaces(kubeconfig_path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(kubeconfig_path) else { return false };
    let Ok(client) = client_from(&text).await else { return false };
    let api: Api<Namespace> = Api::all(client);
    match tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default())).await {
        Ok(Ok(list)) => list.items.iter().any(|n| n.metadata.name.as_deref() == Some("default")),
        _ => false,
    }
}

/// How the first successful call is made in a startup run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Kubectl,
    KubeClient,
}

/// One cold start, each time in milliseconds from spawning `pier up`.
#[derive(Debug, Clone, Default)]
struct StartupSample {
    kubeconfig_written: Option<f64>,
    up_line: Option<f64>,
    ready: Option<f64>,
    attempts: usize,
}

async fn startup_run(
    bin: &Path,
    root: &Path,
    kubectl: &str,
    probe: Probe,
    timeout: Duration,
) -> anyhow::Result<StartupSample> {
    let spawned = spawn(bin, root)?;
    let cache_dir = spawned.data_dir.with_file_name("kubectl-cache");
    let mut sample = StartupSample::default();
    let deadline = spawned.started + timeout;
    let mut child = spawned.child;
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("not ready within {timeout:?} ({} attempts)", sample.attempts));
        }
        if child.exited() {
            break Err(anyhow::anyhow!("pier exited during startup"));
        }
        if spawned.kubeconfig_path.exists() {
            if sample.kubeconfig_written.is_none() {
                sample.kubeconfig_written = Some(ms(spawned.started.elapsed()));
            }
            sample.attempts += 1;
            let ok = match probe {
                Probe::Kubectl => kubectl_get_ns(kubectl, &spawned.kubeconfig_path, &cache_dir).await,
                Probe::KubeClient => client_lists_namespaces(&spawned.kubeconfig_path).await,
            };
            if ok {
                sample.ready = Some(ms(spawned.started.elapsed()));
                break Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    sample.up_line = spawned.up_line.get().map(|t| ms(t.duration_since(spawned.started)));
    child.stop(Duration::from_secs(5));
    result.map(|()| sample)
}

/// Cold starts with fresh data directories.
#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub runs_per_probe: usize,
    pub failures: usize,
    /// Spawn to the first successful `kubectl get ns` (the real kubectl, fresh discovery cache).
    pub to_kubectl_get_ns_ms: Option<Summary>,
    /// Spawn to the first successful call from a `kube` client (list namespaces).
    pub to_first_api_call_ms: Option<Summary>,
    /// Spawn to `D/kubeconfig` existing.
    pub to_kubeconfig_ms: Option<Summary>,
    /// Spawn to the "Pier is up" line on stdout.
    pub to_up_line_ms: Option<Summary>,
}

/// `kubectl get ns` against a cluster that is already up: the first call (cold
/// discovery cache), then repeated calls (warm cache). kubectl's own floor.
#[derive(Debug, Clone, Serialize)]
pub struct KubectlFloor {
    pub cold_cache_ms: Option<f64>,
    pub warm_cache_ms: Option<Summary>,
}

pub async fn startup(bin: &Path, root: &Path, kubectl: &str, settings: &Settings) -> Startup {
    let (mut kubectl_ready, mut client_ready, mut kubeconfig, mut up_line, mut failures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    // Alternate the probes so drift in machine load hits both alike.
    for run in 0..settings.startup_runs * 2 {
        let probe = if run % 2 == 0 { Probe::Kubectl } else { Probe::KubeClient };
        match startup_run(bin, root, kubectl, probe, settings.startup_timeout).await {
            Ok(s) => {
                let ready = s.ready.unwrap_or_default();
                match probe {
                    Probe::Kubectl => kubectl_ready.push(ready),
                    Probe::KubeClient => client_ready.push(ready),
                }
                kubeconfig.extend(s.kubeconfig_written);
                up_line.extend(s.up_line);
            }
            Err(e) => {
                failures += 1;
                eprintln!("startup run {run} ({probe:?}) failed: {e:#}");
            }
        }
    }
    Startup {
        runs_per_probe: settings.startup_runs,
        failures,
        to_kubectl_get_ns_ms: Summary::of(&kubectl_ready),
        to_first_api_call_ms: Summary::of(&client_ready),
        to_kubeconfig_ms: Summary::of(&kubeconfig),
        to_up_line_ms: Summary::of(&up_line),
    }
}

/// The cluster the load phases run against.
pub struct Cluster {
    pub kubeconfig: String,
    pub kubeconfig_path: PathBuf,
    /// The process, when this benchmark started it.
    pub spawned: Option<Spawned>,
    pub pid: Option<u32>,
}

impl Cluster {
    pub async fn start(target: &Target, pid: Option<u32>, timeout: Duration) -> anyhow::Result<Cluster> {
        let (spawned, path) = match target {
            Target::Spawn { bin, root } => {
                let s = spawn(bin, root)?;
                let p = s.kubeconfig_path.clone();
                (Some(s), p)
            }
            Target::Kubeconfig(p) => (None, p.clone()),
        };
        let deadline = Instant::now() + timeout;
        while !client_lists_namespaces(&path).await {
            if Instant::now() > deadline {
                bail!("the cluster did not answer within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kubeconfig = std::fs::read_to_string(&path).context("reading the kubeconfig")?;
        let pid = pid.or_else(|| spawned.as_ref().map(|s| s.child.pid()));
        Ok(Cluster { kubeconfig, kubeconfig_path: path, spawned, pid })
    }

    pub fn memory(&self) -> Option<Memory> {
        self.pid.and_then(process::memory)
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from(&self.kubeconfig).await
    }

    pub fn stop(self) {
        if let Some(s) = self.spawned {
            s.child.stop(Duration::from_secs(10));
        }
    }
}

/// `kubectl get ns` against the running cluster: once with a cold discovery cache, then
/// `repeats` times warm.
pub async fn kubectl_floor(cluster: &Cluster, kubectl: &str, repeats: usize) -> KubectlFloor {
    let Ok(cache) = tempfile::tempdir() else {
        return KubectlFloor { cold_cache_ms: None, warm_cache_ms: None };
    };
    let t = Instant::now();
    let cold = kubectl_get_ns(kubectl, &cluster.kubeconfig_path, cache.path()).await.then(|| ms(t.elapsed()));
    let mut warm = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        if kubectl_get_ns(kubectl, &cluster.kubeconfig_path, cache.path()).await {
            warm.push(ms(t.elapsed()));
        }
    }
    KubectlFloor { cold_cache_ms: cold, warm_cache_ms: Summary::of(&warm) }
}

pub async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns).await.with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

fn configmap(name: String, i: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name), ..Default::default() },
        data: Some(workload::configmap_data(i)),
        ..Default::default()
    }
}

/// ConfigMap creates from `clients` clients (each its own connection), `total` in all.
pub async fn creates(
    cluster: &Cluster,
    ns: &str,
    prefix: &str,
    clients: usize,
    total: usize,
    deadline: Duration,
) -> anyhow::Result<Throughput> {
    let mut apis = Vec::new();
    for _ in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, ns);
        // Warm up: the TLS connection is made before the clock starts.
        api.list(&ListParams::default().limit(1)).await.context("warming up a client")?;
        apis.push(api);
    }
    let prefix = prefix.to_string();
    let (server, me) = (cluster.pid, std::process::id());
    let cpu_before = (server.and_then(process::cpu_seconds), process::cpu_seconds(me));
    let (elapsed, latencies, failed, first_error) =
        workload::spread_writes(apis, total, deadline, move |api: Api<ConfigMap>, i| {
            let cm = configmap(workload::object_name(&prefix, i), i);
            async move {
                let r =
                    api.create(&PostParams::default(), &cm).await.map(|_| ()).map_err(anyhow::Error::from);
                (api, r)
            }
        })
        .await;
    if let Some(e) = first_error {
        eprintln!("pier: {failed} creates failed; first error: {e}");
    }
    let cpu_after = (server.and_then(process::cpu_seconds), process::cpu_seconds(me));
    let pair = |a: Option<f64>, b: Option<f64>| a.zip(b);
    Ok(Throughput::new(clients, total, elapsed, &latencies, failed)
        .with_cpu(pair(cpu_before.0, cpu_after.0), pair(cpu_before.1, cpu_after.1)))
}

/// Repeated GETs of `path`, timed to the last byte of the body (not decoded).
pub async fn list_latency(
    cluster: &Cluster,
    path: &str,
    repeats: usize,
    deadline: Duration,
) -> anyhow::Result<ListLatency> {
    let client = cluster.client().await?;
    let get = || http::Request::get(path).body(Vec::new()).map_err(anyhow::Error::from);
    // First request untimed: warms the connection and tells what a response holds.
    let body = client.request_text(get()?).await.with_context(|| format!("GET {path}"))?;
    let parsed: serde_json::Value = serde_json::from_str(&body).context("decoding the list")?;
    let returned = parsed["items"].as_array().map_or(0, Vec::len);
    let response_bytes = body.len();
    let stop_at = Instant::now() + deadline;
    let mut latencies = Vec::new();
    for _ in 0..repeats {
        if Instant::now() > stop_at {
            break;
        }
        let t = Instant::now();
        let body = client.request_text(get()?).await.with_context(|| format!("GET {path}"))?;
        latencies.push(t.elapsed());
        std::hint::black_box(body);
    }
    Ok(ListLatency { objects: 0, returned, response_bytes, latency_ms: Summary::of_durations(&latencies) })
}

/// One watcher: a `kube` watch on the namespace, reporting each ADDED ConfigMap.
async fn watcher(
    id: usize,
    api: Api<ConfigMap>,
    rv: String,
    tx: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let stream = api.watch(&WatchParams::default().timeout(290), &rv).await?;
    futures::pin_mut!(stream);
    while let Some(event) = stream.try_next().await? {
        if let WatchEvent::Added(cm) = event {
            let t = Instant::now();
            let name = cm.metadata.name.unwrap_or_default();
            let seq =
                if name == "warmup" { WARMUP } else { workload::sequence_of(&name).unwrap_or(WARMUP - 1) };
            if tx.send((id, seq, t)).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// `settings.watchers` watches (each its own client and connection) on a fresh
/// namespace, then sequential ConfigMap creates, first in lockstep, then back to back.
pub async fn watch_latency(
    cluster: &Cluster,
    ns: &str,
    settings: &Settings,
) -> anyhow::Result<Vec<WatchLatency>> {
    let writer: Api<ConfigMap> = Api::namespaced(cluster.client().await?, ns);
    let rv = writer.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for id in 0..settings.watchers {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, ns);
        let (tx, rv) = (tx.clone(), rv.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = watcher(id, api, rv, tx).await {
                eprintln!("pier watcher {id}: {e:#}");
            }
        }));
    }
    drop(tx);
    let result = async {
        writer.create(&PostParams::default(), &configmap("warmup".into(), 0)).await?;
        let ready = workload::await_all(&mut rx, WARMUP, settings.watchers, Duration::from_secs(30)).await;
        if ready < settings.watchers {
            bail!("only {ready} of {} watchers saw the warm-up write", settings.watchers);
        }
        let mut runs = Vec::new();
        for (run, pacing) in [Pacing::Lockstep, Pacing::BackToBack].into_iter().enumerate() {
            let first = run * settings.watch_writes;
            let latency = workload::sequential_writes(settings, &mut rx, first, pacing, |seq| {
                let writer = writer.clone();
                async move {
                    writer
                        .create(&PostParams::default(), &configmap(workload::object_name("w", seq), seq))
                        .await?;
                    Ok(())
                }
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

/// Counts the ConfigMaps in `ns` (one full list).
pub async fn count_configmaps(cluster: &Cluster, ns: &str) -> anyhow::Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, ns);
    let stream = api.list(&ListParams::default()).await?;
    Ok(stream.items.len())
}

/// Makes sure `ns` holds at least `want` ConfigMaps (untimed fill with `clients` writers).
pub async fn fill(
    cluster: &Cluster,
    ns: &str,
    want: usize,
    clients: usize,
    deadline: Duration,
) -> anyhow::Result<usize> {
    let have = count_configmaps(cluster, ns).await?;
    if have < want {
        let t = creates(cluster, ns, "fill", clients, want - have, deadline).await?;
        if t.failed > 0 {
            bail!("{} of the fill creates failed", t.failed);
        }
    }
    count_configmaps(cluster, ns).await
}
