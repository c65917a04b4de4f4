//! What this machine allows at all, measured in the same run as the servers:
//!
//! - [`Floor`]: a responder that does no DNS work (it turns each query around
//!   as an empty NOERROR response: the QR bit set, nothing else changed), pinned
//!   to the server core like the servers. Its latency at the same offered rate is
//!   the floor no server on this core can go below: the client, the loopback path,
//!   the scheduler and the virtual machine's own pauses.
//! - [`stalls`]: a thread spinning on the server core that reads the clock in a
//!   loop and records every gap longer than [`STALL`]: the time the core was taken
//!   away (the hypervisor running something else, interrupts, the kernel). A
//!   server on that core cannot answer during a gap, and at half load it needs as
//!   long again to work off what queued meanwhile.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use serde::{Deserialize, Serialize};

use crate::procs;
use crate::servers::LOOPBACK;

/// A gap in a spinning loop longer than this is a stall.
pub const STALL: Duration = Duration::from_micros(100);

/// The child side of [`Floor`]: binds 127.0.0.1:0, prints `ready <addr>`, then
/// answers every datagram until killed.
pub fn child_main() -> anyhow::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).context("binding the floor responder")?;
    // Room for the same bursts as the servers (their 4 MiB receive buffers).
    let socket = socket2::Socket::from(socket);
    let _ = socket.set_recv_buffer_size(4 << 20);
    let socket = UdpSocket::from(socket);
    let addr = socket.local_addr().context("the floor responder's address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {addr}").and_then(|()| out.flush()).context("writing to the benchmark")?;
    }
    turn_around(&socket)
}

/// Datagrams read and answered per system call at most: as Pier's UDP workers
/// do, so that the floor is no slower per datagram than the server it bounds.
const BATCH: usize = 32;

/// Answers every datagram on `socket` with itself as an empty NOERROR response.
fn turn_around(socket: &UdpSocket) -> ! {
    let mut packets = vec![[0u8; 4096]; BATCH];
    let mut receive_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Per answer: the slot its query was read into, its length, its sender.
    let mut ready: Vec<(usize, usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    loop {
        ready.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                packets.iter_mut().map(|p| [IoSliceMut::new(&mut p[..])]).collect();
            let received = recvmmsg(
                socket.as_raw_fd(),
                &mut receive_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            );
            let Ok(received) = received else { continue };
            for (slot, msg) in received.enumerate() {
                // Shorter than a DNS header: nothing to turn around.
                if let (true, Some(peer)) = (msg.bytes >= 12, msg.address) {
                    ready.push((slot, msg.bytes.min(4096), peer));
                }
            }
        }
        for &(slot, _, _) in &ready {
            packets[slot][2] |= 0x80;
        }
        let slices: Vec<[IoSlice<'_>; 1]> =
            ready.iter().map(|&(slot, len, _)| [IoSlice::new(&packets[slot][..len])]).collect();
        let peers: Vec<Option<SockaddrStorage>> = ready.iter().map(|&(_, _, peer)| Some(peer)).collect();
        let no_control: [ControlMessage<'_>; 0] = [];
        let _ = sendmmsg(
            socket.as_raw_fd(),
            &mut send_headers,
            slices.iter(),
            &peers,
            no_control,
            MsgFlags::empty(),
        );
    }
}

/// The floor responder in a child process pinned to one core.
pub struct Floor {
    pub pid: u32,
    pub addr: SocketAddr,
}

impl Floor {
    pub fn start(core: usize) -> anyhow::Result<Floor> {
        let mut cmd = procs::this_binary_on(core, "--child-floor")?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut stdout = None;
        let pid = procs::spawn(cmd, |child| stdout = child.stdout.take())
            .context("starting the floor responder (taskset)")?;
        // Stops the child on every early return below.
        let mut floor = Floor { pid, addr: SocketAddr::new(LOOPBACK, 0) };
        let mut line = String::new();
        let read = match stdout {
            Some(out) => {
                BufReader::new(out).read_line(&mut line).context("reading from the floor responder")?
            }
            None => bail!("no pipe from the floor responder"),
        };
        if read == 0 {
            bail!("the floor responder exited ({:?})", procs::exited(pid));
        }
        floor.addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("the floor responder said {line:?}, not ready"))?;
        Ok(floor)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        procs::stop(self.pid);
    }
}

/// The gaps a spinning loop on one core saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stalls {
    pub secs: f64,
    /// Gaps longer than [`STALL`].
    pub count: usize,
    /// Of those, longer than 1 ms.
    pub over_1ms: usize,
    /// Their sum over the time spun, as a share.
    pub lost_share: f64,
    pub max_ms: f64,
}

/// Spins on `core` for `secs` (in a child pinned with `taskset`, so that this
/// process's own threads stay where they are) and reports the gaps.
pub fn stalls(core: usize, secs: u64) -> anyhow::Result<Stalls> {
    let mut probe = procs::this_binary_on(core, "--child-stalls")?;
    probe.args(["--secs", &secs.to_string()]);
    pier_bench_support::json_report_of(probe, "the stall probe")
}

/// The child side of [`stalls`]: spins for `secs`, prints the report as JSON.
pub fn stalls_child_main(secs: u64) -> anyhow::Result<()> {
    let report = spin(Duration::from_secs(secs));
    let json = serde_json::to_string(&report).context("encoding the stall report")?;
    println!("{json}");
    Ok(())
}

fn spin(length: Duration) -> Stalls {
    let started = Instant::now();
    let (mut count, mut over_1ms, mut lost, mut max) = (0, 0, Duration::ZERO, Duration::ZERO);
    let mut last = started;
    loop {
        let now = Instant::now();
        let gap = now - last;
        if gap > STALL {
            count += 1;
            lost += gap;
            max = max.max(gap);
            if gap > Duration::from_millis(1) {
                over_1ms += 1;
            }
        }
        last = now;
        if now - started >= length {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Stalls {
        secs,
        count,
        over_1ms,
        lost_share: lost.as_secs_f64() / secs,
        max_ms: max.as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::probe::{Probe, NOERROR, TYPE_A};

    #[test]
    fn the_floor_answers_a_query_as_an_empty_noerror() {
        let socket = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || turn_around(&socket));
        let mut probe = Probe::new(addr, Duration::from_secs(2)).unwrap();
        let reply = probe.query("kubia.default.svc.cluster.local", TYPE_A).unwrap();
        assert_eq!(reply.rcode, NOERROR);
        assert!(reply.a.is_empty() && reply.srv.is_empty());
    }
}
