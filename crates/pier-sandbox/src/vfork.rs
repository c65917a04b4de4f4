//! Starting a process the way `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)`,
//! so the child runs on its own small stack in the parent's memory until `exec`.
//!
//! Why not `fork`: the node agent is a large multi-threaded process. `fork` copies its
//! page tables, every write by either side afterwards faults and copies a page, and the
//! child's `exec` tears the copy down again. In a burst of pod starts that was a
//! quarter of the agent's CPU (`perf`: `dup_mmap`, `do_wp_page`, `exit_mmap`). With
//! `CLONE_VM` nothing is copied; the calling thread sleeps until the child has
//! exec'd or exited (`CLONE_VFORK`), other threads keep running.
//!
//! Sharing memory makes the child's rules stricter than after `fork`: it must not
//! allocate, lock, unwind, or run a signal handler (which would run the parent's
//! code on the parent's data). So the calling thread blocks every signal around
//! `clone`, the child resets every handled signal to its default before unblocking
//! them just before `exec` (as glibc's `posix_spawn` does), and everything the child
//! reads is prepared here first. The child reports a failure by writing the failed
//! step and errno into [`Outcome`], which the parent reads once `clone` returns.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;

/// Stack for the child until it execs: the steps are plain system-call wrappers.
const CHILD_STACK: usize = 256 * 1024;

/// What the child ran into; `step` is `None` while nothing failed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    /// Index of the failed step; `steps.len()` for `exec` itself.
    pub step: Option<usize>,
    pub errno: i32,
}

/// Everything the child needs, prepared before `clone`.
pub(crate) struct Launch<'a, S> {
    /// Paths to try with `execve`, in order (a `PATH` search is several).
    pub candidates: &'a [CString],
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    /// Descriptors to become fds 0, 1 and 2; `None` keeps the parent's.
    pub stdio: [Option<RawFd>; 3],
    pub steps: &'a [S],
    /// Runs one step; must be async-signal-safe and not allocate.
    pub run: &'a (dyn Fn(&S) -> Result<(), Errno> + Sync),
}

struct ChildArgs<'a, S> {
    launch: &'a Launch<'a, S>,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    outcome: Outcome,
}

/// The child's stack: an anonymous mapping, unmapped on drop.
struct ChildStack {
    base: std::ptr::NonNull<c_void>,
}

impl ChildStack {
    fn new() -> io::Result<Self> {
        let len = std::num::NonZeroUsize::new(CHILD_STACK).ok_or_else(|| io::Error::other("empty stack"))?;
        // SAFETY: a fresh private anonymous mapping, owned by this value.
        let base = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_PRIVATE | nix::sys::mman::MapFlags::MAP_STACK,
            )
        }
        .map_err(io::Error::from)?;
        Ok(ChildStack { base })
    }

    /// The stack grows down on every architecture this runs on; 16-byte aligned top.
    fn top(&self) -> *mut c_void {
        let end = self.base.as_ptr() as usize + CHILD_STACK;
        (end & !15) as *mut c_void
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used (the child has exec'd or
        // exited when `launch` drops it).
        let _ = unsafe { nix::sys::mman::munmap(self.base, CHILD_STACK) };
    }
}

/// A started child: its PID and a pidfd for it.
#[derive(Debug)]
pub(crate) struct Started {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// Starts the child; returns it once it has exec'd, or what failed (the child is
/// reaped then).
pub(crate) fn launch<S>(launch: &Launch<'_, S>) -> io::Result<Result<Started, Outcome>> {
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
    };
    let (argv, envp) = (ptrs(launch.argv), ptrs(launch.envp));
    let mut args =
        ChildArgs { launch, argv: argv.as_ptr(), envp: envp.as_ptr(), outcome: Outcome::default() };
    // Mapped for this call, not taken from the heap: the allocator would keep a
    // quarter-MiB block around per concurrent start after the child is gone.
    let stack = ChildStack::new()?;
    let top = stack.top();
    let mut pidfd: c_int = -1;
    // SAFETY: sigfillset/pthread_sigmask only write the sets passed; `clone` runs
    // `child_main::<S>` on `stack`, which outlives the child's use of it (CLONE_VFORK
    // returns only after the child has exec'd or exited), with `args`, which lives on
    // this frame for as long; the child only makes system calls (see `child_main`).
    let (pid, clone_errno) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main::<S>,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            (&raw mut args).cast::<c_void>(),
            &raw mut pidfd,
        );
        let errno = Errno::last_raw();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (pid, errno)
    };
    drop(stack);
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(clone_errno));
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if args.outcome.step.is_some() {
        // The child exited without exec: reap it so no zombie stays.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Ok(Err(args.outcome));
    }
    Ok(Ok(Started { pid, pidfd }))
}

/// The child: runs in the parent's memory on its own stack until `exec`.
extern "C" fn child_main<S>(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of `launch`, whose frame is suspended until this
    // child execs or exits, so the reference is valid and not aliased meanwhile.
    let args = unsafe { &mut *arg.cast::<ChildArgs<'_, S>>() };
    args.outcome = prepare_and_exec(args);
    // SAFETY: _exit ends this child without running the parent's atexit handlers or
    // flushing its stdio buffers, which the child shares.
    unsafe { libc::_exit(127) }
}

/// Signals up to and including this one get their default disposition back.
const LAST_SIGNAL: c_int = 64;

fn prepare_and_exec<S>(args: &ChildArgs<'_, S>) -> Outcome {
    let launch = args.launch;
    let fail = |step: usize, errno: Errno| Outcome { step: Some(step), errno: errno as i32 };
    // SAFETY (all blocks below): plain system calls on values prepared by the parent.
    unsafe {
        for sig in 1..=LAST_SIGNAL {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue; // a signal glibc reserves, or none with this number
            }
            // Ignored signals stay ignored across exec, as after fork; except SIGPIPE,
            // which Rust's runtime ignores for itself and std resets for children.
            let ignored = old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGPIPE;
            if old.sa_sigaction != libc::SIG_DFL && !ignored {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
    for (target, fd) in launch.stdio.iter().enumerate() {
        let Some(fd) = *fd else { continue };
        let target = target as RawFd;
        // SAFETY: as above.
        let r = unsafe {
            if fd == target {
                // dup2 onto itself would keep FD_CLOEXEC.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            }
        };
        if r < 0 {
            return fail(usize::MAX, Errno::last());
        }
    }
    for (i, step) in launch.steps.iter().enumerate() {
        if let Err(errno) = (launch.run)(step) {
            return fail(i, errno);
        }
    }
    // SAFETY: as above; an empty set unblocks everything, as std does for children.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // execvp's search: the first path that exists wins; EACCES is reported only if
    // no later candidate worked either.
    let mut denied = false;
    for path in launch.candidates {
        // SAFETY: NUL-terminated arrays of C strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), args.argv, args.envp) };
        match Errno::last() {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => denied = true,
            other => return fail(launch.steps.len(), other),
        }
    }
    fail(launch.steps.len(), if denied { Errno::EACCES } else { Errno::ENOENT })
}

/// The paths `execvp` would try for `program` under `path` (a `PATH` value).
pub(crate) fn candidates(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
        .collect()
}

/// The fd number the child dups onto a standard stream; the caller keeps the owner
/// open until `launch` returns.
pub(crate) fn raw(fd: &Option<OwnedFd>) -> Option<RawFd> {
    fd.as_ref().map(AsRawFd::as_raw_fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path_order() {
        assert_eq!(candidates("sh", "/usr/bin:/bin/"), ["/usr/bin/sh", "/bin/sh"]);
        assert_eq!(candidates("./run", "/usr/bin"), ["./run"]);
        assert_eq!(candidates("/bin/true", "/usr/bin"), ["/bin/true"]);
        assert_eq!(candidates("x", "/a::/b"), ["/a/x", "./x", "/b/x"]);
    }
}
