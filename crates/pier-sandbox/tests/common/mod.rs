//! Shared by the privileged test files: the guard that removes what a test made.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pier_sandbox::netlink::delete_netns;
use pier_sandbox::rootfs::{self, RootfsPlan};
use pier_sandbox::{NetnsName, SandboxChild};

/// A process a test started: a container (`spawn`) or an exec'd one (`spawn_in`).
pub trait Proc {
    fn id(&self) -> u32;
    fn kill(&mut self) -> io::Result<()>;
    /// Waits and returns the exit code (-1 for a signal).
    fn wait_code(&mut self) -> io::Result<i32>;
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>>;
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>>;
}

/// Both kinds of child have the same methods and pipe fields; one implementation.
macro_rules! impl_proc {
    ($($child:ty),*) => {$(
        impl Proc for $child {
            fn id(&self) -> u32 {
                <$child>::id(self)
            }
            fn kill(&mut self) -> io::Result<()> {
                <$child>::kill(self)
            }
            fn wait_code(&mut self) -> io::Result<i32> {
                Ok(self.wait()?.code().unwrap_or(-1))
            }
            fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>> {
                Some(Box::new(self.stdout.take()?))
            }
            fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
                Some(Box::new(self.stderr.take()?))
            }
        }
    )*};
}

impl_proc!(Child, SandboxChild);

/// How long a test process may take to finish its output.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Removes everything a test made, in dependency order, also when it panics.
#[derive(Default)]
pub struct Cleanup {
    pub children: Vec<Box<dyn Proc>>,
    pub rootfs: Vec<RootfsPlan>,
    pub netns: Vec<NetnsName>,
    pub dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            // Neither kind signals a child it has already reaped, so a PID reused by
            // another process is never hit.
            let _ = child.kill();
            let _ = child.wait_code();
        }
        for plan in &self.rootfs {
            if let Err(e) = rootfs::teardown(plan) {
                eprintln!("cleanup: {e}: {:?}", e.source);
            }
        }
        // Deleting a namespace deletes every link in it; no link was made elsewhere.
        for name in self.netns.iter().rev() {
            if let Err(e) = delete_netns(name) {
                eprintln!("cleanup: delete netns {name}: {e}");
            }
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Output of a process, read to the end within the deadline (killed otherwise).
pub fn output(child: &mut dyn Proc) -> (String, String, i32) {
    let mut out = child.take_stdout().expect("piped stdout");
    let mut err = child.take_stderr().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send((1, s));
    });
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx2.send((2, s));
    });
    let deadline = Instant::now() + DEADLINE;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((1, s)) => stdout = s,
            Ok((_, s)) => stderr = s,
            Err(_) => {
                let _ = child.kill();
                panic!("process {} did not finish within {DEADLINE:?}", child.id());
            }
        }
    }
    let code = child.wait_code().expect("wait");
    (stdout, stderr, code)
}
