//! Benchmark of Pier's Endpoints/EndpointSlice controller (issue 3's performance goal):
//!
//! 1. an in-process API server is filled with `--services` Services and
//!    `--pods-per-service` Ready pods each (IP and Ready condition written through the
//!    `status` subresource, as a node agent would);
//! 2. the controller starts; **initial sync** is the time until every Service's slices
//!    and Endpoints list all its pods (seen through watches);
//! 3. **readiness flips**: `--changes` times, one pod's Ready condition is flipped and
//!    the time from the status write's acknowledgement to the moment a watch on
//!    EndpointSlices shows that pod's endpoint with the new `ready` value is recorded.
//!    Changes are made one after another (latency, not throughput), on pods spread over
//!    all Services.
//!
//! The API server, the controller and the benchmark's clients share one process and
//! one Tokio runtime, as in `pier up`. Every wait is bounded by `--timeout`.
//!
//! ```text
//! cargo run --release -p pier-bench-endpoints -- [--services 1000] [--pods-per-service 10] [--changes 1000]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(about = "Pod readiness change -> EndpointSlice latency, and initial sync time")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    pods_per_service: usize,
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Requests in flight while filling the cluster.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bound on each wait, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

const NS: &str = "default";

fn svc_name(s: usize) -> String {
    format!("svc-{s:04}")
}

fn pod_name(s: usize, p: usize) -> String {
    format!("svc-{s:04}-p{p:02}")
}

/// A unique pod IP in 10.244.0.0/16 (up to 65,000 pods).
fn pod_ip(i: usize) -> String {
    format!("10.244.{}.{}", i / 250, i % 250 + 1)
}

/// What the watches have seen, shared with the measuring loop.
#[derive(Default)]
struct Seen {
    /// Per endpoint address: its last `ready` value and when that value first appeared.
    ready: HashMap<String, (bool, Instant)>,
    /// Per Service: endpoints in each of its slices (by slice name).
    slice_counts: HashMap<String, HashMap<String, usize>>,
    /// Per Service: ready addresses in its Endpoints object.
    endpoints_counts: HashMap<String, usize>,
}

fn lock(m: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.timeout);
    let server = pier_testkit::in_process::InProcess::start().await.context("starting the API server")?;
    let client = server.client.clone();
    let total = args.services * args.pods_per_service;
    if total == 0 {
        bail!("nothing to measure: no pods");
    }
    eprintln!("filling the cluster: {} services, {total} pods", args.services);

    let fill = Instant::now();
    let services = Api::<Service>::namespaced(client.clone(), NS);
    futures::stream::iter(0..args.services)
        .map(|s| {
            let services = services.clone();
            async move {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": svc_name(s)},
                    "spec": {"selector": {"app": svc_name(s)}, "ports": [{"port": 80, "targetPort": 8080}]}
                }))?;
                services
                    .create(&PostParams::default(), &svc)
                    .await
                    .with_context(|| format!("creating {}", svc_name(s)))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    futures::stream::iter(0..total)
        .map(|i| {
            let pods = pods.clone();
            let (s, p) = (i / args.pods_per_service, i % args.pods_per_service);
            async move {
                let name = pod_name(s, p);
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": svc_name(s)}},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "luksa/kubia",
                             "ports": [{"containerPort": 8080}]}]}
                }))?;
                pods.create(&PostParams::default(), &pod)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                write_status(&pods, &name, &pod_ip(i), true).await
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!("filled in {:.1} s", fill.elapsed().as_secs_f64());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    tokio::spawn(watch_slices(client.clone(), seen.clone(), changed.clone()));
    tokio::spawn(watch_endpoints(client.clone(), seen.clone(), changed.clone()));

    // Initial sync.
    let start = Instant::now();
    tokio::spawn(pier_controllers::endpoints::run(client.clone()));
    let want = args.pods_per_service;
    let mut slices_done = None;
    let endpoints_done;
    loop {
        let notified = changed.notified();
        {
            let st = lock(&seen);
            let slices_ok = (0..args.services).all(|s| {
                st.slice_counts.get(&svc_name(s)).is_some_and(|m| m.values().sum::<usize>() == want)
            });
            if slices_ok && slices_done.is_none() {
                slices_done = Some(start.elapsed());
            }
            let endpoints_ok =
                (0..args.services).all(|s| st.endpoints_counts.get(&svc_name(s)) == Some(&want));
            if slices_ok && endpoints_ok {
                endpoints_done = start.elapsed();
                break;
            }
        }
        if start.elapsed() > timeout {
            bail!("initial sync did not finish within {timeout:?}");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    let slices_done = slices_done.unwrap_or(endpoints_done);

    // Readiness flips, one at a time, spread over the services.
    let mut from_ack: Vec<Duration> = Vec::with_capacity(args.changes);
    let mut from_write: Vec<Duration> = Vec::with_capacity(args.changes);
    let mut ready: HashMap<usize, bool> = HashMap::new();
    for n in 0..args.changes {
        // A large prime stride visits pods of every service.
        let i = (n * 7919 + 13) % total;
        let (s, p) = (i / args.pods_per_service, i % args.pods_per_service);
        let now_ready = !ready.get(&i).copied().unwrap_or(true);
        ready.insert(i, now_ready);
        let ip = pod_ip(i);
        let written = Instant::now();
        write_status(&pods, &pod_name(s, p), &ip, now_ready).await?;
        let acked = Instant::now();
        let at = loop {
            let notified = changed.notified();
            if let Some((r, at)) = lock(&seen).ready.get(&ip).copied() {
                if r == now_ready && at >= written {
                    break at;
                }
            }
            if written.elapsed() > timeout {
                bail!("change {n} ({ip} ready={now_ready}) not seen in a slice within {timeout:?}");
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        };
        // The slice may show up before the write's response is read: that counts as 0.
        from_ack.push(at.saturating_duration_since(acked));
        from_write.push(at.saturating_duration_since(written));
    }

    println!("endpoints controller benchmark (in-process API server, SQLite store)");
    println!("  cluster: {} services, {total} pods ({} per service)", args.services, args.pods_per_service);
    println!(
        "  initial sync: slices complete {:.3} s, slices and Endpoints complete {:.3} s",
        slices_done.as_secs_f64(),
        endpoints_done.as_secs_f64()
    );
    println!(
        "  {} readiness flips, status write ack -> slice seen in a watch: {}",
        args.changes,
        summary(&mut from_ack)
    );
    println!("  same, from the start of the status write: {}", summary(&mut from_write));
    drop(server);
    Ok(())
}

async fn write_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> anyhow::Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .with_context(|| format!("writing the status of {name}"))?;
    Ok(())
}

fn summary(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".to_string();
    }
    v.sort();
    let q = |p: f64| {
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1000.0;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        mean,
        v.len()
    )
}

async fn watch_slices(client: Client, seen: Arc<Mutex<Seen>>, changed: Arc<Notify>) {
    let api = Api::<EndpointSlice>::namespaced(client, NS);
    let cfg = watcher::Config::default()
        .labels("endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io");
    let mut events = watcher(api, cfg).boxed();
    while let Some(e) = events.next().await {
        let at = Instant::now();
        let (slice, deleted) = match e {
            Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => (s, false),
            Ok(watcher::Event::Delete(s)) => (s, true),
            Ok(_) => continue,
            Err(e) => {
                eprintln!("slice watch error (retrying): {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned()
            .unwrap_or_default();
        let name = slice.metadata.name.clone().unwrap_or_default();
        let eps = if deleted { Vec::new() } else { slice.endpoints.unwrap_or_default() };
        let mut st = lock(&seen);
        st.slice_counts.entry(svc).or_default().insert(name, eps.len());
        for e in eps {
            let r = e.conditions.and_then(|c| c.ready).unwrap_or(false);
            for a in e.addresses {
                // Keep the time the value first appeared: later events of the slice
                // (other pods' changes) must not move it.
                let entry = st.ready.entry(a).or_insert((r, at));
                if entry.0 != r {
                    *entry = (r, at);
                }
            }
        }
        drop(st);
        changed.notify_waiters();
    }
}

async fn watch_endpoints(client: Client, seen: Arc<Mutex<Seen>>, changed: Arc<Notify>) {
    let api = Api::<Endpoints>::namespaced(client, NS);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(e) = events.next().await {
        let ep = match e {
            Ok(watcher::Event::Apply(ep)) | Ok(watcher::Event::InitApply(ep)) => ep,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("endpoints watch error (retrying): {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let n = ep.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        lock(&seen).endpoints_counts.insert(ep.metadata.name.clone().unwrap_or_default(), n);
        changed.notify_waiters();
    }
}
