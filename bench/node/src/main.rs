//! The node benchmark of issue 4: on a `pier up` cluster with one real node, N pods
//! (100 by default) are created at once and each pod's time from its create request
//! to Running with `Ready=True` (no probes) is measured, as seen by a client watching
//! the pods. Goal: p99 under 300 ms (upstream's SLO is 5 s excluding image pulls).
//! Also the node agent's memory per pod ((RSS with N pods - RSS with none) / N) and
//! its idle CPU with N pods running.
//!
//! Before the images, once per run, the floor (`floor.rs`): the same N pods'
//! networks, roots and processes made directly with `pier-sandbox` in a throwaway
//! namespace, with no API server, in three stages (networks only; and roots; and
//! processes). The whole pods' time to start them all is the lowest p99 the node could
//! reach on this machine; `--no-floor` skips it.
//!
//! ```text
//! cargo build --release -p pier -p pier-bench-node
//! $CARGO_TARGET_DIR/release/pier-bench-node --image registry.k8s.io/pause --image luksa/kubia
//! $CARGO_TARGET_DIR/release/pier-bench-node --smoke
//! ```
//!
//! Each image gets a fresh cluster (so the agent's baseline memory is its own); each
//! run uses a fresh namespace, deleted (and its pods' processes gone) before the next.

mod floor;
mod procfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde::Serialize;
use serde_json::json;

/// The issue's goal for created -> Running and Ready, p99.
const GOAL_P99_MS: f64 = 300.0;
/// The one node of the cluster.
const NODE: &str = "pier-node-0";

#[derive(Parser, Debug)]
#[command(
    about = "Pods created at once on one node: time to Running and Ready, agent memory per pod, idle CPU"
)]
struct Args {
    /// The `pier` binary (default: $CARGO_TARGET_DIR/release/pier).
    #[arg(long)]
    pier_bin: Option<PathBuf>,
    /// Pods created at once per run.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Measured runs per image.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Image of the pods' one container; repeat for several (each on a fresh cluster).
    /// Default registry.k8s.io/pause; luksa/kubia runs an HTTP server.
    #[arg(long = "image")]
    images: Vec<String>,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds over which the idle CPU is sampled (default 10, 5 with --smoke).
    #[arg(long)]
    idle_seconds: Option<u64>,
    /// Give up on a phase (all pods ready, cleanup) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Tiny run that only checks everything works (5 pods, 1 run, 5 s idle sample).
    #[arg(long)]
    smoke: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the floor (the same pods' networks, roots and processes made directly,
    /// with no API server), which otherwise runs once per run before the images.
    #[arg(long)]
    no_floor: bool,
}

/// The settings a run used, after `--smoke`.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    pier_bin: PathBuf,
    pods: usize,
    runs: usize,
    images: Vec<String>,
    concurrency: usize,
    idle_seconds: u64,
    timeout_s: u64,
    smoke: bool,
    floor: bool,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    date_utc: String,
    load_at_start: String,
    load_at_end: String,
}

/// Nearest-rank percentiles of some latencies, in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn of(mut ms: Vec<f64>) -> Option<Summary> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Summary { n: ms.len(), p50_ms: rank(0.50), p99_ms: rank(0.99), max_ms: ms[ms.len() - 1] })
    }

    fn text(s: &Option<Summary>) -> String {
        match s {
            Some(s) => format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", s.p50_ms, s.p99_ms, s.max_ms),
            None => "-".to_string(),
        }
    }
}

/// Where the time went, per pod, from what the watch saw.
#[derive(Debug, Clone, Serialize)]
struct Stages {
    /// Create request sent -> `spec.nodeName` set.
    create_to_bound: Option<Summary>,
    /// Bound -> the node's first status write (`status.hostIP` set).
    bound_to_node_status: Option<Summary>,
    /// The node's first status write -> Running and Ready.
    node_status_to_ready: Option<Summary>,
}

/// CPU time spent while the pods started (first create sent -> last pod Ready), in ms
/// of one core: where the work is, since the burst keeps both cores busy.
#[derive(Debug, Clone, Serialize)]
struct BurstCpu {
    /// `pier up`: the API server, the controllers and the scheduler.
    server_ms: f64,
    /// The node agent (`pier node`), including its proxy and DNS server, and forked
    /// children until they exec.
    agent_ms: f64,
    /// The pods' processes (all their CPU, since they started in the burst).
    pods_ms: f64,
    /// Every CPU's busy time, whoever used it (the benchmark, kernel threads too).
    machine_ms: f64,
}

impl BurstCpu {
    fn text(&self) -> String {
        format!(
            "server {:.0} ms, agent {:.0} ms, pods {:.0} ms, whole machine {:.0} ms",
            self.server_ms, self.agent_ms, self.pods_ms, self.machine_ms
        )
    }
}

#[derive(Debug, Clone, Serialize)]
struct RunResult {
    /// Create request sent -> Running and Ready, per pod.
    ready: Option<Summary>,
    stages: Stages,
    /// First create sent -> all pods Running and Ready.
    all_ready_ms: f64,
    /// First create sent -> last create answered.
    creates_done_ms: f64,
    /// CPU used from the first create to the last pod Ready.
    burst_cpu: BurstCpu,
    agent_rss_before_kib: u64,
    agent_rss_with_pods_kib: u64,
    agent_idle_cpu_percent: f64,
    pod_processes: usize,
    pods_rss_kib: u64,
    pods_pss_kib: u64,
    pods_idle_cpu_percent: f64,
    /// Namespace delete -> namespace, pods and their processes gone.
    cleanup_ms: f64,
    /// Create request sent -> Running and Ready, per pod (for the pooled percentiles).
    #[serde(skip)]
    latencies_ms: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct ImageResult {
    image: String,
    runs: Vec<RunResult>,
    /// All runs' pods together.
    ready: Option<Summary>,
    pass: bool,
    /// The agent with no pods, before the first run.
    agent_rss_idle_kib: u64,
    /// Median over runs, with all pods running.
    agent_rss_with_pods_kib: u64,
    agent_per_pod_kib: f64,
    /// After the last run's cleanup.
    agent_rss_after_kib: u64,
    agent_idle_cpu_percent: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    goal_p99_ms: f64,
    /// The floor, once per run: the pods' kernel work alone.
    floor: Vec<floor::FloorResult>,
    images: Vec<ImageResult>,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    // The floor's init unshares namespaces, which needs a process without threads.
    match argv.get(1).map(String::as_str) {
        Some(floor::INIT_FLAG) => return floor::init_main(&argv[2..]),
        Some(floor::CHILD_FLAG) => return floor::child_main(&argv[2..]),
        _ => {}
    }
    tokio::runtime::Runtime::new().context("starting a runtime")?.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = settings(&args)?;
    let mut machine = machine();
    println!("machine: {} CPUs, {}, kernel {}", machine.cpus, machine.cpu_model, machine.kernel);
    println!("date: {}, load at start {}", machine.date_utc, machine.load_at_start);
    println!(
        "node benchmark (issue 4): {} pods created at once ({} requests in flight) on one node, {} run(s) per \
         image; created -> Running and Ready (no probe), goal p99 < {GOAL_P99_MS:.0} ms (upstream SLO 5 s \
         excluding image pulls)",
        settings.pods, settings.concurrency, settings.runs
    );
    let mut floors = Vec::new();
    if settings.floor {
        for run in 1..=settings.runs {
            for stage in floor::Stage::ALL {
                let (pods, bin) = (settings.pods, settings.pier_bin.clone());
                let f = tokio::task::spawn_blocking(move || floor::measure(stage, pods, &bin))
                    .await
                    .context("the floor's task")?
                    .with_context(|| format!("floor run {run}"))?;
                println!(
                    "floor run {run}, {} ({} pods at once, no API): all made in {:.0} ms ({}); CPU node {:.0} ms, \
                     pods {:.0} ms, whole machine {:.0} ms",
                    stage.text(),
                    f.pods,
                    f.all_started_ms,
                    Summary::text(&Summary::of(f.started_ms.clone())),
                    f.node_cpu_ms,
                    f.pods_cpu_ms,
                    f.machine_cpu_ms
                );
                floors.push(f);
                // The kernel frees the namespaces in the background; measure after that.
                wait_quiet(Duration::from_secs(10)).await;
            }
        }
    }
    let mut images = Vec::new();
    for image in &settings.images {
        println!("image {image}");
        images.push(bench_image(&settings, image).await.with_context(|| format!("image {image}"))?);
    }
    machine.load_at_end = loadavg();
    let report = Report { machine, settings, goal_p99_ms: GOAL_P99_MS, floor: floors, images };
    println!("load at end {}", report.machine.load_at_end);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON: {}", path.display());
    }
    let verdict = if report.images.iter().all(|i| i.pass) { "PASS" } else { "MISS" };
    println!("overall: {verdict} (goal p99 < {GOAL_P99_MS:.0} ms for every image)");
    Ok(())
}

/// Waits until the machine is quiet (under 10 % of its CPUs busy over 200 ms), at
/// most `limit`.
async fn wait_quiet(limit: Duration) {
    let deadline = Instant::now() + limit;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let window = Duration::from_millis(200);
    let ticks_in_window = window.as_secs_f64() * procfs::clock_ticks_per_s() * cpus;
    while Instant::now() < deadline {
        let Some(before) = procfs::machine_busy_ticks() else { return };
        tokio::time::sleep(window).await;
        let Some(after) = procfs::machine_busy_ticks() else { return };
        if (after.saturating_sub(before) as f64) < 0.1 * ticks_in_window {
            return;
        }
    }
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let pier_bin = match &args.pier_bin {
        Some(p) => p.clone(),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .context("no --pier-bin and CARGO_TARGET_DIR is not set")?;
            PathBuf::from(target).join("release").join("pier")
        }
    };
    if !pier_bin.is_file() {
        bail!("{} does not exist (cargo build --release -p pier)", pier_bin.display());
    }
    let images =
        if args.images.is_empty() { vec!["registry.k8s.io/pause".to_string()] } else { args.images.clone() };
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let (pods, runs) = if args.smoke { (5, 1) } else { (args.pods, args.runs) };
    if pods == 0 || runs == 0 {
        bail!("--pods and --runs must be at least 1");
    }
    Ok(Settings {
        pier_bin,
        pods,
        runs,
        images,
        concurrency: args.concurrency,
        idle_seconds: args.idle_seconds.unwrap_or(if args.smoke { 5 } else { 10 }),
        timeout_s: args.timeout,
        smoke: args.smoke,
        floor: !args.no_floor,
    })
}

/// A fresh one-node cluster, the runs, and the image's summary.
async fn bench_image(settings: &Settings, image: &str) -> anyhow::Result<ImageResult> {
    let bin = settings.pier_bin.clone();
    let cluster = tokio::task::spawn_blocking(move || pier_testkit::Cluster::start_with_nodes(&bin, 1))
        .await
        .context("starting the cluster")??;
    let text = std::fs::read_to_string(&cluster.kubeconfig)
        .with_context(|| format!("reading {}", cluster.kubeconfig.display()))?;
    let client = pier_testkit::in_process::client_for(&text).await?;
    let node_ready = Instant::now();
    wait_node_ready(&client, Duration::from_secs(60)).await?;
    let agent = procfs::find_agent(cluster.data_dir(), NODE)?;
    println!(
        "  cluster up, node {NODE} Ready after {:.2} s more; node agent PID {agent}",
        node_ready.elapsed().as_secs_f64()
    );
    let agent_rss_idle_kib = procfs::rss_kib(agent)?;
    let server = cluster.pid().context("the cluster's `pier up` process has no PID")?;
    let mut runs = Vec::new();
    for run in 1..=settings.runs {
        let ns = format!("bench-node-{}-{run}", std::process::id());
        let r = run_once(&client, settings, image, &ns, Pids { server, agent })
            .await
            .with_context(|| format!("run {run}"))?;
        println!(
            "  run {run}: ready {}; all {} ready in {:.3} s (creates answered in {:.3} s)",
            Summary::text(&r.ready),
            settings.pods,
            r.all_ready_ms / 1000.0,
            r.creates_done_ms / 1000.0
        );
        println!(
            "         stages: create->bound {} | bound->node status {} | node status->ready {}",
            Summary::text(&r.stages.create_to_bound),
            Summary::text(&r.stages.bound_to_node_status),
            Summary::text(&r.stages.node_status_to_ready)
        );
        println!("         CPU while starting: {}", r.burst_cpu.text());
        println!(
            "         agent RSS {:.1} -> {:.1} MiB; idle CPU agent {:.2} %, pods {:.2} % of one core; {} pod \
             processes RSS {:.1} MiB (PSS {:.1} MiB); cleanup {:.2} s",
            mib(r.agent_rss_before_kib),
            mib(r.agent_rss_with_pods_kib),
            r.agent_idle_cpu_percent,
            r.pods_idle_cpu_percent,
            r.pod_processes,
            mib(r.pods_rss_kib),
            mib(r.pods_pss_kib),
            r.cleanup_ms / 1000.0
        );
        runs.push(r);
    }
    let agent_rss_after_kib = procfs::rss_kib(agent)?;
    drop(cluster);

    let ready = Summary::of(runs.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect());
    let pass = ready.as_ref().is_some_and(|s| s.p99_ms < GOAL_P99_MS);
    let agent_rss_with_pods_kib = median_u64(runs.iter().map(|r| r.agent_rss_with_pods_kib).collect());
    let agent_per_pod_kib =
        (agent_rss_with_pods_kib as f64 - agent_rss_idle_kib as f64) / settings.pods as f64;
    let agent_idle_cpu_percent = median_f64(runs.iter().map(|r| r.agent_idle_cpu_percent).collect());
    println!(
        "  created -> Running and Ready, {} pods over {} run(s): {}  [{}: goal p99 < {GOAL_P99_MS:.0} ms; \
         upstream SLO 5 s]",
        ready.as_ref().map_or(0, |s| s.n),
        runs.len(),
        Summary::text(&ready),
        if pass { "PASS" } else { "MISS" }
    );
    println!(
        "  node agent memory: RSS {:.1} MiB with 0 pods, {:.1} MiB with {} pods (median) -> {:.1} KiB per pod; \
         {:.1} MiB after cleanup",
        mib(agent_rss_idle_kib),
        mib(agent_rss_with_pods_kib),
        settings.pods,
        agent_per_pod_kib,
        mib(agent_rss_after_kib)
    );
    println!(
        "  node agent idle CPU with {} pods: {:.2} % of one core (median over {} s samples)",
        settings.pods, agent_idle_cpu_percent, settings.idle_seconds
    );
    Ok(ImageResult {
        image: image.to_string(),
        runs,
        ready,
        pass,
        agent_rss_idle_kib,
        agent_rss_with_pods_kib,
        agent_per_pod_kib,
        agent_rss_after_kib,
        agent_idle_cpu_percent,
    })
}

/// What the watch saw of one pod, and when.
#[derive(Default)]
struct PodTimes {
    sent: Option<Instant>,
    bound: Option<Instant>,
    node_status: Option<Instant>,
    ready: Option<Instant>,
}

fn is_ready(p: &Pod) -> bool {
    let Some(status) = &p.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn failed(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!("phase Failed: {}", status.message.clone().unwrap_or_default()));
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or_default();
            if matches!(
                reason,
                "CreateContainerError" | "ErrImagePull" | "ImagePullBackOff" | "RunContainerError"
            ) {
                return Some(format!("{reason}: {}", w.message.clone().unwrap_or_default()));
            }
        }
    }
    None
}

fn pod_manifest(name: &str, image: &str) -> anyhow::Result<Pod> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench-node"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": image}]
        }
    }))
    .context("building the pod manifest")
}

/// One run in namespace `ns`: the timed creates, the memory and idle CPU with all
/// pods running, then the cleanup.
/// The processes whose CPU a run accounts for.
#[derive(Debug, Clone, Copy)]
struct Pids {
    server: u32,
    agent: u32,
}

async fn run_once(
    client: &Client,
    settings: &Settings,
    image: &str,
    ns: &str,
    Pids { server, agent }: Pids,
) -> anyhow::Result<RunResult> {
    let timeout = Duration::from_secs(settings.timeout_s);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    namespaces
        .create(&PostParams::default(), &n)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    // The namespace's default ServiceAccount appears right after; let that write
    // happen before the clock starts (pods do not wait for it).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa_deadline = Instant::now() + Duration::from_secs(10);
    while sas.get_opt("default").await.context("reading the default ServiceAccount")?.is_none()
        && Instant::now() < sa_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let names: Vec<String> = (0..settings.pods).map(|i| format!("p-{i:04}")).collect();
    let manifests =
        names.iter().map(|n| Ok((n.clone(), pod_manifest(n, image)?))).collect::<anyhow::Result<Vec<_>>>()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut stream = watcher(pods.clone(), watcher::Config::default()).boxed();
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("watching pods: {e}"),
            None => bail!("the pod watch ended"),
        }
    }

    let agent_rss_before_kib = procfs::rss_kib(agent)?;
    let ticks =
        |pid: u32| procfs::cpu_ticks(pid).with_context(|| format!("reading the CPU time of PID {pid}"));
    let (server_ticks_0, agent_ticks_0) = (ticks(server)?, ticks(agent)?);
    let machine_ticks_0 = procfs::machine_busy_ticks().context("reading /proc/stat")?;
    let start = Instant::now();
    let creator = {
        let pods = pods.clone();
        let concurrency = settings.concurrency;
        tokio::spawn(async move {
            futures::stream::iter(manifests)
                .map(|(name, pod)| {
                    let pods = pods.clone();
                    async move {
                        // Polled first when a slot is free: the request goes out now.
                        let sent = Instant::now();
                        pods.create(&PostParams::default(), &pod)
                            .await
                            .with_context(|| format!("creating pod {name}"))?;
                        Ok::<_, anyhow::Error>((name, sent))
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<_>>()
                .await
        })
    };
    tokio::pin!(creator);
    let mut creator_done = false;
    let mut creates_done = Duration::ZERO;
    let mut times: HashMap<String, PodTimes> = HashMap::new();
    let mut ready = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while ready < settings.pods || !creator_done {
        tokio::select! {
            joined = &mut creator, if !creator_done => {
                let sent = joined.context("the create task panicked")??;
                creator_done = true;
                creates_done = start.elapsed();
                for (name, at) in sent {
                    times.entry(name).or_default().sent = Some(at);
                }
            }
            event = stream.next() => {
                let now = Instant::now();
                let pod = match event {
                    Some(Ok(watcher::Event::Apply(p))) | Some(Ok(watcher::Event::InitApply(p))) => p,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => bail!("watching pods: {e}"),
                    None => bail!("the pod watch ended"),
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Some(why) = failed(&pod) {
                    bail!("pod {name} failed: {why}");
                }
                let t = times.entry(name).or_default();
                if t.bound.is_none() && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                    t.bound = Some(now);
                }
                if t.node_status.is_none() && pod.status.as_ref().is_some_and(|s| s.host_ip.is_some()) {
                    t.node_status = Some(now);
                }
                if t.ready.is_none() && is_ready(&pod) {
                    t.ready = Some(now);
                    ready += 1;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                bail!("only {ready} of {} pods Running and Ready after {} s", settings.pods, settings.timeout_s);
            }
        }
    }
    let (server_ticks_1, agent_ticks_1) = (ticks(server)?, ticks(agent)?);
    let machine_ticks_1 = procfs::machine_busy_ticks().context("reading /proc/stat")?;
    let pods_ns: u64 = procfs::descendants(agent).into_iter().filter_map(procfs::cpu_ns).sum();
    let tick_ms = 1000.0 / procfs::clock_ticks_per_s();
    let burst_cpu = BurstCpu {
        server_ms: server_ticks_1.saturating_sub(server_ticks_0) as f64 * tick_ms,
        agent_ms: agent_ticks_1.saturating_sub(agent_ticks_0) as f64 * tick_ms,
        pods_ms: pods_ns as f64 / 1e6,
        machine_ms: machine_ticks_1.saturating_sub(machine_ticks_0) as f64 * tick_ms,
    };
    let last_ready = times.values().filter_map(|t| t.ready).max().unwrap_or(start);
    let all_ready = last_ready.duration_since(start);

    let mut latencies_ms = Vec::new();
    let (mut to_bound, mut to_status, mut to_ready) = (Vec::new(), Vec::new(), Vec::new());
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
    for name in &names {
        let t = times.get(name).with_context(|| format!("pod {name} was never seen"))?;
        let (Some(sent), Some(ready_at)) = (t.sent, t.ready) else {
            bail!("pod {name} has no create time or was never ready");
        };
        latencies_ms.push(ms(sent, ready_at));
        if let Some(b) = t.bound {
            to_bound.push(ms(sent, b));
            if let Some(s) = t.node_status {
                to_status.push(ms(b, s));
                to_ready.push(ms(s, ready_at));
            }
        }
    }
    drop(stream);

    // Idle: all pods running, nothing changing.
    let idle = idle_sample(agent, Duration::from_secs(settings.idle_seconds)).await?;
    let agent_rss_with_pods_kib = procfs::rss_kib(agent)?;
    let pod_pids = procfs::descendants(agent);
    let (pods_rss_kib, pods_pss_kib) = procfs::rss_pss_kib(&pod_pids);

    let cleanup_started = Instant::now();
    cleanup(client, ns, agent, timeout).await?;
    Ok(RunResult {
        ready: Summary::of(latencies_ms.clone()),
        stages: Stages {
            create_to_bound: Summary::of(to_bound),
            bound_to_node_status: Summary::of(to_status),
            node_status_to_ready: Summary::of(to_ready),
        },
        all_ready_ms: all_ready.as_secs_f64() * 1000.0,
        creates_done_ms: creates_done.as_secs_f64() * 1000.0,
        burst_cpu,
        agent_rss_before_kib,
        agent_rss_with_pods_kib,
        agent_idle_cpu_percent: idle.agent_percent,
        pod_processes: pod_pids.len(),
        pods_rss_kib,
        pods_pss_kib,
        pods_idle_cpu_percent: idle.pods_percent,
        cleanup_ms: cleanup_started.elapsed().as_secs_f64() * 1000.0,
        latencies_ms,
    })
}

struct Idle {
    agent_percent: f64,
    pods_percent: f64,
}

/// CPU used by the agent and by its descendants (the pods' processes present at both
/// ends) over `period`, in percent of one core.
async fn idle_sample(agent: u32, period: Duration) -> anyhow::Result<Idle> {
    let pods_ticks = |pids: &[u32]| -> HashMap<u32, u64> {
        pids.iter().filter_map(|&p| Some((p, procfs::cpu_ticks(p)?))).collect()
    };
    let agent_0 = procfs::cpu_ticks(agent).context("reading the agent's CPU time")?;
    let pods_0 = pods_ticks(&procfs::descendants(agent));
    let t0 = Instant::now();
    tokio::time::sleep(period).await;
    let agent_1 = procfs::cpu_ticks(agent).context("reading the agent's CPU time")?;
    let pods_1 = pods_ticks(&procfs::descendants(agent));
    let elapsed = t0.elapsed().as_secs_f64();
    let pods_used: u64 =
        pods_1.iter().filter_map(|(p, t1)| pods_0.get(p).map(|t0| t1.saturating_sub(*t0))).sum();
    let hz = procfs::clock_ticks_per_s();
    let percent = |ticks: u64| ticks as f64 / hz / elapsed * 100.0;
    Ok(Idle { agent_percent: percent(agent_1.saturating_sub(agent_0)), pods_percent: percent(pods_used) })
}

/// Deletes the namespace and waits until it, its pods and the pods' processes are gone.
async fn cleanup(client: &Client, ns: &str, agent: u32, timeout: Duration) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting namespace {ns}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        let left = pods.list_metadata(&ListParams::default()).await.context("listing pods")?.items.len();
        let ns_gone = namespaces.get_opt(ns).await.context("reading the namespace")?.is_none();
        let processes = procfs::descendants(agent).len();
        if left == 0 && ns_gone && processes == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "cleanup of {ns} not done after {} s: {left} pods, namespace gone: {ns_gone}, {processes} pod \
                 processes",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the Node reports `Ready=True`.
async fn wait_node_ready(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let node = nodes.get_opt(NODE).await.context("reading the Node")?;
        let ready = node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {NODE} not Ready after {} s (registered: {})", timeout.as_secs(), node.is_some());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn machine() -> Machine {
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        date_utc: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        load_at_start: loadavg(),
        load_at_end: String::new(),
    }
}
