//! The benchmark's own load generator, run as a child of this binary pinned to the
//! client core (`--child-client`): one thread that never sleeps, several
//! non-blocking sockets, queries from the same file as dnsperf's. Two modes:
//!
//! - closed loop ([`Client::closed`], for peak QPS): keeps a fixed number of
//!   queries outstanding, sending the next as soon as a reply is read. It costs
//!   the client core less per query than dnsperf, so on a machine where one
//!   dnsperf core cannot saturate the server's core, this one can.
//! - paced ([`Client::paced`], for latency): sends each query at its scheduled
//!   time (a fixed rate, open loop) and between sends drains every socket.
//!
//! A reply's latency is from just before its query's `send` to the kernel's receive
//! timestamp of the reply (`SO_TIMESTAMPNS`, taken as the reply reaches the client's
//! socket, both on `CLOCK_REALTIME`), so time the reply waited for this client to
//! read it is not counted: on a shared core, a client can be kept off the CPU for
//! milliseconds (dnsperf's sender and receiver threads also take turns on the one
//! client core). The latency as read is summarized too (`read_*`), and how often
//! the client itself was kept from sending on time (`stalls`; the schedule then
//! moves on rather than bursting).

use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};

use crate::probe::{self, TYPE_A, TYPE_SRV};
use crate::procs;

/// A send later than this against its schedule moves the schedule.
const STALL: Duration = Duration::from_micros(100);
/// Replies later than this count as lost.
const TIMEOUT: Duration = Duration::from_secs(1);
const IDS: usize = 1 << 16;

/// What one paced run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paced {
    pub offered_qps: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Replies whose rcode was not NOERROR.
    pub not_noerror: u64,
    pub achieved_qps: f64,
    /// The latest a query was sent against its schedule (at most [`STALL`]; a
    /// later one moves the schedule).
    pub max_lag_us: f64,
    /// How often this client was kept from sending on time for more than
    /// [`STALL`], and for how long in all; the schedule moved on by that time, so
    /// the rate achieved is a little below the offered one.
    pub stalls: u64,
    pub stalled_ms: f64,
    /// Latency as this client read the replies (including its own delays).
    pub read_p50_us: f64,
    pub read_p99_us: f64,
    /// Replies without a kernel timestamp (their read time was used).
    pub without_timestamp: u64,
    /// Every reply's latency to its kernel receive timestamp, µs.
    pub latencies_us: Vec<f64>,
}

/// What one closed-loop run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closed {
    pub window: usize,
    pub sent: u64,
    /// Replies read within the run's time.
    pub completed: u64,
    /// Queries unanswered for a second.
    pub lost: u64,
    pub not_noerror: u64,
    pub secs: f64,
    pub avg_latency_us: f64,
    pub max_latency_us: f64,
}

/// How the benchmark starts its own client.
#[derive(Debug, Clone)]
pub struct Client {
    pub core: usize,
    pub queries: PathBuf,
    pub secs: u64,
    pub sockets: usize,
}

impl Client {
    /// A paced run against `server` at `rate` queries per second.
    pub fn paced(&self, server: SocketAddr, rate: u64, dir: &Path, label: &str) -> anyhow::Result<Paced> {
        let text = self.run(server, rate, 0, dir, label)?;
        serde_json::from_str(&text).context("reading the paced client's result")
    }

    /// A closed-loop run against `server` with `window` queries outstanding.
    pub fn closed(
        &self,
        server: SocketAddr,
        window: usize,
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<Closed> {
        let text = self.run(server, 0, window, dir, label)?;
        serde_json::from_str(&text).context("reading the closed-loop client's result")
    }

    /// Runs the client (a child pinned to the client core); what it printed.
    fn run(
        &self,
        server: SocketAddr,
        rate: u64,
        window: usize,
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<String> {
        let out_path = dir.join(format!("client-{label}.json"));
        let out =
            std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let mut cmd = procs::this_binary_on(self.core, "--child-client")?;
        cmd.args(["--client-server", &server.to_string(), "--client-rate", &rate.to_string()])
            .args(["--outstanding", &window.max(1).to_string()])
            .args(["--secs", &self.secs.to_string(), "--clients", &self.sockets.to_string()])
            .arg("--client-queries")
            .arg(&self.queries)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::inherit());
        let pid = procs::spawn(cmd, |_| ()).context("starting the paced client (taskset)")?;
        let status = procs::wait(pid, Duration::from_secs(self.secs + 60))?;
        if !status.success() {
            bail!("the benchmark's client failed ({status})");
        }
        let text =
            std::fs::read_to_string(&out_path).with_context(|| format!("reading {}", out_path.display()))?;
        let _ = std::fs::remove_file(&out_path);
        Ok(text)
    }
}

/// The child: runs one paced run (`rate` > 0) or closed-loop run (`rate` 0, with
/// `window` outstanding) and prints its [`Paced`] or [`Closed`] as JSON.
pub fn child_main(
    server: SocketAddr,
    rate: u64,
    window: usize,
    secs: u64,
    sockets: usize,
    queries: &Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(queries).with_context(|| format!("reading {}", queries.display()))?;
    let mut packets = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        let qtype = if kind.eq_ignore_ascii_case("SRV") { TYPE_SRV } else { TYPE_A };
        packets.push(probe::encode(0, name, qtype).with_context(|| format!("encoding {name}"))?);
    }
    if packets.is_empty() {
        bail!("no queries in {}", queries.display());
    }
    let (length, sockets) = (Duration::from_secs(secs), sockets.max(1));
    let text = if rate == 0 {
        serde_json::to_string(&closed(server, window.max(1), length, sockets, &mut packets)?)
    } else {
        serde_json::to_string(&paced(server, rate, length, sockets, &mut packets)?)
    };
    println!("{}", text.context("writing the result")?);
    Ok(())
}

fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn timespec_ns(ts: &TimeSpec) -> u64 {
    (ts.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec() as u64)
}

fn sockets_for(server: SocketAddr, sockets: usize, timestamps: bool) -> anyhow::Result<Vec<UdpSocket>> {
    (0..sockets)
        .map(|_| -> anyhow::Result<UdpSocket> {
            let s = UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
            s.connect(server)?;
            s.set_nonblocking(true)?;
            if timestamps {
                setsockopt(&s, sockopt::ReceiveTimestampns, &true)?;
            }
            Ok(s)
        })
        .collect::<anyhow::Result<_>>()
        .context("making the client's sockets")
}

fn closed(
    server: SocketAddr,
    window: usize,
    length: Duration,
    sockets: usize,
    packets: &mut [Vec<u8>],
) -> anyhow::Result<Closed> {
    let socks = sockets_for(server, sockets, false)?;
    // Send times (ns since start, +1), by socket and id; 0: nothing outstanding.
    let mut pending = vec![0u64; sockets * IDS];
    let (mut sent, mut completed, mut lost, mut not_noerror) = (0u64, 0u64, 0u64, 0u64);
    let (mut outstanding, mut latency_sum, mut latency_max) = (0usize, 0u64, 0u64);
    let mut buf = [0u8; 4096];
    let timeout_ns = TIMEOUT.as_nanos() as u64;
    let length_ns = length.as_nanos() as u64;
    let start = Instant::now();
    let mut next_sweep = timeout_ns;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= length_ns {
            break;
        }
        while outstanding < window {
            let k = sent as usize;
            let (sock, id) = (k % sockets, (k / sockets) % IDS);
            let slot = sock * IDS + id;
            if pending[slot] != 0 {
                lost += 1;
                outstanding -= 1;
            }
            let packet = &mut packets[k % packets.len()];
            packet[..2].copy_from_slice(&(id as u16).to_be_bytes());
            match socks[sock].send(packet) {
                Ok(_) => {
                    pending[slot] = now + 1;
                    outstanding += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => pending[slot] = 0,
                Err(e) => return Err(e).context("sending a query"),
            }
            sent += 1;
        }
        for (i, sock) in socks.iter().enumerate() {
            loop {
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e).context("reading a reply"),
                };
                if n < 4 {
                    continue;
                }
                let slot = i * IDS + u16::from_be_bytes([buf[0], buf[1]]) as usize;
                let sent_at = std::mem::take(&mut pending[slot]);
                if sent_at == 0 {
                    continue;
                }
                let took = (start.elapsed().as_nanos() as u64).saturating_sub(sent_at - 1);
                outstanding -= 1;
                completed += 1;
                latency_sum += took;
                latency_max = latency_max.max(took);
                if buf[3] & 0x0f != 0 {
                    not_noerror += 1;
                }
            }
        }
        // Queries unanswered for a second are lost; their place in the window
        // goes to new ones.
        if now > next_sweep {
            for p in pending.iter_mut().filter(|p| **p != 0 && now.saturating_sub(**p - 1) > timeout_ns) {
                *p = 0;
                lost += 1;
                outstanding -= 1;
            }
            next_sweep = now + timeout_ns / 10;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Closed {
        window,
        sent,
        completed,
        lost,
        not_noerror,
        secs,
        avg_latency_us: latency_sum as f64 / completed.max(1) as f64 / 1000.0,
        max_latency_us: latency_max as f64 / 1000.0,
    })
}

fn paced(
    server: SocketAddr,
    rate: u64,
    length: Duration,
    sockets: usize,
    packets: &mut [Vec<u8>],
) -> anyhow::Result<Paced> {
    let socks = sockets_for(server, sockets, true)?;
    let total = (rate as f64 * length.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate as f64;
    // Send times (realtime ns), by socket and id; 0: nothing outstanding.
    let mut pending = vec![0u64; sockets * IDS];
    let mut latencies = Vec::with_capacity(total as usize);
    let mut read_latencies = Vec::with_capacity(total as usize);
    let (mut sent, mut lost, mut not_noerror, mut max_lag_ns, mut without_ts) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let timeout_ns = TIMEOUT.as_nanos() as u64;
    // When this client was kept off its core, the schedule moves on by the time
    // lost instead of sending the missed queries in one burst (which would queue
    // at the server and measure the client's stall, not the server).
    let (mut shift_ns, mut stalls, mut stalled_ns) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let (mut first_ns, mut last_ns) = (0u64, 0u64);
    // Queries sent and not yet answered (or given up on).
    let mut outstanding = 0u64;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if sent < total {
            let mut due = (sent as f64 * interval_ns) as u64 + shift_ns;
            if now > due + STALL.as_nanos() as u64 {
                stalls += 1;
                stalled_ns += now - due;
                shift_ns += now - due;
                due = now;
            }
            if now >= due {
                let k = sent as usize;
                let (sock, id) = (k % sockets, (k / sockets) % IDS);
                let slot = sock * IDS + id;
                if pending[slot] != 0 {
                    // Still unanswered a whole id cycle later.
                    lost += 1;
                    outstanding -= 1;
                }
                let packet = &mut packets[k % packets.len()];
                packet[..2].copy_from_slice(&(id as u16).to_be_bytes());
                max_lag_ns = max_lag_ns.max(now - due);
                let at = realtime_ns();
                if first_ns == 0 {
                    first_ns = at;
                }
                match socks[sock].send(packet) {
                    Ok(_) => {
                        pending[slot] = at;
                        outstanding += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        pending[slot] = 0;
                        lost += 1;
                    }
                    Err(e) => return Err(e).context("sending a query"),
                }
                sent += 1;
                continue;
            }
        } else if outstanding == 0 || now > (total as f64 * interval_ns) as u64 + shift_ns + timeout_ns {
            break;
        }
        for (i, sock) in socks.iter().enumerate() {
            loop {
                let (n, kernel_ns) = {
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
                        Ok(msg) => {
                            let ts = msg.cmsgs().ok().and_then(|mut c| {
                                c.find_map(|m| match m {
                                    ControlMessageOwned::ScmTimestampns(ts) => Some(timespec_ns(&ts)),
                                    _ => None,
                                })
                            });
                            (msg.bytes, ts)
                        }
                        Err(Errno::EAGAIN) => break,
                        Err(e) => return Err(e).context("reading a reply"),
                    }
                };
                let read_ns = realtime_ns();
                if n < 4 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                let slot = i * IDS + id;
                let sent_ns = std::mem::take(&mut pending[slot]);
                if sent_ns == 0 {
                    continue;
                }
                outstanding -= 1;
                let arrived = kernel_ns.unwrap_or_else(|| {
                    without_ts += 1;
                    read_ns
                });
                let took = arrived.saturating_sub(sent_ns);
                if took > timeout_ns {
                    lost += 1;
                    continue;
                }
                latencies.push(took as f64 / 1000.0);
                read_latencies.push(read_ns.saturating_sub(sent_ns) as f64 / 1000.0);
                last_ns = arrived;
                if buf[3] & 0x0f != 0 {
                    not_noerror += 1;
                }
            }
        }
    }
    lost += pending.iter().filter(|p| **p != 0).count() as u64;
    read_latencies.sort_by(f64::total_cmp);
    let rank = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        }
    };
    let span = last_ns.saturating_sub(first_ns).max(1) as f64 / 1e9;
    Ok(Paced {
        offered_qps: rate,
        sent,
        received: latencies.len() as u64,
        lost,
        not_noerror,
        achieved_qps: latencies.len() as f64 / span,
        max_lag_us: max_lag_ns as f64 / 1000.0,
        stalls,
        stalled_ms: stalled_ns as f64 / 1e6,
        read_p50_us: rank(&read_latencies, 0.5),
        read_p99_us: rank(&read_latencies, 0.99),
        without_timestamp: without_ts,
        latencies_us: latencies,
    })
}
