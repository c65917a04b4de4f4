//! [`Server`]: the sockets, bound up front, and the threads and tasks that serve
//! them.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pier_dns::Index;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::DnsConfig;
use crate::forward::Forwarder;
use crate::metrics::{Gauges, Metrics};
use crate::query::Shared;
use crate::{tcp, udp};
use pier_status_http as http;

/// How often an idle UDP worker looks whether the server was dropped.
const UDP_STOP_CHECK: Duration = Duration::from_millis(200);
/// How many times a free port (port 0) is looked for that is free for both UDP
/// and TCP.
const PORT_TRIES: usize = 16;

/// A socket that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("bind dns {proto} socket on {addr}")]
pub struct BindError {
    /// `udp`, `tcp` or `metrics`.
    pub proto: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// What the kernel said.
    #[source]
    pub source: std::io::Error,
}

/// The server could not start serving.
#[derive(Debug, thiserror::Error)]
#[error("start dns server: {what}")]
pub struct ServeError {
    /// What failed.
    pub what: &'static str,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A DNS server over bound sockets, answering from an index that someone else
/// keeps current ([`crate::watch_index`], or a test): bind with [`Server::bind`],
/// then [`Server::serve`].
pub struct Server {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    metrics_listener: Option<TcpListener>,
    shared: Arc<Shared>,
    tcp_connections: usize,
    tcp_idle_timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("udp", &self.udp.iter().filter_map(|s| s.local_addr().ok()).collect::<Vec<_>>())
            .field("tcp", &self.tcp.iter().filter_map(|s| s.local_addr().ok()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds every socket of `config` (UDP and TCP on each listen address, the
    /// same port for both when the port is 0; the metrics listener) without
    /// serving yet, and returns the DNS addresses as bound, one per listen
    /// address. Needs no runtime.
    ///
    /// # Errors
    ///
    /// If a socket cannot be bound (in use, a privileged port without the
    /// capability, an address not on this host).
    pub fn bind(
        config: DnsConfig,
        index: Arc<ArcSwap<Index>>,
    ) -> Result<(Server, Vec<SocketAddr>), BindError> {
        let workers = config.udp_workers.max(1);
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        for addr in &config.listen {
            let (sockets, listener, addr) = bind_pair(*addr, workers)?;
            udp.extend(sockets.into_iter().map(Arc::new));
            tcp.push(listener);
            bound.push(addr);
        }
        let metrics_listener = match config.metrics {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| BindError { proto: "metrics", addr, source })?,
            ),
            None => None,
        };
        // An upstream that is this server would forward to itself forever.
        let upstreams: Vec<SocketAddr> = config
            .upstreams
            .iter()
            .copied()
            .filter(|u| {
                let own = bound.contains(u) || config.listen.contains(u) || is_wildcard_self(&bound, *u);
                if own {
                    tracing::warn!(upstream = %u, "dropping an upstream that is this dns server");
                }
                !own
            })
            .collect();
        let server_label = match bound.first() {
            Some(a) if a.ip().is_unspecified() => format!("dns://:{}", a.port()),
            Some(a) => format!("dns://{a}"),
            None => "dns://".to_string(),
        };
        let metrics = Arc::new(Metrics::new(server_label, &upstreams));
        let forwarder = Forwarder::new(
            upstreams,
            config.upstream_timeout,
            config.cache_entries,
            config.max_concurrent_forwards.max(1),
            Arc::clone(&metrics),
        );
        let shared = Arc::new(Shared { index, forwarder, metrics });
        let server = Server {
            udp,
            tcp,
            metrics_listener,
            shared,
            tcp_connections: config.tcp_connections.max(1),
            tcp_idle_timeout: config.tcp_idle_timeout,
        };
        Ok((server, bound))
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until the future is dropped: one thread per UDP socket, a task per
    /// TCP listener and connection, the metrics endpoint. The UDP threads stop
    /// within 200 ms of the drop; queries waiting for upstreams finish on the
    /// runtime.
    ///
    /// Must run inside a Tokio runtime (forwarded queries and TCP run on it).
    ///
    /// # Errors
    ///
    /// If a thread cannot be started or a listener not handed to the runtime.
    pub async fn serve(self) -> Result<(), ServeError> {
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let runtime = tokio::runtime::Handle::current();
        // The UDP threads hold the TCP ports too, until the last of them exits, so
        // that no new server picks a port (see `bind_pair`) whose UDP sockets still
        // belong to a stopping one.
        let held: Vec<TcpListener> = self.tcp.iter().filter_map(|l| l.try_clone().ok()).collect();
        let held = Arc::new(held);
        for (i, socket) in self.udp.iter().enumerate() {
            let (socket, shared) = (Arc::clone(socket), Arc::clone(&self.shared));
            let (stop, runtime) = (Arc::clone(&stop.0), runtime.clone());
            let shard = self.shared.metrics.shard();
            let held = Arc::clone(&held);
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || {
                    udp::worker(socket, shared, runtime, stop, shard);
                    drop(held);
                })
                .map_err(|source| ServeError { what: "starting a udp thread", source })?;
        }
        drop(held);
        let mut tasks = JoinSet::new();
        let connections = Arc::new(Semaphore::new(self.tcp_connections));
        let tcp_shard = self.shared.metrics.shard();
        for listener in self.tcp {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| ServeError { what: "registering a tcp listener", source })?;
            tasks.spawn(tcp::serve(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(&tcp_shard),
                Arc::clone(&connections),
                self.tcp_idle_timeout,
            ));
        }
        if let Some(listener) = self.metrics_listener {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| ServeError { what: "registering the metrics listener", source })?;
            let shared = Arc::clone(&self.shared);
            tasks.spawn(http::serve(listener, move |path| endpoint(&shared, path)));
        }
        while tasks.join_next().await.is_some() {}
        // Only UDP: serve until dropped.
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// What the metrics listener answers.
fn endpoint(shared: &Shared, path: &str) -> http::Reply {
    let index = shared.index.load();
    match path {
        "/metrics" => {
            let (cache_success, cache_denial) = shared.forwarder.cache().len();
            let gauges = Gauges {
                cache_success,
                cache_denial,
                synced: index.is_synced(),
                services: index.service_count(),
            };
            http::Reply::metrics(shared.metrics.render(&gauges))
        }
        "/health" => http::Reply::ok("OK"),
        // CoreDNS's `ready` plugin: ready once the zone is synced.
        "/ready" if index.is_synced() => http::Reply::ok("OK"),
        "/ready" => http::Reply::unavailable("not synced with the API server yet"),
        _ => http::Reply::not_found(),
    }
}

/// Whether `upstream` reaches a wildcard listener of ours: an address of this
/// host (one that can be bound) on the port of a listener on `0.0.0.0` or `[::]`.
fn is_wildcard_self(bound: &[SocketAddr], upstream: SocketAddr) -> bool {
    bound.iter().any(|b| b.ip().is_unspecified() && b.port() == upstream.port())
        && UdpSocket::bind(SocketAddr::new(upstream.ip(), 0)).is_ok()
}

/// Stops the UDP threads when `serve`'s future is dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Binds a TCP listener and `workers` UDP sockets on one address. With port 0
/// TCP picks the port and UDP follows it, retrying when UDP has that port taken.
///
/// TCP goes first because Linux may hand a port 0 UDP bind with `SO_REUSEPORT` a
/// port that another `SO_REUSEPORT` socket of the same user holds, and the two
/// would then share the traffic; a TCP listener's port is its own.
fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<UdpSocket>, TcpListener, SocketAddr), BindError> {
    let mut last = None;
    let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
    for _ in 0..tries {
        let listener = bind_tcp(addr).map_err(|source| BindError { proto: "tcp", addr, source })?;
        let bound = listener.local_addr().map_err(|source| BindError { proto: "tcp", addr, source })?;
        let mut sockets = Vec::with_capacity(workers);
        for _ in 0..workers {
            match bind_udp(bound) {
                Ok(socket) => sockets.push(socket),
                Err(source) if addr.port() == 0 && source.kind() == std::io::ErrorKind::AddrInUse => {
                    last = Some(source);
                    break;
                }
                Err(source) => return Err(BindError { proto: "udp", addr: bound, source }),
            }
        }
        if sockets.len() == workers {
            return Ok((sockets, listener, bound));
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse));
    Err(BindError { proto: "udp", addr, source })
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // One socket per thread on the same port; the kernel spreads clients over them.
    socket.set_reuse_port(true)?;
    // Room for bursts while a thread is busy (the kernel caps it at rmem_max).
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn upstreams_that_are_this_server_are_recognised() {
        let wildcard = [addr("0.0.0.0:5353")];
        assert!(is_wildcard_self(&wildcard, addr("127.0.0.1:5353")));
        assert!(!is_wildcard_self(&wildcard, addr("127.0.0.1:53")), "another port");
        assert!(!is_wildcard_self(&wildcard, addr("192.0.2.1:5353")), "not an address of this host");
        assert!(!is_wildcard_self(&[addr("127.0.0.1:5353")], addr("127.0.0.2:5353")), "a specific listener");
    }

    #[test]
    fn port_zero_binds_udp_and_tcp_on_one_port() {
        let (udp, tcp, bound) = bind_pair(addr("127.0.0.1:0"), 3).expect("bound");
        assert_ne!(bound.port(), 0);
        assert_eq!(udp.len(), 3);
        for socket in &udp {
            assert_eq!(socket.local_addr().expect("addr"), bound);
        }
        assert_eq!(tcp.local_addr().expect("addr"), bound);
    }
}
