//! The UDP workers: one OS thread per socket, blocking on `recv_from`.
//!
//! Per packet: read into the thread's buffer, [`Query::parse`], answer from the
//! index (through the thread's [`arc_swap::Cache`], one atomic load when nothing
//! changed) or the forwarding cache, encode into the thread's response buffer,
//! `send_to`. Nothing is allocated and no task is spawned. Only queries that wait
//! for an upstream leave the thread: a task on the runtime takes a copy of the
//! query and sends its response from the same socket when it is done.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pier_dns::wire::Query;
use pier_dns::{encode_parse_error, Answer, Index};

use crate::metrics::{Proto, Shard};
use crate::query::{answer_fast, answer_slow, udp_limit, Fast, Shared};

/// The largest query read; longer ones are cut and then fail to parse.
const MAX_QUERY: usize = 4096;

/// The client's address as the index knows pods: IPv4-mapped IPv6 addresses (a
/// socket on `[::]`) as IPv4.
pub(crate) fn client_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
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
    let mut packet = [0u8; MAX_QUERY];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut packet) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors for earlier sends (a client gone away) surface here.
                tracing::trace!(error = %e, "dns udp receive");
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            // A stopping server leaves the query to whoever holds the port next.
            break;
        }
        let received = Instant::now();
        out.clear();
        let query = match Query::parse(&packet[..len]) {
            Ok(query) => query,
            Err(error) => {
                if encode_parse_error(&error, &mut out).is_some() {
                    shard.unparsed_response(1);
                    send(&socket, &out, peer);
                }
                continue;
            }
        };
        let client = client_ip(peer);
        shard.request(Proto::Udp, client.is_ipv6(), query.qtype);
        let max_len = udp_limit(&query);
        let index: &Index = index_cache.load();
        match answer_fast(&shared, index, &query, client, &mut out, max_len, &shard) {
            Fast::Done(rcode) => {
                send(&socket, &out, peer);
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
                    Answer::ServFail.encode(index, &query, &mut out, max_len);
                    send(&socket, &out, peer);
                    shard.response(query.qtype, 2, received.elapsed());
                }
            },
        }
    }
}

fn send(socket: &UdpSocket, msg: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(msg, peer) {
        tracing::trace!(error = %e, %peer, "dns udp send");
    }
}
