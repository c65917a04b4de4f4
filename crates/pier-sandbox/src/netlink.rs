//! The real [`NetApplier`]: blocking rtnetlink requests for links, addresses and
//! routes; `nix` for namespaces; `/proc/sys` for sysctls.
//!
//! Namespaces are switched per thread: a netlink socket for a namespace is opened (and
//! a sysctl written) on a short-lived thread that has `setns`'d into it. A socket stays
//! bound to the namespace it was created in, so requests afterwards go out from the
//! caller's thread, and the caller's own threads never change namespace.
//!
//! Requests are plain blocking send/receive pairs. A pod's network is a dozen small
//! requests that the kernel answers in microseconds; routing each through an async
//! connection task cost a scheduler round trip per request, which under a burst of
//! pod starts queued behind everything else the node does.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use crate::apply::{NetApplier, OpError};
use crate::names::{IfName, NetnsName};
use crate::plan::{NetOp, Netns};

/// Where persistent namespaces are bound, as with `ip netns`.
pub const NETNS_DIR: &str = "/run/netns";

/// `/run/netns/<name>`.
pub fn netns_path(name: &NetnsName) -> PathBuf {
    Path::new(NETNS_DIR).join(name.as_str())
}

fn sys(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OpError {
    let path = path.to_path_buf();
    move |source| OpError::Sys { op, path, source }
}

fn open_netns(name: &NetnsName) -> Result<File, OpError> {
    File::open(netns_path(name)).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            OpError::NoSuchNetns(name.clone())
        } else {
            OpError::Sys { op: "open", path: netns_path(name), source: e }
        }
    })
}

/// Runs `f` on a new thread that is inside namespace `ns` (or the caller's own).
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> Result<T, OpError> + Send) -> Result<T, OpError> {
    let fd = match ns {
        Netns::Host => None,
        Netns::Named(name) => Some(open_netns(name)?),
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            if let (Some(fd), Netns::Named(name)) = (fd, ns) {
                setns(&fd, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| sys("setns into", &netns_path(name))(e.into()))?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(OpError::Sys {
                op: "join namespace thread for",
                path: PathBuf::from(format!("{ns:?}")),
                source: io::Error::other("thread panicked"),
            })
        })
    })
}

/// Creates `/run/netns/<name>` bound to a new network namespace, as `ip netns add`.
///
/// Fails with [`OpError::NetnsExists`] if the name is taken.
pub fn create_netns(name: &NetnsName) -> Result<(), OpError> {
    let dir = Path::new(NETNS_DIR);
    fs::create_dir_all(dir).map_err(sys("create directory", dir))?;
    let path = netns_path(name);
    // create_new: the name is ours only if we made the file.
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(OpError::NetnsExists(name.clone())),
        Err(e) => return Err(sys("create", &path)(e)),
    }
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), OpError> {
            // unshare affects only this thread, which ends right after.
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| sys("unshare network namespace for", &path)(e.into()))?;
            mount(Some("/proc/thread-self/ns/net"), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| sys("bind namespace onto", &path)(e.into()))
        })
        .join()
        .unwrap_or_else(|_| Err(sys("create namespace", &path)(io::Error::other("thread panicked"))))
    });
    if result.is_err() {
        // Remove the empty file we made; nothing is mounted on it.
        let _ = fs::remove_file(&path);
    }
    result
}

/// Unbinds and removes `/run/netns/<name>`; succeeds if it does not exist. The
/// namespace itself ends when no process or socket uses it any more.
pub fn delete_netns(name: &NetnsName) -> Result<(), OpError> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point, e.g. a file left by a crash between create and bind.
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(sys("unmount", &path)(e.into())),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sys("remove", &path)(e)),
    }
}

/// Writes `/proc/sys/<key>` inside a named namespace. `/proc/sys/net` shows the
/// network namespace of the thread that opens it, so this never touches the host's.
///
/// The `net.bridge.*` keys exist only while the host has bridge netfilter
/// (`br_netfilter`) loaded; loading a kernel module would change the whole machine, so
/// without it they are skipped (the service proxy reports what it then cannot do).
fn write_sysctl(ns: &NetnsName, key: &crate::plan::SysctlKey, value: &str) -> Result<(), OpError> {
    let path = Path::new("/proc/sys").join(key.proc_path());
    let optional = key.proc_path().starts_with("net/bridge/");
    in_netns(&Netns::Named(ns.clone()), || match fs::write(&path, value) {
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(sys("write sysctl", &path)),
    })
}

/// The netlink [`NetApplier`]. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); every call
/// blocks, so async callers run plans on a blocking thread.
#[derive(Debug, Default)]
pub struct NetlinkApplier {
    /// One socket per namespace, opened on first use: opening one in another
    /// namespace means a thread that enters it.
    sockets: Mutex<HashMap<Netns, Arc<Mutex<RouteSocket>>>>,
}

impl NetlinkApplier {
    /// A new applier. Sockets are kept per namespace and dropped when this applier
    /// adds or deletes that namespace, so a namespace made again under the same name is
    /// never confused with the old one.
    pub fn new() -> Self {
        Self::default()
    }

    fn socket(&self, ns: &Netns) -> Result<Arc<Mutex<RouteSocket>>, OpError> {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = sockets.get(ns) {
            return Ok(Arc::clone(s));
        }
        let socket = Arc::new(Mutex::new(in_netns(ns, RouteSocket::open)?));
        sockets.insert(ns.clone(), Arc::clone(&socket));
        Ok(socket)
    }

    /// Sends `msg` in `ns` and returns the kernel's replies (none for most changes).
    fn request(
        &self,
        ns: &Netns,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, OpError> {
        let socket = self.socket(ns)?;
        let mut socket = socket.lock().unwrap_or_else(PoisonError::into_inner);
        socket.request(msg, flags)
    }

    /// A change: answered by an ack or an error.
    fn change(&self, ns: &Netns, msg: RouteNetlinkMessage, flags: u16) -> Result<(), OpError> {
        self.request(ns, msg, flags).map(drop)
    }

    fn link_index(&self, ns: &Netns, name: &IfName) -> Result<Option<u32>, OpError> {
        let mut query = LinkMessage::default();
        query.attributes.push(LinkAttribute::IfName(name.as_str().to_string()));
        match self.request(ns, RouteNetlinkMessage::GetLink(query), NLM_F_REQUEST) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(OpError::Netlink(e)) if errno(&e) == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn need_index(&self, ns: &Netns, name: &IfName) -> Result<u32, OpError> {
        self.link_index(ns, name)?.ok_or_else(|| OpError::NoSuchLink { ns: ns.clone(), name: name.clone() })
    }

    fn forget(&self, name: &NetnsName) {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).remove(&Netns::Named(name.clone()));
    }
}

const CREATE: u16 = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
const SET: u16 = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;

/// A blocking `NETLINK_ROUTE` socket, bound to the namespace it was opened in.
#[derive(Debug)]
struct RouteSocket {
    socket: Socket,
    seq: u32,
}

impl RouteSocket {
    fn open() -> Result<Self, OpError> {
        let fail =
            |e| OpError::Sys { op: "open netlink socket", path: PathBuf::from("NETLINK_ROUTE"), source: e };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends one request with `flags` (plus ack) and collects its replies until the
    /// kernel's ack, or fails with the kernel's error.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, OpError> {
        let io =
            |op: &'static str| move |e| OpError::Sys { op, path: PathBuf::from("NETLINK_ROUTE"), source: e };
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_ACK;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0).map_err(io("send netlink request"))?;

        let mut replies = Vec::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            let n = self.socket.recv(&mut buf, 0).map_err(io("receive netlink reply"))?;
            let mut offset = 0;
            while offset < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| io("decode netlink reply")(io::Error::other(e.to_string())))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // an answer to an earlier, abandoned request
                }
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return Err(OpError::Netlink(rtnetlink::Error::NetlinkError(e)))
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

impl NetApplier for NetlinkApplier {
    fn apply(&self, op: &NetOp) -> Result<(), OpError> {
        match op {
            NetOp::AddNetns { name } => {
                self.forget(name);
                create_netns(name)
            }
            NetOp::DelNetns { name } => {
                self.forget(name);
                delete_netns(name)
            }
            NetOp::Sysctl { ns, key, value } => write_sysctl(ns, key, value),
            NetOp::AddBridge { ns, name } => {
                // Not LinkBridge::new, which also sets the link up: up is its own step.
                let msg = LinkMessageBuilder::<LinkBridge>::new(name.as_str()).build();
                self.change(ns, RouteNetlinkMessage::NewLink(msg), CREATE)
            }
            NetOp::AddVeth { ns, name, peer } => {
                let msg = LinkVeth::new(name.as_str(), peer.as_str()).build();
                self.change(ns, RouteNetlinkMessage::NewLink(msg), CREATE)
            }
            NetOp::AddVethInto { ns, name, peer, peer_ns } => {
                // `target` stays open until the request has been answered.
                let target = open_netns(peer_ns)?;
                let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(peer.as_str().to_string())
                    .setns_by_fd(target.as_raw_fd())
                    .build();
                let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(name.as_str().to_string())
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
                    .build();
                self.change(ns, RouteNetlinkMessage::NewLink(msg), CREATE)
            }
            NetOp::MoveLink { ns, name, to } => {
                let idx = self.need_index(ns, name)?;
                let target = open_netns(to)?;
                let msg = LinkUnspec::new_with_index(idx).setns_by_fd(target.as_raw_fd()).build();
                self.change(ns, RouteNetlinkMessage::SetLink(msg), SET)
            }
            NetOp::RenameLink { ns, name, new_name } => {
                let idx = self.need_index(ns, name)?;
                let msg = LinkUnspec::new_with_index(idx).name(new_name.as_str()).build();
                self.change(ns, RouteNetlinkMessage::SetLink(msg), SET)
            }
            NetOp::AddAddr { ns, dev, addr } => {
                let idx = self.need_index(ns, dev)?;
                let msg = AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(idx)
                    .address(addr.addr(), addr.prefix())
                    .build();
                self.change(ns, RouteNetlinkMessage::NewAddress(msg), CREATE)
            }
            NetOp::DelAddr { ns, dev, addr } => {
                let idx = self.need_index(ns, dev)?;
                let msg = AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(idx)
                    .address(addr.addr(), addr.prefix())
                    .build();
                match self.change(ns, RouteNetlinkMessage::DelAddress(msg), NLM_F_REQUEST) {
                    // Not there: already removed.
                    Err(OpError::Netlink(e))
                        if errno(&e) == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
            NetOp::LinkUp { ns, dev } => {
                let idx = self.need_index(ns, dev)?;
                let msg = LinkUnspec::new_with_index(idx).up().build();
                self.change(ns, RouteNetlinkMessage::SetLink(msg), SET)
            }
            NetOp::AddDefaultRoute { ns, via, dev } => {
                let idx = self.need_index(ns, dev)?;
                let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(*via).output_interface(idx).build();
                self.change(ns, RouteNetlinkMessage::NewRoute(msg), CREATE)
            }
            NetOp::AddRoute { ns, dst, via } => {
                let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(dst.addr(), dst.prefix())
                    .gateway(*via)
                    .build();
                self.change(ns, RouteNetlinkMessage::NewRoute(msg), CREATE)
            }
            NetOp::SetMaster { ns, dev, master } => {
                let idx = self.need_index(ns, dev)?;
                let master_idx = self.need_index(ns, master)?;
                let msg = LinkUnspec::new_with_index(idx).controller(master_idx).build();
                self.change(ns, RouteNetlinkMessage::SetLink(msg), SET)
            }
            NetOp::SetHairpin { ns, dev, on } => {
                let idx = self.need_index(ns, dev)?;
                let msg = LinkBridgePort::new(idx).hairpin(*on).build();
                // As `ip link set ... type bridge_slave`: a NEWLINK carrying port data.
                self.change(ns, RouteNetlinkMessage::NewLink(msg), NLM_F_REQUEST)
            }
            NetOp::DelLink { ns, name } => {
                let found = match self.link_index(ns, name) {
                    // The namespace is gone, and the link with it.
                    Err(OpError::NoSuchNetns(_)) => return Ok(()),
                    other => other?,
                };
                let Some(idx) = found else { return Ok(()) };
                let msg = LinkUnspec::new_with_index(idx).build();
                match self.change(ns, RouteNetlinkMessage::DelLink(msg), NLM_F_REQUEST) {
                    // Deleted meanwhile, e.g. with its veth peer.
                    Err(OpError::Netlink(e)) if errno(&e) == Some(libc_enodev()) => Ok(()),
                    other => other,
                }
            }
        }
    }
}
