//! Validation of objects on create and update, kind by kind, returning every invalid
//! field with upstream's wording (pkg/apis/core/validation, pkg/apis/apps/validation,
//! pkg/apis/networking/validation, pkg/apis/discovery/validation).

pub mod apps;
pub mod config;
pub mod meta;
pub mod network;
pub mod pod;
pub mod service;

use pier_api::{FieldError, FieldPath};
use serde_json::Value;

use crate::names;
use crate::util::{int_at, str_at};
use meta::NameRule;

/// The protocols of Service, container and endpoint ports, as upstream lists them.
pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Appends the errors of `more` that are not already in `errs` (update checks re-run the
/// create checks, which would otherwise report metadata problems twice).
pub(crate) fn merge(errs: &mut Vec<FieldError>, more: Vec<FieldError>) {
    for e in more {
        if !errs.contains(&e) {
            errs.push(e);
        }
    }
}

/// ValidatePortNumOrName: a number in 1-65535 or an IANA service name.
pub(crate) fn port_num_or_name(v: Option<&Value>, path: &FieldPath) -> Vec<FieldError> {
    match v {
        Some(Value::String(s)) => {
            names::port_name(s).iter().map(|m| FieldError::invalid(path, s.as_str(), m)).collect()
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            names::port_num(n).iter().map(|m| FieldError::invalid(path, n, m)).collect()
        }
        None | Some(Value::Null) => {
            names::port_num(0).iter().map(|m| FieldError::invalid(path, 0, m)).collect()
        }
        Some(other) => vec![FieldError::invalid(path, other.clone(), "must be an integer or a string")],
    }
}

/// Validates `obj`, a new object of `kind` in API `group`. Call it on the defaulted
/// object; for Services, after allocation (see the crate docs).
pub fn validate_create(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    match (group, kind) {
        ("", "Pod") => pod::validate(obj),
        ("", "Service") => service::validate(obj),
        ("", "ReplicationController") => apps::replication_controller(obj),
        ("apps", "ReplicaSet") => apps::replica_set(obj),
        ("apps", "Deployment") => apps::deployment(obj),
        ("", "ConfigMap") => config::config_map(obj),
        ("", "Secret") => config::secret(obj),
        ("", "Endpoints") => network::endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => network::endpoint_slice(obj),
        ("networking.k8s.io", "Ingress") => network::ingress(obj),
        ("networking.k8s.io", "IngressClass") => network::ingress_class(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Event") => core_event(obj),
        ("events.k8s.io", "Event") => events_event(obj),
        ("coordination.k8s.io", "Lease") => lease(obj),
        _ => generic(group, kind, obj),
    }
}

/// Validates an update of `old` to `new` (both defaulted).
pub fn validate_update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    match (group, kind) {
        ("", "Pod") => pod::validate_update(old, new),
        ("", "Service") => service::validate_update(old, new),
        ("", "ReplicationController") | ("apps", "ReplicaSet") | ("apps", "Deployment") => {
            apps::validate_update(kind, old, new)
        }
        ("", "ConfigMap") => config::config_map_update(old, new),
        ("", "Secret") => config::secret_update(old, new),
        ("discovery.k8s.io", "EndpointSlice") => network::endpoint_slice_update(old, new),
        ("networking.k8s.io", "IngressClass") => network::ingress_class_update(old, new),
        _ => {
            let mut errs = meta::object_meta_update(old, new);
            merge(&mut errs, validate_create(group, kind, new));
            errs
        }
    }
}

/// Metadata-only validation for kinds without rules of their own, with the name format
/// and scope the registry gives them.
fn generic(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let namespaced = pier_api::registry::find_kind(group, kind).is_none_or(|r| r.is_namespaced());
    meta::object_meta(obj, namespaced, NameRule::Subdomain)
}

fn namespace(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, false, NameRule::Label);
    let path = FieldPath::new("spec").child("finalizers");
    for (i, f) in crate::util::arr_at(obj, "spec.finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        for msg in names::qualified_name(f) {
            errs.push(FieldError::invalid(&path.index(i), f, &msg));
        }
        if !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                &path.index(i),
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

fn core_event(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let ns = str_at(obj, "metadata.namespace");
    let io_ns = str_at(obj, "involvedObject.namespace");
    // An event about a cluster-scoped object lives in "default" (or nowhere).
    let ok = if io_ns.is_empty() { ns.is_empty() || ns == "default" } else { ns == io_ns };
    if !ok {
        let p = FieldPath::new("involvedObject").child("namespace");
        errs.push(FieldError::invalid(&p, io_ns, "does not match event.namespace"));
    }
    errs
}

fn events_event(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    for field in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
        if str_at(obj, field).is_empty() {
            errs.push(FieldError::required(&FieldPath::new(field), ""));
        }
    }
    let controller = str_at(obj, "reportingController");
    if !controller.is_empty() {
        for msg in names::qualified_name(controller) {
            errs.push(FieldError::invalid(&FieldPath::new("reportingController"), controller, &msg));
        }
    }
    let ty = str_at(obj, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(&FieldPath::new("type"), "", &format!("has invalid value: {ty}")));
    }
    let regarding_ns = str_at(obj, "regarding.namespace");
    let ns = str_at(obj, "metadata.namespace");
    if !regarding_ns.is_empty() && regarding_ns != ns {
        let p = FieldPath::new("regarding").child("namespace");
        errs.push(FieldError::invalid(&p, regarding_ns, "does not match event.namespace"));
    }
    errs
}

fn lease(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let spec_path = FieldPath::new("spec");
    if let Some(d) = int_at(obj, "spec.leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid(
                &spec_path.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = int_at(obj, "spec.leaseTransitions") {
        if t < 0 {
            errs.push(FieldError::invalid(&spec_path.child("leaseTransitions"), t, meta::IS_NEGATIVE));
        }
    }
    errs
}

#[cfg(test)]
mod tests;
