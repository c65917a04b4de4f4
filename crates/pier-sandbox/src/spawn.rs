//! Starting a process inside a pod sandbox.
//!
//! The child is made with `std::process::Command` plus a `pre_exec` hook. Between
//! `fork` and `exec` of a multi-threaded parent (the node agent runs tokio) only
//! async-signal-safe calls are allowed: no allocation, no locks. So everything the
//! hook needs (C strings, flags, the namespace fd, an error pipe) is prepared before
//! `fork`, and the hook itself is a loop of raw system calls through `nix` with
//! `&CStr` arguments, which do not allocate.
//!
//! A re-exec of the binary with a hidden subcommand would lift that restriction, but
//! it needs the caller's binary to route the subcommand (and test harness binaries
//! cannot), a serialized spec on the command line, and an extra `exec` per container;
//! the sandbox steps here are all plain system calls, so `pre_exec` is enough.
//!
//! In the child, in order: `setns` into the pod's network namespace; `unshare` a new
//! mount, UTS and IPC namespace; set the hostname; the plan's
//! [`RootfsPlan::container_mounts`] (`/` made private, generated files bound, `/proc`,
//! `/sys`, `/dev`, masks, `pivot_root`); `chdir` to the working directory; `exec`.
//! When a step fails, the child writes the step's index to a pipe before `exec`
//! fails, so [`SpawnError::Step`] names the step, not just an errno.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, mkdir, pipe2, pivot_root, sethostname, symlinkat, write};

use crate::names::NetnsName;
use crate::netlink::netns_path;
use crate::rootfs::{MountOp, RootfsPlan};

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
    /// Creating the error pipe failed.
    #[error("create error pipe")]
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
    /// `fork` or `exec` failed (e.g. the program does not exist in the sandbox).
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

/// Starts `cmd` inside the sandbox and returns the child (its PID is `child.id()`).
///
/// The caller owns the child: it must wait for it (or kill it by this PID) and tear
/// the sandbox down afterwards. The process is not in a new PID namespace, so it
/// sees the node's processes in `/proc`.
///
/// # Errors
///
/// [`SpawnError::Step`] names the sandbox step that failed; [`SpawnError::Exec`] is
/// a failed `exec` (program missing inside the root, not executable).
pub fn spawn(spec: &SandboxSpec, cmd: ContainerCommand) -> Result<Child, SpawnError> {
    spawn_with(spec, cmd, |mut command| command.spawn())
}

/// [`spawn`], with the child made by tokio so the caller can await its exit and read
/// its pipes asynchronously. Must be called inside a tokio runtime.
pub fn spawn_tokio(spec: &SandboxSpec, cmd: ContainerCommand) -> Result<tokio::process::Child, SpawnError> {
    spawn_with(spec, cmd, |command| tokio::process::Command::from(command).spawn())
}

/// Prepares the command and hands it to `start`, which must spawn it and drop it (and
/// with it the hook's copy of the error pipe) before returning.
fn spawn_with<T>(
    spec: &SandboxSpec,
    cmd: ContainerCommand,
    start: impl FnOnce(Command) -> io::Result<T>,
) -> Result<T, SpawnError> {
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
    let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;

    let mut command = Command::new(&program);
    command
        .args(&cmd.argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOSTNAME", &spec.hostname)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(cmd.stdin)
        .stdout(cmd.stdout)
        .stderr(cmd.stderr);
    // The working directory is set by the last step, after pivot_root: std's own
    // `current_dir` would be applied before the hook, against the host's root.
    let hook = move || run_steps(&steps, &err_write, |step| run_step(step, &netns, &hostname));
    // SAFETY: the hook runs in the forked child before exec. It only makes system
    // calls (setns, unshare, sethostname, mount, mkdir, open, symlinkat, pivot_root,
    // umount2, chdir, write) on values prepared before fork, borrows them without
    // allocating, takes no locks and touches no shared state, so it is
    // async-signal-safe as the fork-in-a-threaded-process rules require.
    unsafe {
        command.pre_exec(hook);
    }
    // `start` consumes the command: that drops the hook, and with it the parent's copy
    // of the pipe's write end, so the read below sees EOF once the child has exec'd or
    // exited.
    let spawned = start(command);
    match spawned {
        Ok(child) => Ok(child),
        Err(source) => match failed_step(err_read, &names) {
            Some(step) => Err(SpawnError::Step { step, source }),
            None => Err(SpawnError::Exec { program, source }),
        },
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
