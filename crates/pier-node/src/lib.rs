//! The node agent (`pier node`): registers its Node, runs the pods bound to it in
//! sandboxes and reports their status, like the kubelet.
//!
//! It runs inside the node's network namespace, where `cbr0` is the pods' bridge,
//! in a mount namespace of its own (pod overlays and pod network namespaces are
//! mounted only there) and with its children in a PID namespace whose init is the
//! reaper (see `pier_sandbox::node`). One task per pod ([`pod::run`]) owns that
//! pod's sandbox and containers.

pub mod container;
pub mod exec;
pub mod pod;
pub mod register;
pub mod sandbox;
pub mod server;
pub mod status;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use pier_controllers::events::{Busy, EventQueue, Recorder};
use pier_sandbox::{ClusterDns, IfName, Ipv4Cidr, PodIpAllocator};
use tokio::sync::{watch, Mutex};

use crate::container::Launch;
use crate::pod::PodShared;
use crate::sandbox::Sandbox;

/// How a node agent runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name, e.g. `pier-node-0`.
    pub name: String,
    /// The node's directory: pod overlays, logs, IP allocations.
    pub dir: PathBuf,
    /// Address on the underlay (`eth0`).
    pub node_ip: Ipv4Addr,
    /// The node's pod CIDR; `cbr0` has its first address.
    pub pod_cidr: Ipv4Cidr,
    /// The cluster DNS service address.
    pub cluster_dns: Ipv4Addr,
    /// The cluster domain, `cluster.local`.
    pub cluster_domain: String,
    /// Host paths hidden in every pod (the cluster's data directory).
    pub masked: Vec<PathBuf>,
    /// The streaming endpoint's port.
    pub kubelet_port: u16,
    /// Pod capacity reported on the Node.
    pub max_pods: u32,
    /// This program, for images whose programs are built in.
    pub self_exe: PathBuf,
    /// Where `images.yaml` extends the image table (the cluster's data directory).
    pub images_dir: PathBuf,
}

/// Why a container could not be configured: its waiting reason and message.
#[derive(Debug, Clone)]
pub struct ConfigFailure {
    pub reason: String,
    pub message: String,
}

/// Where the node keeps its pods' directories, under the node's directory `dir`.
pub fn pods_dir(dir: &Path) -> PathBuf {
    dir.join("pods")
}

/// The longest an event waits behind starting pods.
const EVENT_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// A pod the node runs: namespace, name, and what its worker shares.
pub type RunningPod = (String, String, Arc<Mutex<PodShared>>);

/// What every pod worker shares.
pub struct Node {
    pub client: Client,
    pub config: NodeConfig,
    pub ipam: Mutex<PodIpAllocator>,
    /// Persists new allocations, one write for the pods allocated meanwhile.
    pub ipam_writer: pier_sandbox::ipam::StateWriter,
    /// The pods' bridge (`cbr0`) and its address, their gateway.
    pub pod_bridge: (IfName, Ipv4Cidr),
    pub cluster_dns: ClusterDns,
    /// Events go through one sender, one at a time, as the kubelet's event broadcaster
    /// queues them, and wait while pods are starting (`starting`): during a burst of pod
    /// starts they must not crowd out the sandboxes and status writes.
    pub events: EventQueue,
    /// Pods between their worker's start and their first status write.
    pub starting: Busy,
    /// Every Service, for the service environment variables.
    pub services: kube::runtime::reflector::Store<Service>,
    /// The image table (built in, plus the data directory's `images.yaml`).
    pub images: pier_runspec::ImageTable,
    /// The node's allocatable resources (for `resourceFieldRef` without limits).
    pub allocatable: std::collections::BTreeMap<String, Quantity>,
    /// When the agent started (probes of adopted containers are spread over their
    /// first period, as upstream's jitter after a kubelet restart).
    pub started_at: tokio::time::Instant,
    /// Running pods by uid, for the streaming endpoint.
    pub pods: Mutex<HashMap<String, RunningPod>>,
}

impl Node {
    /// The pod's directory (its overlay layers and generated files).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        pods_dir(&self.config.dir).join(uid)
    }

    /// The command line and environment for a container, as the kubelet and the
    /// runtime build them (image table, service links, env sources).
    pub async fn resolve(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox: &Sandbox,
    ) -> Result<Launch, ConfigFailure> {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string());
        let objects = self.fetch_objects(pod, &ns).await;
        let services: Vec<Service> = self.services.state().iter().map(|s| (**s).clone()).collect();
        let host_ips = [self.config.node_ip.to_string()];
        let pod_ips = [sandbox.ip.to_string()];
        let facts = pier_runspec::PodFacts {
            node_name: &self.config.name,
            host_ips: &host_ips,
            pod_ips: &pod_ips,
            services: &services,
            allocatable: &self.allocatable,
            objects: &objects,
        };
        let env = pier_runspec::container_env(pod, c, &facts)
            .map_err(|e| ConfigFailure { reason: e.reason().to_string(), message: e.to_string() })?;
        let process = pier_runspec::process_for(c, &env, &self.images)
            .map_err(|e| ConfigFailure { reason: e.reason().to_string(), message: e.to_string() })?;
        // The runtime adds HOSTNAME after PATH; exec'd processes get it too.
        let mut env: Vec<(String, String)> =
            process.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !env.iter().any(|(k, _)| k == "HOSTNAME") {
            let at = usize::from(env.first().is_some_and(|(k, _)| k == "PATH"));
            env.insert(at, ("HOSTNAME".to_string(), sandbox.hostname.clone()));
        }
        Ok(Launch { argv: process.argv, env, working_dir: PathBuf::from(process.working_dir) })
    }

    /// The ConfigMaps and Secrets the pod's containers refer to; missing ones are
    /// left out (the environment reports them in upstream's words).
    async fn fetch_objects(&self, pod: &Pod, ns: &str) -> pier_runspec::PodObjects {
        let refs = pier_runspec::referenced_objects(pod);
        let mut objects = pier_runspec::PodObjects::default();
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        for name in refs.config_maps {
            if let Ok(Some(cm)) = cms.get_opt(&name).await {
                objects.config_maps.insert(name, cm);
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        for name in refs.secrets {
            if let Ok(Some(s)) = secrets.get_opt(&name).await {
                objects.secrets.insert(name, s);
            }
        }
        objects
    }
}

/// Runs the agent until `shutdown` resolves; then stops every pod's containers.
pub async fn run(
    client: Client,
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(&config.dir).with_context(|| format!("creating {}", config.dir.display()))?;
    // Pod overlays from an earlier run are stale: their mounts died with that run's
    // mount namespace, and pods get fresh containers (as after a kubelet restart).
    // (When `pods` is the node's tmpfs, only its contents go.)
    let _ = std::fs::remove_dir_all(pods_dir(&config.dir));
    let ipam = PodIpAllocator::open(&config.dir, config.pod_cidr).context("opening pod IP allocations")?;
    let recorder = Recorder::new(client.clone(), "kubelet").with_host(&config.name);
    let starting = Busy::default();
    let (events, event_sender) = EventQueue::start(recorder, starting.clone(), EVENT_MAX_DELAY);
    let images = pier_runspec::ImageTable::load(&config.images_dir, &config.self_exe)
        .context("loading the image table")?;
    let (services, services_writer) = kube::runtime::reflector::store();
    let service_watch = kube::runtime::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
    );
    let services_task = tokio::spawn(async move {
        let mut s = std::pin::pin!(service_watch);
        while let Some(item) = s.next().await {
            if let Err(e) = item {
                tracing::debug!(error = %e, "watching services");
            }
        }
    });
    let allocatable = register::node_object(&config).status.and_then(|s| s.allocatable).unwrap_or_default();
    let node = Arc::new(Node {
        client: client.clone(),
        pod_bridge: (
            IfName::new("cbr0").context("bridge name")?,
            config
                .pod_cidr
                .nth(1)
                .and_then(|gw| Ipv4Cidr::new(gw, config.pod_cidr.prefix()).ok())
                .context("pod CIDR too small")?,
        ),
        cluster_dns: ClusterDns {
            servers: vec![IpAddr::V4(config.cluster_dns)],
            domain: config.cluster_domain.clone(),
        },
        events,
        starting,
        config: config.clone(),
        ipam: Mutex::new(ipam),
        ipam_writer: Default::default(),
        pods: Mutex::new(HashMap::new()),
        services: services.clone(),
        started_at: tokio::time::Instant::now(),
        images,
        allocatable,
    });
    let tls = server::tls_config(&config.dir).context("loading the node endpoint's certificates")?;
    let addr = std::net::SocketAddr::from((config.node_ip, config.kubelet_port));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let serving = tokio::spawn(server::serve(node.clone(), listener, tls));
    register::register(&client, &config).await.context("registering the node")?;
    register::renew_lease(&client, &config).await.context("creating the node lease")?;
    tracing::info!(node = %config.name, "registered");
    let heartbeat = tokio::spawn(register::heartbeat(client.clone(), config.clone()));
    // Service links need the services that exist when a pod starts.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), services.wait_until_ready()).await;
    let syncing = tokio::spawn(sync_pods(node.clone()));
    shutdown.await;
    heartbeat.abort();
    serving.abort();
    event_sender.abort();
    services_task.abort();
    // Aborting the sync drops its workers; the containers end with the node's PID
    // namespace when this process exits (see `pier_sandbox::node`).
    syncing.abort();
    let _ = syncing.await;
    Ok(())
}

/// Watches the pods bound to this node and keeps one worker per pod.
async fn sync_pods(node: Arc<Node>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", node.config.name));
    let mut senders: HashMap<String, watch::Sender<Pod>> = HashMap::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut stream = watcher(api, cfg).boxed();
    let mut seen_in_relist: Option<std::collections::HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            e = stream.try_next() => e,
            Some(_) = workers.join_next(), if !workers.is_empty() => continue,
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods");
                continue;
            }
        };
        let mut apply = |pod: Pod, senders: &mut HashMap<String, watch::Sender<Pod>>| {
            let Some(uid) = pod.metadata.uid.clone() else { return };
            if let Some(tx) = senders.get(&uid) {
                tx.send_replace(pod);
                return;
            }
            let (tx, rx) = watch::channel(pod.clone());
            senders.insert(uid.clone(), tx);
            let shared = Arc::new(Mutex::new(PodShared::default()));
            let node2 = node.clone();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let shared2 = shared.clone();
            workers.spawn(async move {
                node2.pods.lock().await.insert(uid.clone(), (ns, name, shared2.clone()));
                pod::run(node2.clone(), rx, shared2).await;
                node2.pods.lock().await.remove(&uid);
            });
        };
        match event {
            watcher::Event::Apply(pod) => apply(pod, &mut senders),
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = seen_in_relist.as_mut() {
                    seen.extend(pod.metadata.uid.clone());
                }
                apply(pod, &mut senders)
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid {
                    senders.remove(&uid);
                }
            }
            watcher::Event::Init => seen_in_relist = Some(Default::default()),
            watcher::Event::InitDone => {
                if let Some(seen) = seen_in_relist.take() {
                    senders.retain(|uid, _| seen.contains(uid));
                }
            }
        }
    }
    drop(senders);
    while workers.join_next().await.is_some() {}
}
