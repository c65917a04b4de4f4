//! The real [`NetApplier`]: rtnetlink for links, addresses and routes; `nix` for
//! namespaces; `/proc/sys` for sysctls.
//!
//! Namespaces are switched per thread: each operation runs its netlink socket's
//! creation (or its sysctl write) on a short-lived thread that has `setns`'d into the
//! target namespace. A netlink socket stays bound to the namespace it was created
//! in, so the async requests afterwards run on the caller's runtime as usual, and the
//! caller's own threads never change namespace.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::{
    packet_route::link::{InfoData, InfoKind, InfoVeth},
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
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

/// The netlink [`NetApplier`]. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and a tokio
/// runtime.
#[derive(Debug, Default, Clone)]
pub struct NetlinkApplier {
    /// One netlink connection per namespace, opened on first use: opening one means a
    /// thread that enters the namespace, which would otherwise be paid per operation.
    connections: Arc<Mutex<HashMap<Netns, Handle>>>,
}

impl NetlinkApplier {
    /// A new applier. Connections are kept per namespace and dropped when this applier
    /// adds or deletes that namespace, so a namespace made again under the same name is
    /// never confused with the old one.
    pub fn new() -> Self {
        Self::default()
    }

    async fn handle(&self, ns: &Netns) -> Result<Handle, OpError> {
        if let Some(h) = self.connections.lock().ok().and_then(|c| c.get(ns).cloned()) {
            return Ok(h);
        }
        let h = connect(ns).await?;
        if let Ok(mut c) = self.connections.lock() {
            c.insert(ns.clone(), h.clone());
        }
        Ok(h)
    }

    fn forget(&self, name: &NetnsName) {
        if let Ok(mut c) = self.connections.lock() {
            c.remove(&Netns::Named(name.clone()));
        }
    }
}

/// Runs blocking namespace work (thread switches, mounts) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(OpError::Sys {
            op: "run blocking namespace work",
            path: PathBuf::new(),
            source: io::Error::other(e),
        })
    })
}

async fn connect(ns: &Netns) -> Result<Handle, OpError> {
    // The socket registers with the runtime's reactor while it is created, on the
    // namespace thread, so that thread enters the runtime first.
    let runtime = tokio::runtime::Handle::current();
    let target = ns.clone();
    let (conn, handle, _) = blocking(move || {
        in_netns(&target, || {
            let _entered = runtime.enter();
            rtnetlink::new_connection().map_err(sys("open netlink socket in", Path::new("netns")))
        })
    })
    .await?;
    tokio::spawn(conn);
    Ok(handle)
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

async fn link_index(h: &Handle, name: &IfName) -> Result<Option<u32>, OpError> {
    let mut links = h.link().get().match_name(name.as_str()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(OpError::Netlink(e)),
    }
}

async fn need_index(h: &Handle, ns: &Netns, name: &IfName) -> Result<u32, OpError> {
    link_index(h, name).await?.ok_or_else(|| OpError::NoSuchLink { ns: ns.clone(), name: name.clone() })
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

#[async_trait]
impl NetApplier for NetlinkApplier {
    async fn apply(&self, op: &NetOp) -> Result<(), OpError> {
        match op {
            NetOp::AddNetns { name } => {
                self.forget(name);
                let name = name.clone();
                blocking(move || create_netns(&name)).await
            }
            NetOp::DelNetns { name } => {
                self.forget(name);
                let name = name.clone();
                blocking(move || delete_netns(&name)).await
            }
            NetOp::Sysctl { ns, key, value } => {
                let (ns, key, value) = (ns.clone(), key.clone(), value.clone());
                blocking(move || write_sysctl(&ns, &key, &value)).await
            }
            NetOp::AddBridge { ns, name } => {
                let h = self.handle(ns).await?;
                // Not LinkBridge::new, which also sets the link up: up is its own step.
                let msg = LinkMessageBuilder::<LinkBridge>::new(name.as_str()).build();
                h.link().add(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::AddVeth { ns, name, peer } => {
                let h = self.handle(ns).await?;
                let msg = LinkVeth::new(name.as_str(), peer.as_str()).build();
                h.link().add(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::AddVethInto { ns, name, peer, peer_ns } => {
                let h = self.handle(ns).await?;
                let target = open_netns(peer_ns)?;
                let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(peer.as_str().to_string())
                    .setns_by_fd(target.as_raw_fd())
                    .build();
                let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(name.as_str().to_string())
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
                    .build();
                // `target` stays open until the request has been answered.
                let r = h.link().add(msg).execute().await.map_err(OpError::Netlink);
                drop(target);
                r
            }
            NetOp::MoveLink { ns, name, to } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, name).await?;
                let target = open_netns(to)?;
                let msg = LinkUnspec::new_with_index(idx).setns_by_fd(target.as_raw_fd()).build();
                // `target` stays open until the request has been answered.
                let r = h.link().set(msg).execute().await.map_err(OpError::Netlink);
                drop(target);
                r
            }
            NetOp::RenameLink { ns, name, new_name } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, name).await?;
                let msg = LinkUnspec::new_with_index(idx).name(new_name.as_str()).build();
                h.link().set(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::AddAddr { ns, dev, addr } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, dev).await?;
                h.address()
                    .add(idx, IpAddr::V4(addr.addr()), addr.prefix())
                    .execute()
                    .await
                    .map_err(OpError::Netlink)
            }
            NetOp::LinkUp { ns, dev } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, dev).await?;
                let msg = LinkUnspec::new_with_index(idx).up().build();
                h.link().set(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::AddDefaultRoute { ns, via, dev } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, dev).await?;
                let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(*via).output_interface(idx).build();
                h.route().add(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::AddRoute { ns, dst, via } => {
                let h = self.handle(ns).await?;
                let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(dst.addr(), dst.prefix())
                    .gateway(*via)
                    .build();
                h.route().add(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::SetMaster { ns, dev, master } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, dev).await?;
                let master_idx = need_index(&h, ns, master).await?;
                let msg = LinkUnspec::new_with_index(idx).controller(master_idx).build();
                h.link().set(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::SetHairpin { ns, dev, on } => {
                let h = self.handle(ns).await?;
                let idx = need_index(&h, ns, dev).await?;
                let msg = LinkBridgePort::new(idx).hairpin(*on).build();
                h.link().set_port(msg).execute().await.map_err(OpError::Netlink)
            }
            NetOp::DelLink { ns, name } => {
                let h = match self.handle(ns).await {
                    // The namespace is gone, and the link with it.
                    Err(OpError::NoSuchNetns(_)) => return Ok(()),
                    other => other?,
                };
                let Some(idx) = link_index(&h, name).await? else {
                    return Ok(());
                };
                match h.link().del(idx).execute().await {
                    Ok(()) => Ok(()),
                    // Deleted meanwhile, e.g. with its veth peer.
                    Err(e) if errno(&e) == Some(libc_enodev()) => Ok(()),
                    Err(e) => Err(OpError::Netlink(e)),
                }
            }
        }
    }
}
