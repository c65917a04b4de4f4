//! Answering one parsed query, for both transports: [`answer_fast`] for what needs
//! no waiting (the cluster zone, cache hits), [`answer_slow`] for what waits for
//! an upstream.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use pier_dns::wire::{Query, RecordType, DEFAULT_EDNS_PAYLOAD, MIN_UDP_PAYLOAD};
use pier_dns::{answer, Answer, Index};

use crate::cache::Key;
use crate::forward::{aged_reply, render, Forwarder};
use crate::metrics::{Metrics, Shard};

/// What the server shares between its threads and tasks.
pub(crate) struct Shared {
    pub(crate) index: Arc<ArcSwap<Index>>,
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Arc<Metrics>,
}

/// What [`answer_fast`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// The response is in the buffer, with this rcode.
    Done(u16),
    /// The query waits for an upstream: call [`answer_slow`].
    Slow,
}

/// The largest UDP response for `query`: the client's size, but no more than the
/// 1232 octets we advertise, which avoid IP fragmentation (RFC 6891 §6.2.5).
pub(crate) fn udp_limit(query: &Query) -> usize {
    query.max_udp_response_len().min(usize::from(DEFAULT_EDNS_PAYLOAD)).max(MIN_UDP_PAYLOAD)
}

/// Whether an answer must wait for an upstream.
fn is_slow(answer: &Answer<'_>, query: &Query) -> bool {
    match answer {
        Answer::Forward | Answer::AutopathForward(_) => true,
        // An ExternalName's target outside the zone: its records are looked up
        // and appended (CoreDNS), unless the question is for the CNAME itself.
        Answer::Authoritative(records) => records.chase().is_some() && query.qtype != RecordType::CNAME,
        _ => false,
    }
}

/// Answers `query` into `out` (appending) when no upstream is needed: from the
/// index, or for a forwarded name from the cache. Allocates nothing for names in
/// the zone.
pub(crate) fn answer_fast(
    shared: &Shared,
    index: &Index,
    query: &Query,
    client: IpAddr,
    out: &mut Vec<u8>,
    max_len: usize,
    shard: &Shard,
) -> Fast {
    let outcome = answer(index, query, Some(client));
    if let Answer::Forward = outcome {
        let dnssec_ok = query.edns.is_some_and(|e| e.dnssec_ok);
        let key = Key::new(query.name.as_name(), query.qtype, query.qclass, dnssec_ok);
        let now = Instant::now();
        return match shared.forwarder.cached(&key, now, shard) {
            Some(entry) => match render(&entry.msg, entry.age(now), query, out, max_len) {
                Some((_, rcode)) => Fast::Done(rcode),
                None => servfail(index, query, out, max_len),
            },
            None => Fast::Slow,
        };
    }
    if is_slow(&outcome, query) {
        return Fast::Slow;
    }
    match (outcome.encode(index, query, out, max_len), outcome.rcode()) {
        (Some(_), Some(rcode)) => Fast::Done(rcode.0),
        _ => servfail(index, query, out, max_len),
    }
}

fn servfail(index: &Index, query: &Query, out: &mut Vec<u8>, max_len: usize) -> Fast {
    Answer::ServFail.encode(index, query, out, max_len);
    Fast::Done(2)
}

/// The rcode in the header of the message at `start` in `buf`.
fn rcode_at(buf: &[u8], start: usize) -> u16 {
    buf.get(start + 3).map_or(2, |b| u16::from(b & 0x0f))
}

/// Answers `query` into `out` (appending), waiting for upstreams as needed;
/// returns the rcode. Upstream failures are SERVFAIL.
pub(crate) async fn answer_slow(
    shared: &Shared,
    query: &Query,
    client: IpAddr,
    out: &mut Vec<u8>,
    max_len: usize,
    shard: &Shard,
) -> u16 {
    // The index may have changed since the fast path looked: answer again.
    let index = shared.index.load_full();
    let outcome = answer(&index, query, Some(client));
    let dnssec_ok = query.edns.is_some_and(|e| e.dnssec_ok);
    let start = out.len();
    let forwarder = &shared.forwarder;
    match &outcome {
        Answer::Forward => {
            let reply =
                forwarder.resolve(query.name.as_name(), query.qtype, query.qclass, dnssec_ok, shard).await;
            match reply.map(|e| {
                let age = e.age(Instant::now());
                render(&e.msg, age, query, out, max_len)
            }) {
                Ok(Some((_, rcode))) => rcode,
                _ => {
                    out.truncate(start);
                    Answer::ServFail.encode(&index, query, out, max_len);
                    2
                }
            }
        }
        Answer::AutopathForward(autopath) => {
            let target = autopath.target();
            let reply = forwarder.resolve(target, query.qtype, query.qclass, dnssec_ok, shard).await;
            let reply = reply.ok().map(|e| aged_reply(&e, target, query.qtype, query.qclass));
            outcome.encode_with_upstream(&index, query, reply.as_deref(), out, max_len);
            rcode_at(out, start)
        }
        Answer::Authoritative(records) if is_slow(&outcome, query) => {
            let mut reply = None;
            if let Some(target) = records.chase() {
                let resolved = forwarder.resolve(target, query.qtype, query.qclass, dnssec_ok, shard).await;
                reply = resolved.ok().map(|e| aged_reply(&e, target, query.qtype, query.qclass));
            }
            outcome.encode_with_upstream(&index, query, reply.as_deref(), out, max_len);
            rcode_at(out, start)
        }
        _ => {
            outcome.encode(&index, query, out, max_len);
            outcome.rcode().map_or(2, |r| r.0)
        }
    }
}
