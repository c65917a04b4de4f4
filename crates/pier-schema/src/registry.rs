//! The schema registry: every definition Pier publishes, keyed by upstream's OpenAPI
//! definition name (`io.k8s.api.core.v1.ServicePort`), with upstream's extensions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, events};
use k8s_openapi::api::{networking, policy, rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

use crate::extensions::{ATOMIC_STRUCTS, FIELD_DEFAULTS, FIELD_EXTENSIONS};

/// The definition name of `DeleteOptions`, the body of delete requests.
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// The definition name of `Status`, the body of errors and of delete responses.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// The definition name of `Patch`, the body of patch requests.
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// The definition name of `WatchEvent`, the frames of watch responses.
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
/// The definition name of `APIResourceList`, the body of `GET /apis/<group>/<version>`.
pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
/// The definition name of `APIGroup`, the body of `GET /apis/<group>`.
pub const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
/// The definition name of `APIGroupList`, the body of `GET /apis`.
pub const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
/// The definition name of `APIVersions`, the body of `GET /api`.
pub const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
/// The definition name of `Scale` (`autoscaling/v1`), the body of `scale` subresources.
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// A top-level kind whose schema the registry holds, with its group-version-kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKind {
    pub schema_name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

macro_rules! known_kinds {
    ($( $ty:ty => ($schema:literal, $group:literal, $version:literal, $kind:literal) ),* $(,)?) => {
        /// Every top-level kind generated into the registry: the served resources and a
        /// few more, so that adding a resource to `pier_api::registry` rarely needs a
        /// change here (a test checks that every served kind is known).
        pub static KNOWN_KINDS: &[KnownKind] = &[
            $( KnownKind { schema_name: $schema, group: $group, version: $version, kind: $kind } ),*
        ];

        fn generate_kinds(generator: &mut schemars::SchemaGenerator) {
            $( generator.subschema_for::<$ty>(); )*
        }
    };
}

known_kinds! {
    core::v1::ConfigMap => ("io.k8s.api.core.v1.ConfigMap", "", "v1", "ConfigMap"),
    core::v1::Endpoints => ("io.k8s.api.core.v1.Endpoints", "", "v1", "Endpoints"),
    core::v1::Event => ("io.k8s.api.core.v1.Event", "", "v1", "Event"),
    core::v1::LimitRange => ("io.k8s.api.core.v1.LimitRange", "", "v1", "LimitRange"),
    core::v1::Namespace => ("io.k8s.api.core.v1.Namespace", "", "v1", "Namespace"),
    core::v1::Node => ("io.k8s.api.core.v1.Node", "", "v1", "Node"),
    core::v1::PersistentVolume => ("io.k8s.api.core.v1.PersistentVolume", "", "v1", "PersistentVolume"),
    core::v1::PersistentVolumeClaim =>
        ("io.k8s.api.core.v1.PersistentVolumeClaim", "", "v1", "PersistentVolumeClaim"),
    core::v1::Pod => ("io.k8s.api.core.v1.Pod", "", "v1", "Pod"),
    core::v1::PodTemplate => ("io.k8s.api.core.v1.PodTemplate", "", "v1", "PodTemplate"),
    core::v1::ReplicationController =>
        ("io.k8s.api.core.v1.ReplicationController", "", "v1", "ReplicationController"),
    core::v1::ResourceQuota => ("io.k8s.api.core.v1.ResourceQuota", "", "v1", "ResourceQuota"),
    core::v1::Secret => ("io.k8s.api.core.v1.Secret", "", "v1", "Secret"),
    core::v1::Service => ("io.k8s.api.core.v1.Service", "", "v1", "Service"),
    core::v1::ServiceAccount => ("io.k8s.api.core.v1.ServiceAccount", "", "v1", "ServiceAccount"),
    apps::v1::ControllerRevision =>
        ("io.k8s.api.apps.v1.ControllerRevision", "apps", "v1", "ControllerRevision"),
    apps::v1::DaemonSet => ("io.k8s.api.apps.v1.DaemonSet", "apps", "v1", "DaemonSet"),
    apps::v1::Deployment => ("io.k8s.api.apps.v1.Deployment", "apps", "v1", "Deployment"),
    apps::v1::ReplicaSet => ("io.k8s.api.apps.v1.ReplicaSet", "apps", "v1", "ReplicaSet"),
    apps::v1::StatefulSet => ("io.k8s.api.apps.v1.StatefulSet", "apps", "v1", "StatefulSet"),
    autoscaling::v1::Scale => ("io.k8s.api.autoscaling.v1.Scale", "autoscaling", "v1", "Scale"),
    autoscaling::v2::HorizontalPodAutoscaler => (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", "autoscaling", "v2",
        "HorizontalPodAutoscaler"
    ),
    batch::v1::CronJob => ("io.k8s.api.batch.v1.CronJob", "batch", "v1", "CronJob"),
    batch::v1::Job => ("io.k8s.api.batch.v1.Job", "batch", "v1", "Job"),
    coordination::v1::Lease => ("io.k8s.api.coordination.v1.Lease", "coordination.k8s.io", "v1", "Lease"),
    discovery::v1::EndpointSlice =>
        ("io.k8s.api.discovery.v1.EndpointSlice", "discovery.k8s.io", "v1", "EndpointSlice"),
    events::v1::Event => ("io.k8s.api.events.v1.Event", "events.k8s.io", "v1", "Event"),
    networking::v1::Ingress => ("io.k8s.api.networking.v1.Ingress", "networking.k8s.io", "v1", "Ingress"),
    networking::v1::IngressClass =>
        ("io.k8s.api.networking.v1.IngressClass", "networking.k8s.io", "v1", "IngressClass"),
    networking::v1::NetworkPolicy =>
        ("io.k8s.api.networking.v1.NetworkPolicy", "networking.k8s.io", "v1", "NetworkPolicy"),
    policy::v1::PodDisruptionBudget =>
        ("io.k8s.api.policy.v1.PodDisruptionBudget", "policy", "v1", "PodDisruptionBudget"),
    rbac::v1::ClusterRole =>
        ("io.k8s.api.rbac.v1.ClusterRole", "rbac.authorization.k8s.io", "v1", "ClusterRole"),
    rbac::v1::ClusterRoleBinding => (
        "io.k8s.api.rbac.v1.ClusterRoleBinding", "rbac.authorization.k8s.io", "v1",
        "ClusterRoleBinding"
    ),
    rbac::v1::Role => ("io.k8s.api.rbac.v1.Role", "rbac.authorization.k8s.io", "v1", "Role"),
    rbac::v1::RoleBinding =>
        ("io.k8s.api.rbac.v1.RoleBinding", "rbac.authorization.k8s.io", "v1", "RoleBinding"),
}

/// Every definition Pier publishes, with upstream's extensions, built once.
///
/// Definitions are schemars `Schema` objects in OpenAPI 3.0 form: references are
/// `{"$ref": "#/components/schemas/<name>"}`, and a reference with a description is
/// wrapped as `{"allOf": [{"$ref": ...}], "description": ...}` as upstream publishes it.
#[derive(Debug)]
pub struct SchemaRegistry {
    definitions: BTreeMap<String, Value>,
}

/// The prefix of every `$ref` in the registry and in the published documents.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// The registry, built on first use (a few milliseconds) and shared afterwards.
pub fn schema_registry() -> &'static SchemaRegistry {
    static REGISTRY: OnceLock<SchemaRegistry> = OnceLock::new();
    REGISTRY.get_or_init(SchemaRegistry::build)
}

impl SchemaRegistry {
    /// The definition called `name`, e.g. `io.k8s.api.core.v1.Service`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// Every definition, sorted by name.
    pub fn definitions(&self) -> &BTreeMap<String, Value> {
        &self.definitions
    }

    /// The known kind whose definition is `schema_name`, if it is a top-level kind.
    pub fn kind_of(&self, schema_name: &str) -> Option<&'static KnownKind> {
        KNOWN_KINDS.iter().find(|k| k.schema_name == schema_name)
    }

    /// `roots` and every definition they reference, directly or not.
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(def) = self.definitions.get(&name) {
                collect_refs(def, &mut |r| {
                    if !seen.contains(r) {
                        todo.push(r.to_string());
                    }
                });
            }
        }
        seen.retain(|n| self.definitions.contains_key(n));
        seen
    }

    /// Follows `allOf: [x]` wrappers and `$ref`s until a schema with content.
    ///
    /// Returns `schema` itself when it is neither; an unresolvable `$ref` gives `None`.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> Option<&'a Value> {
        // Bounded: a chain of pure references longer than this is a cycle.
        for _ in 0..16 {
            if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
                schema = self.definitions.get(target.strip_prefix(REF_PREFIX)?)?;
                continue;
            }
            match schema.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 1 && schema.get("properties").is_none() => {
                    schema = &all[0];
                }
                _ => return Some(schema),
            }
        }
        None
    }

    fn build() -> SchemaRegistry {
        let mut generator = SchemaSettings::openapi3().into_generator();
        generate_kinds(&mut generator);
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::Patch>();
        generator.subschema_for::<meta::WatchEvent<()>>();
        generator.subschema_for::<meta::APIResourceList>();
        generator.subschema_for::<meta::APIGroup>();
        generator.subschema_for::<meta::APIGroupList>();
        generator.subschema_for::<meta::APIVersions>();
        let mut definitions: BTreeMap<String, Value> = generator.take_definitions(true).into_iter().collect();

        for kind in KNOWN_KINDS {
            if let Some(Value::Object(def)) = definitions.get_mut(kind.schema_name) {
                def.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk(kind.group, kind.version, kind.kind)]),
                );
            }
            if kind.schema_name != SCALE {
                let list = list_definition(kind);
                definitions.insert(format!("{}List", kind.schema_name), list);
            }
        }
        apply_field_extensions(&mut definitions);
        for (definition, property, default) in FIELD_DEFAULTS {
            if let Some(Value::Object(prop)) = definitions
                .get_mut(*definition)
                .and_then(|d| d.pointer_mut(&format!("/properties/{property}")))
            {
                prop.insert("default".into(), json!(default));
            }
        }
        for name in ATOMIC_STRUCTS {
            if let Some(Value::Object(def)) = definitions.get_mut(*name) {
                def.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
        }
        // Upstream lists these meta kinds under every group-version; kubectl explain
        // finds a kind's schema by this extension, so it matters that they carry it.
        let group_versions = served_group_versions();
        for (name, kind) in [(DELETE_OPTIONS, "DeleteOptions"), (WATCH_EVENT, "WatchEvent")] {
            if let Some(Value::Object(def)) = definitions.get_mut(name) {
                let gvks: Vec<Value> = group_versions.iter().map(|(g, v)| gvk(g, v, kind)).collect();
                def.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
            }
        }
        if let Some(Value::Object(def)) = definitions.get_mut(STATUS) {
            def.insert("x-kubernetes-group-version-kind".into(), json!([gvk("", "v1", "Status")]));
        }
        SchemaRegistry { definitions }
    }
}

/// The group-versions Pier serves, in discovery order.
fn served_group_versions() -> Vec<(&'static str, &'static str)> {
    pier_api::registry::group_versions()
}

/// An `x-kubernetes-group-version-kind` entry, keys in upstream's (sorted) order.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// `<Kind>List`, which k8s-openapi has no schema for (it uses a generic `List<T>`).
fn list_definition(kind: &KnownKind) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", kind.kind, kind.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string"
            },
            "items": {
                "description": format!("List of {} objects.", kind.kind),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{}", kind.schema_name)}
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string"
            },
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                "description": "Standard list metadata."
            }
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(kind.group, kind.version, &format!("{}List", kind.kind))]
    })
}

fn apply_field_extensions(definitions: &mut BTreeMap<String, Value>) {
    for ext in FIELD_EXTENSIONS {
        let Some(prop) = definitions
            .get_mut(ext.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(ext.property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        // OpenAPI 3.0 ignores siblings of `$ref`, so a bare reference is wrapped first,
        // as upstream does for every referenced field that carries extensions.
        if let Some(target) = prop.remove("$ref") {
            prop.insert("allOf".into(), json!([{"$ref": target}]));
        }
        let mut put = |key: &str, value: Value| {
            prop.insert(key.to_string(), value);
        };
        if let Some(t) = ext.list_type {
            put("x-kubernetes-list-type", json!(t));
        }
        if !ext.list_map_keys.is_empty() {
            put("x-kubernetes-list-map-keys", json!(ext.list_map_keys));
        }
        if let Some(t) = ext.map_type {
            put("x-kubernetes-map-type", json!(t));
        }
        if let Some(k) = ext.patch_merge_key {
            put("x-kubernetes-patch-merge-key", json!(k));
        }
        if let Some(s) = ext.patch_strategy {
            put("x-kubernetes-patch-strategy", json!(s));
        }
    }
}

/// Calls `f` with the definition name of every `$ref` inside `value`.
pub(crate) fn collect_refs(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix(REF_PREFIX) {
                    f(name);
                }
            }
            for v in map.values() {
                collect_refs(v, f);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_refs(v, f);
            }
        }
        _ => {}
    }
}

/// The properties of an object schema, if it has any.
#[cfg(test)]
fn properties(schema: &Value) -> Option<&serde_json::Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_schema_with_its_gvk() {
        let reg = schema_registry();
        for r in pier_api::registry::RESOURCES {
            let def = reg.get(r.schema_name).unwrap_or_else(|| panic!("{} missing", r.schema_name));
            assert_eq!(
                def["x-kubernetes-group-version-kind"],
                json!([gvk(r.group, r.version, r.kind)]),
                "{}",
                r.schema_name
            );
            assert!(reg.get(&format!("{}List", r.schema_name)).is_some());
        }
    }

    #[test]
    fn every_extension_names_an_existing_property() {
        let reg = schema_registry();
        for ext in FIELD_EXTENSIONS {
            // Some rows are for groups Pier does not generate; those are skipped.
            if let Some(def) = reg.get(ext.definition) {
                assert!(
                    properties(def).is_some_and(|p| p.contains_key(ext.property)),
                    "{}.{}",
                    ext.definition,
                    ext.property
                );
            }
        }
    }

    #[test]
    fn extensions_land_on_the_properties() {
        let reg = schema_registry();
        let pod_spec = &reg.get("io.k8s.api.core.v1.PodSpec").expect("PodSpec")["properties"];
        assert_eq!(pod_spec["containers"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(pod_spec["containers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(pod_spec["containers"]["x-kubernetes-list-type"], "map");
        assert_eq!(pod_spec["volumes"]["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let svc = &reg.get("io.k8s.api.core.v1.ServiceSpec").expect("ServiceSpec")["properties"];
        assert_eq!(svc["ports"]["x-kubernetes-list-map-keys"], json!(["port", "protocol"]));
        let strategy =
            &reg.get("io.k8s.api.apps.v1.DeploymentSpec").expect("DeploymentSpec")["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("$ref").is_none(), "extensions beside a bare $ref: {strategy}");
        let selector = reg.get("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector");
        assert_eq!(selector.expect("LabelSelector")["x-kubernetes-map-type"], "atomic");
    }

    #[test]
    fn list_key_defaults_are_published() {
        let reg = schema_registry();
        let port = reg.get("io.k8s.api.core.v1.ServicePort").expect("ServicePort");
        assert_eq!(port["properties"]["protocol"]["default"], "TCP");
        let svc = &reg.get("io.k8s.api.core.v1.ServiceSpec").expect("ServiceSpec")["properties"];
        assert_eq!(svc["selector"]["x-kubernetes-map-type"], "atomic");
    }

    #[test]
    fn int_or_string_keeps_its_extension() {
        let reg = schema_registry();
        let ios = reg.get("io.k8s.apimachinery.pkg.util.intstr.IntOrString").expect("IntOrString");
        assert_eq!(ios["x-kubernetes-int-or-string"], true);
    }

    #[test]
    fn every_reference_resolves() {
        let reg = schema_registry();
        for (name, def) in reg.definitions() {
            collect_refs(def, &mut |r| assert!(reg.get(r).is_some(), "{name} -> {r}"));
        }
    }
}
