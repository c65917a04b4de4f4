//! Benchmark of Pier's API server, with etcd as the anchor in the same run.
//!
//! It starts the release `pier` binary itself (fresh data directory, free port) or uses a
//! running cluster (`--kubeconfig`), and measures: cold start to the first `kubectl get
//! ns` and to the first `kube` client call; resident memory idle and after load;
//! ConfigMap creates per second from one client and from 32; list latency of 10,000
//! ConfigMaps (whole and the first page); watch delivery latency to 100 watchers. Then it
//! starts `etcd` and measures the same raw operations (key creates, range reads, watch
//! delivery) so every Pier number has etcd's next to it. See `BENCHMARKS.md`.
//!
//! ```text
//! pier-bench-apiserver --pier-bin /var/tmp/pier-target/release/pier --json results.json
//! ```

mod etcd;
mod pier;
mod process;
mod report;
mod stats;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::etcd::{Etcd, EtcdResults};
use crate::pier::{Cluster, Target};
use crate::report::{Machine, PierResults, Report};
use crate::workload::Settings;

#[derive(Parser, Debug)]
#[command(name = "pier-bench-apiserver", about = "Benchmark Pier's API server against etcd")]
struct Cli {
    /// The `pier` binary to start (default: $CARGO_TARGET_DIR/release/pier).
    #[arg(long)]
    pier_bin: Option<PathBuf>,
    /// Use this running cluster instead of starting `pier up` (skips the startup runs).
    #[arg(long, conflicts_with = "pier_bin")]
    kubeconfig: Option<PathBuf>,
    /// PID of the running cluster's process, for memory readings with `--kubeconfig`.
    #[arg(long, requires = "kubeconfig")]
    pier_pid: Option<u32>,
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Skip the etcd anchor.
    #[arg(long)]
    no_etcd: bool,
    /// Where data directories are made (default: the system temp dir). Pier and etcd use
    /// the same one, so they sync to the same disk.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// A tiny, fast run that checks everything works (no goals are judged).
    #[arg(long)]
    smoke: bool,
    /// Write the results as JSON to this file (`-` or no value: stdout, with the table on stderr).
    #[arg(long, num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
    #[arg(long)]
    startup_runs: Option<usize>,
    #[arg(long)]
    sequential_creates: Option<usize>,
    #[arg(long)]
    concurrent_creates: Option<usize>,
    #[arg(long)]
    clients: Option<usize>,
    #[arg(long)]
    list_objects: Option<usize>,
    #[arg(long)]
    list_repeats: Option<usize>,
    #[arg(long)]
    page_repeats: Option<usize>,
    #[arg(long)]
    page_limit: Option<usize>,
    #[arg(long)]
    watchers: Option<usize>,
    #[arg(long)]
    watch_writes: Option<usize>,
    /// Upper bound on each measured phase, seconds.
    #[arg(long)]
    phase_timeout: Option<u64>,
}

impl Cli {
    fn settings(&self) -> Settings {
        let mut s = if self.smoke {
            Settings {
                startup_runs: 1,
                sequential_creates: 20,
                concurrent_creates: 64,
                clients: 4,
                list_objects: 100,
                list_repeats: 2,
                page_repeats: 2,
                page_limit: 50,
                watchers: 4,
                watch_writes: 5,
                phase_timeout: Duration::from_secs(10),
                startup_timeout: Duration::from_secs(20),
                per_write_timeout: Duration::from_secs(5),
            }
        } else {
            Settings {
                startup_runs: 10,
                sequential_creates: 5_000,
                concurrent_creates: 20_000,
                clients: 32,
                list_objects: 10_000,
                list_repeats: 20,
                page_repeats: 100,
                page_limit: 500,
                watchers: 100,
                watch_writes: 200,
                phase_timeout: Duration::from_secs(120),
                startup_timeout: Duration::from_secs(30),
                per_write_timeout: Duration::from_secs(5),
            }
        };
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut s.startup_runs, self.startup_runs);
        set(&mut s.sequential_creates, self.sequential_creates);
        set(&mut s.concurrent_creates, self.concurrent_creates);
        set(&mut s.clients, self.clients);
        set(&mut s.list_objects, self.list_objects);
        set(&mut s.list_repeats, self.list_repeats);
        set(&mut s.page_repeats, self.page_repeats);
        set(&mut s.page_limit, self.page_limit);
        set(&mut s.watchers, self.watchers);
        set(&mut s.watch_writes, self.watch_writes);
        if let Some(t) = self.phase_timeout {
            s.phase_timeout = Duration::from_secs(t);
        }
        s.clients = s.clients.max(1);
        s
    }
}

/// Parses the command line, runs the benchmark and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C the run is dropped, and with it every child process it started.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&cli) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: some phases failed (see above and `errors` in the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_pier_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/pier-target"), PathBuf::from);
    target.join("release").join("pier")
}

/// Notes a failed phase and goes on with the next.
fn record<T>(errors: &mut Vec<String>, phase: &str, r: anyhow::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = format!("{phase}: {e:#}");
            eprintln!("phase failed: {msg}");
            errors.push(msg);
            None
        }
    }
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// Runs every phase; true when all succeeded.
async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = cli.settings();
    let root = cli.data_root.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let target = match &cli.kubeconfig {
        Some(k) => Target::Kubeconfig(k.clone()),
        None => {
            let bin = cli.pier_bin.clone().unwrap_or_else(default_pier_bin);
            anyhow::ensure!(
                bin.exists(),
                "no pier binary at {} (build it with cargo build --release -p pier)",
                bin.display()
            );
            Target::Spawn { bin, root: root.clone() }
        }
    };
    let mut report = Report::new(Machine::read(), settings.clone(), cli.smoke);
    report.versions.kubectl = process::version_of(&cli.kubectl, &["version", "--client"]);
    if let Target::Spawn { bin, .. } = &target {
        report.versions.pier = process::version_of(&bin.to_string_lossy(), &["--version"]);
    }
    let mut errors = Vec::new();
    let mut pier = PierResults::default();

    // 1. Cold starts.
    if let Target::Spawn { bin, root } = &target {
        progress(&format!("startup: {} runs per probe", settings.startup_runs));
        let s = pier::startup(bin, root, &cli.kubectl, &settings).await;
        if s.failures > 0 {
            errors.push(format!("startup: {} runs failed", s.failures));
        }
        pier.startup = Some(s);
    }

    // 2. The cluster under load.
    progress("starting the cluster for the load phases");
    let cluster = Cluster::start(&target, cli.pier_pid, settings.startup_timeout).await?;
    let result = pier_load(cli, &cluster, &settings, &mut pier, &mut errors).await;
    cluster.stop();
    result?;
    report.pier = pier;

    // 3. The anchor.
    if !cli.no_etcd {
        report.versions.etcd = process::version_of(&cli.etcd_bin.to_string_lossy(), &["--version"]);
        progress("starting etcd");
        match Etcd::start(&cli.etcd_bin, &root, settings.startup_timeout).await {
            Ok(etcd) => {
                let mut results = EtcdResults { version: report.versions.etcd.clone(), ..Default::default() };
                let r = etcd_load(&etcd, &settings, &mut results, &mut errors).await;
                etcd.stop();
                record(&mut errors, "etcd", r);
                report.etcd = Some(results);
            }
            Err(e) => {
                record::<()>(&mut errors, "etcd start", Err(e));
            }
        }
    }

    report.finish(errors);
    let table = report.table();
    match &cli.json {
        Some(p) if p.as_os_str() == "-" => {
            eprintln!("{table}");
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(p) => {
            println!("{table}");
            std::fs::write(p, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", p.display()))?;
            eprintln!("[bench] JSON written to {}", p.display());
        }
        None => println!("{table}"),
    }
    Ok(report.errors.is_empty())
}

async fn pier_load(
    cli: &Cli,
    cluster: &Cluster,
    settings: &Settings,
    pier: &mut PierResults,
    errors: &mut Vec<String>,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    pier.memory_idle = cluster.memory();
    progress("kubectl get ns against the running cluster");
    pier.kubectl_running =
        Some(pier::kubectl_floor(cluster, &cli.kubectl, if cli.smoke { 1 } else { 5 }).await);

    let client = cluster.client().await?;
    // Fresh names, so a rerun against the same cluster (--kubeconfig) starts empty.
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000);
    let (ns_seq, ns_conc, ns_list, ns_watch) = (
        format!("bench-seq-{suffix}"),
        format!("bench-conc-{suffix}"),
        format!("bench-list-{suffix}"),
        format!("bench-watch-{suffix}"),
    );
    for ns in [&ns_seq, &ns_conc, &ns_list, &ns_watch] {
        pier::create_namespace(&client, ns).await?;
    }

    progress(&format!("pier: {} sequential creates", settings.sequential_creates));
    pier.creates_sequential = record(
        errors,
        "pier sequential creates",
        pier::creates(cluster, &ns_seq, "cm", 1, settings.sequential_creates, settings.phase_timeout).await,
    );
    progress(&format!("pier: {} creates from {} clients", settings.concurrent_creates, settings.clients));
    pier.creates_concurrent = record(
        errors,
        "pier concurrent creates",
        pier::creates(
            cluster,
            &ns_conc,
            "cm",
            settings.clients,
            settings.concurrent_creates,
            settings.phase_timeout,
        )
        .await,
    );

    progress(&format!("pier: lists of {} ConfigMaps", settings.list_objects));
    let filled = record(
        errors,
        "pier list fill",
        pier::fill(cluster, &ns_list, settings.list_objects, settings.clients, settings.phase_timeout).await,
    );
    if let Some(objects) = filled {
        let path = format!("/api/v1/namespaces/{ns_list}/configmaps");
        pier.list_full = record(
            errors,
            "pier full list",
            pier::list_latency(cluster, &path, settings.list_repeats, settings.phase_timeout).await,
        )
        .map(|mut l| {
            l.objects = objects;
            l
        });
        let page = format!("{path}?limit={}", settings.page_limit);
        pier.list_page = record(
            errors,
            "pier page list",
            pier::list_latency(cluster, &page, settings.page_repeats, settings.phase_timeout).await,
        )
        .map(|mut l| {
            l.objects = objects;
            l
        });
    }

    progress(&format!(
        "pier: watch delivery, {} watchers x {} writes",
        settings.watchers, settings.watch_writes
    ));
    if let Some(mut runs) =
        record(errors, "pier watch", pier::watch_latency(cluster, &ns_watch, settings).await)
    {
        pier.watch_back_to_back = runs.pop();
        pier.watch_lockstep = runs.pop();
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    pier.memory_after_load = cluster.memory();
    Ok(())
}

async fn etcd_load(
    etcd: &Etcd,
    settings: &Settings,
    results: &mut EtcdResults,
    errors: &mut Vec<String>,
) -> anyhow::Result<()> {
    results.startup_ms = Some(etcd.startup_ms);
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.memory_idle = etcd.memory();
    progress(&format!("etcd: {} sequential creates", settings.sequential_creates));
    results.creates_sequential = record(
        errors,
        "etcd sequential creates",
        etcd::creates(etcd, "bench-seq", "cm", 1, settings.sequential_creates, settings.phase_timeout).await,
    );
    progress(&format!("etcd: {} creates from {} clients", settings.concurrent_creates, settings.clients));
    results.creates_concurrent = record(
        errors,
        "etcd concurrent creates",
        etcd::creates(
            etcd,
            "bench-conc",
            "cm",
            settings.clients,
            settings.concurrent_creates,
            settings.phase_timeout,
        )
        .await,
    );
    progress(&format!("etcd: ranges of {} keys", settings.list_objects));
    let filled = record(
        errors,
        "etcd list fill",
        etcd::fill(etcd, "bench-list", settings.list_objects, settings.clients, settings.phase_timeout).await,
    );
    if let Some(objects) = filled {
        results.list_full = record(
            errors,
            "etcd full range",
            etcd::list_latency(etcd, "bench-list", None, settings.list_repeats, settings.phase_timeout).await,
        )
        .map(|mut l| {
            l.objects = objects;
            l
        });
        results.list_page = record(
            errors,
            "etcd page range",
            etcd::list_latency(
                etcd,
                "bench-list",
                Some(settings.page_limit),
                settings.page_repeats,
                settings.phase_timeout,
            )
            .await,
        )
        .map(|mut l| {
            l.objects = objects;
            l
        });
    }
    progress(&format!(
        "etcd: watch delivery, {} watchers x {} writes",
        settings.watchers, settings.watch_writes
    ));
    if let Some(mut runs) =
        record(errors, "etcd watch", etcd::watch_latency(etcd, "bench-watch", settings).await)
    {
        results.watch_back_to_back = runs.pop();
        results.watch_lockstep = runs.pop();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.memory_after_load = etcd.memory();
    Ok(())
}
