//! The UDP workers: one OS thread per socket, blocking in `recvmmsg`.
//!
//! Each system call reads every datagram already queued (up to [`BATCH`]) and one
//! `sendmmsg` sends their answers: when the thread was held up (another thread on
//! its core, the virtual machine pausing it) and queries piled up, it works off
//! the pile at a fraction of the per-datagram system-call cost instead of one
//! `recvfrom` and one `sendto` each, which is what keeps the latency tail short.
//! With queries arriving one by one a batch is one datagram.
//!
//! Per datagram: [`Query::parse`], answer from the index (through the thread's
//! [`arc_swap::Cache`], one atomic load when nothing changed) or the forwarding
//! cache, encode into the thread's response buffer for that slot. Nothing is
//! allocated and no task is spawned. Only queries that wait for an upstream leave
//! the thread: a task on the runtime takes a copy of the query and sends its
//! response from the same socket when it is done.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use pier_dns::wire::Query;
use pier_dns::{encode_parse_error, Answer, Index};

use crate::metrics::{Proto, Shard};
use crate::query::{answer_fast, answer_slow, udp_limit, Fast, Shared};

/// The largest query read; longer ones are cut and then fail to parse.
const MAX_QUERY: usize = 4096;

/// Datagrams read, and answers sent, per system call at most.
pub(crate) const BATCH: usize = 32;

/// The client's address as the index knows pods: IPv4-mapped IPv6 addresses (a
/// socket on `[::]`) as IPv4.
pub(crate) fn client_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// A received datagram's sender as a standard address.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// One worker thread's buffers, reused for every batch.
struct Buffers {
    packets: Box<[[u8; MAX_QUERY]; BATCH]>,
    /// Per received slot: its length and sender.
    received: Vec<(usize, Option<SockaddrStorage>)>,
    /// Answers ready to send, in `outs[..ready]`, to `peers[..ready]`.
    outs: [Vec<u8>; BATCH],
    peers: [Option<SockaddrStorage>; BATCH],
    ready: usize,
    receive_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Buffers {
    fn new() -> Buffers {
        // On the heap from the start: 128 KiB is too much for a stack temporary.
        let packets = vec![[0u8; MAX_QUERY]; BATCH].into_boxed_slice();
        Buffers {
            packets: packets.try_into().unwrap_or_else(|_| unreachable!("BATCH packets were made")),
            received: Vec::with_capacity(BATCH),
            outs: std::array::from_fn(|_| Vec::with_capacity(512)),
            peers: [None; BATCH],
            ready: 0,
            receive_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Blocks until at least one datagram is there (or the socket's read timeout
    /// passes), then takes every one queued, up to [`BATCH`].
    fn receive(&mut self, socket: &UdpSocket) -> Result<(), Errno> {
        self.received.clear();
        let mut slices = self.packets.each_mut().map(|p| [IoSliceMut::new(&mut p[..])]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.receive_headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        self.received.extend(results.map(|msg| (msg.bytes, msg.address)));
        Ok(())
    }

    /// The next answer's buffer, cleared; [`Buffers::commit`] queues it for `peer`.
    fn next_out(&mut self) -> &mut Vec<u8> {
        let out = &mut self.outs[self.ready];
        out.clear();
        out
    }

    fn commit(&mut self, peer: SockaddrStorage) {
        self.peers[self.ready] = Some(peer);
        self.ready += 1;
    }

    /// Sends the queued answers; one that the kernel refuses is logged and
    /// skipped, and the rest still go out.
    fn send(&mut self, socket: &UdpSocket) {
        let slices = self.outs.each_ref().map(|o| [IoSlice::new(o)]);
        let mut sent = 0;
        while sent < self.ready {
            let peers = &self.peers[sent..self.ready];
            let no_control: [nix::sys::socket::ControlMessage<'_>; 0] = [];
            match sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                slices[sent..self.ready].iter(),
                peers,
                no_control,
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let n = results.count();
                    // Zero would mean no progress; skip the first so the rest go out.
                    sent += n.max(1);
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The first remaining answer failed (an unreachable peer):
                    // drop it, send the rest.
                    tracing::trace!(error = %e, peer = ?peers.first(), "dns udp send");
                    sent += 1;
                }
            }
        }
        self.ready = 0;
    }
}

/// Serves `socket` until `stop` is set (checked at least every read timeout).
pub(crate) fn worker(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    shard: Arc<Shard>,
) {
    let mut index_cache = arc_swap::Cache::new(Arc::clone(&shared.index));
    let mut buffers = Buffers::new();
    while !stop.load(Ordering::Relaxed) {
        match buffers.receive(&socket) {
            Ok(()) => {}
            Err(Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINTR) => continue,
            Err(e) => {
                // ICMP errors for earlier sends (a client gone away) surface here.
                tracing::trace!(error = %e, "dns udp receive");
                continue;
            }
        }
        if stop.load(Ordering::Relaxed) {
            // A stopping server leaves the queries to whoever holds the port next.
            break;
        }
        let received = Instant::now();
        let index: &Index = index_cache.load();
        for slot in 0..buffers.received.len() {
            let (len, Some(from)) = buffers.received[slot] else { continue };
            let Some(peer) = socket_addr(&from) else { continue };
            let packet = &buffers.packets[slot][..len.min(MAX_QUERY)];
            let query = match Query::parse(packet) {
                Ok(query) => query,
                Err(error) => {
                    if encode_parse_error(&error, buffers.next_out()).is_some() {
                        shard.unparsed_response(1);
                        buffers.commit(from);
                    }
                    continue;
                }
            };
            let client = client_ip(peer);
            shard.request(Proto::Udp, client.is_ipv6(), query.qtype);
            let max_len = udp_limit(&query);
            match answer_fast(&shared, index, &query, client, buffers.next_out(), max_len, &shard) {
                Fast::Done(rcode) => {
                    buffers.commit(from);
                    shard.response(query.qtype, rcode, received.elapsed());
                }
                Fast::Slow => match shared.forwarder.permit() {
                    Some(permit) => {
                        let (socket, shared) = (Arc::clone(&socket), Arc::clone(&shared));
                        let shard = Arc::clone(&shard);
                        runtime.spawn(async move {
                            let _permit = permit;
                            let mut out = Vec::with_capacity(512);
                            let rcode = answer_slow(&shared, &query, client, &mut out, max_len, &shard).await;
                            send(&socket, &out, peer);
                            shard.response(query.qtype, rcode, received.elapsed());
                        });
                    }
                    None => {
                        Answer::ServFail.encode(index, &query, buffers.next_out(), max_len);
                        buffers.commit(from);
                        shard.response(query.qtype, 2, received.elapsed());
                    }
                },
            }
        }
        buffers.send(&socket);
    }
}

fn send(socket: &UdpSocket, msg: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(msg, peer) {
        tracing::trace!(error = %e, %peer, "dns udp send");
    }
}
