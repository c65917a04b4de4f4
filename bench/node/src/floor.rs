//! The machine's floor for a burst of pod starts: the kernel work every pod needs on
//! a node, with no API server, no watch, no JSON and no status writes.
//!
//! A child of the benchmark, in a network, mount and PID namespace of its own (so
//! nothing it makes is visible to the host, and all of it goes when it exits, even
//! when it or the benchmark is killed), acts as the node: a `cbr0` bridge and the node's sysctls, then for each of N pods at once what
//! the node agent does with `pier-sandbox` itself: the pod's network (namespace, veth
//! on `cbr0`, address, route), its overlay root with the generated files, and its
//! process (`pier app pause`) started inside them. The time until every process runs
//! is the lowest start-up p99 the node could reach on this machine for N pods; the
//! CPU it took is the work the kernel cannot skip.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use pier_sandbox::{
    apply_plan, hostname_file, hosts_file, pod_resolv_conf, spawn, ClusterDns, ContainerCommand, DnsPolicy,
    GeneratedFiles, NetlinkApplier, Netns, NetnsName, PodNetwork, ResolvConf, RootfsPlan, SandboxChild,
    SandboxSpec, Stdio, Underlay,
};
use serde::{Deserialize, Serialize};

use crate::procfs;

/// The flag that makes the benchmark binary the floor's init: single-threaded, it
/// makes the namespaces and supervises the node's reaper and the worker.
pub const INIT_FLAG: &str = "--child-floor-init";
/// The flag that makes the benchmark binary the floor's worker, inside the namespaces.
pub const CHILD_FLAG: &str = "--child-floor";

/// How much of a pod's start the floor makes: each stage includes the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The pod's network namespace, veth on `cbr0`, address and route.
    Network,
    /// And its overlay root with the generated files.
    Root,
    /// And its process started inside both: the whole pod.
    Process,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Network, Stage::Root, Stage::Process];

    fn name(self) -> &'static str {
        match self {
            Stage::Network => "network",
            Stage::Root => "root",
            Stage::Process => "process",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s).with_context(|| format!("unknown floor stage {s:?}"))
    }

    /// What the stage makes, for the report.
    pub fn text(self) -> &'static str {
        match self {
            Stage::Network => "networks only",
            Stage::Root => "networks and roots",
            Stage::Process => "networks, roots and processes",
        }
    }
}

/// What the floor's child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorResult {
    pub stage: Stage,
    pub pods: usize,
    /// Start -> every pod made up to the stage (for the whole pod: its process
    /// running, exec done).
    pub all_started_ms: f64,
    /// Start -> this pod made, per pod.
    pub started_ms: Vec<f64>,
    /// The child's own CPU (its threads do the kernel work of networks, mounts, spawns).
    pub node_cpu_ms: f64,
    /// The pods' processes' CPU (their own set-up before exec, and their start).
    pub pods_cpu_ms: f64,
    /// Every CPU's busy time meanwhile.
    pub machine_cpu_ms: f64,
}

/// Runs the floor for `pods` pods up to `stage` in a child process and returns what it
/// measured.
pub fn measure(stage: Stage, pods: usize, pier_bin: &Path) -> anyhow::Result<FloorResult> {
    let me = std::env::current_exe().context("finding the benchmark's own binary")?;
    let mut child = Command::new(me);
    child.arg(INIT_FLAG).arg(stage.name()).arg(pods.to_string()).arg(pier_bin);
    pier_bench_support::json_report_of(child, "the floor's child")
}

/// The floor's init, as `pier up` starts a node: new network, mount and PID
/// namespaces, then the node's reaper (`pier node-reaper`, PID 1 of the namespace)
/// and the worker, both tied to this process. Whatever ends this process ends the
/// reaper, and with it every process in the namespace: the worker and the pods.
/// Must be called before any thread exists. `args` are the worker's.
pub fn init_main(args: &[String]) -> anyhow::Result<()> {
    let [_, _, pier_bin] = args else { bail!("usage: {INIT_FLAG} network|root|process PODS PIER_BIN") };
    prctl::set_pdeathsig(Signal::SIGKILL).context("asking for SIGKILL with the benchmark")?;
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .context("unsharing net, mount and PID namespaces")?;
    let netns_dir = pier_sandbox::netlink::NETNS_DIR;
    std::fs::create_dir_all(netns_dir).with_context(|| format!("creating {netns_dir}"))?;
    let netns_dir_c = std::ffi::CString::new(netns_dir).context("the netns directory's name")?;
    pier_sandbox::node::make_node_mounts(&netns_dir_c).context("making the node's mounts")?;
    let mut reaper = Command::new(pier_bin);
    reaper.arg("node-reaper");
    let mut worker = Command::new(std::env::current_exe().context("finding the benchmark's own binary")?);
    worker.arg(CHILD_FLAG).args(args);
    let code = pier_sandbox::node::run_node_init(reaper, worker).context("supervising the floor's worker")?;
    std::process::exit(code)
}

/// The worker, in the init's namespaces: `args` are the stage, the pod count and the
/// `pier` binary.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [stage, pods, pier_bin] = args else {
        bail!("usage: {CHILD_FLAG} network|root|process PODS PIER_BIN")
    };
    let stage = Stage::parse(stage)?;
    let pods: usize = pods.parse().context("pod count")?;
    if pods == 0 || pods > 250 {
        bail!("the floor runs 1 to 250 pods (one /24)");
    }
    // PIDs as this namespace numbers them, for the pods' CPU times.
    pier_sandbox::node::mount_own_proc().context("mounting the namespace's /proc")?;
    // Pod directories on a tmpfs, as the agent keeps them; this one covers /tmp only
    // in the floor's own mount namespace.
    let pods_dir = PathBuf::from("/tmp");
    pier_sandbox::node::mount_pods_tmpfs(&pods_dir).context("mounting the pods' tmpfs")?;
    let runtime = tokio::runtime::Runtime::new().context("starting a runtime")?;
    let result = runtime.block_on(run(stage, pods, PathBuf::from(pier_bin), pods_dir))?;
    println!("{}", serde_json::to_string(&result).context("encoding the result")?);
    Ok(())
}

async fn run(stage: Stage, pods: usize, pier_bin: PathBuf, pods_dir: PathBuf) -> anyhow::Result<FloorResult> {
    // The node: what `pier up` and the agent set up once, here in the child's own netns.
    for (key, value) in [("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")] {
        // br_netfilter may not be loaded; the node tolerates that too.
        let _ = std::fs::write(Path::new("/proc/sys").join(key), value);
    }
    let gateway: pier_sandbox::Ipv4Cidr = "10.244.0.1/24".parse().context("gateway")?;
    let bridge: pier_sandbox::IfName = "cbr0".parse().context("bridge name")?;
    let node = Underlay { ns: Netns::Host, bridge: bridge.clone(), addr: gateway };
    let lo = vec![pier_sandbox::NetOp::LinkUp { ns: Netns::Host, dev: "lo".parse().context("lo")? }];
    tokio::task::spawn_blocking(move || {
        let netlink = NetlinkApplier::new();
        apply_plan(&netlink, &lo).context("bringing lo up")?;
        apply_plan(&netlink, &node.render_setup()).context("setting up the node's bridge")
    })
    .await
    .context("setting up the node")??;

    let cluster_dns = ClusterDns {
        servers: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))],
        domain: "cluster.local".into(),
    };
    let host_conf =
        std::fs::read_to_string("/etc/resolv.conf").map(|t| ResolvConf::parse(&t)).unwrap_or_default();
    let resolv = pod_resolv_conf(DnsPolicy::ClusterFirst, "default", &cluster_dns, &host_conf, None).render();
    let shared = Arc::new((pier_bin, pods_dir, bridge, gateway, resolv));

    let ticks_0 = procfs::cpu_ticks(std::process::id()).context("own CPU")?;
    let machine_0 = procfs::machine_busy_ticks().context("reading /proc/stat")?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pods {
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            let (pier_bin, pods_dir, bridge, gateway, resolv) = &*shared;
            let child = start_pod(stage, i, pier_bin, pods_dir, bridge, *gateway, resolv).await?;
            Ok::<_, anyhow::Error>((child, start.elapsed()))
        });
    }
    let mut children = Vec::new();
    let mut started_ms = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (child, took) = joined.context("a pod's task panicked")??;
        children.extend(child);
        started_ms.push(took.as_secs_f64() * 1000.0);
    }
    let all_started = start.elapsed();
    let ticks_1 = procfs::cpu_ticks(std::process::id()).context("own CPU")?;
    let machine_1 = procfs::machine_busy_ticks().context("reading /proc/stat")?;
    let pods_ns: u64 = children.iter().filter_map(|c| procfs::cpu_ns(c.id())).sum();
    let tick_ms = 1000.0 / procfs::clock_ticks_per_s();
    // The pods' processes end with the PID namespace, their network namespaces,
    // veths and overlays with the network and mount namespaces.
    Ok(FloorResult {
        stage,
        pods,
        all_started_ms: all_started.as_secs_f64() * 1000.0,
        started_ms,
        node_cpu_ms: ticks_1.saturating_sub(ticks_0) as f64 * tick_ms,
        pods_cpu_ms: pods_ns as f64 / 1e6,
        machine_cpu_ms: machine_1.saturating_sub(machine_0) as f64 * tick_ms,
    })
}

/// One pod as the agent makes it, up to `stage`: network and root on blocking
/// threads, then the process, started from the async worker as the agent does.
async fn start_pod(
    stage: Stage,
    i: usize,
    pier_bin: &Path,
    pods_dir: &Path,
    bridge: &pier_sandbox::IfName,
    gateway: pier_sandbox::Ipv4Cidr,
    resolv: &str,
) -> anyhow::Result<Option<SandboxChild>> {
    let uid = format!("floor-{i:04}");
    let name = NetnsName::new(format!("pod-{uid}")).context("netns name")?;
    let host = u8::try_from(i + 2).context("pod index")?;
    let ip = Ipv4Addr::new(10, 244, 0, host);
    let net = PodNetwork::on_bridge(Netns::Host, bridge.clone(), gateway, name.clone(), &uid, ip)
        .context("planning a pod network")?;
    tokio::task::spawn_blocking(move || {
        apply_plan(&NetlinkApplier::new(), &net.render_setup()).with_context(|| format!("pod {i}'s network"))
    })
    .await
    .context("pod network task")??;
    if stage == Stage::Network {
        return Ok(None);
    }
    let hostname = format!("floor-{i:04}");
    let files = GeneratedFiles {
        hosts: hosts_file(&[IpAddr::V4(ip)], &hostname, None, &[]),
        hostname: hostname_file(&hostname),
        resolv_conf: resolv.to_string(),
    };
    let rootfs = RootfsPlan::new(pods_dir.join(&uid), files);
    let plan = rootfs.clone();
    tokio::task::spawn_blocking(move || pier_sandbox::rootfs::prepare(&plan))
        .await
        .context("pod root task")?
        .with_context(|| format!("pod {i}'s root filesystem"))?;
    if stage == Stage::Root {
        return Ok(None);
    }
    let spec = SandboxSpec { netns: name, hostname, rootfs };
    let mut cmd =
        ContainerCommand::new([pier_bin.to_string_lossy().into_owned(), "app".into(), "pause".into()]);
    cmd.stdout = Stdio::null();
    cmd.stderr = Stdio::null();
    tokio::task::block_in_place(|| spawn(&spec, cmd))
        .map(Some)
        .with_context(|| format!("starting pod {i}'s process"))
}
