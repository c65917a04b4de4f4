//! [`PatchSchema`] over the registry: what strategic merge patch needs to know at each
//! position of an object.

use pier_patch::{ListStrategy, PatchSchema};
use serde_json::Value;

use crate::registry::{schema_registry, SchemaRegistry};

/// What a schema position holds, before list and map types refine it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaShape {
    /// An object with named fields (`properties`).
    Struct,
    /// An object whose values all share one schema (`additionalProperties`).
    Map,
    /// An array.
    List,
    /// A string, number, boolean or int-or-string.
    Scalar,
    /// Anything (`type: object` without properties, or no type): deduced from the value.
    Untyped,
}

/// A position in a kind's schema, as strategic merge patch walks it.
///
/// Like upstream's `PatchMetaFromOpenAPIV3`, the list strategy is read from the
/// property's own schema (where `x-kubernetes-patch-*` sit), not from the definition it
/// references; `$ref`s and `allOf` wrappers are followed only to descend.
#[derive(Debug, Clone, Copy)]
pub struct SchemaCursor {
    registry: &'static SchemaRegistry,
    /// The schema as written at this position, extensions included.
    node: &'static Value,
}

/// A cursor at the root of the kind whose definition is `schema_name`, e.g.
/// `io.k8s.api.core.v1.Service`; `None` for an unknown name.
pub fn patch_schema(schema_name: &str) -> Option<SchemaCursor> {
    let registry = schema_registry();
    let node = registry.get(schema_name)?;
    Some(SchemaCursor { registry, node })
}

impl SchemaCursor {
    /// The schema at this position, with references followed.
    pub fn schema(&self) -> &'static Value {
        self.registry.resolve(self.node).unwrap_or(self.node)
    }

    fn at(&self, node: &'static Value) -> SchemaCursor {
        SchemaCursor { registry: self.registry, node }
    }

    /// `x-kubernetes-list-type` as published at this position (`atomic`, `set` or
    /// `map`); `None` when upstream leaves it unsaid (server-side apply then falls back
    /// to the patch strategy, and to `atomic`).
    pub fn list_type(&self) -> Option<&'static str> {
        self.node.get("x-kubernetes-list-type").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-map-keys`: the fields that identify an item of a `map` list.
    pub fn list_map_keys(&self) -> Vec<&'static str> {
        self.node
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `x-kubernetes-map-type` (`atomic` or `granular`), from the property or, for
    /// `+structType=atomic` definitions, from the definition it references.
    pub fn map_type(&self) -> Option<&'static str> {
        self.node
            .get("x-kubernetes-map-type")
            .or_else(|| self.schema().get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
    }

    /// What kind of value this position holds, as server-side apply sees it.
    pub fn shape(&self) -> SchemaShape {
        let schema = self.schema();
        if schema.get("properties").is_some() {
            return SchemaShape::Struct;
        }
        if schema.get("items").is_some() || schema.get("type").and_then(Value::as_str) == Some("array") {
            return SchemaShape::List;
        }
        if schema.get("additionalProperties").is_some_and(Value::is_object) {
            return SchemaShape::Map;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") | None if schema.get("x-kubernetes-int-or-string").is_none() => {
                SchemaShape::Untyped
            }
            _ => SchemaShape::Scalar,
        }
    }

    /// The published `default` of the struct field `name`, e.g. `protocol: TCP` of a
    /// `ServicePort`.
    pub fn field_default(&self, name: &str) -> Option<&'static Value> {
        self.schema().get("properties")?.get(name)?.get("default")
    }

    fn strategy(&self) -> Option<&'static str> {
        self.node.get("x-kubernetes-patch-strategy").and_then(Value::as_str)
    }
}

impl PatchSchema for SchemaCursor {
    fn field(&self, name: &str) -> Option<Self> {
        self.schema().get("properties")?.get(name).map(|n| self.at(n))
    }

    fn elements(&self) -> Option<Self> {
        let schema = self.schema();
        if let Some(items) = schema.get("items") {
            return Some(self.at(items));
        }
        // `additionalProperties: true` says nothing about the values.
        schema.get("additionalProperties").filter(|v| v.is_object()).map(|v| self.at(v))
    }

    fn list_strategy(&self) -> ListStrategy {
        let merges = self.strategy().is_some_and(|s| s.split(',').any(|p| p == "merge"));
        if !merges {
            return ListStrategy::Replace;
        }
        match self.node.get("x-kubernetes-patch-merge-key").and_then(Value::as_str) {
            Some(key) => ListStrategy::MergeByKey { key: key.to_string() },
            None => ListStrategy::MergePrimitives,
        }
    }

    fn retain_keys(&self) -> bool {
        self.strategy().is_some_and(|s| s.split(',').any(|p| p == "retainKeys"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(kind: &str, path: &[&str]) -> SchemaCursor {
        let mut c = patch_schema(kind).expect("kind");
        for step in path {
            c = match *step {
                "[]" => c.elements(),
                name => c.field(name),
            }
            .unwrap_or_else(|| panic!("{kind}: no {step} in {path:?}"));
        }
        c
    }

    fn by_key(key: &str) -> ListStrategy {
        ListStrategy::MergeByKey { key: key.into() }
    }

    #[test]
    fn list_strategies_follow_upstream() {
        let pod = "io.k8s.api.core.v1.Pod";
        let deploy = "io.k8s.api.apps.v1.Deployment";
        let svc = "io.k8s.api.core.v1.Service";
        let cases: &[(&str, &[&str], ListStrategy)] = &[
            (pod, &["spec", "containers"], by_key("name")),
            (pod, &["spec", "initContainers"], by_key("name")),
            (pod, &["spec", "volumes"], by_key("name")),
            (pod, &["spec", "imagePullSecrets"], by_key("name")),
            (pod, &["spec", "containers", "[]", "ports"], by_key("containerPort")),
            (pod, &["spec", "containers", "[]", "env"], by_key("name")),
            (pod, &["spec", "containers", "[]", "volumeMounts"], by_key("mountPath")),
            (pod, &["spec", "containers", "[]", "args"], ListStrategy::Replace),
            (pod, &["spec", "tolerations"], ListStrategy::Replace),
            (pod, &["status", "conditions"], by_key("type")),
            (pod, &["metadata", "finalizers"], ListStrategy::MergePrimitives),
            (pod, &["metadata", "ownerReferences"], by_key("uid")),
            (svc, &["spec", "ports"], by_key("port")),
            (svc, &["spec", "externalIPs"], ListStrategy::Replace),
            (deploy, &["spec", "template", "spec", "containers"], by_key("name")),
            (deploy, &["status", "conditions"], by_key("type")),
        ];
        for (kind, path, want) in cases {
            assert_eq!(&at(kind, path).list_strategy(), want, "{kind} {path:?}");
        }
    }

    #[test]
    fn retain_keys_where_upstream_has_it() {
        assert!(at("io.k8s.api.apps.v1.Deployment", &["spec", "strategy"]).retain_keys());
        assert!(at("io.k8s.api.core.v1.Pod", &["spec", "volumes"]).retain_keys());
        assert!(!at("io.k8s.api.core.v1.Pod", &["spec", "containers"]).retain_keys());
    }

    #[test]
    fn apply_metadata_at_positions() {
        let svc = "io.k8s.api.core.v1.Service";
        let ports = at(svc, &["spec", "ports"]);
        assert_eq!(ports.list_type(), Some("map"));
        assert_eq!(ports.list_map_keys(), ["port", "protocol"]);
        assert_eq!(ports.shape(), SchemaShape::List);
        let port = ports.elements().expect("items");
        assert_eq!(port.shape(), SchemaShape::Struct);
        assert_eq!(port.field_default("protocol"), Some(&serde_json::json!("TCP")));
        assert_eq!(port.field("targetPort").expect("targetPort").shape(), SchemaShape::Scalar);
        assert_eq!(at(svc, &["spec", "selector"]).map_type(), Some("atomic"));
        assert_eq!(at(svc, &["metadata", "labels"]).shape(), SchemaShape::Map);
        assert_eq!(at(svc, &["metadata", "labels"]).map_type(), None);
        let deploy = "io.k8s.api.apps.v1.Deployment";
        assert_eq!(at(deploy, &["spec", "selector"]).map_type(), Some("atomic"));
        assert_eq!(at(deploy, &["spec", "replicas"]).shape(), SchemaShape::Scalar);
    }

    #[test]
    fn maps_and_unknown_fields() {
        let labels = at("io.k8s.api.core.v1.Service", &["metadata", "labels"]);
        assert!(labels.elements().is_some());
        assert_eq!(labels.list_strategy(), ListStrategy::Replace);
        let spec = at("io.k8s.api.core.v1.Service", &["spec"]);
        assert!(spec.field("portz").is_none());
        assert!(patch_schema("io.k8s.api.core.v1.Nope").is_none());
    }
}
