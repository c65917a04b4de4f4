//! Pier's controllers. Each is an ordinary Kubernetes client (`kube` + `kube-runtime`)
//! that would work unchanged against upstream Kubernetes.
//!
//! - [`gc`]: the garbage collector (ownerReferences, orphan and foreground deletion).
//! - [`namespace`]: namespace lifecycle (emptying and finalizing terminating
//!   namespaces) and each namespace's `default` ServiceAccount.

pub mod gc;
pub mod namespace;
mod resources;

use kube::Client;

/// Runs every controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let gc = tokio::spawn(gc::run(client.clone()));
    let ns = tokio::spawn(namespace::run(client));
    shutdown.await;
    gc.abort();
    ns.abort();
}
