//! The runtime of Pier's cluster DNS server: sockets, threads, upstreams, the
//! cache, the API server watches and metrics, around the pure answers of
//! [`pier_dns`]. [`run`] is the whole server as the node runs it; [`Server`] is the
//! serving half alone, over an index that the caller keeps (tests, benchmarks).
//!
//! # Serving
//!
//! Every listen address gets [`DnsConfig::udp_workers`] UDP sockets on one port
//! (`SO_REUSEPORT`, the kernel spreading clients over them by address and port),
//! each served by its own OS thread blocking in `recvmmsg`, and a TCP listener on
//! the same port. A UDP thread reads every query already queued (up to 32) in one
//! call and sends their answers in one `sendmmsg`, so that a backlog (the thread
//! held up) is worked off at a fraction of the per-datagram cost. It handles each
//! query start to end without allocating or spawning anything: parse
//! ([`pier_dns::Query::parse`]), answer from the current index
//! ([`pier_dns::answer()`]), encode into the thread's reused buffer for that slot.
//! Malformed queries get FORMERR when they have a readable header, else nothing.
//! (`SO_REUSEPORT` also lets a second copy of the server, run by the same user on
//! the same port, share the traffic: run one per node.)
//!
//! Measured with dnsperf (`examples/serve.rs`; 10 000 Services, A queries, the
//! server and dnsperf each pinned to one of the machine's two cores), one UDP
//! thread answered 131k queries per second using 0.92 of its core (about 142k per
//! core-second); a Tokio `UdpSocket` loop doing the same work was as fast within
//! the noise (129k at 0.90), and unbound 1.17 serving the same records as
//! `local-data` 101k at 0.79 (about 128k). Threads win on isolation rather than
//! speed: the answer path never waits behind the runtime that the forwarder, TCP
//! and the watches share.
//!
//! TCP connections are tasks: RFC 7766 framing, several queries per connection
//! answered in order (a forwarded query holds up the ones behind it), an idle
//! timeout, a bounded number of connections.
//!
//! # Forwarding and the cache
//!
//! Names outside the cluster zone ([`pier_dns::Answer::Forward`]), autopath's
//! last step ([`pier_dns::Answer::AutopathForward`]) and ExternalName targets
//! outside the zone ([`pier_dns::Records::chase`]) go to the upstreams through a
//! bounded cache (CLOCK eviction, 16 shards): a cache hit is answered on the UDP
//! thread; a miss becomes a task that asks the upstreams (UDP from a fresh port
//! with a random id, TCP when truncated, the next upstream after a timeout or an
//! error, SERVFAIL when none answers) and sends the response from the same socket.
//! Upstream replies are stored as received and rewritten for each client (its id,
//! question and EDNS, TTLs aged, cut to its size with TC). Positive answers live
//! for their smallest TTL, negative ones for their SOA's (RFC 2308).
//!
//! # Keeping the index current
//!
//! [`watch_index`] watches Services, EndpointSlices, Namespaces and Pods in all
//! namespaces and applies each event to a working copy of the [`pier_dns::Index`]
//! (cheap: it copies only the namespace and address shards it touches), then
//! publishes the copy through an [`arc_swap::ArcSwap`]: readers never wait, and a
//! new Service answers as soon as its watch event arrives. Events already waiting
//! are applied together and published once. Until every watch has listed, the
//! served index is unsynced and names in the zone get SERVFAIL.
//!
//! # Metrics
//!
//! `/metrics` on [`DnsConfig::metrics`] has CoreDNS's names
//! (`coredns_dns_requests_total`, `coredns_dns_responses_total`,
//! `coredns_dns_request_duration_seconds`, `coredns_cache_hits_total`,
//! `coredns_cache_misses_total`, `coredns_forward_requests_total`,
//! `coredns_forward_responses_total`, ...) counted with relaxed atomics in
//! per-thread shards; `/health` and `/ready` answer as CoreDNS's plugins do.
//!
//! # Example
//!
//! A server over an index built by hand, answering one query:
//!
//! ```
//! use std::sync::Arc;
//! use arc_swap::ArcSwap;
//! use pier_dns::wire::{encode_query, NameBuf, RecordType};
//! use pier_dns::{Config, Index};
//! use pier_dns_server::{DnsConfig, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let index = Index::builder(Config::default()).expect("a valid zone").build();
//! let config = DnsConfig { listen: vec!["127.0.0.1:0".parse().unwrap()], ..DnsConfig::default() };
//! let (server, addrs) = Server::bind(config, Arc::new(ArcSwap::from_pointee(index))).expect("bound");
//! tokio::spawn(server.serve());
//!
//! let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
//! let mut query = Vec::new();
//! let name = NameBuf::from_ascii("dns-version.cluster.local.").unwrap();
//! encode_query(&mut query, 7, name.as_name(), RecordType::TXT, None, false);
//! client.send_to(&query, addrs[0]).unwrap();
//! let mut reply = [0u8; 512];
//! let n = tokio::task::spawn_blocking(move || client.recv(&mut reply).map(|n| reply[..n].to_vec()))
//!     .await
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(&n[..2], &[0, 7]);
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod config;
mod forward;
mod metrics;
mod query;
mod server;
mod tcp;
mod udp;
mod watch;

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use pier_dns::Index;

pub use config::{upstreams_from_resolv_conf, DnsConfig, ResolvConfError, DNS_PORT, METRICS_PORT};
pub use server::{BindError, ServeError, Server};
pub use watch::watch_index;

/// Runs the cluster DNS server until the future is dropped: binds
/// `config.listen` (UDP and TCP) and the metrics address, watches the API server
/// through `client` ([`watch_index`]; it needs list and watch on Services,
/// EndpointSlices, Namespaces and Pods in all namespaces) and serves.
///
/// # Errors
///
/// If the zone is invalid, a socket cannot be bound, or serving or the watches
/// stop.
pub async fn run(client: kube::Client, config: DnsConfig) -> anyhow::Result<()> {
    let index = Index::unsynced(config.index.clone()).context("the cluster dns zone")?;
    let index = Arc::new(ArcSwap::from_pointee(index));
    let upstreams = config.upstreams.clone();
    let (server, addrs) = Server::bind(config, Arc::clone(&index))?;
    tracing::info!(?addrs, ?upstreams, metrics = ?server.metrics_addr(), "cluster dns listening");
    tokio::select! {
        served = server.serve() => served.context("serving cluster dns")?,
        watched = watch_index(client, index) => watched?,
    }
    anyhow::bail!("the cluster dns server stopped")
}
