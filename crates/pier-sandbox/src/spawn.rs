//! Starting a process inside a pod sandbox.
//!
//! The child is started like `posix_spawn` starts one (`clone` with `CLONE_VM |
//! CLONE_VFORK`, see the `vfork` module): it shares the agent's memory until `exec`,
//! so only async-signal-safe system calls are allowed in it: no allocation, no locks.
//! Everything it needs (C strings, flags, the namespace fd, the paths to try) is
//! prepared before, and the steps are plain system calls through `nix` with `&CStr`
//! arguments, which do not allocate.
//!
//! A re-exec of the binary with a hidden subcommand would lift that restriction, but
//! it needs the caller's binary to route the subcommand (and test harness binaries
//! cannot), a serialized spec on the command line, and an extra `exec` per container;
//! the sandbox steps here are all plain system calls, so running them in the child is
//! enough.
//!
//! In the child, in order: the standard streams; `setsid`; `setns` into the pod's
//! network namespace; `unshare` a new mount, UTS and IPC namespace; set the hostname;
//! the plan's [`RootfsPlan::container_mounts`] (`/` made private, generated files
//! bound, `/proc`, `/sys`, `/dev`, masks, `pivot_root`); `chdir` to the working
//! directory; `exec`, searching `PATH` inside the new root. When a step fails, the
//! child records the step before it exits, so [`SpawnError::Step`] names the step,
//! not just an errno.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, mkdir, pipe2, pivot_root, sethostname, symlinkat, write};

use crate::names::NetnsName;
use crate::netlink::netns_path;
use crate::rootfs::{MountOp, RootfsPlan};
use crate::vfork;

/// The `PATH` a container gets unless its env sets one (the OCI runtimes' default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a process runs: the pod's network namespace, hostname and root.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The pod's network namespace (made by the pod's network plan).
    pub netns: NetnsName,
    /// Hostname in the new UTS namespace, and `$HOSTNAME`: the pod name.
    pub hostname: String,
    /// The pod's root filesystem, already [`crate::rootfs::prepare`]d.
    pub rootfs: RootfsPlan,
}

/// What to run, as seen from inside the sandbox.
#[derive(Debug)]
pub struct ContainerCommand {
    /// Program and arguments; a program without `/` is looked up in the container's
    /// `PATH` inside the new root.
    pub argv: Vec<String>,
    /// Environment, applied after `PATH` and `HOSTNAME` (so it may override them).
    /// Nothing is inherited from the caller.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox, absolute; `/` by default.
    pub working_dir: PathBuf,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output (e.g. `Stdio::from(log_file)` or `Stdio::piped()`).
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

impl ContainerCommand {
    /// `argv` with no extra environment, working directory `/`, stdin from
    /// `/dev/null`, output to pipes.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            working_dir: PathBuf::from("/"),
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        }
    }
}

/// Why a sandboxed process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `argv` was empty.
    #[error("empty command")]
    EmptyCommand,
    /// A string for the child contained a NUL byte.
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
    /// The working directory is not absolute.
    #[error("working directory {0} is not absolute")]
    RelativeWorkingDir(PathBuf),
    /// The pod's network namespace could not be opened.
    #[error("open network namespace {path}")]
    Netns {
        /// `/run/netns/<name>`.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Creating a pipe or opening `/dev/null` for the standard streams failed.
    #[error("set up standard streams")]
    Pipe(#[source] io::Error),
    /// A sandbox step in the child failed.
    #[error("sandbox step `{step}` failed")]
    Step {
        /// The step, as text.
        step: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `clone` or `exec` failed (e.g. the program does not exist in the sandbox).
    #[error("start {program}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A step in the child, with every argument already a C string.
#[derive(Debug)]
enum Step {
    Setsid,
    Setns,
    Unshare,
    Hostname,
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
        optional: bool,
    },
    MakeRprivate(CString),
    Mkdir(CString),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    PivotRoot(CString),
    Chdir(CString),
}

fn cstr(s: &OsStr) -> Result<CString, SpawnError> {
    CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul(s.to_string_lossy().into_owned()))
}

fn cpath(p: &Path) -> Result<CString, SpawnError> {
    cstr(p.as_os_str())
}

fn prepare_steps(spec: &SandboxSpec, working_dir: &Path) -> Result<(Vec<Step>, Vec<String>), SpawnError> {
    // A session (and process group) of its own: the container's processes can be
    // signalled together, as a PID namespace's would be, and a TTY can become its
    // controlling terminal.
    let mut steps = vec![Step::Setsid, Step::Setns, Step::Unshare, Step::Hostname];
    let mut names = vec![
        "setsid".to_string(),
        format!("setns {}", netns_path(&spec.netns).display()),
        "unshare mount, uts, ipc namespaces".to_string(),
        format!("hostname {}", spec.hostname),
    ];
    for op in spec.rootfs.container_mounts() {
        names.push(op.to_string());
        steps.push(match op {
            MountOp::Mount { source, target, fstype, flags, data, optional } => Step::Mount {
                source: Some(cpath(&source)?),
                target: cpath(&target)?,
                fstype: fstype.as_deref().map(|t| cstr(OsStr::new(t))).transpose()?,
                flags: flags.to_ms(),
                data: data.as_deref().map(|d| cstr(OsStr::new(d))).transpose()?,
                optional,
            },
            MountOp::MakeRprivate { path } => Step::MakeRprivate(cpath(&path)?),
            MountOp::Mkdir { path } => Step::Mkdir(cpath(&path)?),
            MountOp::Touch { path } => Step::Touch(cpath(&path)?),
            MountOp::Symlink { target, link } => {
                Step::Symlink { target: cpath(&target)?, link: cpath(&link)? }
            }
            MountOp::PivotRoot { new_root } => Step::PivotRoot(cpath(&new_root)?),
            // The container list only has the kinds above; the host-side kinds would
            // need allocation or recursion, which the child cannot do.
            other => {
                return Err(SpawnError::Step {
                    step: other.to_string(),
                    source: io::Error::new(io::ErrorKind::Unsupported, "not a container step"),
                })
            }
        });
    }
    names.push(format!("chdir {}", working_dir.display()));
    steps.push(Step::Chdir(cpath(working_dir)?));
    Ok((steps, names))
}

/// Runs one step. Async-signal-safe: only system calls on prepared arguments.
fn run_step(step: &Step, netns: &OwnedFd, hostname: &OsStr) -> Result<(), Errno> {
    match step {
        Step::Setsid => nix::unistd::setsid().map(drop),
        Step::Setns => setns(netns, CloneFlags::CLONE_NEWNET),
        Step::Unshare => {
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
        }
        Step::Hostname => sethostname(hostname),
        Step::Mount { source, target, fstype, flags, data, optional } => {
            match mount(source.as_deref(), target.as_c_str(), fstype.as_deref(), *flags, data.as_deref()) {
                Err(Errno::ENOENT) if *optional => Ok(()),
                other => other,
            }
        }
        Step::MakeRprivate(path) => mount(
            None::<&std::ffi::CStr>,
            path.as_c_str(),
            None::<&std::ffi::CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&std::ffi::CStr>,
        ),
        Step::Mkdir(path) => match mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Err(Errno::EEXIST) => Ok(()),
            other => other,
        },
        Step::Touch(path) => open(
            path.as_c_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        Step::Symlink { target, link } => symlinkat(target.as_c_str(), AT_FDCWD, link.as_c_str()),
        Step::PivotRoot(new_root) => {
            // pivot_root(".", ".") stacks the old root on top of the new one, so no
            // directory for it is needed in the pod's root; detaching it then leaves
            // the container with nothing of the host's mount tree.
            chdir(new_root.as_c_str())?;
            pivot_root(c".", c".")?;
            umount2(c".", MntFlags::MNT_DETACH)?;
            chdir(c"/")
        }
        Step::Chdir(path) => chdir(path.as_c_str()),
    }
}

/// Starts `cmd` inside the sandbox and returns the child once it has exec'd.
///
/// The child is made as `posix_spawn` makes one (see `vfork`): nothing of the
/// caller's memory is copied, which matters in a large, busy node agent.
///
/// The caller owns the child: it must wait for it (or kill it) and tear the sandbox
/// down afterwards. The process is not in a new PID namespace, so it sees the node's
/// processes in `/proc`.
///
/// # Errors
///
/// [`SpawnError::Step`] names the sandbox step that failed; [`SpawnError::Exec`] is
/// a failed `exec` (program missing inside the root, not executable).
pub fn spawn(spec: &SandboxSpec, cmd: ContainerCommand) -> Result<SandboxChild, SpawnError> {
    let Some(program) = cmd.argv.first().cloned() else {
        return Err(SpawnError::EmptyCommand);
    };
    if !cmd.working_dir.is_absolute() {
        return Err(SpawnError::RelativeWorkingDir(cmd.working_dir));
    }
    let (steps, names) = prepare_steps(spec, &cmd.working_dir)?;
    let path = netns_path(&spec.netns);
    let netns: OwnedFd =
        File::open(&path).map_err(|source| SpawnError::Netns { path: path.clone(), source })?.into();
    let hostname = std::ffi::OsString::from(&spec.hostname);

    // The environment as exec sees it: PATH and HOSTNAME first, so the pod's own
    // variables override them; the last value of a name wins, as with std's Command.
    let mut env: Vec<(String, String)> =
        vec![("PATH".to_string(), DEFAULT_PATH.to_string()), ("HOSTNAME".to_string(), spec.hostname.clone())];
    for (k, v) in cmd.env {
        match env.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }
    let search_path = env.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let candidates = vfork::candidates(&program, search_path)
        .into_iter()
        .map(|c| cstr(OsStr::new(&c)))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = cmd.argv.iter().map(|a| cstr(OsStr::new(a))).collect::<Result<Vec<_>, _>>()?;
    let envp =
        env.iter().map(|(k, v)| cstr(OsStr::new(&format!("{k}={v}")))).collect::<Result<Vec<_>, _>>()?;

    let (stdin, stdin_parent) = cmd.stdin.into_child(true).map_err(SpawnError::Pipe)?;
    let (stdout, stdout_parent) = cmd.stdout.into_child(false).map_err(SpawnError::Pipe)?;
    let (stderr, stderr_parent) = cmd.stderr.into_child(false).map_err(SpawnError::Pipe)?;
    let run = |step: &Step| run_step(step, &netns, &hostname);
    let launch = vfork::Launch {
        candidates: &candidates,
        argv: &argv,
        envp: &envp,
        stdio: [vfork::raw(&stdin), vfork::raw(&stdout), vfork::raw(&stderr)],
        steps: &steps,
        run: &run,
    };
    let started =
        vfork::launch(&launch).map_err(|source| SpawnError::Exec { program: program.clone(), source })?;
    // The child's ends are its own now (or it is gone): close the parent's copies so
    // pipes see EOF when the child exits.
    drop((stdin, stdout, stderr));
    match started {
        Ok(vfork::Started { pid, pidfd }) => Ok(SandboxChild {
            pid,
            pidfd,
            status: None,
            stdin: stdin_parent.map(File::from),
            stdout: stdout_parent.map(File::from),
            stderr: stderr_parent.map(File::from),
        }),
        Err(outcome) => {
            let source = io::Error::from_raw_os_error(outcome.errno);
            match outcome.step {
                Some(i) if i == steps.len() => Err(SpawnError::Exec { program, source }),
                Some(i) => {
                    let step = names.get(i).cloned().unwrap_or_else(|| "set up standard streams".to_string());
                    Err(SpawnError::Step { step, source })
                }
                None => Err(SpawnError::Exec { program, source }),
            }
        }
    }
}

/// A standard stream for a sandboxed process.
#[derive(Debug)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A new pipe; the parent's end is in [`SandboxChild`]'s field.
    Piped,
    /// The caller's own stream.
    Inherit,
    /// This descriptor (a log file, a terminal).
    Fd(OwnedFd),
}

impl Stdio {
    /// `/dev/null`.
    pub fn null() -> Self {
        Stdio::Null
    }

    /// A new pipe.
    pub fn piped() -> Self {
        Stdio::Piped
    }

    /// The caller's own stream.
    pub fn inherit() -> Self {
        Stdio::Inherit
    }

    /// The child's descriptor (`None`: keep the caller's) and the parent's end of a
    /// pipe. `input` says which way a pipe points.
    fn into_child(self, input: bool) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
        match self {
            Stdio::Null => {
                let flags = if input { OFlag::O_RDONLY } else { OFlag::O_WRONLY };
                let fd = open(c"/dev/null", flags | OFlag::O_CLOEXEC, Mode::empty())?;
                Ok((Some(fd), None))
            }
            Stdio::Piped => {
                let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
                Ok(if input { (Some(read), Some(write)) } else { (Some(write), Some(read)) })
            }
            Stdio::Inherit => Ok((None, None)),
            Stdio::Fd(fd) => Ok((Some(fd), None)),
        }
    }

    /// The same stream for `std::process::Command`.
    pub fn into_std(self) -> std::process::Stdio {
        match self {
            Stdio::Null => std::process::Stdio::null(),
            Stdio::Piped => std::process::Stdio::piped(),
            Stdio::Inherit => std::process::Stdio::inherit(),
            Stdio::Fd(fd) => std::process::Stdio::from(fd),
        }
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Self {
        Stdio::Fd(fd)
    }
}

impl From<File> for Stdio {
    fn from(file: File) -> Self {
        Stdio::Fd(file.into())
    }
}

/// A process [`spawn`] started. Dropping it neither kills nor reaps the process.
#[derive(Debug)]
pub struct SandboxChild {
    pid: i32,
    /// Signals go through it, so a reaped PID reused by another process is never hit.
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    /// The parent's end of a piped stdin.
    pub stdin: Option<File>,
    /// The parent's end of a piped stdout.
    pub stdout: Option<File>,
    /// The parent's end of a piped stderr.
    pub stderr: Option<File>,
}

impl SandboxChild {
    /// The process ID.
    pub fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Sends SIGKILL (nothing once the process has been reaped).
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                nix::libc::SIGKILL,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The exit status if the process has ended (it is reaped then), without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(false)
    }

    /// Blocks until the process ends and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(true)? {
                return Ok(status);
            }
        }
    }

    /// Waits for the process to end without blocking the runtime (its pidfd becomes
    /// readable then), and reaps it. Must be called within a tokio runtime.
    pub async fn wait_async(&mut self) -> io::Result<ExitStatus> {
        let pidfd = self.pidfd.try_clone()?;
        // SAFETY: the AsyncFd owns this duplicate, which stays open and unchanged until
        // the AsyncFd is dropped at the end of this call.
        let readable =
            unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.map_err(io::Error::from)?;
        loop {
            if let Some(status) = self.reap(false)? {
                return Ok(status);
            }
            readable.readable().await?.clear_ready();
        }
    }

    fn reap(&mut self, block: bool) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let flags = if block { 0 } else { nix::libc::WNOHANG };
        let mut raw = 0;
        // SAFETY: waitpid on our own child, writing into a local.
        let r = unsafe { nix::libc::waitpid(self.pid, &mut raw, flags) };
        match r {
            0 => Ok(None),
            r if r == self.pid => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                Ok(Some(status))
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Runs the child's steps in order; on the first failure writes the step's index to
/// `err_write` (a fixed-size write on a pipe: async-signal-safe; best effort, the errno
/// still reaches the parent through std's own pipe) and returns the errno. Called in
/// the forked child: it allocates nothing.
pub(crate) fn run_steps<S>(
    steps: &[S],
    err_write: &OwnedFd,
    run: impl Fn(&S) -> Result<(), Errno>,
) -> io::Result<()> {
    for (i, step) in steps.iter().enumerate() {
        if let Err(errno) = run(step) {
            let index = u32::try_from(i).unwrap_or(u32::MAX).to_ne_bytes();
            let _ = write(err_write.as_fd(), &index);
            return Err(io::Error::from_raw_os_error(errno as i32));
        }
    }
    Ok(())
}

/// The name of the step a child reported on its error pipe before `exec` failed, or
/// `None` when it got as far as `exec` itself. Call after the command was dropped.
pub(crate) fn failed_step(err_read: std::os::fd::OwnedFd, names: &[String]) -> Option<String> {
    let mut buf = Vec::new();
    let _ = File::from(err_read).read_to_end(&mut buf);
    let index = buf.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_ne_bytes)?;
    names.get(usize::try_from(index).ok()?).cloned()
}
