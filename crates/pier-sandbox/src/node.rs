//! Starting a node agent inside its node's namespaces, and the node's reaper.
//!
//! `pier up` runs each node in the node's network namespace, in a mount namespace of
//! its own (so pod overlays and pod network namespaces are mounted where only that
//! node sees them, and vanish with it), and in a PID namespace of its own. A process
//! whose children go to another PID namespace cannot start threads, so the process
//! `pier up` starts is a small single-threaded supervisor ([`run_node_init`]) whose
//! first child becomes the namespace's init, the [`run_reaper`] loop, and whose
//! second is the multi-threaded agent. When the init dies the kernel kills every
//! process in the namespace; it dies with the supervisor (parent-death signal), which
//! dies with `pier up`, so a crash anywhere up the chain leaves no container running.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::names::NetnsName;
use crate::netlink::{netns_path, NETNS_DIR};

/// Prepares `command` (a `pier node` command line) to start in the node's namespaces;
/// the caller spawns it (with std or tokio).
///
/// In the child: join the node's network namespace; unshare mount and PID
/// namespaces; make every mount private (nothing the node mounts propagates to the
/// host); mount a private tmpfs on `/run/netns`, where the node binds its pods'
/// network namespaces; and ask for SIGKILL when the parent thread dies. The caller
/// must spawn from a thread that lives as long as the node should (a runtime worker
/// thread, not a blocking-pool thread, which may exit when idle).
pub fn prepare_node_command(netns: &NetnsName, command: &mut Command) -> io::Result<()> {
    let path = netns_path(netns);
    let fd: OwnedFd = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?
        .into();
    std::fs::create_dir_all(NETNS_DIR)?;
    let netns_dir = CString::new(NETNS_DIR).map_err(io::Error::other)?;
    let hook = move || -> io::Result<()> {
        prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
        setns(&fd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
        make_node_mounts(netns_dir.as_c_str())
    };
    // SAFETY: the hook runs in the forked child before exec and only makes system
    // calls (prctl, setns, unshare, mount) on values prepared before fork (an owned
    // fd and C strings it borrows); it allocates nothing beyond the io::Error on the
    // failure path, which std's own pre_exec error reporting also does.
    unsafe {
        command.pre_exec(hook);
    }
    Ok(())
}

/// In a node's new mount namespace: makes every mount private (nothing the node
/// mounts propagates to the host) and mounts a private tmpfs on `netns_dir` (which
/// must exist), where the node binds its pods' network namespaces. Allocates nothing
/// but an error, so it may run in a pre-exec hook.
pub fn make_node_mounts(netns_dir: &std::ffi::CStr) -> io::Result<()> {
    mount(
        None::<&std::ffi::CStr>,
        c"/",
        None::<&std::ffi::CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&std::ffi::CStr>,
    )
    .map_err(io::Error::from)?;
    mount(
        Some(c"tmpfs"),
        netns_dir,
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(c"mode=0755"),
    )
    .map_err(io::Error::from)
}

/// Spawns `command` so that it gets SIGKILL when the calling thread dies.
fn spawn_tied(mut command: Command) -> io::Result<Child> {
    // SAFETY: prctl and sigprocmask are plain system calls; nothing is allocated or
    // locked.
    unsafe {
        command.pre_exec(|| {
            prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The supervisor blocks the signals it waits for; exec keeps the mask, and
            // std does not reset it when a pre_exec hook is set.
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            )
            .map_err(io::Error::from)
        });
    }
    command.spawn()
}

/// The node supervisor: starts `reaper` (which becomes init of the node's PID
/// namespace) and then `agent`, forwards SIGTERM and SIGINT to the agent, and returns
/// the agent's exit code once it ends. Must run single-threaded, in the process that
/// [`prepare_node_command`] prepared.
pub fn run_node_init(reaper: Command, agent: Command) -> io::Result<i32> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    // Blocked before any child exists, so no signal is lost; children unblock them
    // before exec.
    signals.thread_block().map_err(io::Error::from)?;
    let _reaper = spawn_tied(reaper)?;
    let agent = spawn_tied(agent)?;
    let agent_pid = nix::unistd::Pid::from_raw(i32::try_from(agent.id()).map_err(io::Error::other)?);
    loop {
        match signals.wait().map_err(io::Error::from)? {
            Signal::SIGCHLD => match waitpid(agent_pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            },
            other => {
                let _ = nix::sys::signal::kill(agent_pid, other);
            }
        }
    }
}

/// The reaper's main loop: init of a node's PID namespace. It only waits for
/// children (orphaned container processes are re-parented to it) so no zombie stays,
/// and never returns; it ends when killed with the node.
pub fn run_reaper() -> ! {
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // Blocked, so sigwait sees every SIGCHLD; other signals to init from inside its
    // namespace are ignored by the kernel since no handler is installed.
    let _ = chld.thread_block();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let _ = chld.wait();
    }
}

/// Mounts a procfs for the caller's PID namespace over `/proc`, in the caller's
/// (private) mount namespace: the node agent sees its containers' PIDs in `/proc` as
/// it numbers them. Call from the agent, which runs inside the node's PID namespace.
pub fn mount_own_proc() -> io::Result<()> {
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("mount proc on /proc: {e}")))
}

/// Mounts a tmpfs on `dir` (made if missing), in the caller's private mount namespace:
/// the node's pod directories (overlay upper and work layers, generated files) live in
/// memory. They are scratch space (a restarted node gives every pod fresh
/// containers, as after a kubelet restart), and creating and removing their
/// directories on a journaled disk cost about a millisecond per pod in a burst of pod
/// starts. Call from the agent, which runs in the node's own mount namespace, so the
/// mount goes away with the node.
pub fn mount_pods_tmpfs(dir: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", dir.display())))?;
    mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0700"))
        .map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("mount tmpfs on {}: {e}", dir.display()))
        })
}

/// Caps glibc's malloc at two arenas for the calling process. The agent makes pod
/// networks and root filesystems on short-lived blocking threads; each new thread
/// could get an arena of its own (up to eight per core), and every arena keeps the
/// memory it once held, so the agent's resident memory grew with each burst of pod
/// starts before it levelled off. Call first thing, before other threads exist.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; no pointers are involved.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
