//! Shared by the privileged test files: the guard that removes what a test made.

use std::path::PathBuf;
use std::process::Child;

use pier_sandbox::netlink::delete_netns;
use pier_sandbox::rootfs::{self, RootfsPlan};
use pier_sandbox::NetnsName;

/// Removes everything a test made, in dependency order, also when it panics.
#[derive(Default)]
pub struct Cleanup {
    pub children: Vec<Child>,
    pub rootfs: Vec<RootfsPlan>,
    pub netns: Vec<NetnsName>,
    pub dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            // std sends nothing to a child it has already reaped, so a PID reused by
            // another process is never signalled.
            let _ = child.kill();
            let _ = child.wait();
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
