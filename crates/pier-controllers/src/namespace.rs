//! Namespace lifecycle: a terminating namespace is emptied of every namespaced object
//! and then finalized (its `kubernetes` finalizer removed through `/finalize`), as
//! upstream's namespace controller does. Active namespaces get their `default`
//! ServiceAccount, as upstream's service account controller does.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::Client;
use tokio::task::JoinHandle;

use crate::resources::{self, is_conflict, is_not_found};

const KUBERNETES_FINALIZER: &str = "kubernetes";

/// Runs the namespace controller until the task is dropped.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut stream = watcher(namespaces, watcher::Config::default()).boxed();
    let mut cleaners: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(event) = stream.next().await {
        let ns = match event {
            Ok(watcher::Event::Apply(ns)) | Ok(watcher::Event::InitApply(ns)) => ns,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "namespace watch error; the watcher retries");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(name) = ns.metadata.name.clone() else { continue };
        cleaners.retain(|_, h| !h.is_finished());
        if ns.metadata.deletion_timestamp.is_some() {
            if let std::collections::hash_map::Entry::Vacant(slot) = cleaners.entry(name.clone()) {
                let client = client.clone();
                slot.insert(tokio::spawn(async move { empty_and_finalize(client, name).await }));
            }
        } else if let Err(e) = ensure_default_service_account(&client, &name).await {
            tracing::warn!(namespace = %name, error = %e, "creating the default service account");
        }
    }
}

async fn ensure_default_service_account(client: &Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    match api.get_opt("default").await? {
        Some(_) => Ok(()),
        None => {
            let sa = ServiceAccount {
                metadata: ObjectMeta { name: Some("default".into()), ..ObjectMeta::default() },
                ..ServiceAccount::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => Ok(()),
                // Created meanwhile, or the namespace began terminating: both fine.
                Err(e) if is_conflict(&e) || matches!(&e, kube::Error::Api(s) if s.code == 403) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Deletes everything in the namespace until nothing is left, then finalizes it.
/// Objects with finalizers or grace periods (bound pods) take their time; the loop
/// backs off while it waits for them.
async fn empty_and_finalize(client: Client, ns: String) {
    let mut delay = Duration::from_millis(20);
    loop {
        match delete_contents(&client, &ns).await {
            Ok(true) => match finalize(&client, &ns).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(namespace = %ns, error = %e, "finalizing"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(namespace = %ns, error = %e, "emptying a terminating namespace"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One pass: deletes what remains; true when the namespace was already empty.
async fn delete_contents(client: &Client, ns: &str) -> Result<bool, kube::Error> {
    let mut empty = true;
    for res in pier_api::registry::RESOURCES.iter().filter(|r| r.is_namespaced()) {
        let api = resources::scoped(client, res, Some(ns));
        let list = api.list(&ListParams::default()).await?;
        if list.items.is_empty() {
            continue;
        }
        empty = false;
        for obj in list.items {
            let Some(name) = obj.metadata.name.as_deref() else { continue };
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(empty)
}

async fn finalize(client: &Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut current = match api.get(ns).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(spec) = current.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|x| x != KUBERNETES_FINALIZER);
        }
    }
    match api.replace_subresource("finalize", ns, &PostParams::default(), &current).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}
