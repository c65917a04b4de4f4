//! Creation to resolution: an API server in this process
//! (`pier_testkit::in_process::InProcess`, SQLite store in a temp dir) and the
//! whole cluster DNS server as the node runs it (`pier_dns_server::run`: its
//! watches on the API server, its index, its UDP threads) on 127.0.0.1. Services
//! are created one by one through `kube`; for each, a thread polls the new name
//! (A, every `POLL` from before the create call is sent) until it answers NOERROR
//! with an address, which must be the cluster IP the API server allocated.
//!
//! Two times per Service: from the create call's return (the Service exists; what
//! the goal is judged on; can be near zero or negative, since the API server
//! publishes a write to its watchers before it answers the writer) and from just
//! before the create request is sent (adding the API server's own write, SQLite
//! on this machine's disk).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use pier_dns_server::DnsConfig;

use crate::objects::{created_service, ZONE};
use crate::probe::{Probe, NOERROR, NXDOMAIN, TYPE_A};
use crate::servers::{free_port, LOOPBACK};

/// How often the new name is asked for.
pub const POLL: Duration = Duration::from_micros(200);
/// How long a name may take to resolve before the measurement fails.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the DNS server may take to sync with the API server.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between creations (untimed), so each is its own event.
const GAP: Duration = Duration::from_millis(20);
const NAMESPACE: &str = "default";

/// One Service's times, in ms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub from_send_ms: f64,
    pub from_ack_ms: f64,
    pub create_ms: f64,
    pub polls: u64,
}

/// Runs the measurement for `count` Services (plus one untimed warm-up).
pub fn measure(count: usize) -> anyhow::Result<Vec<Sample>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(measure_async(count))
}

async fn measure_async(count: usize) -> anyhow::Result<Vec<Sample>> {
    let api =
        pier_testkit::in_process::InProcess::start().await.context("starting the in-process API server")?;
    let client = api.client.clone();
    let addr = SocketAddr::new(LOOPBACK, free_port()?);
    let config =
        DnsConfig { listen: vec![addr], upstreams: Vec::new(), metrics: None, ..DnsConfig::default() };
    let mut dns = tokio::spawn(pier_dns_server::run(client.clone(), config));

    // Synced: a missing name in an existing namespace is NXDOMAIN, not SERVFAIL.
    let synced = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut probe = Probe::new(addr, Duration::from_millis(50))?;
        let deadline = Instant::now() + SYNC_DEADLINE;
        loop {
            if matches!(probe.query(&format!("absent.{NAMESPACE}.svc.{ZONE}"), TYPE_A), Ok(r) if r.rcode == NXDOMAIN)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the dns server did not sync with the API server within {SYNC_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    tokio::select! {
        done = synced => done.context("waiting for sync")??,
        stopped = &mut dns => bail!("the dns server stopped: {stopped:?}"),
    }

    let services: Api<Service> = Api::namespaced(client, NAMESPACE);
    let mut samples = Vec::with_capacity(count);
    for i in 0..=count {
        let name = format!("created-{}-{i}", std::process::id());
        let fqdn = format!("{name}.{NAMESPACE}.svc.{ZONE}");
        let poller = tokio::task::spawn_blocking(move || poll_until_resolved(addr, &fqdn));
        // Let the poller send its first query (NXDOMAIN) before the create.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        let created = services
            .create(&PostParams::default(), &created_service(&name))
            .await
            .with_context(|| format!("creating Service {name}"))?;
        let acked = Instant::now();
        let (resolved, ip, polls) = poller.await.context("the poller")??;
        let want = created.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
        if want != ip.to_string() {
            bail!("{name} resolved to {ip}, but its cluster IP is {want:?}");
        }
        let ms = |from: Instant, to: Instant| {
            if to >= from {
                to.duration_since(from).as_secs_f64() * 1000.0
            } else {
                -(from.duration_since(to).as_secs_f64() * 1000.0)
            }
        };
        // The first one warms up the watch path; it is not counted.
        if i > 0 {
            samples.push(Sample {
                from_send_ms: ms(sent, resolved),
                from_ack_ms: ms(acked, resolved),
                create_ms: ms(sent, acked),
                polls,
            });
        }
        tokio::time::sleep(GAP).await;
    }
    // Dropping `run` stops the server (its UDP threads within 200 ms).
    dns.abort();
    Ok(samples)
}

/// Asks for `fqdn` every [`POLL`] until it answers NOERROR with an address; when
/// the answer arrived, the address, and how many queries it took.
fn poll_until_resolved(server: SocketAddr, fqdn: &str) -> anyhow::Result<(Instant, Ipv4Addr, u64)> {
    let mut probe = Probe::new(server, Duration::from_millis(50))?;
    let deadline = Instant::now() + RESOLVE_DEADLINE;
    let mut polls = 0;
    let mut next = Instant::now();
    loop {
        polls += 1;
        match probe.query(fqdn, TYPE_A) {
            Ok(reply) if reply.rcode == NOERROR && !reply.a.is_empty() => {
                return Ok((Instant::now(), reply.a[0], polls));
            }
            Ok(reply) if reply.rcode == NOERROR || reply.rcode == NXDOMAIN => {}
            Ok(reply) => bail!("{fqdn}: unexpected rcode {}", reply.rcode),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e).with_context(|| format!("asking for {fqdn}")),
        }
        if Instant::now() > deadline {
            bail!("{fqdn} did not resolve within {RESOLVE_DEADLINE:?} ({polls} queries)");
        }
        next += POLL;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
