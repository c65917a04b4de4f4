//! The load the client pod generates. Each function runs as one job on the client
//! pod's [`NsWorker`], so every socket is the pod's and the clock is read next to the
//! socket calls.

use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::time::Instant;

use anyhow::{anyhow, Context};
use serde::Serialize;

use crate::http::{connect, Client, CHUNK, CONNECT_TIMEOUT};
use crate::netns::NsWorker;

/// Requests per path before measuring (ARP, conntrack and caches warm, server threads
/// awake).
const WARMUP: usize = 50;

/// A destination the client pod sends to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `direct`, `clusterip` or `haproxy`.
    pub name: &'static str,
    /// Where.
    pub addr: SocketAddr,
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// One large transfer: `conns` connections, each `GET /bytes/<total/conns>`, started
/// together (after connecting). Seconds from the first request sent to the last byte.
/// Client and server threads run where the scheduler puts them: the machine's
/// throughput, not one pair of cores'.
pub fn transfer(worker: &NsWorker, target: &Target, total: u64, conns: usize) -> anyhow::Result<f64> {
    let (addr, name) = (target.addr, target.name);
    worker.run(move || -> anyhow::Result<f64> {
        let per = total / conns as u64;
        let barrier = Barrier::new(conns);
        let results: Vec<anyhow::Result<(Instant, Instant)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..conns)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<(Instant, Instant)> {
                        let opened = connect(addr).with_context(|| format!("connecting to {name} {addr}"));
                        // Everyone reaches the barrier, even after a failed connect.
                        barrier.wait();
                        let mut client = Client::new(opened?)?;
                        let mut sink = vec![0u8; CHUNK];
                        let started = Instant::now();
                        let got = client
                            .get(&format!("/bytes/{per}"), true, &mut sink)
                            .with_context(|| format!("GET /bytes/{per} from {name} {addr}"))?;
                        anyhow::ensure!(got == per, "{name}: {got} bytes instead of {per}");
                        Ok((started, Instant::now()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a transfer thread panicked"))))
                .collect()
        });
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        for r in results {
            let (a, b) = r?;
            first = Some(first.map_or(a, |f| f.min(a)));
            last = Some(last.map_or(b, |l| l.max(b)));
        }
        match (first, last) {
            (Some(a), Some(b)) => Ok(b.duration_since(a).as_secs_f64()),
            _ => Err(anyhow!("no transfer ran")),
        }
    })?
}

/// `requests` small `GET /` per target, in µs, the targets taking turns request by
/// request (so load on the machine hits them alike). `keepalive`: one connection per
/// target for all its requests; else a new connection per request, timed from
/// `connect` to the last byte of the response. `cpus`: the client's and the server's
/// CPU while measuring, the same for every target.
pub fn request_latency(
    worker: &NsWorker,
    targets: &[Target],
    requests: usize,
    keepalive: bool,
    cpus: Cpus,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let targets = targets.to_vec();
    crate::http::serve_connections_on(Some(cpus.server));
    let result = worker.run(move || -> anyhow::Result<Vec<Vec<f64>>> {
        crate::http::pin_this_thread(Some(cpus.client)).context("pinning the client")?;
        let result = request_latency_here(&targets, requests, keepalive);
        crate::http::pin_this_thread(None).context("unpinning the client")?;
        result
    });
    crate::http::serve_connections_on(None);
    result?
}

/// Where the client and the server run during the request-latency runs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cpus {
    pub client: usize,
    pub server: usize,
}

fn request_latency_here(
    targets: &[Target],
    requests: usize,
    keepalive: bool,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let m = targets.len();
    let mut out = vec![Vec::with_capacity(requests); m];
    let mut sink = [0u8; 4096];
    if keepalive {
        let mut clients = Vec::with_capacity(m);
        for t in targets {
            let stream = connect(t.addr).with_context(|| format!("connecting to {} {}", t.name, t.addr))?;
            clients.push(Client::new(stream)?);
        }
        for i in 0..WARMUP + requests {
            for k in 0..m {
                let p = (i + k) % m;
                let started = Instant::now();
                clients[p]
                    .get("/", false, &mut sink)
                    .with_context(|| format!("GET / from {} (keep-alive)", targets[p].name))?;
                if i >= WARMUP {
                    out[p].push(micros(started));
                }
            }
        }
    } else {
        for i in 0..WARMUP + requests {
            for k in 0..m {
                let p = (i + k) % m;
                let t = &targets[p];
                let started = Instant::now();
                let stream =
                    connect(t.addr).with_context(|| format!("connecting to {} {}", t.name, t.addr))?;
                let mut client = Client::new(stream)?;
                client.get("/", true, &mut sink).with_context(|| format!("GET / from {}", t.name))?;
                if i >= WARMUP {
                    out[p].push(micros(started));
                }
            }
        }
    }
    Ok(out)
}

/// `n` TCP connects to each of `a` and `b` (alternating which goes first), in µs: the
/// time `connect` takes, i.e. SYN out to SYN-ACK back, the first packet through the
/// proxy's dispatch. The connection is closed at once.
pub fn connect_times(
    worker: &NsWorker,
    a: SocketAddr,
    b: SocketAddr,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    worker.run(move || -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let once = |addr: SocketAddr| -> anyhow::Result<f64> {
            let started = Instant::now();
            let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .with_context(|| format!("connecting to {addr}"))?;
            let took = micros(started);
            drop(stream);
            Ok(took)
        };
        let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            if i % 2 == 0 {
                ta.push(once(a)?);
                tb.push(once(b)?);
            } else {
                tb.push(once(b)?);
                ta.push(once(a)?);
            }
        }
        Ok((ta, tb))
    })?
}

/// One `GET /` through `addr`: the path works.
pub fn check(worker: &NsWorker, addr: SocketAddr) -> anyhow::Result<()> {
    worker.run(move || -> anyhow::Result<()> {
        let mut client = Client::new(connect(addr)?)?;
        let mut sink = [0u8; 4096];
        client.get("/", true, &mut sink)?;
        Ok(())
    })?
}
