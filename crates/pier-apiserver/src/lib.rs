//! Pier's Kubernetes API server: the REST API over HTTPS that the real `kubectl` and
//! every Pier component talk to, and the only component that touches storage.
//!
//! - [`start`] brings a server up on a [`Config`] and a [`pier_store::Store`].
//! - [`objects::Objects`] is the generic registry (CRUD, list, watch) behind every resource.
//! - [`handlers::Api`] maps HTTP to it: discovery, OpenAPI, tables, patches, subresources.
//! - [`pki`] makes the cluster CA, the serving certificate and the admin kubeconfig.
//! - [`node_proxy`] forwards `pods/exec`, `attach`, `portforward` and `log` to nodes.

pub mod admission;
pub mod discovery;
pub mod handlers;
pub mod meta;
pub mod node_proxy;
pub mod objects;
pub mod pki;
pub mod request;
pub mod server;
pub mod status;
pub mod watch_lines;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::objects::{ListOptions, Objects, WriteOptions};

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where certificates and the kubeconfig live.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Further addresses to listen on (e.g. the node underlay bridge).
    pub extra_listen: Vec<SocketAddr>,
    /// The address other components and the `kubernetes` Endpoints use.
    pub advertise_address: IpAddr,
    pub service_cidr: String,
    pub node_port_range: (u16, u16),
    pub cluster_name: String,
}

impl Config {
    pub fn new(data_dir: PathBuf, port: u16) -> Self {
        Config {
            data_dir,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            extra_listen: Vec::new(),
            advertise_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: (30000, 32767),
            cluster_name: "pier".into(),
        }
    }
}

/// A running API server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub url: String,
    pub kubeconfig_path: PathBuf,
    pub kubeconfig: String,
    pub pki: pki::Pki,
    pub api: Arc<handlers::Api>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Tasks that run until stopped (the namespace cache).
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the listeners to end.
    pub async fn shutdown(mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        for t in self.background.drain(..) {
            t.abort();
        }
    }
}

/// Starts the API server: certificates, kubeconfig, bootstrap objects, listeners.
pub async fn start(config: Config, store: Arc<dyn pier_store::Store>) -> anyhow::Result<RunningServer> {
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut extra = Vec::new();
    for a in &config.extra_listen {
        let a = SocketAddr::new(a.ip(), if a.port() == 0 { addr.port() } else { a.port() });
        extra.push(TcpListener::bind(a).await.with_context(|| format!("binding {a}"))?);
    }

    let service_ip: IpAddr = pier_admission::nth_ip(&config.service_cidr, 1)
        .map(IpAddr::V4)
        .map_err(|e| anyhow::anyhow!("service CIDR {}: {e}", config.service_cidr))?;
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push(config.cluster_name.clone());
    let mut ips: Vec<IpAddr> = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), config.advertise_address, service_ip];
    ips.extend(config.extra_listen.iter().map(|a| a.ip()));
    ips.dedup();
    let pki = pki::Pki::load_or_create(&config.data_dir.join("pki"), &names, &ips)
        .context("preparing certificates")?;

    let allocator = pier_admission::ServiceAllocator::new(
        &config.service_cidr,
        config.node_port_range.0..=config.node_port_range.1,
    )
    .map_err(|e| anyhow::anyhow!("service allocator: {e}"))?;
    let admission = admission::Admission::new(allocator);
    let objects = Objects::new(store, admission);
    let url = format!("https://{addr}");
    let nodes = node_proxy::NodeDialer::new(&pki).context("configuring the client for nodes")?;
    let api = Arc::new(handlers::Api {
        objects,
        server_address: addr.to_string(),
        nodes,
        watch_lines: Arc::default(),
    });
    let namespace_cache = api.objects.start_namespace_cache().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    bootstrap(&api.objects, &config, addr.port(), service_ip)
        .await
        .context("creating the cluster's built-in objects")?;

    let kubeconfig = pki::kubeconfig(&pki, &url, &config.cluster_name);
    let kubeconfig_path = config.data_dir.join("kubeconfig");
    std::fs::write(&kubeconfig_path, &kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig_path.display()))?;

    let acceptor = server::tls_acceptor(&pki).context("configuring TLS")?;
    let auth = server::Authenticator { tokens: Vec::new() };
    let mut stop = Vec::new();
    let mut tasks = Vec::new();
    for l in std::iter::once(listener).chain(extra) {
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        let fut = server::serve(l, acceptor.clone(), api.clone(), auth.clone(), async move {
            let _ = rx.await;
        });
        tasks.push(tokio::spawn(fut));
    }
    Ok(RunningServer {
        addr,
        url,
        kubeconfig_path,
        kubeconfig,
        pki,
        api,
        stop,
        tasks,
        background: vec![namespace_cache],
    })
}

/// The objects every cluster has: the four namespaces and the `kubernetes` service
/// with its endpoints. Existing ones are left alone, so restarts keep user changes.
async fn bootstrap(
    objects: &Objects,
    config: &Config,
    api_port: u16,
    service_ip: IpAddr,
) -> anyhow::Result<()> {
    let find =
        |g: &str, p: &str| pier_api::registry::find(g, p).ok_or_else(|| anyhow::anyhow!("no resource {p}"));
    let services = find("", "services")?;
    let existing =
        objects.list(services, None, &ListOptions::default()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    objects.admission().restore(&existing.items).map_err(|e| anyhow::anyhow!("{e}"))?;

    let namespaces = find("", "namespaces")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}});
        create_if_missing(objects, namespaces, None, ns, obj).await?;
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": service_ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    });
    create_if_missing(objects, services, Some("default"), "kubernetes", svc).await?;
    let endpoints = find("", "endpoints")?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": config.advertise_address.to_string()}], "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
    });
    // The API server's own address may change between runs (port 0, new flags).
    objects
        .update(endpoints, Some("default"), "kubernetes", objects::Part::Main, &trusted(), |_| Ok(ep.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The slice the service proxy reads, written by the API server as upstream's
    // endpoint reconciler does (the mirroring controller skips this Endpoints).
    let slices = find("discovery.k8s.io", "endpointslices")?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [config.advertise_address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    });
    if config.advertise_address.is_ipv4() {
        objects
            .update(slices, Some("default"), "kubernetes", objects::Part::Main, &trusted(), |_| {
                Ok(slice.clone())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

async fn create_if_missing(
    objects: &Objects,
    res: &'static pier_api::ResourceDef,
    ns: Option<&str>,
    name: &str,
    obj: serde_json::Value,
) -> anyhow::Result<()> {
    match objects.get(res, ns, name).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => {
            objects
                .create(res, ns, obj, &trusted())
                .await
                .map_err(|e| anyhow::anyhow!("creating {} {name}: {e}", res.plural))?;
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("reading {} {name}: {e}", res.plural)),
    }
}

fn trusted() -> WriteOptions {
    WriteOptions { trusted: true, ..WriteOptions::default() }
}
