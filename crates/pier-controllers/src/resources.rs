//! Dynamic API handles for the resources of Pier's registry.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;
use pier_api::ResourceDef;

pub fn api_resource(res: &ResourceDef) -> ApiResource {
    ApiResource {
        group: res.group.to_string(),
        version: res.version.to_string(),
        api_version: res.api_version(),
        kind: res.kind.to_string(),
        plural: res.plural.to_string(),
    }
}

/// The API of a resource, across all namespaces (cluster-scoped ones too).
pub fn all(client: &Client, res: &ResourceDef) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &api_resource(res))
}

/// The API of a resource in one namespace, or cluster-wide for cluster-scoped ones.
pub fn scoped(client: &Client, res: &ResourceDef, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) if res.is_namespaced() => Api::namespaced_with(client.clone(), ns, &api_resource(res)),
        _ => Api::all_with(client.clone(), &api_resource(res)),
    }
}

/// The registry entry for an owner reference's `apiVersion` and `kind`.
pub fn for_owner(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    pier_api::registry::find_kind(group, kind)
}

/// Whether a kube error is a 404 from the API server.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
