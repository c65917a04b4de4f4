//! Scales a ReplicationController from 0 to N pods (1,000 by default) and measures the
//! time from the scale request until all N pods exist and are bound to nodes: the
//! ReplicationController controller creating them, the scheduler binding them, and the
//! API server storing every write durably. Goal (issue 3): under 2 s for 1,000 pods.
//!
//! By default each run starts a fresh in-process API server on a temporary SQLite
//! store with the replication controller and the scheduler as tasks of this process,
//! talking to it over HTTPS like any client. With `--kubeconfig` it drives a running
//! `pier up` instead (its own controllers do the work; each run uses a new namespace).
//!
//! ```text
//! cargo run --release -p pier-bench-replication -- --runs 5
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Scale an RC from 0 to N pods; time until all exist and are bound")]
struct Args {
    /// Pods to scale to.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Node objects to create (Ready, no node agent behind them).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Measured runs.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Drive a running cluster (e.g. `pier up`) instead of an in-process API server.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// When the last pod appeared and when the last one was bound, from the scale request.
struct Timing {
    created: Duration,
    bound: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("machine: {} CPUs, {}", nproc(), cpu_model());
    println!(
        "scale a ReplicationController 0 -> {} pods with {} nodes, {} runs, against {}",
        args.pods,
        args.nodes,
        args.runs,
        match &args.kubeconfig {
            Some(p) => format!("the cluster of {}", p.display()),
            None => "a fresh in-process API server per run (SQLite, synchronous=FULL)".to_string(),
        }
    );
    let mut times = Vec::new();
    for run in 1..=args.runs {
        let timing = match &args.kubeconfig {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let client = pier_testkit::in_process::client_for(&text).await?;
                measure(&client, &args, &format!("bench-rc-{}-{run}", std::process::id())).await?
            }
            None => {
                let server = pier_testkit::in_process::InProcess::start().await?;
                let client = server.client.clone();
                let controllers = [
                    tokio::spawn(pier_controllers::replication::run(client.clone())),
                    tokio::spawn(pier_controllers::scheduler::run(client.clone())),
                ];
                let result = measure(&client, &args, "bench").await;
                for c in controllers {
                    c.abort();
                }
                result?
            }
        };
        println!(
            "run {run}: {} pods created in {:.3} s, all bound in {:.3} s",
            args.pods,
            timing.created.as_secs_f64(),
            timing.bound.as_secs_f64()
        );
        times.push(timing.bound);
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "created and bound: median {:.3} s, worst {:.3} s, best {:.3} s over {} runs",
        median.as_secs_f64(),
        worst.as_secs_f64(),
        times[0].as_secs_f64(),
        times.len()
    );
    Ok(())
}

/// One run: nodes, an RC at 0 replicas, then the timed scale to `args.pods`.
async fn measure(client: &Client, args: &Args, ns: &str) -> anyhow::Result<Timing> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(ns).await?.is_none() {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        namespaces.create(&PostParams::default(), &n).await.context("creating the namespace")?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..args.nodes {
        let name = format!("bench-node-{i}");
        if nodes.get_opt(&name).await?.is_none() {
            let n: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
            nodes.create(&PostParams::default(), &n).await.context("creating a node")?;
        }
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
        nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .context("node status")?;
    }
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": 0,
            "selector": {"app": "bench"},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia", "ports": [{"containerPort": 8080}]}]}
            }
        }
    }))?;
    rcs.create(&PostParams::default(), &rc).await.context("creating the rc")?;

    // Watch the namespace's pods; the initial (empty) list is done before the clock
    // starts, and the scale request starts it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut stream = watcher(pods, watcher::Config::default()).boxed();
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("watching pods: {e}"),
            None => bail!("the pod watch ended"),
        }
    }
    let start = Instant::now();
    let scale = json!({"spec": {"replicas": args.pods}});
    rcs.patch_scale("bench", &PatchParams::default(), &Patch::Merge(scale)).await.context("scaling")?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut created = None;
    let mut bound: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    while bound.len() < args.pods {
        let event = tokio::time::timeout_at(deadline, stream.next()).await.with_context(|| {
            format!("only {} of {} pods bound in {} s", bound.len(), args.pods, args.timeout)
        })?;
        match event {
            Some(Ok(watcher::Event::Apply(p))) | Some(Ok(watcher::Event::InitApply(p))) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                if seen.insert(name.clone()) && seen.len() == args.pods {
                    created = Some(start.elapsed());
                }
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    bound.insert(name);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("watching pods: {e}"),
            None => bail!("the pod watch ended"),
        }
    }
    let bound = start.elapsed();
    Ok(Timing { created: created.unwrap_or(bound), bound })
}

fn nproc() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
