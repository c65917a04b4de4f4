//! Forwarding names that are not the cluster's to upstream servers, through the
//! cache.
//!
//! One attempt per upstream, in order starting from the one that answered last:
//! a query over UDP from a fresh socket (a kernel-chosen source port) with a
//! random id and EDNS0 advertising 1232 octets; the reply must come from the
//! upstream (the socket is connected) and match the id and the question, anything
//! else is ignored. A truncated reply is asked again over TCP. An attempt that
//! has no answer within [`DnsConfig::upstream_timeout`] (or whose socket reports
//! an error, such as the ICMP port unreachable of a dead upstream) moves on to the
//! next upstream; when none answers, the client gets SERVFAIL.
//!
//! The reply is stored as received ([`crate::cache`]) and rewritten for each
//! client by [`render`]: the client's id, flags, question and EDNS, TTLs less the
//! time spent in the cache, and cut to the client's size (TC set).
//!
//! [`DnsConfig::upstream_timeout`]: crate::DnsConfig::upstream_timeout

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_dns::wire::{
    Class, EdnsResponse, Header, MessageWriter, NameBuf, NameRef, Query, RecordType, Section,
    UpstreamResponse, Written, DEFAULT_EDNS_PAYLOAD,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::cache::{Cache, Entry, Key};
use crate::metrics::{Metrics, Shard, UpstreamErrorKind};

/// The largest UDP reply read from an upstream; one that fills it is treated as
/// truncated and asked again over TCP.
const UPSTREAM_UDP_BUFFER: usize = 4096;

/// Why a forwarded query has no upstream answer; the client gets SERVFAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream answered")]
    Exhausted,
    #[error("no upstreams configured")]
    NoUpstreams,
}

/// A slot among the queries waiting for upstreams; freed on drop.
pub(crate) struct Permit {
    inflight: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upstreams, the cache, and the count of queries waiting.
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// The upstream that answered last: where the next query starts.
    preferred: AtomicUsize,
    timeout: Duration,
    cache: Cache,
    metrics: Arc<Metrics>,
    inflight: Arc<AtomicUsize>,
    max_inflight: usize,
}

impl Forwarder {
    pub(crate) fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        cache_entries: usize,
        max_inflight: usize,
        metrics: Arc<Metrics>,
    ) -> Forwarder {
        Forwarder {
            upstreams,
            preferred: AtomicUsize::new(0),
            timeout,
            cache: Cache::new(cache_entries),
            metrics,
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight,
        }
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    /// A slot to wait for upstreams in, unless [`crate::DnsConfig::max_concurrent_forwards`]
    /// queries wait already (the rejection is counted).
    pub(crate) fn permit(&self) -> Option<Permit> {
        if self.inflight.fetch_add(1, Ordering::Relaxed) >= self.max_inflight {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            self.metrics.forward_rejected();
            return None;
        }
        Some(Permit { inflight: Arc::clone(&self.inflight) })
    }

    /// The cached answer for `key`, counting a hit (misses are counted by
    /// [`Forwarder::resolve`]).
    pub(crate) fn cached(&self, key: &Key, now: Instant, shard: &Shard) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key, now)?;
        shard.cache_hit(entry.denial);
        Some(entry)
    }

    /// The answer for `name`, from the cache or the upstreams.
    pub(crate) async fn resolve(
        &self,
        name: NameRef<'_>,
        qtype: RecordType,
        qclass: Class,
        dnssec_ok: bool,
        shard: &Shard,
    ) -> Result<Arc<Entry>, ForwardError> {
        let key = Key::new(name, qtype, qclass, dnssec_ok);
        if let Some(entry) = self.cached(&key, Instant::now(), shard) {
            return Ok(entry);
        }
        shard.cache_miss();
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut lower = name.to_buf();
        lower.make_lowercase();
        let start = self.preferred.load(Ordering::Relaxed);
        for k in 0..self.upstreams.len() {
            let i = (start + k) % self.upstreams.len();
            let upstream = self.upstreams[i];
            let counters = self.metrics.upstream(i);
            counters.inspect(|c| c.request());
            match self.attempt(upstream, &lower, qtype, qclass, dnssec_ok).await {
                Ok(msg) => {
                    let entry = Arc::new(Entry::new(msg.into_boxed_slice(), Instant::now()));
                    if let Ok(reply) = UpstreamResponse::parse(&entry.msg) {
                        counters.inspect(|c| c.response(u16::from(reply.header().rcode)));
                    }
                    self.preferred.store(i, Ordering::Relaxed);
                    self.cache.insert(&key, Arc::clone(&entry), entry.stored);
                    return Ok(entry);
                }
                Err(kind) => {
                    tracing::debug!(%upstream, name = %lower, ?kind, "upstream attempt failed");
                    counters.inspect(|c| c.error(kind));
                }
            }
        }
        Err(ForwardError::Exhausted)
    }

    /// One upstream, within the attempt's time: UDP, then TCP if truncated.
    async fn attempt(
        &self,
        upstream: SocketAddr,
        name: &NameBuf,
        qtype: RecordType,
        qclass: Class,
        dnssec_ok: bool,
    ) -> Result<Vec<u8>, UpstreamErrorKind> {
        let id: u16 = rand::random();
        let mut query = Vec::with_capacity(64 + name.as_wire().len());
        encode_upstream_query(&mut query, id, name.as_name(), qtype, qclass, dnssec_ok);
        let question = (name, qtype, qclass);
        let udp = tokio::time::timeout(self.timeout, exchange_udp(upstream, &query, id, question));
        let reply = udp.await.map_err(|_| UpstreamErrorKind::Timeout)??;
        let truncated = reply.len() >= UPSTREAM_UDP_BUFFER
            || UpstreamResponse::parse(&reply).is_ok_and(|r| r.header().truncated);
        if !truncated {
            return Ok(reply);
        }
        let tcp = tokio::time::timeout(self.timeout, exchange_tcp(upstream, &query, id, question));
        tcp.await.map_err(|_| UpstreamErrorKind::Timeout)?
    }
}

/// A query for an upstream: RD set, the question as given, EDNS0 with our payload
/// size and the client's DO bit.
fn encode_upstream_query(
    buf: &mut Vec<u8>,
    id: u16,
    name: NameRef<'_>,
    qtype: RecordType,
    qclass: Class,
    dnssec_ok: bool,
) {
    let header = Header { id, recursion_desired: true, ..Header::default() };
    let mut w = MessageWriter::new(buf, header);
    w.question(name, qtype, qclass);
    w.set_edns(Some(EdnsResponse {
        udp_payload_size: DEFAULT_EDNS_PAYLOAD,
        extended_rcode: 0,
        version: 0,
        dnssec_ok,
    }));
    w.finish(usize::MAX);
}

/// Whether `msg` answers our query `id` for `question`, and reads through.
fn matches(msg: &[u8], id: u16, (name, qtype, qclass): (&NameBuf, RecordType, Class)) -> bool {
    let Ok(reply) = UpstreamResponse::parse(msg) else { return false };
    reply.header().id == id
        && reply
            .question()
            .is_some_and(|(n, t, c)| n.as_name().eq_ignore_case(name.as_name()) && t == qtype && c == qclass)
}

/// Whether every record of a reply can be read (else it is not used).
fn well_formed(msg: &[u8]) -> bool {
    let Ok(reply) = UpstreamResponse::parse(msg) else { return false };
    reply.answers().chain(reply.authority()).chain(reply.additional()).all(|r| r.is_ok())
}

fn io_error(e: std::io::Error) -> UpstreamErrorKind {
    tracing::trace!(error = %e, "upstream socket");
    UpstreamErrorKind::Network
}

async fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: (&NameBuf, RecordType, Class),
) -> Result<Vec<u8>, UpstreamErrorKind> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io_error)?;
    socket.connect(upstream).await.map_err(io_error)?;
    socket.send(query).await.map_err(io_error)?;
    let mut buf = vec![0u8; UPSTREAM_UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io_error)?;
        let reply = &buf[..n];
        // Replies to other queries (late ones, spoofed ones) are not ours.
        if !matches(reply, id, question) {
            continue;
        }
        if !well_formed(reply) && n < UPSTREAM_UDP_BUFFER {
            return Err(UpstreamErrorKind::BadReply);
        }
        buf.truncate(n);
        return Ok(buf);
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: (&NameBuf, RecordType, Class),
) -> Result<Vec<u8>, UpstreamErrorKind> {
    let mut stream = TcpStream::connect(upstream).await.map_err(io_error)?;
    stream.set_nodelay(true).map_err(io_error)?;
    let len = u16::try_from(query.len()).map_err(|_| UpstreamErrorKind::BadReply)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io_error)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io_error)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.map_err(io_error)?;
    if !matches(&reply, id, question) || !well_formed(&reply) {
        return Err(UpstreamErrorKind::BadReply);
    }
    Ok(reply)
}

/// Writes the response to `query` from an upstream's reply: the client's id,
/// flags and question, the upstream's rcode and records with their TTLs less
/// `age` seconds, our OPT record if the client sent one, within `max_len` (TC set
/// if the answer does not fit). Returns the rcode, or `None` (nothing written) if
/// the reply cannot be read.
pub(crate) fn render(
    reply: &[u8],
    age: u32,
    query: &Query,
    out: &mut Vec<u8>,
    max_len: usize,
) -> Option<(Written, u16)> {
    let upstream = UpstreamResponse::parse(reply).ok()?;
    let up = *upstream.header();
    let mut header = query.header.response_to();
    header.rcode = up.rcode;
    header.recursion_available = true;
    // RFC 6840 §5.8: AD only for clients that asked for it.
    header.authentic_data =
        up.authentic_data && (query.header.authentic_data || query.edns.is_some_and(|e| e.dnssec_ok));
    let mut w = MessageWriter::new(out, header);
    w.question(query.name.as_name(), query.qtype, query.qclass);
    let sections = [
        (Section::Answer, upstream.answers()),
        (Section::Authority, upstream.authority()),
        (Section::Additional, upstream.additional()),
    ];
    for (section, records) in sections {
        w.set_section(section);
        for record in records {
            // Replies were checked when they arrived; this is a guard.
            let Ok(record) = record else { break };
            if record.rtype != RecordType::OPT {
                w.upstream_record(&record, record.ttl.saturating_sub(age));
            }
        }
    }
    w.set_edns(query.edns.map(|edns| EdnsResponse {
        udp_payload_size: DEFAULT_EDNS_PAYLOAD,
        extended_rcode: 0,
        version: 0,
        dnssec_ok: edns.dnssec_ok,
    }));
    Some((w.finish(max_len), u16::from(up.rcode)))
}

/// An upstream reply for `name` with its TTLs aged, as the forwarding steps of
/// [`pier_dns::Answer::encode_with_upstream`] read it.
pub(crate) fn aged_reply(entry: &Entry, name: NameRef<'_>, qtype: RecordType, qclass: Class) -> Vec<u8> {
    let age = entry.age(Instant::now());
    if age == 0 {
        return entry.msg.to_vec();
    }
    let query = Query { header: Header::default(), name: name.to_buf(), qtype, qclass, edns: None };
    let mut out = Vec::with_capacity(entry.msg.len());
    match render(&entry.msg, age, &query, &mut out, usize::MAX) {
        Some(_) => out,
        None => entry.msg.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_dns::wire::{encode_query, Owner, MAX_TCP_MESSAGE};

    fn name(s: &str) -> NameBuf {
        NameBuf::from_ascii(s).expect("a name")
    }

    /// An upstream reply to `q` (type A) with `n` A records of TTL 300, an SOA in
    /// authority and an OPT record.
    fn upstream_reply(id: u16, q: &str, n: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let header = Header {
            id,
            response: true,
            recursion_desired: true,
            recursion_available: true,
            ..Header::default()
        };
        let mut w = MessageWriter::new(&mut buf, header);
        w.question(name(q).as_name(), RecordType::A, Class::IN);
        for i in 0..n {
            w.a(Owner::Question, 300, [192, 0, 2, i as u8].into());
        }
        w.set_section(Section::Authority);
        let zone = name("example.com.");
        w.soa(Owner::Name(zone.as_name()), 60, zone.as_name(), zone.as_name(), 1, 2, 3, 4, 5);
        w.set_edns(Some(EdnsResponse {
            udp_payload_size: 4096,
            extended_rcode: 0,
            version: 0,
            dnssec_ok: false,
        }));
        w.finish(usize::MAX);
        buf
    }

    fn client_query(id: u16, q: &str, edns: Option<u16>) -> Query {
        let mut packet = Vec::new();
        encode_query(&mut packet, id, name(q).as_name(), RecordType::A, edns, false);
        packet[2] &= !0x01; // RD off, to see it echoed as off
        Query::parse(&packet).expect("a query")
    }

    #[test]
    fn render_takes_the_clients_id_case_flags_and_edns() {
        let reply = upstream_reply(999, "www.example.com.", 2);
        let query = client_query(0x4242, "WwW.Example.COM.", None);
        let mut out = Vec::new();
        let (written, rcode) = render(&reply, 100, &query, &mut out, 512).expect("rendered");
        assert_eq!((rcode, written.truncated), (0, false));
        let header = Header::parse(&out).expect("a header");
        assert_eq!(header.id, 0x4242);
        assert!(header.response && header.recursion_available && !header.recursion_desired);
        assert!(!header.authoritative);
        // The client's spelling of the question.
        assert_eq!(&out[12..12 + query.name.as_wire().len()], query.name.as_wire());
        let msg = UpstreamResponse::parse(&out).expect("readable");
        let ttls: Vec<u32> = msg.answers().map(|r| r.expect("record").ttl).collect();
        assert_eq!(ttls, [200, 200]);
        assert_eq!(msg.authority().map(|r| r.expect("soa").ttl).collect::<Vec<_>>(), [0]);
        // No OPT for a client without EDNS.
        assert_eq!(msg.additional().count(), 0);

        let query = client_query(7, "www.example.com.", Some(1232));
        out.clear();
        render(&reply, 0, &query, &mut out, 1232).expect("rendered");
        let msg = UpstreamResponse::parse(&out).expect("readable");
        let opt: Vec<_> = msg.additional().map(|r| r.expect("opt")).collect();
        assert_eq!(opt.len(), 1);
        assert_eq!((opt[0].rtype, opt[0].class), (RecordType::OPT, Class(DEFAULT_EDNS_PAYLOAD)));
    }

    #[test]
    fn render_truncates_to_the_clients_size() {
        let reply = upstream_reply(1, "big.example.com.", 60);
        let query = client_query(2, "big.example.com.", None);
        let mut out = Vec::new();
        let (written, _) = render(&reply, 0, &query, &mut out, 512).expect("rendered");
        assert!(written.truncated && out.len() <= 512);
        assert!(Header::parse(&out).expect("header").truncated);
        out.clear();
        let (written, _) = render(&reply, 0, &query, &mut out, MAX_TCP_MESSAGE).expect("rendered");
        assert!(!written.truncated);
        assert_eq!(UpstreamResponse::parse(&out).expect("readable").answers().count(), 60);
    }

    #[test]
    fn replies_must_match_id_and_question() {
        let reply = upstream_reply(5, "a.example.", 1);
        let q = name("A.EXAMPLE.");
        assert!(matches(&reply, 5, (&q, RecordType::A, Class::IN)));
        assert!(!matches(&reply, 6, (&q, RecordType::A, Class::IN)));
        assert!(!matches(&reply, 5, (&q, RecordType::AAAA, Class::IN)));
        assert!(!matches(&reply, 5, (&name("b.example."), RecordType::A, Class::IN)));
        assert!(!matches(&reply[..11], 5, (&q, RecordType::A, Class::IN)));
        assert!(well_formed(&reply));
        assert!(!well_formed(&reply[..reply.len() - 3]));
    }

    #[test]
    fn render_never_panics_on_mangled_replies() {
        let seed = upstream_reply(1, "x.example.com.", 3);
        let query = client_query(2, "x.example.com.", Some(4096));
        let mut out = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut p = seed.clone();
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate(p.len() - (next() as usize) % 8);
            out.clear();
            let _ = render(&p, 1, &query, &mut out, 512);
        }
    }
}
