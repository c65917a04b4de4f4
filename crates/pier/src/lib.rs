//! The `pier` binary: command-line parsing and wiring of the components.
//!
//! `pier up --data-dir D` runs a single-machine cluster in the foreground until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
}

/// Runs the command line and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIER_LOG")
                .unwrap_or_else(|_| "warn,pier=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Up(args) => runtime.block_on(up(args)),
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
    let store = pier_store::SqliteStore::open(data_dir.join("pier.db"))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let store: Arc<dyn pier_store::Store> = Arc::new(store);
    let mut config = pier_apiserver::Config::new(data_dir.clone(), args.api_port);
    config.cluster_name = args.cluster_name.unwrap_or_else(|| derive_cluster_name(&data_dir));
    config.service_cidr = args.service_cidr;
    config.node_port_range = parse_range(&args.node_port_range)?;
    let listen: SocketAddr = config.listen;
    let server = pier_apiserver::start(config, store)
        .await
        .with_context(|| format!("starting the API server on {listen}"))?;
    let client = kube_client(&server.kubeconfig).await?;
    let (stop_controllers, controllers_stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(pier_controllers::run(client, async move {
        let _ = controllers_stopped.await;
    }));
    println!("Pier is up: API server at {}", server.url);
    println!("Point kubectl at it with:");
    println!("  export KUBECONFIG={}", server.kubeconfig_path.display());
    println!("  kubectl get ns");
    wait_for_signal().await?;
    tracing::info!("stopping");
    let _ = stop_controllers.send(());
    let _ = controllers.await;
    server.shutdown().await;
    Ok(())
}

/// A client for the in-process components, from the admin kubeconfig: they reach the
/// API server over HTTPS like any other client.
async fn kube_client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    // The API server names field managers after the User-Agent's product, so the
    // controllers' writes show in managedFields as upstream's do.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!(
            "kube-controller-manager/v1.33.0 (linux) pier/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
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
    fn port_ranges_parse() {
        assert_eq!(parse_range("30000-32767").expect("parses"), (30000, 32767));
        assert!(parse_range("5-1").is_err());
        assert!(parse_range("x").is_err());
    }
}
