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
//! - [`events`]: recording core/v1 Events for all of them.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
mod labels;
pub mod namespace;
pub mod replication;
mod resources;
pub mod scheduler;

use kube::Client;

/// Runs every controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let tasks = vec![
        tokio::spawn(gc::run(client.clone())),
        tokio::spawn(namespace::run(client.clone())),
        tokio::spawn(scheduler::run(client.clone())),
        tokio::spawn(replication::run(client.clone())),
        tokio::spawn(deployment::run(client.clone())),
        tokio::spawn(endpoints::run(client)),
    ];
    shutdown.await;
    for t in tasks {
        t.abort();
    }
}
