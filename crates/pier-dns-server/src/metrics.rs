//! Prometheus metrics under CoreDNS's names, so its dashboards and alerts read
//! them: requests by protocol, family and type, responses by rcode, request
//! duration, cache hits and misses, forwarded requests and responses.
//!
//! Counting is relaxed atomic adds into a [`Shard`]; each UDP thread has its own
//! (cache-line aligned, so two threads never write one line), the TCP and
//! forwarding tasks share one. Rendering sums the shards. No lock is taken on the
//! query path.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pier_dns::wire::RecordType;

/// The query types CoreDNS reports by name; any other is `other`.
const TYPES: [(&str, u16); 20] = [
    ("A", 1),
    ("AAAA", 28),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("SRV", 33),
    ("NAPTR", 35),
    ("DS", 43),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("NSEC3", 50),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("IXFR", 251),
    ("AXFR", 252),
    ("ANY", 255),
];
const N_TYPES: usize = TYPES.len() + 1;

/// Response codes 0 to 23 by name (RFC 6895 §2.3); any other is counted last.
const RCODES: [&str; 24] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "RCODE11",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
    "BADVERS",
    "BADKEY",
    "BADTIME",
    "BADMODE",
    "BADNAME",
    "BADALG",
    "BADTRUNC",
    "BADCOOKIE",
];
const N_RCODES: usize = RCODES.len() + 1;

/// CoreDNS's request duration buckets, `ExponentialBuckets(0.00025, 2, 16)`, in
/// nanoseconds.
const DURATION_BUCKETS_NS: [u64; 16] = [
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    4_000_000,
    8_000_000,
    16_000_000,
    32_000_000,
    64_000_000,
    128_000_000,
    256_000_000,
    512_000_000,
    1_024_000_000,
    2_048_000_000,
    4_096_000_000,
    8_192_000_000,
];

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Udp = 0,
    Tcp = 1,
}

/// Why an upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamErrorKind {
    /// No reply within the attempt's time.
    Timeout = 0,
    /// A socket error (`ECONNREFUSED` from an ICMP port unreachable, a reset).
    Network = 1,
    /// A reply that could not be read, or a TCP reply that did not match.
    BadReply = 2,
}
const UPSTREAM_ERROR_KINDS: [&str; 3] = ["timeout", "network", "bad_reply"];

fn type_index(qtype: RecordType) -> usize {
    TYPES.iter().position(|(_, t)| *t == qtype.0).unwrap_or(TYPES.len())
}

fn rcode_index(rcode: u16) -> usize {
    usize::from(rcode).min(RCODES.len())
}

/// A histogram in non-cumulative buckets (the last one past every bound).
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = DURATION_BUCKETS_NS.iter().position(|b| ns <= *b).unwrap_or(DURATION_BUCKETS_NS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }
}

/// The counters one thread writes.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Shard {
    /// By protocol, family (IPv4, IPv6) and type.
    requests: [[[AtomicU64; N_TYPES]; 2]; 2],
    responses: [AtomicU64; N_RCODES],
    duration: [Histogram; N_TYPES],
    /// Success, denial.
    cache_hits: [AtomicU64; 2],
    cache_misses: AtomicU64,
}

impl Shard {
    /// A query was read.
    pub(crate) fn request(&self, proto: Proto, ipv6: bool, qtype: RecordType) {
        self.requests[proto as usize][usize::from(ipv6)][type_index(qtype)].fetch_add(1, Relaxed);
    }

    /// A response was sent, `took` after its query was received.
    pub(crate) fn response(&self, qtype: RecordType, rcode: u16, took: Duration) {
        self.responses[rcode_index(rcode)].fetch_add(1, Relaxed);
        self.duration[type_index(qtype)].observe(took);
    }

    /// A response to a query that could not be read (FORMERR).
    pub(crate) fn unparsed_response(&self, rcode: u16) {
        self.responses[rcode_index(rcode)].fetch_add(1, Relaxed);
    }

    pub(crate) fn cache_hit(&self, denial: bool) {
        self.cache_hits[usize::from(denial)].fetch_add(1, Relaxed);
    }

    pub(crate) fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }
}

/// The counters of one upstream.
pub(crate) struct Upstream {
    to: SocketAddr,
    requests: AtomicU64,
    responses: [AtomicU64; N_RCODES],
    errors: [AtomicU64; UPSTREAM_ERROR_KINDS.len()],
}

impl Upstream {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn response(&self, rcode: u16) {
        self.responses[rcode_index(rcode)].fetch_add(1, Relaxed);
    }

    pub(crate) fn error(&self, kind: UpstreamErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }
}

/// Gauges read when rendering.
pub(crate) struct Gauges {
    pub(crate) cache_success: usize,
    pub(crate) cache_denial: usize,
    pub(crate) synced: bool,
    pub(crate) services: usize,
}

/// Every counter of one server.
pub(crate) struct Metrics {
    server: String,
    shards: Mutex<Vec<Arc<Shard>>>,
    upstreams: Box<[Upstream]>,
    forward_rejects: AtomicU64,
}

impl Metrics {
    /// `server` is CoreDNS's `server` label (`dns://:53`).
    pub(crate) fn new(server: String, upstreams: &[SocketAddr]) -> Metrics {
        Metrics {
            server,
            shards: Mutex::new(Vec::new()),
            upstreams: upstreams
                .iter()
                .map(|to| Upstream {
                    to: *to,
                    requests: AtomicU64::new(0),
                    responses: Default::default(),
                    errors: Default::default(),
                })
                .collect(),
            forward_rejects: AtomicU64::new(0),
        }
    }

    /// A new shard for one writer.
    pub(crate) fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::default());
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&shard));
        shard
    }

    /// The counters of upstream `i` (as in the forwarder's list).
    pub(crate) fn upstream(&self, i: usize) -> Option<&Upstream> {
        self.upstreams.get(i)
    }

    /// A query was refused a forwarding slot.
    pub(crate) fn forward_rejected(&self) {
        self.forward_rejects.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let shards: Vec<Arc<Shard>> = self.shards.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sum =
            |f: &dyn Fn(&Shard) -> &AtomicU64| -> u64 { shards.iter().map(|s| f(s).load(Relaxed)).sum() };
        let server = &self.server;
        let type_name = |t: usize| TYPES.get(t).map_or("other", |(n, _)| n);
        let rcode_name = |r: usize| RCODES.get(r).copied().unwrap_or("other");
        let mut out = String::with_capacity(16 * 1024);
        let o = &mut out;

        header(
            o,
            "coredns_dns_requests_total",
            "counter",
            "Counter of DNS requests made per zone, protocol and family.",
        );
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            for (f, family) in ["1", "2"].iter().enumerate() {
                for t in 0..N_TYPES {
                    let n = sum(&|s| &s.requests[p][f][t]);
                    if n > 0 {
                        let _ = writeln!(o, "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",view=\"\",proto=\"{proto}\",family=\"{family}\",type=\"{}\"}} {n}", type_name(t));
                    }
                }
            }
        }
        header(o, "coredns_dns_responses_total", "counter", "Counter of response status codes.");
        for r in 0..N_RCODES {
            let n = sum(&|s| &s.responses[r]);
            if n > 0 {
                let _ = writeln!(o, "coredns_dns_responses_total{{server=\"{server}\",zone=\".\",view=\"\",rcode=\"{}\",plugin=\"\"}} {n}", rcode_name(r));
            }
        }
        header(
            o,
            "coredns_dns_request_duration_seconds",
            "histogram",
            "Histogram of the time (in seconds) each request took per zone.",
        );
        for t in 0..N_TYPES {
            let counts: Vec<u64> =
                (0..=DURATION_BUCKETS_NS.len()).map(|b| sum(&|s| &s.duration[t].buckets[b])).collect();
            let count: u64 = counts.iter().sum();
            if count == 0 {
                continue;
            }
            let labels = format!("server=\"{server}\",zone=\".\",view=\"\",type=\"{}\"", type_name(t));
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS_NS.iter().zip(&counts) {
                cumulative += n;
                let _ = writeln!(
                    o,
                    "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e9
                );
            }
            let _ =
                writeln!(o, "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum_s = sum(&|s| &s.duration[t].sum_ns) as f64 / 1e9;
            let _ = writeln!(o, "coredns_dns_request_duration_seconds_sum{{{labels}}} {sum_s}");
            let _ = writeln!(o, "coredns_dns_request_duration_seconds_count{{{labels}}} {count}");
        }

        header(o, "coredns_cache_hits_total", "counter", "The count of cache hits.");
        for (i, kind) in ["success", "denial"].iter().enumerate() {
            let n = sum(&|s| &s.cache_hits[i]);
            let _ = writeln!(
                o,
                "coredns_cache_hits_total{{server=\"{server}\",type=\"{kind}\",zones=\".\",view=\"\"}} {n}"
            );
        }
        header(o, "coredns_cache_misses_total", "counter", "The count of cache misses.");
        let n = sum(&|s| &s.cache_misses);
        let _ = writeln!(o, "coredns_cache_misses_total{{server=\"{server}\",zones=\".\",view=\"\"}} {n}");
        header(o, "coredns_cache_entries", "gauge", "The number of elements in the cache.");
        for (kind, n) in [("success", gauges.cache_success), ("denial", gauges.cache_denial)] {
            let _ = writeln!(
                o,
                "coredns_cache_entries{{server=\"{server}\",type=\"{kind}\",zones=\".\",view=\"\"}} {n}"
            );
        }

        header(o, "coredns_forward_requests_total", "counter", "Counter of requests made per upstream.");
        for u in self.upstreams.iter() {
            let _ =
                writeln!(o, "coredns_forward_requests_total{{to=\"{}\"}} {}", u.to, u.requests.load(Relaxed));
        }
        header(
            o,
            "coredns_forward_responses_total",
            "counter",
            "Counter of responses received per upstream.",
        );
        for u in self.upstreams.iter() {
            for (r, count) in u.responses.iter().enumerate() {
                let n = count.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "coredns_forward_responses_total{{rcode=\"{}\",to=\"{}\"}} {n}",
                        rcode_name(r),
                        u.to
                    );
                }
            }
        }
        header(
            o,
            "coredns_forward_max_concurrent_rejects_total",
            "counter",
            "Counter of queries rejected because the concurrent forwarded queries were at maximum.",
        );
        let _ = writeln!(
            o,
            "coredns_forward_max_concurrent_rejects_total {}",
            self.forward_rejects.load(Relaxed)
        );
        header(
            o,
            "pier_dns_forward_upstream_errors_total",
            "counter",
            "Upstream attempts that failed, per upstream and reason.",
        );
        for u in self.upstreams.iter() {
            for (kind, count) in UPSTREAM_ERROR_KINDS.iter().zip(&u.errors) {
                let _ = writeln!(
                    o,
                    "pier_dns_forward_upstream_errors_total{{to=\"{}\",kind=\"{kind}\"}} {}",
                    u.to,
                    count.load(Relaxed)
                );
            }
        }

        header(
            o,
            "pier_dns_index_synced",
            "gauge",
            "1 once every watch of the API server has listed; names in the zone get SERVFAIL before.",
        );
        let _ = writeln!(o, "pier_dns_index_synced {}", u8::from(gauges.synced));
        header(o, "pier_dns_index_services", "gauge", "Services in the index.");
        let _ = writeln!(o, "pier_dns_index_services {}", gauges.services);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges { cache_success: 3, cache_denial: 1, synced: true, services: 7 }
    }

    #[test]
    fn shards_are_summed_and_named_as_coredns() {
        let m = Metrics::new("dns://:53".into(), &["10.0.0.2:53".parse().expect("addr")]);
        let (a, b) = (m.shard(), m.shard());
        a.request(Proto::Udp, false, RecordType::A);
        b.request(Proto::Udp, false, RecordType::A);
        b.request(Proto::Tcp, true, RecordType(99));
        a.response(RecordType::A, 3, Duration::from_micros(10));
        b.response(RecordType::A, 0, Duration::from_millis(3));
        b.unparsed_response(1);
        a.cache_hit(true);
        a.cache_miss();
        let up = m.upstream(0).expect("one upstream");
        up.request();
        up.response(0);
        up.error(UpstreamErrorKind::Timeout);
        m.forward_rejected();
        let text = m.render(&gauges());
        for line in [
            "coredns_dns_requests_total{server=\"dns://:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 2",
            "coredns_dns_requests_total{server=\"dns://:53\",zone=\".\",view=\"\",proto=\"tcp\",family=\"2\",type=\"other\"} 1",
            "coredns_dns_responses_total{server=\"dns://:53\",zone=\".\",view=\"\",rcode=\"NXDOMAIN\",plugin=\"\"} 1",
            "coredns_dns_responses_total{server=\"dns://:53\",zone=\".\",view=\"\",rcode=\"FORMERR\",plugin=\"\"} 1",
            "coredns_dns_request_duration_seconds_bucket{server=\"dns://:53\",zone=\".\",view=\"\",type=\"A\",le=\"0.00025\"} 1",
            "coredns_dns_request_duration_seconds_bucket{server=\"dns://:53\",zone=\".\",view=\"\",type=\"A\",le=\"0.002\"} 1",
            "coredns_dns_request_duration_seconds_bucket{server=\"dns://:53\",zone=\".\",view=\"\",type=\"A\",le=\"0.004\"} 2",
            "coredns_dns_request_duration_seconds_count{server=\"dns://:53\",zone=\".\",view=\"\",type=\"A\"} 2",
            "coredns_cache_hits_total{server=\"dns://:53\",type=\"denial\",zones=\".\",view=\"\"} 1",
            "coredns_cache_misses_total{server=\"dns://:53\",zones=\".\",view=\"\"} 1",
            "coredns_cache_entries{server=\"dns://:53\",type=\"success\",zones=\".\",view=\"\"} 3",
            "coredns_forward_requests_total{to=\"10.0.0.2:53\"} 1",
            "coredns_forward_responses_total{rcode=\"NOERROR\",to=\"10.0.0.2:53\"} 1",
            "coredns_forward_max_concurrent_rejects_total 1",
            "pier_dns_forward_upstream_errors_total{to=\"10.0.0.2:53\",kind=\"timeout\"} 1",
            "pier_dns_index_synced 1",
            "pier_dns_index_services 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
