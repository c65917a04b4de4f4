//! A pod's filesystem sandbox (pure plan plus a thin host-side applier): a
//! copy-on-write overlay of the host root with kubelet-style generated files.
//!
//! Layout under the pod directory `D` (given by the node):
//!
//! ```text
//! D/upper  D/work   overlayfs upper and work dirs: everything the pod writes
//! D/rootfs          the merged root (lowerdir = host `/`)
//! D/etc/{hosts,hostname,resolv.conf}   generated; bind-mounted over the root's
//! ```
//!
//! Two mount lists come out of a [`RootfsPlan`]:
//! - [`RootfsPlan::pod_setup`] runs once per pod in the node's mount namespace
//!   ([`prepare`]); [`RootfsPlan::pod_teardown`] undoes it ([`teardown`]).
//! - [`RootfsPlan::container_mounts`] runs inside each container's private mount
//!   namespace, just before `exec` (see `spawn`): the generated files, fresh
//!   `/proc`, `/sys`, a minimal `/dev`, masks, then `pivot_root`.
//!
//! The overlay's lower layer is the host's root *filesystem*, without the mounts on
//! top of it, which is why `/proc`, `/sys` and `/dev` are mounted afresh.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Device nodes bound from the host's `/dev` (the set OCI runtimes provide).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Flags of a [`MountOp::Mount`], the subset a sandbox needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    /// `MS_BIND`.
    pub bind: bool,
    /// `MS_REC`.
    pub rec: bool,
    /// `MS_RDONLY`.
    pub readonly: bool,
    /// `MS_NOSUID`.
    pub nosuid: bool,
    /// `MS_NODEV`.
    pub nodev: bool,
    /// `MS_NOEXEC`.
    pub noexec: bool,
}

impl MountFlags {
    /// The kernel flags.
    pub fn to_ms(self) -> MsFlags {
        let mut f = MsFlags::empty();
        f.set(MsFlags::MS_BIND, self.bind);
        f.set(MsFlags::MS_REC, self.rec);
        f.set(MsFlags::MS_RDONLY, self.readonly);
        f.set(MsFlags::MS_NOSUID, self.nosuid);
        f.set(MsFlags::MS_NODEV, self.nodev);
        f.set(MsFlags::MS_NOEXEC, self.noexec);
        f
    }

    fn words(self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.readonly {
            w.push("ro");
        }
        if self.nosuid {
            w.push("nosuid");
        }
        if self.nodev {
            w.push("nodev");
        }
        if self.noexec {
            w.push("noexec");
        }
        w
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags =
    MountFlags { bind: false, rec: false, readonly: false, nosuid: true, nodev: true, noexec: true };

/// One filesystem step. Prints as the shell command that does the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// `mkdir -p`.
    Mkdir {
        /// Directory.
        path: PathBuf,
    },
    /// Write a generated file.
    WriteFile {
        /// File.
        path: PathBuf,
        /// Contents.
        contents: String,
    },
    /// Make `path` an empty regular file unless it is one: a bind-mount target must
    /// not be a symlink (the host's `/etc/resolv.conf` often points into `/run`,
    /// which is not in the overlay). The change lands in the pod's upper layer.
    EnsureFile {
        /// File.
        path: PathBuf,
    },
    /// Create an empty file as a mount point (in a tmpfs).
    Touch {
        /// File.
        path: PathBuf,
    },
    /// `ln -s`.
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// `mount`.
    Mount {
        /// Source (device, or the bound path).
        source: PathBuf,
        /// Mount point.
        target: PathBuf,
        /// File system type, `None` for bind mounts.
        fstype: Option<String>,
        /// Flags.
        flags: MountFlags,
        /// File-system-specific options.
        data: Option<String>,
        /// A missing target is skipped rather than an error (masks of paths that may
        /// not exist in the root).
        optional: bool,
    },
    /// `mount --make-rprivate`: nothing mounted in the container leaks to the host.
    MakeRprivate {
        /// Mount point.
        path: PathBuf,
    },
    /// Make `new_root` the root, detaching the old one entirely.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
    },
    /// `umount`; with `detach`, `umount -l`.
    Unmount {
        /// Mount point.
        path: PathBuf,
        /// Lazy unmount.
        detach: bool,
    },
    /// `rmdir`: removes a mount point only if it is empty, which it is once the
    /// overlay is unmounted. A still-mounted merged root is never walked.
    RemoveDir {
        /// Directory.
        path: PathBuf,
    },
    /// `rm -rf` of a directory this plan created.
    RemoveAll {
        /// Directory.
        path: PathBuf,
    },
}

impl fmt::Display for MountOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountOp::Mkdir { path } => write!(f, "mkdir -p {}", path.display()),
            MountOp::WriteFile { path, contents } => {
                write!(f, "write {} ({} bytes)", path.display(), contents.len())
            }
            MountOp::EnsureFile { path } => write!(f, "ensure-file {}", path.display()),
            MountOp::Touch { path } => write!(f, "touch {}", path.display()),
            MountOp::Symlink { target, link } => {
                write!(f, "ln -s {} {}", target.display(), link.display())
            }
            MountOp::Mount { source, target, fstype, flags, data, optional } => {
                write!(f, "mount")?;
                if flags.bind {
                    write!(f, " {}", if flags.rec { "--rbind" } else { "--bind" })?;
                }
                if let Some(t) = fstype {
                    write!(f, " -t {t}")?;
                }
                let mut opts: Vec<String> = flags.words().iter().map(|w| w.to_string()).collect();
                if let Some(d) = data {
                    opts.push(d.clone());
                }
                if !opts.is_empty() {
                    write!(f, " -o {}", opts.join(","))?;
                }
                write!(f, " {} {}", source.display(), target.display())?;
                if *optional {
                    write!(f, " (if present)")?;
                }
                Ok(())
            }
            MountOp::MakeRprivate { path } => {
                write!(f, "mount --make-rprivate {}", path.display())
            }
            MountOp::PivotRoot { new_root } => write!(f, "pivot_root {}", new_root.display()),
            MountOp::Unmount { path, detach } => {
                write!(f, "umount{} {}", if *detach { " -l" } else { "" }, path.display())
            }
            MountOp::RemoveDir { path } => write!(f, "rmdir {}", path.display()),
            MountOp::RemoveAll { path } => write!(f, "rm -rf {}", path.display()),
        }
    }
}

/// Renders mount operations as text, one per line (the golden-file form).
pub fn render_text(ops: &[MountOp]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

/// The files kubelet generates for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFiles {
    /// `/etc/hosts` (see [`crate::dns::hosts_file`]).
    pub hosts: String,
    /// `/etc/hostname` (see [`crate::dns::hostname_file`]).
    pub hostname: String,
    /// `/etc/resolv.conf` (see [`crate::dns::pod_resolv_conf`]).
    pub resolv_conf: String,
}

/// A pod's root filesystem: an overlay of `lower` (the host root) kept in `pod_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsPlan {
    /// The per-pod directory; everything the plan creates is inside it.
    pub pod_dir: PathBuf,
    /// The overlay's lower directory, `/`.
    pub lower: PathBuf,
    /// Generated files.
    pub files: GeneratedFiles,
    /// Host paths hidden inside the pod under an empty read-only tmpfs, e.g. the
    /// node's data directory (which holds keys and the other pods' upper layers).
    pub masked: Vec<PathBuf>,
}

impl RootfsPlan {
    /// A plan with lower `/` and no masks.
    pub fn new(pod_dir: impl Into<PathBuf>, files: GeneratedFiles) -> Self {
        Self { pod_dir: pod_dir.into(), lower: PathBuf::from("/"), files, masked: Vec::new() }
    }

    /// The merged root, `pod_dir/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.pod_dir.join("rootfs")
    }

    /// The upper (writable) layer, `pod_dir/upper`: what the pod wrote.
    pub fn upper(&self) -> PathBuf {
        self.pod_dir.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.pod_dir.join("work")
    }

    fn etc(&self) -> PathBuf {
        self.pod_dir.join("etc")
    }

    fn generated(&self) -> [(&'static str, &String); 3] {
        [
            ("hosts", &self.files.hosts),
            ("hostname", &self.files.hostname),
            ("resolv.conf", &self.files.resolv_conf),
        ]
    }

    /// In the node's mount namespace: directories, generated files, the overlay, and
    /// regular files as bind targets in the merged `/etc`.
    pub fn pod_setup(&self) -> Vec<MountOp> {
        let mut ops: Vec<MountOp> = [self.upper(), self.work(), self.rootfs(), self.etc()]
            .into_iter()
            .map(|path| MountOp::Mkdir { path })
            .collect();
        for (name, contents) in self.generated() {
            ops.push(MountOp::WriteFile { path: self.etc().join(name), contents: contents.clone() });
        }
        ops.push(MountOp::Mount {
            source: PathBuf::from("overlay"),
            target: self.rootfs(),
            fstype: Some("overlay".to_string()),
            flags: MountFlags::default(),
            data: Some(format!(
                "lowerdir={},upperdir={},workdir={}",
                self.lower.display(),
                self.upper().display(),
                self.work().display()
            )),
            optional: false,
        });
        for (name, _) in self.generated() {
            ops.push(MountOp::EnsureFile { path: self.rootfs().join("etc").join(name) });
        }
        ops
    }

    /// Unmount the overlay and remove what [`RootfsPlan::pod_setup`] created. The
    /// unmount is lazy so a process still running in the pod cannot make it fail;
    /// the overlay then goes away with that process.
    pub fn pod_teardown(&self) -> Vec<MountOp> {
        let mut ops = vec![MountOp::Unmount { path: self.rootfs(), detach: true }];
        ops.push(MountOp::RemoveDir { path: self.rootfs() });
        for path in [self.upper(), self.work(), self.etc()] {
            ops.push(MountOp::RemoveAll { path });
        }
        ops
    }

    /// Inside a container's new mount namespace, before `exec`.
    pub fn container_mounts(&self) -> Vec<MountOp> {
        let root = self.rootfs();
        let dev = root.join("dev");
        let mut ops = vec![MountOp::MakeRprivate { path: PathBuf::from("/") }];
        for (name, _) in self.generated() {
            ops.push(bind(self.etc().join(name), root.join("etc").join(name)));
        }
        ops.push(MountOp::Mount {
            source: PathBuf::from("proc"),
            target: root.join("proc"),
            fstype: Some("proc".to_string()),
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
            optional: false,
        });
        // sysfs shows the network devices of the mounting process's namespace: the
        // pod's. Read-only, as runtimes mount it for unprivileged containers.
        ops.push(MountOp::Mount {
            source: PathBuf::from("sysfs"),
            target: root.join("sys"),
            fstype: Some("sysfs".to_string()),
            flags: MountFlags { readonly: true, ..NOSUID_NODEV_NOEXEC },
            data: None,
            optional: false,
        });
        // A private /dev (not the host's, whose /dev/shm the host shares).
        ops.push(MountOp::Mount {
            source: PathBuf::from("tmpfs"),
            target: dev.clone(),
            fstype: Some("tmpfs".to_string()),
            flags: MountFlags { nosuid: true, ..MountFlags::default() },
            data: Some("mode=755,size=65536k".to_string()),
            optional: false,
        });
        for d in DEVICES {
            ops.push(MountOp::Touch { path: dev.join(d) });
            ops.push(bind(Path::new("/dev").join(d), dev.join(d)));
        }
        ops.push(MountOp::Mkdir { path: dev.join("pts") });
        ops.push(MountOp::Mount {
            source: PathBuf::from("devpts"),
            target: dev.join("pts"),
            fstype: Some("devpts".to_string()),
            flags: MountFlags { nosuid: true, noexec: true, ..MountFlags::default() },
            data: Some("newinstance,ptmxmode=0666,mode=0620".to_string()),
            optional: false,
        });
        ops.push(MountOp::Mkdir { path: dev.join("shm") });
        ops.push(MountOp::Mount {
            source: PathBuf::from("shm"),
            target: dev.join("shm"),
            fstype: Some("tmpfs".to_string()),
            flags: NOSUID_NODEV_NOEXEC,
            data: Some("mode=1777,size=65536k".to_string()),
            optional: false,
        });
        for (target, link) in [
            ("pts/ptmx", "ptmx"),
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
        ] {
            ops.push(MountOp::Symlink { target: PathBuf::from(target), link: dev.join(link) });
        }
        for m in &self.masked {
            let rel = m.strip_prefix("/").unwrap_or(m);
            ops.push(MountOp::Mount {
                source: PathBuf::from("tmpfs"),
                target: root.join(rel),
                fstype: Some("tmpfs".to_string()),
                flags: MountFlags { readonly: true, ..NOSUID_NODEV_NOEXEC },
                data: None,
                optional: true,
            });
        }
        ops.push(MountOp::PivotRoot { new_root: root });
        ops
    }
}

fn bind(source: PathBuf, target: PathBuf) -> MountOp {
    MountOp::Mount {
        source,
        target,
        fstype: None,
        flags: MountFlags { bind: true, ..MountFlags::default() },
        data: None,
        optional: false,
    }
}

/// A host-side filesystem step failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct RootfsError {
    /// The step, as text.
    pub op: String,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn run_host_op(op: &MountOp) -> io::Result<()> {
    match op {
        MountOp::Mkdir { path } => fs::create_dir_all(path),
        MountOp::WriteFile { path, contents } => fs::write(path, contents),
        MountOp::EnsureFile { path } => match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => Ok(()),
            Ok(m) if m.file_type().is_dir() => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"))
            }
            Ok(_) => {
                fs::remove_file(path)?;
                fs::write(path, "")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::write(path, ""),
            Err(e) => Err(e),
        },
        MountOp::Touch { path } => fs::write(path, ""),
        MountOp::Symlink { target, link } => symlink(target, link),
        MountOp::Mount { source, target, fstype, flags, data, optional } => {
            if *optional && !target.exists() {
                return Ok(());
            }
            mount(Some(source.as_path()), target.as_path(), fstype.as_deref(), flags.to_ms(), data.as_deref())
                .map_err(io::Error::from)
        }
        MountOp::MakeRprivate { path } => mount(
            None::<&str>,
            path.as_path(),
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(io::Error::from),
        MountOp::PivotRoot { .. } => {
            Err(io::Error::new(io::ErrorKind::Unsupported, "pivot_root only runs inside a container"))
        }
        MountOp::Unmount { path, detach } => {
            let flags = if *detach { MntFlags::MNT_DETACH } else { MntFlags::empty() };
            match umount2(path.as_path(), flags) {
                // EINVAL: not mounted (already torn down); ENOENT: never made.
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        MountOp::RemoveDir { path } => match fs::remove_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
        // remove_dir_all does not follow symlinks, so links a pod left in its upper
        // layer cannot point the removal at host files.
        MountOp::RemoveAll { path } => match fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    }
}

/// Carries out [`RootfsPlan::pod_setup`]; on failure, runs the teardown (which only
/// removes what the plan names) and returns the first error.
pub fn prepare(plan: &RootfsPlan) -> Result<(), RootfsError> {
    for op in plan.pod_setup() {
        if let Err(source) = run_host_op(&op) {
            let _ = teardown(plan);
            return Err(RootfsError { op: op.to_string(), source });
        }
    }
    Ok(())
}

/// Carries out [`RootfsPlan::pod_teardown`], continuing past failures; returns the
/// first. Safe to repeat.
pub fn teardown(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let mut first = None;
    for op in plan.pod_teardown() {
        if let Err(source) = run_host_op(&op) {
            first.get_or_insert(RootfsError { op: op.to_string(), source });
        }
    }
    first.map_or(Ok(()), Err)
}
