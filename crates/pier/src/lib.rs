//! The `pier` binary: command-line parsing and wiring of the components.
//!
//! `pier up --data-dir D` runs a single-machine cluster in the foreground until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

mod nodes;
use clap::{Parser, Subcommand};
use nodes::ClusterNetwork;

#[derive(Parser, Debug)]
#[command(name = "pier", version, about = "Kubernetes Services, real and fast, in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-machine cluster in the foreground.
    Up(UpArgs),
    /// Run a node agent (started by `pier up` inside the node's namespaces).
    #[command(hide = true)]
    Node(NodeArgs),
    /// The node supervisor `pier up` starts in a node's namespaces: runs the reaper
    /// and `pier node`.
    #[command(hide = true)]
    NodeInit(NodeArgs),
    /// Init of a node's PID namespace (started by `pier node-init`).
    #[command(hide = true)]
    NodeReaper,
    /// A built-in program the image table maps images to (e.g. `kubia` for luksa/kubia).
    #[command(hide = true)]
    App {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `pier app NAME [ARGS...]`: the name and its arguments, taken without the
/// command-line parser. A pod of a built-in image starts this binary for every
/// container, and building the whole parser and the log subscriber was a third of
/// what such a start cost. Anything else (`pier app --help`, words that are not
/// UTF-8) goes through the parser, which explains itself.
fn app_words(args: impl IntoIterator<Item = std::ffi::OsString>) -> Option<Vec<String>> {
    let mut args = args.into_iter().skip(1);
    if args.next()? != "app" {
        return None;
    }
    let words: Vec<String> = args.map(|a| a.into_string().ok()).collect::<Option<_>>()?;
    match words.first() {
        Some(name) if !name.starts_with('-') => Some(words),
        _ => None,
    }
}

#[derive(clap::Args, Debug, Clone)]
struct NodeArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    node_ip: std::net::Ipv4Addr,
    #[arg(long)]
    pod_cidr: String,
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Where the node's DNS server forwards names outside the cluster: `resolv.conf`
    /// (the nameservers of /etc/resolv.conf), `none`, or addresses (`IP` or
    /// `IP:PORT`), comma-separated.
    #[arg(long, default_value = "resolv.conf")]
    dns_upstream: String,
    /// Host paths hidden inside pods.
    #[arg(long)]
    mask: Vec<PathBuf>,
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The whole cluster's pod CIDR (traffic from outside it to a ClusterIP is
    /// masqueraded).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The Service CIDR (an unallocated ClusterIP is rejected).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// The underlay: LoadBalancer and external IPs inside it are announced here.
    #[arg(long)]
    underlay: Option<String>,
    /// Where `images.yaml` may extend the image table.
    #[arg(long, default_value = "/var/lib/pier")]
    images_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// Directory for the cluster's state, certificates and kubeconfig.
    #[arg(long, default_value = "/var/lib/pier")]
    data_dir: PathBuf,
    /// HTTPS port of the API server on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Name of the cluster (kubeconfig context); derived from the data directory if unset.
    #[arg(long)]
    cluster_name: Option<String>,
    /// Range Service cluster IPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// NodePort range, as `first-last`.
    #[arg(long, default_value = "30000-32767")]
    node_port_range: String,
    /// How many nodes to run, each in its own network namespace (0: API server and
    /// controllers only).
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// The nodes' underlay network; its first address goes on the cluster's bridge.
    #[arg(long, default_value = "172.30.0.0/24")]
    underlay: String,
    /// Pod addresses; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_cidr: String,
    /// Addresses LoadBalancer Services get, as `first-last` or a CIDR, announced on the
    /// underlay by the nodes; `auto` is .200-.250 of a /24 underlay (the last
    /// quarter of a bigger one), `none` leaves LoadBalancer Services pending.
    #[arg(long, default_value = "auto")]
    lb_range: String,
    /// Where the nodes' DNS servers forward names outside the cluster: `resolv.conf`
    /// (the host's), `none`, or addresses (`IP` or `IP:PORT`), comma-separated.
    #[arg(long, default_value = "resolv.conf")]
    dns_upstream: String,
}

/// Runs the command line and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    if let Some(app) = app_words(std::env::args_os()) {
        return pier_apps::run(&app[0], &app[1..]);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIER_LOG")
                .unwrap_or_else(|_| "warn,pier=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::NodeReaper) {
        pier_sandbox::node::run_reaper();
    }
    if let Command::App { name, args } = &cli.command {
        return pier_apps::run(name, args);
    }
    if let Command::NodeInit(args) = &cli.command {
        return node_init(args);
    }
    if matches!(cli.command, Command::Node(_)) {
        pier_sandbox::node::limit_malloc_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Up(args) => runtime.block_on(up(args)),
        Command::Node(args) => runtime.block_on(node(args)),
        Command::NodeReaper | Command::NodeInit(_) | Command::App { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s.split_once('-').with_context(|| format!("port range {s:?} is not first-last"))?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "port range {s:?} is empty");
    Ok((a, b))
}

/// A cluster name from the data directory, so two clusters side by side differ.
fn derive_cluster_name(data_dir: &std::path::Path) -> String {
    let base = data_dir.file_name().and_then(|n| n.to_str()).unwrap_or("pier");
    let clean: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let clean = clean.trim_matches('-');
    if clean.is_empty() || clean == "pier" {
        "pier".to_string()
    } else {
        format!("pier-{clean}")
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    // One crypto provider for the whole process, chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().context("resolving the data directory")?;
    let cluster_name = args.cluster_name.clone().unwrap_or_else(|| derive_cluster_name(&data_dir));
    // The network is made and removed with blocking netlink requests: a few at start
    // and stop, before and after anything else runs.
    let applier = pier_sandbox::NetlinkApplier::new();
    let network = if args.nodes > 0 {
        ClusterNetwork::cleanup_stale(&data_dir, &applier)?;
        let underlay = args.underlay.parse().with_context(|| format!("--underlay {}", args.underlay))?;
        let pods = args.pod_cidr.parse().with_context(|| format!("--pod-cidr {}", args.pod_cidr))?;
        let net = ClusterNetwork::plan(&cluster_name, underlay, pods, args.nodes)?;
        net.setup(&data_dir, &applier)?;
        Some(net)
    } else {
        None
    };
    let result = run_cluster(&args, &data_dir, cluster_name, network.as_ref()).await;
    if let Some(net) = &network {
        net.teardown(&data_dir, &applier);
    }
    result
}

async fn run_cluster(
    args: &UpArgs,
    data_dir: &std::path::Path,
    cluster_name: String,
    network: Option<&ClusterNetwork>,
) -> anyhow::Result<()> {
    let store = pier_store::SqliteStore::open(data_dir.join("pier.db"))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let store: Arc<dyn pier_store::Store> = Arc::new(store);
    let mut config = pier_apiserver::Config::new(data_dir.to_path_buf(), args.api_port);
    config.cluster_name = cluster_name.clone();
    config.service_cidr = args.service_cidr.clone();
    config.node_port_range = parse_range(&args.node_port_range)?;
    if let Some(net) = network {
        config.extra_listen.push(nodes::underlay_listen(net));
        config.advertise_address = std::net::IpAddr::V4(net.bridge_ip());
    }
    let listen: SocketAddr = config.listen;
    let server = pier_apiserver::start(config, store)
        .await
        .with_context(|| format!("starting the API server on {listen}"))?;
    let client = kube_client(&server.kubeconfig).await?;
    let (stop_controllers, controllers_stopped) = tokio::sync::oneshot::channel::<()>();
    let lb_range = lb_range(&args.lb_range, network)?;
    // The kube-dns Service and its endpoints, the nodes' DNS servers: with nodes only.
    let cluster_dns = match network {
        Some(_) => Some(cluster_dns_ip(&args.service_cidr)?),
        None => None,
    };
    let controller_config = pier_controllers::Config { lb_range, cluster_dns };
    let controllers = tokio::spawn(pier_controllers::run_with(client, controller_config, async move {
        let _ = controllers_stopped.await;
    }));
    let mut node_children = Vec::new();
    let started = start_nodes(&server, data_dir, &cluster_name, args, network, &mut node_children);
    if let Err(e) = started {
        for c in &mut node_children {
            nodes::stop_node(c, std::time::Duration::from_secs(5)).await;
        }
        let _ = stop_controllers.send(());
        server.shutdown().await;
        return Err(e);
    }
    println!("Pier is up: API server at {}", server.url);
    println!("Point kubectl at it with:");
    println!("  export KUBECONFIG={}", server.kubeconfig_path.display());
    println!("  kubectl get ns");
    wait_for_signal().await?;
    tracing::info!("stopping");
    for c in &mut node_children {
        nodes::stop_node(c, std::time::Duration::from_secs(10)).await;
    }
    let _ = stop_controllers.send(());
    let _ = controllers.await;
    server.shutdown().await;
    Ok(())
}

/// The `kube-dns` ClusterIP: the tenth address of the service CIDR, as kubeadm picks.
fn cluster_dns_ip(service_cidr: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    pier_admission::nth_ip(service_cidr, 10).map_err(|e| anyhow::anyhow!("service CIDR {service_cidr}: {e}"))
}

fn start_nodes(
    server: &pier_apiserver::RunningServer,
    data_dir: &std::path::Path,
    cluster_name: &str,
    args: &UpArgs,
    network: Option<&ClusterNetwork>,
    children: &mut Vec<tokio::process::Child>,
) -> anyhow::Result<()> {
    let Some(net) = network else { return Ok(()) };
    let cluster_dns = cluster_dns_ip(&args.service_cidr)?;
    let api_url = format!("https://{}:{}", net.bridge_ip(), server.addr.port());
    for plan in &net.nodes {
        let dir = data_dir.join("nodes").join(&plan.name);
        let kubeconfig = nodes::write_node_files(&server.pki, &dir, plan, &api_url, cluster_name)?;
        let launch = nodes::NodeLaunch {
            plan: plan.clone(),
            dir,
            kubeconfig,
            cluster_dns,
            data_dir: data_dir.to_path_buf(),
            cluster_cidr: args.pod_cidr.clone(),
            service_cidr: args.service_cidr.clone(),
            underlay: net.underlay.addr.network().to_string(),
            dns_upstream: args.dns_upstream.clone(),
        };
        children.push(nodes::spawn_node(&launch)?);
    }
    Ok(())
}

/// `pier node-init`: starts the reaper and `pier node` with the same arguments.
fn node_init(args: &NodeArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: finding the pier executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reaper = std::process::Command::new(&exe);
    reaper.arg("node-reaper");
    let mut agent = std::process::Command::new(&exe);
    agent.arg("node").args(std::env::args_os().skip(2));
    let _ = args;
    match pier_sandbox::node::run_node_init(reaper, agent) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: supervising the node agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pier node`: the node agent, inside the namespaces `pier up` made for it.
async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    pier_sandbox::node::mount_own_proc()?;
    // Pod directories left on disk by an earlier version would hide under the tmpfs.
    let pods_dir = pier_node::pods_dir(&args.dir);
    let _ = std::fs::remove_dir_all(&pods_dir);
    pier_sandbox::node::mount_pods_tmpfs(&pods_dir)?;
    let kubeconfig = std::fs::read_to_string(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let client = client_from_kubeconfig(
        &kubeconfig,
        concat!("kubelet/v1.33.0 (linux/amd64) pier/", env!("CARGO_PKG_VERSION")),
    )
    .await?;
    let config = pier_node::NodeConfig {
        name: args.name,
        dir: args.dir,
        node_ip: args.node_ip,
        pod_cidr: args.pod_cidr.parse().with_context(|| format!("--pod-cidr {}", args.pod_cidr))?,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        masked: args.mask,
        kubelet_port: args.kubelet_port,
        max_pods: 110,
        self_exe: std::env::current_exe().context("finding the pier executable")?,
        images_dir: args.images_dir,
    };
    let proxy = proxier_config(
        &config.name,
        config.node_ip,
        &args.cluster_cidr,
        &args.service_cidr,
        args.underlay.as_deref(),
    )?;
    let proxy_client = client_from_kubeconfig(
        &kubeconfig,
        concat!("kube-proxy/v1.33.0 (linux/amd64) pier/", env!("CARGO_PKG_VERSION")),
    )
    .await?;
    let proxier = tokio::spawn(supervise_proxier(proxy_client, proxy));
    let dns_config = pier_dns_server::DnsConfig {
        listen: vec![std::net::SocketAddr::from((config.node_ip, pier_dns_server::DNS_PORT))],
        upstreams: dns_upstreams(&args.dns_upstream)?,
        index: pier_dns::Config {
            zone: config.cluster_domain.clone(),
            nameservers: vec![std::net::IpAddr::V4(config.cluster_dns)],
            ..pier_dns::Config::default()
        },
        metrics: Some(std::net::SocketAddr::from((config.node_ip, pier_dns_server::METRICS_PORT))),
        ..pier_dns_server::DnsConfig::default()
    };
    let dns_client =
        client_from_kubeconfig(&kubeconfig, concat!("pier-dns/", env!("CARGO_PKG_VERSION"))).await?;
    let dns = tokio::spawn(async move {
        if let Err(e) = pier_dns_server::run(dns_client, dns_config).await {
            tracing::error!(error = format!("{e:#}"), "the cluster DNS server stopped");
        }
    });
    let result = pier_node::run(client, config, async {
        let _ = wait_for_signal().await;
    })
    .await;
    proxier.abort();
    dns.abort();
    result
}

/// `--dns-upstream`: `resolv.conf`, `none`, or comma-separated `IP[:PORT]`s.
fn dns_upstreams(spec: &str) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    match spec.trim() {
        "none" | "" => Ok(Vec::new()),
        "resolv.conf" => {
            Ok(pier_dns_server::upstreams_from_resolv_conf("/etc/resolv.conf").unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no upstream DNS servers: names outside the cluster will fail");
                Vec::new()
            }))
        }
        list => list
            .split(',')
            .map(|one| {
                let one = one.trim();
                one.parse::<std::net::SocketAddr>()
                    .or_else(|_| one.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                    .map_err(|_| anyhow::anyhow!("--dns-upstream {one}: not an IP or IP:PORT"))
            })
            .collect(),
    }
}

/// Runs the node's service proxy, and runs it anew on SIGHUP, as restarting
/// kube-proxy would: the new one starts with a full sync over the table the old one
/// left, which established connections do not notice. Metrics carry on across
/// restarts.
async fn supervise_proxier(client: kube::Client, config: pier_proxier::ProxierConfig) {
    use tokio::signal::unix::{signal, SignalKind};
    let metrics = Arc::new(pier_proxier::Metrics::default());
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the service proxy cannot be restarted");
            None
        }
    };
    loop {
        let (client, config, metrics) = (client.clone(), config.clone(), Arc::clone(&metrics));
        let mut task = tokio::spawn(async move {
            let nft = Arc::new(pier_nft::NftCli::new());
            let conntrack = Arc::new(pier_nft::NetlinkConntrack::new());
            if let Err(e) = pier_proxier::run(client, config, nft, conntrack, metrics).await {
                tracing::error!(error = format!("{e:#}"), "the service proxy stopped");
            }
        });
        let restart = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut task => return,
            _ = restart => {
                tracing::info!("SIGHUP: restarting the service proxy");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// The service proxy of node `name`, reached at `node_ip`.
fn proxier_config(
    name: &str,
    node_ip: std::net::Ipv4Addr,
    cluster_cidr: &str,
    service_cidr: &str,
    underlay: Option<&str>,
) -> anyhow::Result<pier_proxier::ProxierConfig> {
    let cidr = |flag: &str, text: &str| -> anyhow::Result<pier_proxy::Ipv4Cidr> {
        text.parse().map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))
    };
    Ok(pier_proxier::ProxierConfig {
        node: pier_proxy::NodeInfo { name: name.to_string(), node_ips: vec![node_ip] },
        render: pier_proxy::RenderConfig {
            cluster_cidr: Some(cidr("--cluster-cidr", cluster_cidr)?),
            service_cidrs: vec![cidr("--service-cidr", service_cidr)?],
            ..pier_proxy::RenderConfig::default()
        },
        bind: node_ip,
        metrics_port: pier_proxier::METRICS_PORT,
        healthz_port: pier_proxier::HEALTHZ_PORT,
        announce_subnet: underlay.map(|u| cidr("--underlay", u)).transpose()?,
        uplink: Some("eth0".to_string()),
    })
}

/// `--lb-range`: `auto` derives a pool from the underlay, `none` disables it.
fn lb_range(
    flag: &str,
    network: Option<&ClusterNetwork>,
) -> anyhow::Result<Option<pier_controllers::loadbalancer::LbRange>> {
    let text = match (flag, network) {
        ("none", _) | ("auto", None) => return Ok(None),
        ("auto", Some(net)) => nodes::default_lb_range(net.underlay.addr)?,
        (explicit, _) => explicit.to_string(),
    };
    pier_controllers::loadbalancer::parse_lb_range(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--lb-range {text}: {e}"))
}

/// A client for the in-process components, from the admin kubeconfig: they reach the
/// API server over HTTPS like any other client.
async fn kube_client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    client_from_kubeconfig(
        kubeconfig,
        concat!("kube-controller-manager/v1.33.0 (linux) pier/", env!("CARGO_PKG_VERSION")),
    )
    .await
}

/// A client from a kubeconfig, identifying as `user_agent`.
async fn client_from_kubeconfig(kubeconfig: &str, user_agent: &'static str) -> anyhow::Result<kube::Client> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    // The API server names field managers after the User-Agent's product, so the
    // controllers' writes show in managedFields as upstream's do.
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(user_agent)));
    kube::Client::try_from(config).context("building the API client")
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_follow_data_dirs() {
        assert_eq!(derive_cluster_name(std::path::Path::new("/var/lib/pier")), "pier");
        assert_eq!(derive_cluster_name(std::path::Path::new("/tmp/Cluster_B")), "pier-cluster-b");
    }

    #[test]
    fn app_words_are_taken_only_for_a_plain_app_start() {
        let words = |args: &[&str]| app_words(args.iter().map(std::ffi::OsString::from));
        assert_eq!(
            words(&["pier", "app", "kubia", "--port", "9090"]),
            Some(vec!["kubia".to_string(), "--port".to_string(), "9090".to_string()])
        );
        assert_eq!(words(&["pier", "app", "pause"]), Some(vec!["pause".to_string()]));
        assert_eq!(words(&["pier", "app"]), None);
        assert_eq!(words(&["pier", "app", "--help"]), None);
        assert_eq!(words(&["pier", "up", "app"]), None);
        assert_eq!(words(&["pier"]), None);
        use std::os::unix::ffi::OsStringExt;
        let odd = ["pier", "app", "kubia"].map(std::ffi::OsString::from).into_iter();
        let odd = odd.chain([std::ffi::OsString::from_vec(vec![0xff])]);
        assert_eq!(app_words(odd), None, "not UTF-8: left to the parser");
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_range("30000-32767").expect("parses"), (30000, 32767));
        assert!(parse_range("5-1").is_err());
        assert!(parse_range("x").is_err());
    }
}
