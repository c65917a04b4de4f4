//! Discovery documents: the legacy ones (`APIVersions`, `APIGroupList`,
//! `APIResourceList`) and the aggregated `apidiscovery.k8s.io` ones kubectl prefers.

use pier_api::registry::{self, ResourceDef};
use serde_json::{json, Value};

/// The aggregated discovery media types, newest first, as clients ask for them.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated version the `Accept` header asks for, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let normalized: String = accept.chars().filter(|c| !c.is_whitespace()).collect();
    let wants = |v: &str| {
        normalized.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&format!("v={v}").as_str())
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    };
    if wants("v2") {
        Some("v2")
    } else if wants("v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (g, _) in registry::group_versions() {
        if !g.is_empty() && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

fn versions_of(group: &str) -> Vec<&'static str> {
    registry::group_versions().into_iter().filter(|(g, _)| *g == group).map(|(_, v)| v).collect()
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `GET /apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    if !groups().contains(&group) {
        return None;
    }
    let mut g = group_entry(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn subresource_kind(res: &ResourceDef, sub: &str) -> (String, String, String) {
    match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "attach" => ("".into(), "v1".into(), "PodAttachOptions".into()),
        "exec" => ("".into(), "v1".into(), "PodExecOptions".into()),
        "portforward" => ("".into(), "v1".into(), "PodPortForwardOptions".into()),
        "binding" => ("".into(), "v1".into(), "Binding".into()),
        _ => (res.group.to_string(), res.version.to_string(), res.kind.to_string()),
    }
}

fn subresource_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "finalize" => vec!["update"],
        "binding" => vec!["create"],
        "attach" | "exec" | "portforward" => vec!["create", "get"],
        "log" => vec!["get"],
        _ => vec!["get", "patch", "update"],
    }
}

fn all_subresources(res: &ResourceDef) -> Vec<&'static str> {
    let mut subs: Vec<&'static str> = res.subresources.to_vec();
    if res.plural == "namespaces" {
        subs.push("finalize");
    }
    // `binding` is the scheduler's; the rest are served by the node proxy. Upstream
    // lists a resource's subresources by name.
    if res.group.is_empty() && res.plural == "pods" {
        subs.extend(["attach", "binding", "exec", "log", "portforward"]);
        subs.sort_unstable();
    }
    subs
}

/// `GET /api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = registry::resources_of(group, version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &defs {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.is_namespaced(),
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in all_subresources(r) {
            let (g, v, k) = subresource_kind(r, sub);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.is_namespaced(),
                "kind": k,
                "verbs": subresource_verbs(sub),
            });
            if sub == "scale" {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn aggregated_version_entry(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = registry::resources_of(group, version)
        .map(|r| {
            let mut e = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.is_namespaced() { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs(),
            });
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            let subs: Vec<Value> = all_subresources(r)
                .into_iter()
                .map(|sub| {
                    let (g, v, k) = subresource_kind(r, sub);
                    json!({
                        "subresource": sub,
                        "responseKind": {"group": g, "version": v, "kind": k},
                        "verbs": subresource_verbs(sub),
                    })
                })
                .collect();
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// The aggregated document for `/api` (`legacy = true`) or `/apis`.
pub fn aggregated(legacy: bool, version: &str) -> Value {
    let items: Vec<Value> = if legacy {
        vec![json!({
            "metadata": {"creationTimestamp": null},
            "versions": [aggregated_version_entry("", "v1")],
        })]
    } else {
        groups()
            .into_iter()
            .map(|g| {
                let versions: Vec<Value> =
                    versions_of(g).into_iter().map(|v| aggregated_version_entry(g, v)).collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// `GET /version`: the Kubernetes release Pier's API matches. The installed kubectl
/// dispatcher picks its bundled client by this minor version.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": concat!("v1.33.0-pier.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_selects_aggregated_version() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        let old =
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(old), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn aggregated_lists_short_names_and_scale() {
        let doc = aggregated(false, "v2");
        let apps = doc["items"].as_array().and_then(|i| i.iter().find(|g| g["metadata"]["name"] == "apps"));
        let apps = apps.expect("apps group");
        let deploy = &apps["versions"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["resource"] == "deployments").cloned())
            .expect("deployments");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale =
            deploy["subresources"].as_array().and_then(|s| s.iter().find(|s| s["subresource"] == "scale"));
        assert_eq!(scale.map(|s| s["responseKind"]["kind"].clone()), Some(json!("Scale")));
    }

    #[test]
    fn legacy_resource_list_has_subresources() {
        let list = api_resource_list("", "v1").expect("v1");
        let names: Vec<&str> =
            list["resources"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"services"));
        assert!(names.contains(&"services/status"));
        assert!(names.contains(&"replicationcontrollers/scale"));
        assert!(names.contains(&"namespaces/finalize"));
        let pod_subs: Vec<&str> = names.iter().copied().filter(|n| n.starts_with("pods/")).collect();
        assert_eq!(
            pod_subs,
            ["pods/attach", "pods/binding", "pods/exec", "pods/log", "pods/portforward", "pods/status"]
        );
        let exec = list["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "pods/exec"));
        assert_eq!(
            exec.map(|e| (e["kind"].clone(), e["verbs"].clone())),
            Some((json!("PodExecOptions"), json!(["create", "get"])))
        );
    }
}
