//! Pod sandbox primitives for the Pier node: everything that makes a pod a pod on one
//! machine, below the node agent that decides which pods to run.
//!
//! - Network plans ([`plan`]): [`Underlay`], [`NodeNetwork`] and [`PodNetwork`] render
//!   to ordered [`NetOp`] lists (and their teardowns), printed as `ip` commands for
//!   golden tests. [`NetApplier`] carries them out: [`NetlinkApplier`] for real,
//!   [`RecordingApplier`] in tests; [`apply_plan`] rolls back on failure.
//! - Pod IPs ([`ipam`]): [`PodIpAllocator`], a /24 allocator persisted as JSON.
//! - Files ([`dns`], [`rootfs`]): kubelet's `/etc/resolv.conf`, `/etc/hosts` and
//!   `/etc/hostname`, and a [`RootfsPlan`] for a copy-on-write overlay of the host root.
//! - Processes ([`spawn()`]): start a [`ContainerCommand`] in a [`SandboxSpec`]: the
//!   pod's network namespace, new mount/UTS/IPC namespaces, the overlay as root.
//!
//! Everything with effects needs root. Pure parts (plans, text, allocation logic)
//! have no effects and are tested against golden output.
//!
//! ```no_run
//! use pier_sandbox::{apply_plan, NetlinkApplier, NetnsName, NodeNetwork, Netns, Underlay};
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let underlay = Underlay {
//!     ns: Netns::Host,
//!     bridge: "pier-demo".parse()?,
//!     addr: "172.30.0.1/24".parse()?,
//! };
//! let node = NodeNetwork::new(
//!     underlay,
//!     NetnsName::new("pier-demo-node-0")?,
//!     "172.30.0.10/24".parse()?,
//!     "10.244.0.1/24".parse()?,
//! )?;
//! let pod = node.pod(NetnsName::new("pier-demo-pod-1")?, "uid-1", "10.244.0.2".parse()?)?;
//! let netlink = NetlinkApplier::new();
//! apply_plan(&netlink, &node.render_setup())?;
//! apply_plan(&netlink, &pod.render_setup())?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)] // relaxed only in `spawn`, `vfork` and `join` (child set-up before exec) and `pty` (ioctls)

pub mod apply;
pub mod dns;
pub mod ipam;
pub mod join;
pub mod names;
pub mod netlink;
pub mod node;
pub mod plan;
pub mod pty;
pub mod rootfs;
pub mod spawn;
mod vfork;

pub use apply::{
    apply_plan, apply_teardown, ApplyError, NetApplier, OpError, RecordingApplier, TeardownError,
};
pub use dns::{hostname_file, hosts_file, pod_resolv_conf, ClusterDns, DnsPolicy, PodDnsConfig, ResolvConf};
pub use ipam::{IpamError, PodIpAllocator};
pub use join::{spawn_in, spawn_in_tokio, spawn_in_tty, ExecError};
pub use names::{IfName, Ipv4Cidr, NameError, NetnsName};
pub use netlink::NetlinkApplier;
pub use plan::{NetOp, Netns, NodeNetwork, PlanError, PodNetwork, Underlay};
pub use pty::{Pty, PtyError, PtyResizer, WinSize};
pub use rootfs::{GeneratedFiles, MountOp, RootfsError, RootfsPlan};
pub use spawn::{spawn, ContainerCommand, SandboxChild, SandboxSpec, SpawnError, Stdio};
