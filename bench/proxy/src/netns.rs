//! Everything the benchmark makes on the machine, and its removal: network namespaces
//! (named `pbp-<pid>-...`, so they are recognisably ours), the processes it starts
//! (HAProxy) and their files. All of it is recorded in one registry as it is made and
//! removed by [`Cleanup`] when `main` returns or unwinds, or by the signal thread
//! ([`clean_up_on_signals`]) on Ctrl-C / SIGTERM / SIGHUP. Nothing else is ever
//! removed.
//!
//! Links, addresses, routes and nftables tables all live inside those namespaces:
//! every `ip` command names one (`ip -n`), sysctls and `nft` run from a thread that
//! joined one, and the kernel frees what is inside a namespace with it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{anyhow, bail, Context};
use pier_nft::NftCli;
use pier_sandbox::netlink::{create_netns, delete_netns, in_netns};
use pier_sandbox::{Netns, NetnsName};

/// The "cluster CIDR" given to the renderer: all pods, including the fake endpoints
/// of the filler Services (10.250.128.0/17, never on any link).
pub const CLUSTER_CIDR: &str = "10.250.0.0/16";
/// The service CIDR: ClusterIPs are allocated from it.
pub const SERVICE_CIDR: &str = "10.251.0.0/16";
/// `cbr0`'s address (10.250.0.1/24, the pod network), the pods' gateway; HAProxy
/// listens on it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
/// The client pod.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 10);
/// The server pod, the one endpoint of the benchmark Service.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 20);
/// The server pod's HTTP port (the Service's `targetPort`).
pub const SERVER_PORT: u16 = 8080;
/// The benchmark Service's ClusterIP.
pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 10);
/// The benchmark Service's port.
pub const SERVICE_PORT: u16 = 80;
/// HAProxy's port on [`GATEWAY`].
pub const HAPROXY_PORT: u16 = 8081;

#[derive(Default)]
struct Registry {
    netns: Vec<NetnsName>,
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { netns: Vec::new(), children: Vec::new(), files: Vec::new() });

fn registry() -> MutexGuard<'static, Registry> {
    // A thread that panicked while holding the lock left the lists consistent
    // (every change is one push or one drain).
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// Stops the processes, then deletes the namespaces (last made first) and files.
    fn clean(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for mut child in self.children.drain(..).rev() {
            let pid = child.id();
            if !matches!(child.try_wait(), Ok(Some(_))) {
                if let Err(e) = child.kill() {
                    errors.push(format!("killing process {pid}: {e}"));
                }
                let _ = child.wait();
            }
        }
        for name in self.netns.drain(..).rev() {
            if let Err(e) = delete_netns(&name) {
                errors.push(format!("deleting network namespace {name}: {e}"));
            }
        }
        for file in self.files.drain(..) {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(format!("removing {}: {e}", file.display()));
                }
                _ => {}
            }
        }
        errors
    }
}

/// Removes everything recorded so far when dropped (end of `main`, an error, a panic).
pub struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        for e in registry().clean() {
            eprintln!("cleanup: {e}");
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove everything and exit with status 130. The
/// registry's lock is held from the cleanup to the exit, so nothing made meanwhile
/// escapes (everything is made while holding it).
pub fn clean_up_on_signals() -> anyhow::Result<()> {
    pier_bench_support::on_termination_signals("pbp-signals", |which| {
        let mut reg = registry();
        eprintln!("{which}: removing the benchmark's namespaces and processes");
        for e in reg.clean() {
            eprintln!("cleanup: {e}");
        }
        std::process::exit(130);
    })
}

/// Creates network namespace `name` and records it.
pub fn add_netns(name: &str) -> anyhow::Result<NetnsName> {
    let name = NetnsName::new(name).with_context(|| format!("namespace name {name:?}"))?;
    let mut reg = registry();
    create_netns(&name).with_context(|| format!("creating network namespace {name}"))?;
    reg.netns.push(name.clone());
    Ok(name)
}

/// Writes `contents` to a new file in the temporary directory and records it.
pub fn temp_file(name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(name);
    let mut reg = registry();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    reg.files.push(path.clone());
    Ok(path)
}

/// Starts `cmd` inside namespace `ns` (the child is born there) and records it; its PID.
pub fn spawn_in(ns: &NetnsName, mut cmd: Command) -> anyhow::Result<u32> {
    let mut reg = registry();
    let child = in_netns(&Netns::Named(ns.clone()), move || Ok(cmd.spawn()))
        .with_context(|| format!("entering {ns}"))?
        .context("starting the process")?;
    let pid = child.id();
    reg.children.push(child);
    Ok(pid)
}

/// The exit status of a recorded process that has ended.
pub fn exited(pid: u32) -> Option<ExitStatus> {
    let mut reg = registry();
    let child = reg.children.iter_mut().find(|c| c.id() == pid)?;
    child.try_wait().ok().flatten()
}

/// Runs `f` on a thread inside `ns`.
pub fn run_in<T: Send>(ns: &NetnsName, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    in_netns(&Netns::Named(ns.clone()), move || Ok(f())).with_context(|| format!("entering {ns}"))
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let program = if Path::new("/usr/sbin/ip").exists() { "/usr/sbin/ip" } else { "ip" };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Writes `/proc/sys/<key>` inside `ns`. `optional`: a key that does not exist there
/// (the `net.bridge` keys without `br_netfilter`) is skipped; whether it was written.
fn sysctl(ns: &NetnsName, key: &str, value: &str, optional: bool) -> anyhow::Result<bool> {
    let path = Path::new("/proc/sys").join(key);
    let written = run_in(ns, || match std::fs::write(&path, value) {
        Ok(()) => Ok(true),
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    })?;
    written.with_context(|| format!("writing {} in {ns}", path.display()))
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread that lives inside one namespace and runs jobs there: sockets it (and the
/// threads it starts) create belong to that namespace. Timing is done inside the job,
/// so the hand-over costs nothing measured.
pub struct NsWorker {
    ns: NetnsName,
    jobs: mpsc::Sender<Job>,
}

impl NsWorker {
    /// Starts the thread in `ns`; it ends when the worker is dropped.
    pub fn start(ns: &NetnsName) -> anyhow::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let name = format!("pbp-{}", ns.as_str().rsplit('-').next().unwrap_or("worker"));
        run_in(ns, move || {
            // A thread started from a thread inside the namespace is inside it too.
            std::thread::Builder::new().name(name).spawn(move || {
                for job in rx {
                    job();
                }
            })
        })?
        .with_context(|| format!("starting a thread in {ns}"))?;
        Ok(Self { ns: ns.clone(), jobs })
    }

    /// Runs `f` inside the namespace and waits for its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> anyhow::Result<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| anyhow!("the worker thread in {} is gone", self.ns))?;
        rx.recv().map_err(|_| anyhow!("a job in {} panicked", self.ns))
    }
}

/// One node of the benchmark: a node namespace with `cbr0` (the pods' gateway), a
/// client pod and a server pod on veths with hairpin, as Pier's node agent makes them
/// (`pier_sandbox::PodNetwork`), and nft for the node namespace.
pub struct Topology {
    /// The node namespace, where the proxy's table is.
    pub node: NetnsName,
    /// The server pod's namespace.
    pub server: NetnsName,
    /// Runs the load generator in the client pod.
    pub worker: NsWorker,
    /// nft in the node namespace.
    pub nft: NftCli,
    /// Whether `net.bridge.bridge-nf-call-iptables` could be set (br_netfilter loaded).
    pub bridge_nf: bool,
}

impl Topology {
    /// The namespaces `<prefix>-node`, `<prefix>-client`, `<prefix>-server`, linked.
    pub fn create(prefix: &str) -> anyhow::Result<Self> {
        let node = add_netns(&format!("{prefix}-node"))?;
        let client = add_netns(&format!("{prefix}-client"))?;
        let server = add_netns(&format!("{prefix}-server"))?;
        let n = node.as_str();
        let gateway = format!("{GATEWAY}/24");
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "link", "add", "cbr0", "type", "bridge"])?;
        ip(&["-n", n, "addr", "add", &gateway, "dev", "cbr0"])?;
        ip(&["-n", n, "link", "set", "cbr0", "up"])?;
        sysctl(&node, "net/ipv4/ip_forward", "1", false)?;
        let bridge_nf = sysctl(&node, "net/bridge/bridge-nf-call-iptables", "1", true)?;
        attach_pod(&node, &client, "vclient", CLIENT_IP)?;
        attach_pod(&node, &server, "vserver", SERVER_IP)?;
        // Many short connections per destination: a wider ephemeral range (inside the
        // client pod only).
        sysctl(&client, "net/ipv4/ip_local_port_range", "10000\t65000", false)?;
        let worker = NsWorker::start(&client)?;
        let nft = NftCli::in_netns(node.clone());
        Ok(Self { node, server, worker, nft, bridge_nf })
    }

    /// Starts the HTTP server in the server pod, `threads` connections at a time.
    pub fn start_server(&self, threads: usize) -> anyhow::Result<()> {
        let addr = SocketAddr::V4(SocketAddrV4::new(SERVER_IP, SERVER_PORT));
        let listener = run_in(&self.server, || TcpListener::bind(addr))?
            .with_context(|| format!("binding {addr} in {}", self.server))?;
        // The listener stays in the server pod's namespace whichever thread accepts.
        crate::http::serve(listener, threads).context("starting the server threads")
    }
}

/// A pod as `PodNetwork::render_setup` makes it: veth with `eth0` in the pod, address,
/// default route via `cbr0`, the host end on `cbr0` with hairpin.
fn attach_pod(node: &NetnsName, pod: &NetnsName, veth: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    let (n, p) = (node.as_str(), pod.as_str());
    let cidr = format!("{addr}/24");
    let gw = GATEWAY.to_string();
    ip(&["-n", n, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", p])?;
    ip(&["-n", p, "link", "set", "lo", "up"])?;
    ip(&["-n", p, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", p, "link", "set", "eth0", "up"])?;
    ip(&["-n", p, "route", "add", "default", "via", &gw, "dev", "eth0"])?;
    ip(&["-n", n, "link", "set", veth, "master", "cbr0"])?;
    ip(&["-n", n, "link", "set", veth, "type", "bridge_slave", "hairpin", "on"])?;
    ip(&["-n", n, "link", "set", veth, "up"])?;
    Ok(())
}
