//! The garbage collector, as upstream's: objects whose owners are gone are deleted;
//! an owner deleted with `propagationPolicy: Orphan` first has its dependents'
//! ownerReferences removed; one deleted with `Foreground` waits until its dependents
//! are gone. It watches every resource and keeps an owner graph in memory; before it
//! deletes anything it confirms the owner's absence with a live read, because watches
//! of different resources are not ordered with respect to each other.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use kube::api::{DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::watcher;
use kube::Client;
use pier_api::ResourceDef;

use crate::resources::{self, for_owner, is_conflict, is_not_found};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone)]
struct OwnerRef {
    uid: String,
    api_version: String,
    kind: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Node {
    res: &'static ResourceDef,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerRef>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// The owner graph: every object by uid, and each owner's dependents.
#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: String, node: Node) {
        self.remove(&uid);
        for o in &node.owners {
            self.dependents.entry(o.uid.clone()).or_default().insert(uid.clone());
        }
        self.nodes.insert(uid, node);
    }

    fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for o in &old.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(old)
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

fn node_of(res: &'static ResourceDef, obj: &DynamicObject) -> Option<(String, Node)> {
    let uid = obj.metadata.uid.clone()?;
    let owners = obj
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| OwnerRef {
            uid: o.uid.clone(),
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
        .collect();
    Some((
        uid,
        Node {
            res,
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            owners,
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
        },
    ))
}

enum Change {
    Applied(&'static ResourceDef, DynamicObject),
    Deleted(&'static ResourceDef, DynamicObject),
    Synced(&'static ResourceDef),
}

/// Runs the garbage collector until the task is dropped.
pub async fn run(client: Client) {
    let streams = pier_api::registry::RESOURCES.iter().map(|res| {
        let api = resources::all(&client, res);
        watcher(api, watcher::Config::default()).filter_map(move |e| async move {
            match e {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                    Some(Change::Applied(res, o))
                }
                Ok(watcher::Event::Delete(o)) => Some(Change::Deleted(res, o)),
                Ok(watcher::Event::InitDone) => Some(Change::Synced(res)),
                Ok(watcher::Event::Init) => None,
                Err(e) => {
                    tracing::debug!(resource = res.plural, error = %e, "gc watch error; the watcher retries");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    None
                }
            }
        })
    });
    let mut changes = stream::select_all(streams.map(|s| s.boxed()));
    let mut graph = Graph::default();
    let mut synced: HashSet<&'static str> = HashSet::new();
    let total = pier_api::registry::RESOURCES.len();
    let mut pending: Vec<String> = Vec::new();
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(res, obj) => {
                if let Some((uid, node)) = node_of(res, &obj) {
                    graph.upsert(uid.clone(), node);
                    pending.push(uid);
                }
            }
            Change::Deleted(res, obj) => {
                if let Some((uid, _)) = node_of(res, &obj) {
                    let old = graph.remove(&uid);
                    // Its dependents may now be orphans, and owners waiting in
                    // foreground deletion may now be free.
                    pending.extend(graph.dependents_of(&uid));
                    if let Some(old) = old {
                        pending.extend(old.owners.iter().map(|o| o.uid.clone()));
                    }
                }
            }
            Change::Synced(res) => {
                synced.insert(res.plural_key());
                if synced.len() == total {
                    // Everything is known now: look at every object once.
                    pending.extend(graph.nodes.keys().cloned());
                }
            }
        }
        if synced.len() < total {
            continue;
        }
        let batch: Vec<String> = std::mem::take(&mut pending);
        let mut seen = HashSet::new();
        for uid in batch {
            if seen.insert(uid.clone()) {
                if let Err(e) = attend(&client, &graph, &uid).await {
                    tracing::warn!(%uid, error = %e, "garbage collection step failed; retried on the next change");
                }
            }
        }
    }
}

trait PluralKey {
    fn plural_key(&self) -> &'static str;
}

impl PluralKey for &'static ResourceDef {
    fn plural_key(&self) -> &'static str {
        // Two resources share a plural (core and events.k8s.io events); the schema name is unique.
        self.schema_name
    }
}

/// Does whatever the object with `uid` needs now.
async fn attend(client: &Client, graph: &Graph, uid: &str) -> Result<(), kube::Error> {
    let Some(node) = graph.nodes.get(uid) else { return Ok(()) };
    if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
        for dep in graph.dependents_of(uid) {
            if let Some(d) = graph.nodes.get(&dep) {
                remove_owner_ref(client, d, uid).await?;
            }
        }
        remove_finalizer(client, node, ORPHAN).await?;
        return Ok(());
    }
    if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
        let deps = graph.dependents_of(uid);
        if deps.is_empty() {
            remove_finalizer(client, node, FOREGROUND).await?;
        } else {
            for dep in deps {
                if let Some(d) = graph.nodes.get(&dep) {
                    if !d.deleting {
                        delete(client, d, PropagationPolicy::Foreground).await?;
                    }
                }
            }
        }
        return Ok(());
    }
    if node.owners.is_empty() || node.deleting {
        return Ok(());
    }
    // Deleted only when every owner is gone (upstream keeps objects with any live owner).
    for owner in &node.owners {
        if graph.nodes.contains_key(&owner.uid) || owner_exists(client, node, owner).await? {
            return Ok(());
        }
    }
    // The graph may lag behind the object: an owner deleted with `Orphan` released
    // its dependents just before it went, and the dependents' own updates may not have
    // arrived yet (watches of different resources are not ordered). Decide on the
    // object as it is now, and delete exactly that version of it.
    let api = resources::scoped(client, node.res, node.namespace.as_deref());
    let live = match api.get(&node.name).await {
        Ok(o) => o,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some((live_uid, live_node)) = node_of(node.res, &live) else { return Ok(()) };
    if live_uid != uid || live_node.owners.is_empty() || live_node.deleting {
        return Ok(());
    }
    for owner in &live_node.owners {
        if owner_exists(client, &live_node, owner).await? {
            return Ok(());
        }
    }
    let preconditions =
        Preconditions { uid: Some(live_uid), resource_version: live.metadata.resource_version };
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(preconditions),
        ..DeleteParams::default()
    };
    match api.delete(&node.name, &params).await {
        Ok(_) => Ok(()),
        // Gone, or changed since it was read: its next event brings it back here.
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Confirms with a live read whether the owner (same name and uid) still exists.
async fn owner_exists(client: &Client, node: &Node, owner: &OwnerRef) -> Result<bool, kube::Error> {
    let Some(res) = for_owner(&owner.api_version, &owner.kind) else {
        // An owner of a kind Pier does not serve cannot be checked: leave the object alone.
        return Ok(true);
    };
    let api = resources::scoped(client, res, node.namespace.as_deref());
    match api.get(&owner.name).await {
        Ok(o) => Ok(o.metadata.uid.as_deref() == Some(owner.uid.as_str())),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn delete(client: &Client, node: &Node, policy: PropagationPolicy) -> Result<(), kube::Error> {
    let api = resources::scoped(client, node.res, node.namespace.as_deref());
    let params = DeleteParams { propagation_policy: Some(policy), ..DeleteParams::default() };
    match api.delete(&node.name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Rewrites an object with `edit` applied, retrying on write conflicts.
async fn edit_object(
    client: &Client,
    node: &Node,
    edit: impl Fn(&mut DynamicObject) -> bool,
) -> Result<(), kube::Error> {
    let api = resources::scoped(client, node.res, node.namespace.as_deref());
    for _ in 0..8 {
        let mut obj = match api.get(&node.name).await {
            Ok(o) => o,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !edit(&mut obj) {
            return Ok(());
        }
        match api.replace(&node.name, &PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn remove_owner_ref(client: &Client, node: &Node, owner_uid: &str) -> Result<(), kube::Error> {
    edit_object(client, node, |obj| {
        let Some(refs) = obj.metadata.owner_references.as_mut() else { return false };
        let before = refs.len();
        refs.retain(|r| r.uid != owner_uid);
        refs.len() != before
    })
    .await
}

async fn remove_finalizer(client: &Client, node: &Node, finalizer: &str) -> Result<(), kube::Error> {
    edit_object(client, node, |obj| {
        let Some(f) = obj.metadata.finalizers.as_mut() else { return false };
        let before = f.len();
        f.retain(|x| x != finalizer);
        f.len() != before
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owners: &[&str]) -> Node {
        Node {
            res: pier_api::registry::find("", "pods").expect("pods"),
            namespace: Some("default".into()),
            name: "p".into(),
            owners: owners
                .iter()
                .map(|u| OwnerRef {
                    uid: u.to_string(),
                    api_version: "v1".into(),
                    kind: "ReplicationController".into(),
                    name: "rc".into(),
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn graph_tracks_dependents_through_updates_and_removal() {
        let mut g = Graph::default();
        g.upsert("p1".into(), node(&["rc1"]));
        g.upsert("p2".into(), node(&["rc1"]));
        let mut deps = g.dependents_of("rc1");
        deps.sort();
        assert_eq!(deps, ["p1", "p2"]);
        // Released by its owner: no longer a dependent.
        g.upsert("p1".into(), node(&[]));
        assert_eq!(g.dependents_of("rc1"), ["p2"]);
        g.remove("p2");
        assert!(g.dependents_of("rc1").is_empty());
        assert!(g.dependents.is_empty());
    }
}
