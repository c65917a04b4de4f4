//! Pier's controllers. Each is an ordinary Kubernetes client (`kube` + `kube-runtime`)
//! that would work unchanged against upstream Kubernetes.
//!
//! - [`gc`]: the garbage collector (ownerReferences, orphan and foreground deletion).
//! - [`namespace`]: namespace lifecycle (emptying and finalizing terminating
//!   namespaces) and each namespace's `default` ServiceAccount.
//! - [`scheduler`]: binds pods to nodes.
//! - [`replication`]: ReplicationControllers and ReplicaSets.
//! - [`deployment`]: Deployments (rolling update and recreate).
//! - [`endpoints`]: Endpoints and EndpointSlices for Services, and mirroring of
//!   user-written Endpoints into slices.
//! - [`loadbalancer`]: addresses for LoadBalancer Services from a pool
//!   (`--lb-range`), MetalLB style; runs only when [`Config::lb_range`] is set.
//! - [`dns`]: the `kube-dns` Service and an EndpointSlice of the nodes' DNS servers;
//!   runs only when [`Config::cluster_dns`] is set.
//! - [`events`]: recording core/v1 Events for all of them.

pub mod deployment;
pub mod dns;
pub mod endpoints;
pub mod events;
pub mod gc;
mod labels;
pub mod loadbalancer;
pub mod namespace;
pub mod replication;
mod resources;
pub mod scheduler;

use kube::Client;

/// What the controllers are told beyond an API client. The default is a cluster
/// without optional features.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The pool LoadBalancer Services get addresses from (`pier up --lb-range`, see
    /// [`loadbalancer::parse_lb_range`]). `None` runs no LoadBalancer controller, so
    /// such Services stay `<pending>`, as on a cluster without a load-balancer
    /// implementation.
    pub lb_range: Option<loadbalancer::LbRange>,
    /// The `kube-dns` ClusterIP (`pier up --cluster-dns`). `None` runs no DNS
    /// controller.
    pub cluster_dns: Option<std::net::Ipv4Addr>,
}

/// Runs every controller with the default [`Config`] until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    run_with(client, Config::default(), shutdown).await
}

/// Runs every controller that `config` enables until `shutdown` resolves.
pub async fn run_with(client: Client, config: Config, shutdown: impl std::future::Future<Output = ()>) {
    let mut tasks = vec![
        tokio::spawn(gc::run(client.clone())),
        tokio::spawn(namespace::run(client.clone())),
        tokio::spawn(scheduler::run(client.clone())),
        tokio::spawn(replication::run(client.clone())),
        tokio::spawn(deployment::run(client.clone())),
        tokio::spawn(endpoints::run(client.clone())),
    ];
    if let Some(ip) = config.cluster_dns {
        tasks.push(tokio::spawn(dns::run(client.clone(), ip)));
    }
    if let Some(range) = config.lb_range {
        tasks.push(tokio::spawn(loadbalancer::run(client, range)));
    }
    shutdown.await;
    for t in tasks {
        t.abort();
    }
}
