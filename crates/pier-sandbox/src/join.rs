//! Running a process inside an existing container: `kubectl exec`, exec probes and
//! exec lifecycle hooks.
//!
//! The child joins the container's main process's namespaces and root, the way
//! `runc exec` / `nsenter` do, with the same `pre_exec` discipline as [`crate::spawn()`]:
//! every fd and C string is prepared before `fork`, the hook makes only system calls.
//! In the child, in order: `setns` IPC, UTS, network, mount; `fchdir` to the
//! container's root (opened as `/proc/<pid>/root` before fork) and `chroot(".")`;
//! `chdir` to the working directory; with a terminal, `setsid` and `TIOCSCTTY`; `exec`.
//!
//! PID namespace: containers made by [`crate::spawn()`] share the agent's PID namespace,
//! so there is nothing to join. `setns` into a PID namespace would only move the
//! caller's future children, so a container with its own PID namespace would need a
//! double fork here; rather than silently running outside it, [`spawn_in`] checks and
//! returns [`ExecError::PidNamespace`].
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::unistd::{chdir, chroot, fchdir, pipe2, setsid};

use crate::pty::{make_controlling_tty_of_stdin, open_pair, Pty, PtyError, WinSize};
use crate::spawn::{ContainerCommand, DEFAULT_PATH};

/// Why a process could not be started in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `argv` was empty.
    #[error("empty command")]
    EmptyCommand,
    /// A string for the child contained a NUL byte.
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
    /// The working directory is not absolute.
    #[error("working directory {0} is not absolute")]
    RelativeWorkingDir(PathBuf),
    /// The container's process is gone (or its namespaces cannot be opened).
    #[error("container process {pid} is not running: open {path}")]
    Target {
        /// The container's main PID.
        pid: u32,
        /// The `/proc` path that failed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The container has its own PID namespace, which this does not join.
    #[error("container process {pid} is in another PID namespace, which exec does not support")]
    PidNamespace {
        /// The container's main PID.
        pid: u32,
    },
    /// Creating the error pipe failed.
    #[error("create error pipe")]
    Pipe(#[source] io::Error),
    /// Allocating or wrapping the terminal failed.
    #[error(transparent)]
    Pty(#[from] PtyError),
    /// Wrapping the terminal for tokio failed (no runtime, or epoll failed).
    #[error("register terminal with the runtime")]
    PtyRegister(#[source] io::Error),
    /// A step in the child (joining a namespace, `chdir`) failed.
    #[error("exec step `{step}` failed")]
    Step {
        /// The step, as text.
        step: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program does not exist in the container. `Display` is runc's wording, which
    /// `kubectl exec` users know: `exec: "nosuch": executable file not found in $PATH`,
    /// or `exec: "/no/such": stat /no/such: no such file or directory`.
    #[error("{}", not_found_message(program))]
    NotFound {
        /// The program as given.
        program: String,
    },
    /// `exec` failed otherwise (not executable, bad format), or `fork` did.
    #[error("exec: {program:?}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn not_found_message(program: &str) -> String {
    if program.contains('/') {
        format!("exec: {program:?}: stat {program}: no such file or directory")
    } else {
        format!("exec: {program:?}: executable file not found in $PATH")
    }
}

impl ExecError {
    /// The exit code a shell would give for this failure, for callers that report
    /// a start failure as a command result (exec probes, `kubectl exec`): 127 for a
    /// missing program, 126 for one that cannot be executed, `None` for failures
    /// before the program was looked at.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::NotFound { .. } => Some(127),
            ExecError::Exec { .. } => Some(126),
            _ => None,
        }
    }
}

/// A step in the child, with every argument prepared.
enum Step {
    Setns(OwnedFd, CloneFlags),
    Chroot(OwnedFd),
    Chdir(CString),
    Setsid,
    ControllingTty,
}

fn run_step(step: &Step) -> Result<(), Errno> {
    match step {
        Step::Setns(fd, kind) => setns(fd, *kind),
        Step::Chroot(root) => {
            fchdir(root)?;
            chroot(c".")
        }
        Step::Chdir(dir) => chdir(dir.as_c_str()),
        Step::Setsid => setsid().map(drop),
        Step::ControllingTty => make_controlling_tty_of_stdin(),
    }
}

/// What the child's standard streams are.
enum ExecStdio {
    Pipes { stdin: crate::spawn::Stdio, stdout: crate::spawn::Stdio, stderr: crate::spawn::Stdio },
    Tty(OwnedFd),
}

/// Starts `cmd` inside the running container whose main process is `target_pid`, with
/// `cmd`'s stdin/stdout/stderr, and returns the child.
///
/// `cmd.env` should be the container's environment (plus the exec's own): nothing is
/// inherited from the agent or the container process, and `PATH` defaults to
/// [`DEFAULT_PATH`]. `cmd.working_dir` should be the container's working directory.
///
/// `target_pid` must be a child the caller has not reaped yet, so the PID cannot have
/// been reused by another process. The exec'd process is the caller's child, not the
/// container's: it is not killed when the container's main process exits, so the
/// caller must kill it (by `child.id()`) when the container stops. It is not moved into
/// the container's cgroup.
///
/// # Errors
///
/// [`ExecError::Target`] if the container process is gone, [`ExecError::NotFound`]
/// for a missing program, [`ExecError::Step`] naming the step that failed.
pub fn spawn_in(target_pid: u32, cmd: ContainerCommand) -> Result<Child, ExecError> {
    let ContainerCommand { argv, env, working_dir, stdin, stdout, stderr } = cmd;
    let stdio = ExecStdio::Pipes { stdin, stdout, stderr };
    start(target_pid, argv, env, working_dir, stdio, |mut command| command.spawn())
}

/// [`spawn_in`], with the child made by tokio (await its exit, read its pipes
/// asynchronously). Must be called within a tokio runtime.
///
/// # Errors
///
/// As [`spawn_in`].
pub fn spawn_in_tokio(target_pid: u32, cmd: ContainerCommand) -> Result<tokio::process::Child, ExecError> {
    let ContainerCommand { argv, env, working_dir, stdin, stdout, stderr } = cmd;
    let stdio = ExecStdio::Pipes { stdin, stdout, stderr };
    start(target_pid, argv, env, working_dir, stdio, |command| tokio::process::Command::from(command).spawn())
}

/// Like [`spawn_in`], but with a new terminal as the process's stdin, stdout, stderr
/// and controlling terminal (`kubectl exec -it`); `cmd`'s stdio fields are ignored.
/// Returns the child and the terminal's master; `TERM` is not set unless `cmd.env`
/// has it (kubelet's exec sets none either; kubectl sends the user's).
///
/// Must be called within a tokio runtime (the master is registered with it).
///
/// # Errors
///
/// As [`spawn_in`], plus [`ExecError::Pty`] when the container's devpts has no room.
pub fn spawn_in_tty(
    target_pid: u32,
    cmd: ContainerCommand,
    size: Option<WinSize>,
) -> Result<(tokio::process::Child, Pty), ExecError> {
    let ptmx = PathBuf::from(format!("/proc/{target_pid}/root/dev/pts/ptmx"));
    let pair = open_pair(ptmx, size)?;
    let pty = Pty::new(pair.master).map_err(ExecError::PtyRegister)?;
    let ContainerCommand { argv, env, working_dir, .. } = cmd;
    let stdio = ExecStdio::Tty(pair.slave);
    let child = start(target_pid, argv, env, working_dir, stdio, |command| {
        tokio::process::Command::from(command).spawn()
    })?;
    Ok((child, pty))
}

/// Prepares the command and hands it to `spawn`, which must consume it (dropping the
/// hook's copy of the error pipe) before returning.
fn start<T>(
    pid: u32,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
    stdio: ExecStdio,
    spawn: impl FnOnce(Command) -> io::Result<T>,
) -> Result<T, ExecError> {
    let Some(program) = argv.first().cloned() else {
        return Err(ExecError::EmptyCommand);
    };
    if !working_dir.is_absolute() {
        return Err(ExecError::RelativeWorkingDir(working_dir));
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let open = |rel: &str| -> Result<OwnedFd, ExecError> {
        let path = proc_dir.join(rel);
        File::open(&path).map(OwnedFd::from).map_err(|source| ExecError::Target { pid, path, source })
    };
    let same_pid_ns = |rel: &str| -> Result<bool, ExecError> {
        let theirs = proc_dir.join(rel);
        let ours = PathBuf::from("/proc/self").join(rel);
        let ino = |p: &PathBuf| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
        let t = ino(&theirs).map_err(|source| ExecError::Target { pid, path: theirs.clone(), source })?;
        let o = ino(&ours).map_err(|source| ExecError::Target { pid, path: ours.clone(), source })?;
        Ok(t == o)
    };
    if !same_pid_ns("ns/pid")? {
        return Err(ExecError::PidNamespace { pid });
    }
    let cwd = CString::new(working_dir.as_os_str().as_bytes())
        .map_err(|_| ExecError::Nul(working_dir.display().to_string()))?;
    // Mount last: after it, `/proc/<pid>` paths would resolve in the container.
    let mut steps = vec![
        (Step::Setns(open("ns/ipc")?, CloneFlags::CLONE_NEWIPC), "setns ipc".to_string()),
        (Step::Setns(open("ns/uts")?, CloneFlags::CLONE_NEWUTS), "setns uts".to_string()),
        (Step::Setns(open("ns/net")?, CloneFlags::CLONE_NEWNET), "setns net".to_string()),
        (Step::Setns(open("ns/mnt")?, CloneFlags::CLONE_NEWNS), "setns mnt".to_string()),
        // setns(mnt) puts us at the namespace's root mount; the container's root is
        // what its process pivoted to, so take that explicitly, as nsenter --root does.
        (Step::Chroot(open("root")?), "chroot container root".to_string()),
        (Step::Chdir(cwd), format!("chdir {}", working_dir.display())),
    ];
    let mut command = Command::new(&program);
    command.args(&argv[1..]).env_clear().env("PATH", DEFAULT_PATH).envs(env);
    match stdio {
        ExecStdio::Pipes { stdin, stdout, stderr } => {
            command.stdin(stdin.into_std()).stdout(stdout.into_std()).stderr(stderr.into_std());
        }
        ExecStdio::Tty(slave) => {
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(ExecError::PtyRegister);
            command
                .stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
            // std has set up fds 0-2 before the hook runs, so fd 0 is the slave.
            steps.push((Step::Setsid, "setsid".to_string()));
            steps.push((Step::ControllingTty, "set controlling terminal".to_string()));
        }
    }
    let (names, steps): (Vec<String>, Vec<Step>) = steps.into_iter().map(|(s, n)| (n, s)).unzip();
    let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Pipe(e.into()))?;
    let hook = move || crate::spawn::run_steps(&steps, &err_write, run_step);
    // SAFETY: the hook runs in the forked child before exec. It only makes system
    // calls (setns, fchdir, chroot, chdir, setsid, ioctl, write) on fds and C strings
    // prepared before fork, borrows them without allocating, takes no locks and touches
    // no shared state: async-signal-safe, as fork in a threaded process requires.
    unsafe {
        command.pre_exec(hook);
    }
    // `spawn` consumes the command: that drops the hook and with it the parent's write
    // end, so the read below sees EOF once the child has exec'd or exited.
    let spawned = spawn(command);
    match spawned {
        Ok(child) => Ok(child),
        Err(source) => match crate::spawn::failed_step(err_read, &names) {
            Some(step) => Err(ExecError::Step { step, source }),
            None if source.kind() == io::ErrorKind::NotFound => Err(ExecError::NotFound { program }),
            None => Err(ExecError::Exec { program, source }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_runc() {
        let e = ExecError::NotFound { program: "nosuch".into() };
        assert_eq!(e.to_string(), r#"exec: "nosuch": executable file not found in $PATH"#);
        assert_eq!(e.exit_code(), Some(127));
        let e = ExecError::NotFound { program: "/no/such".into() };
        assert_eq!(e.to_string(), r#"exec: "/no/such": stat /no/such: no such file or directory"#);
    }

    #[test]
    fn missing_container_is_a_clear_error() {
        let err = spawn_in(u32::MAX - 1, ContainerCommand::new(["true"])).expect_err("no such pid");
        assert!(matches!(err, ExecError::Target { .. }), "{err}");
        assert!(err.to_string().contains("is not running"), "{err}");
    }
}
