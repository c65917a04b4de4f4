//! Clearing stale conntrack entries of UDP Services.
//!
//! A UDP "connection" lives on in conntrack for as long as packets keep coming (30 s
//! unreplied, 120 s once seen both ways), and every packet of it goes to the endpoint
//! its first packet was DNAT'ed to. When that endpoint goes away, a client that keeps
//! sending from the same port (a DNS resolver does) is blackholed until the entry
//! times out. So when an endpoint is removed, the proxy deletes the entries whose
//! original destination is the Service (ClusterIP, load balancer or external IP, and
//! port; or the NodePort) and whose reply source is that endpoint, as kube-proxy does
//! in `pkg/proxy/conntrack/cleanup.go`.
//!
//! [`NetlinkConntrack`] speaks ctnetlink (`NETLINK_NETFILTER`) directly: one dump of
//! the family's table, filtered here, then one `IPCTNL_MSG_CT_DELETE` per match
//! naming the entry's original tuple and id. No `conntrack` program is needed.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use async_trait::async_trait;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use pier_sandbox::netlink::in_netns;
use pier_sandbox::{Netns, NetnsName};

use crate::ctnetlink::{self, proto, ConntrackEntry, DecodeError, IpFamily, Reply};

/// Which entries to delete: all given fields must match. `reply_src` is the endpoint
/// that was removed; the original destination narrows it to one Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowFilter {
    /// IP protocol number (see [`proto`]).
    pub protocol: u8,
    /// The original destination address: a ClusterIP, load balancer IP or external IP.
    pub orig_dst: Option<IpAddr>,
    /// The original destination port: the Service port, or the NodePort.
    pub orig_dst_port: Option<u16>,
    /// The reply source: the endpoint the flow was DNAT'ed to.
    pub reply_src: IpAddr,
}

impl FlowFilter {
    /// UDP flows sent to `service_ip:port` and answered by `endpoint` (kube-proxy's
    /// `filterForNAT`, narrowed to the port).
    pub fn udp_to_service(service_ip: IpAddr, port: u16, endpoint: IpAddr) -> Self {
        FlowFilter {
            protocol: proto::UDP,
            orig_dst: Some(service_ip),
            orig_dst_port: Some(port),
            reply_src: endpoint,
        }
    }

    /// UDP flows sent to `node_port` on any node address and answered by `endpoint`
    /// (kube-proxy's `filterForPortNAT`).
    pub fn udp_to_node_port(node_port: u16, endpoint: IpAddr) -> Self {
        FlowFilter {
            protocol: proto::UDP,
            orig_dst: None,
            orig_dst_port: Some(node_port),
            reply_src: endpoint,
        }
    }

    /// The family of the entries this can match.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.reply_src)
    }

    /// Whether `entry` is one to delete.
    pub fn matches(&self, entry: &ConntrackEntry) -> bool {
        let o = &entry.original;
        o.protocol == self.protocol
            && self.orig_dst.is_none_or(|ip| o.dst == ip)
            && self.orig_dst_port.is_none_or(|p| o.dst_port == p)
            && entry.reply.src == self.reply_src
    }
}

/// Why listing or clearing conntrack entries failed. Every variant may be retried;
/// [`ConntrackError::Partial`] says which deletions failed while others succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The netlink socket could not be opened (no conntrack support, or not root).
    #[error("open a netfilter netlink socket")]
    Socket(#[source] io::Error),
    /// The named network namespace could not be entered.
    #[error("enter network namespace {netns}")]
    Netns {
        /// The namespace.
        netns: NetnsName,
        /// The cause.
        #[source]
        source: pier_sandbox::OpError,
    },
    /// Sending, receiving, or the kernel's answer to a dump failed.
    #[error("{op} conntrack entries")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cause (an errno from the kernel for refused requests).
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("decode a ctnetlink message")]
    Decode(#[source] DecodeError),
    /// Some deletions failed (entries already gone are not failures).
    #[error("deleted {deleted} conntrack entries, {} deletions failed", failures.len())]
    Partial {
        /// Entries that were deleted.
        deleted: usize,
        /// The entries that could not be deleted, with the kernel's errno.
        failures: Vec<(ConntrackEntry, io::Error)>,
    },
    /// The blocking thread that did the work panicked or was cancelled.
    #[error("the thread clearing conntrack entries did not finish")]
    Join,
}

/// Lists and deletes conntrack entries in one network namespace.
#[async_trait]
pub trait Conntrack: Send + Sync {
    /// Every entry of `family`.
    ///
    /// # Errors
    ///
    /// [`ConntrackError`] when the table cannot be read.
    async fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError>;

    /// Deletes every entry that matches any of `filters`; returns how many were
    /// deleted (entries that vanished meanwhile do not count, and are no error).
    ///
    /// # Errors
    ///
    /// [`ConntrackError::Partial`] when some deletions failed, others as for `list`.
    async fn clear(&self, filters: &[FlowFilter]) -> Result<usize, ConntrackError>;
}

/// Size of the receive buffer: the kernel fills dump datagrams up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;
const ENOENT: i32 = 2;

/// A ctnetlink socket bound in one namespace, with its sequence numbers.
struct CtSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl CtSocket {
    fn open() -> Result<Self, ConntrackError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Socket)?;
        socket.bind_auto().map_err(ConntrackError::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(ConntrackError::Socket)?;
        Ok(CtSocket { socket, seq: 0, buf: Vec::with_capacity(RECV_BUF) })
    }

    fn send(&mut self, msg: &[u8], op: &'static str) -> Result<(), ConntrackError> {
        self.socket.send(msg, 0).map(drop).map_err(|source| ConntrackError::Io { op, source })
    }

    fn recv(&mut self, op: &'static str) -> Result<Vec<Reply>, ConntrackError> {
        self.buf.clear();
        self.buf.reserve(RECV_BUF);
        // MSG_TRUNC makes recv return the datagram's real length, so a cut one is seen.
        let n = self
            .socket
            .recv(&mut self.buf, libc::MSG_TRUNC)
            .map_err(|source| ConntrackError::Io { op, source })?;
        if n > self.buf.len() {
            let source =
                io::Error::other(format!("a {n}-byte message did not fit the {RECV_BUF}-byte buffer"));
            return Err(ConntrackError::Io { op, source });
        }
        ctnetlink::parse(&self.buf[..n]).map_err(ConntrackError::Decode)
    }

    fn dump(&mut self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        self.seq += 1;
        self.send(&ctnetlink::dump_request(self.seq, family), "request a dump of")?;
        let mut entries = Vec::new();
        loop {
            for reply in self.recv("read the dump of")? {
                match reply {
                    Reply::Entry(e) => entries.push(e),
                    Reply::Done => return Ok(entries),
                    Reply::Ack { errno, .. } if errno != 0 => {
                        let source = io::Error::from_raw_os_error(errno);
                        return Err(ConntrackError::Io { op: "dump", source });
                    }
                    Reply::Ack { .. } | Reply::Other => {}
                }
            }
        }
    }

    /// Deletes one entry: `Ok(false)` when it was gone already.
    fn delete(&mut self, entry: &ConntrackEntry) -> Result<bool, io::Error> {
        self.seq += 1;
        let seq = self.seq;
        self.socket.send(&ctnetlink::delete_request(seq, entry), 0)?;
        loop {
            let replies = self.recv("read the deletion of").map_err(io::Error::other)?;
            for reply in replies {
                match reply {
                    Reply::Ack { seq: s, errno: 0 } if s == seq => return Ok(true),
                    Reply::Ack { seq: s, errno: ENOENT } if s == seq => return Ok(false),
                    Reply::Ack { seq: s, errno } if s == seq => {
                        return Err(io::Error::from_raw_os_error(errno))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The real [`Conntrack`], over ctnetlink; needs root (`CAP_NET_ADMIN`).
///
/// [`NetlinkConntrack::new`] works in the caller's network namespace (the thread's
/// that opens the socket); [`NetlinkConntrack::in_netns`] opens its socket from a
/// short-lived thread inside `/run/netns/<name>`, and a netlink socket stays bound to
/// the namespace it was opened in. The async methods run on tokio's blocking pool.
#[derive(Debug, Clone, Default)]
pub struct NetlinkConntrack {
    netns: Option<NetnsName>,
}

impl NetlinkConntrack {
    /// Entries of the caller's network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries of the named network namespace `/run/netns/<netns>`.
    pub fn in_netns(netns: NetnsName) -> Self {
        NetlinkConntrack { netns: Some(netns) }
    }

    fn open(&self) -> Result<CtSocket, ConntrackError> {
        match &self.netns {
            None => CtSocket::open(),
            Some(name) => in_netns(&Netns::Named(name.clone()), || Ok(CtSocket::open()))
                .map_err(|source| ConntrackError::Netns { netns: name.clone(), source })?,
        }
    }

    /// [`Conntrack::list`], blocking.
    ///
    /// # Errors
    ///
    /// As [`Conntrack::list`].
    pub fn list_blocking(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        self.open()?.dump(family)
    }

    /// [`Conntrack::clear`], blocking.
    ///
    /// # Errors
    ///
    /// As [`Conntrack::clear`].
    pub fn clear_blocking(&self, filters: &[FlowFilter]) -> Result<usize, ConntrackError> {
        if filters.is_empty() {
            return Ok(0);
        }
        let mut socket = self.open()?;
        let families: BTreeSet<IpFamily> = filters.iter().map(FlowFilter::family).collect();
        let (mut deleted, mut failures) = (0, Vec::new());
        for family in families {
            // The dump must be read to its end before the socket can send anything
            // else, so the matches are collected first and deleted afterwards.
            let doomed: Vec<ConntrackEntry> =
                socket.dump(family)?.into_iter().filter(|e| filters.iter().any(|f| f.matches(e))).collect();
            for entry in doomed {
                match socket.delete(&entry) {
                    Ok(true) => deleted += 1,
                    Ok(false) => {}
                    Err(e) => failures.push((entry, e)),
                }
            }
        }
        if failures.is_empty() {
            Ok(deleted)
        } else {
            Err(ConntrackError::Partial { deleted, failures })
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConntrackError> + Send + 'static,
) -> Result<T, ConntrackError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ConntrackError::Join)?
}

#[async_trait]
impl Conntrack for NetlinkConntrack {
    async fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        let this = self.clone();
        blocking(move || this.list_blocking(family)).await
    }

    async fn clear(&self, filters: &[FlowFilter]) -> Result<usize, ConntrackError> {
        let (this, filters) = (self.clone(), filters.to_vec());
        blocking(move || this.clear_blocking(&filters)).await
    }
}

/// The test [`Conntrack`]: lists the entries it was given, and `clear` removes the
/// matching ones and records the filters. Clones share one record.
#[derive(Debug, Default, Clone)]
pub struct RecordingConntrack {
    inner: std::sync::Arc<std::sync::Mutex<RecordedCt>>,
}

#[derive(Debug, Default)]
struct RecordedCt {
    entries: Vec<ConntrackEntry>,
    cleared: Vec<Vec<FlowFilter>>,
}

impl RecordingConntrack {
    /// A recorder with no entries.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordedCt> {
        // A test that panicked while holding the lock has failed already.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an entry to the table.
    pub fn insert(&self, entry: ConntrackEntry) {
        self.lock().entries.push(entry);
    }

    /// The filters of every `clear` call so far, in order.
    pub fn cleared(&self) -> Vec<Vec<FlowFilter>> {
        self.lock().cleared.clone()
    }
}

#[async_trait]
impl Conntrack for RecordingConntrack {
    async fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        Ok(self.lock().entries.iter().filter(|e| IpFamily::of(e.original.src) == family).copied().collect())
    }

    async fn clear(&self, filters: &[FlowFilter]) -> Result<usize, ConntrackError> {
        let mut r = self.lock();
        r.cleared.push(filters.to_vec());
        let before = r.entries.len();
        r.entries.retain(|e| !filters.iter().any(|f| f.matches(e)));
        Ok(before - r.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctnetlink::Tuple;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// A flow from `client` to `dst:dport`, DNAT'ed to `endpoint:5353`.
    fn flow(protocol: u8, dst: &str, dport: u16, endpoint: &str) -> ConntrackEntry {
        let client = ip("10.244.0.5");
        ConntrackEntry {
            original: Tuple { src: client, dst: ip(dst), protocol, src_port: 40000, dst_port: dport },
            reply: Tuple { src: ip(endpoint), dst: client, protocol, src_port: 5353, dst_port: 40000 },
            zone: 0,
            id: None,
        }
    }

    #[test]
    fn service_filters_match_destination_port_protocol_and_endpoint() {
        let f = FlowFilter::udp_to_service(ip("10.96.0.10"), 53, ip("10.244.1.7"));
        assert!(f.matches(&flow(proto::UDP, "10.96.0.10", 53, "10.244.1.7")));
        assert!(!f.matches(&flow(proto::UDP, "10.96.0.10", 53, "10.244.1.8")), "another endpoint");
        assert!(!f.matches(&flow(proto::UDP, "10.96.0.11", 53, "10.244.1.7")), "another service");
        assert!(!f.matches(&flow(proto::UDP, "10.96.0.10", 54, "10.244.1.7")), "another port");
        assert!(!f.matches(&flow(proto::TCP, "10.96.0.10", 53, "10.244.1.7")), "TCP");
        assert_eq!(f.family(), IpFamily::V4);
    }

    #[test]
    fn node_port_filters_match_any_node_address() {
        let f = FlowFilter::udp_to_node_port(30053, ip("10.244.1.7"));
        assert!(f.matches(&flow(proto::UDP, "172.30.0.10", 30053, "10.244.1.7")));
        assert!(f.matches(&flow(proto::UDP, "172.30.0.11", 30053, "10.244.1.7")));
        assert!(!f.matches(&flow(proto::UDP, "172.30.0.10", 30054, "10.244.1.7")));
    }

    #[tokio::test]
    async fn the_recorder_clears_what_matches() {
        let ct = RecordingConntrack::new();
        ct.insert(flow(proto::UDP, "10.96.0.10", 53, "10.244.1.7"));
        ct.insert(flow(proto::UDP, "10.96.0.10", 53, "10.244.1.8"));
        let f = FlowFilter::udp_to_service(ip("10.96.0.10"), 53, ip("10.244.1.7"));
        assert_eq!(ct.clear(&[f]).await.expect("clear"), 1);
        assert_eq!(ct.list(IpFamily::V4).await.expect("list").len(), 1);
        assert_eq!(ct.cleared(), [vec![f]]);
    }
}
