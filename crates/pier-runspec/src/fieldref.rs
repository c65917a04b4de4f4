//! The downward API for environment variables: `fieldRef` and `resourceFieldRef`, with upstream's
//! supported paths, rounding and error messages.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::env::{EnvError, PodFacts};
use crate::quantity::{ceil_div, Amount};

/// The value of `fieldRef` for `pod`.
pub(crate) fn field_value(
    selector: &ObjectFieldSelector,
    pod: &Pod,
    facts: &PodFacts<'_>,
) -> Result<String, EnvError> {
    let version = selector.api_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("v1");
    if version != "v1" {
        return Err(EnvError::UnsupportedPodVersion(version.to_string()));
    }
    let path = selector.field_path.as_str();
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    match path {
        "spec.nodeName" => {
            let name = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
            return Ok(name.unwrap_or(facts.node_name).to_string());
        }
        "spec.serviceAccountName" => {
            return Ok(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default());
        }
        "status.hostIP" => return Ok(facts.host_ips.first().cloned().unwrap_or_default()),
        "status.hostIPs" => return Ok(facts.host_ips.join(",")),
        "status.podIP" => return Ok(facts.pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => return Ok(facts.pod_ips.join(",")),
        "metadata.name" => return Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => return Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => return Ok(meta.uid.clone().unwrap_or_default()),
        "metadata.labels" => return Ok(format_map(meta.labels.as_ref())),
        "metadata.annotations" => return Ok(format_map(meta.annotations.as_ref())),
        // Accepted by the API's field-label conversion, but the kubelet has no value for them.
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(EnvError::UnsupportedFieldPath(path.to_string()));
        }
        _ => {}
    }
    match split_subscript(path) {
        Some(("metadata.labels", key)) => Ok(lookup(meta.labels.as_ref(), key)),
        Some(("metadata.annotations", key)) => Ok(lookup(meta.annotations.as_ref(), key)),
        _ => Err(EnvError::FieldLabelNotSupported(path.to_string())),
    }
}

fn lookup(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// `path['key']` into `(path, key)`.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// Upstream's `FormatMap`: `key="value"` lines in key order, Go-quoted values.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = map else { return String::new() };
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

use pier_api::gofmt::quote as go_quote;

/// The value of `resourceFieldRef` for `container` (or the container the selector names).
///
/// A missing or zero CPU, memory or ephemeral-storage limit is replaced by the node's allocatable amount,
/// as the kubelet does before answering.
pub(crate) fn resource_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, EnvError> {
    let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => {
            find_container(pod, name).ok_or_else(|| EnvError::ContainerNotFound(name.to_string()))?
        }
    };
    let divisor = match &selector.divisor {
        Some(q) => parse(q)?,
        None => Amount::parse("1").map_err(EnvError::InvalidQuantity)?,
    };
    let divisor =
        if divisor.is_zero() { Amount::parse("1").map_err(EnvError::InvalidQuantity)? } else { divisor };
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::UnsupportedResource(selector.resource.clone()))?;
    let resources = target.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(EnvError::UnsupportedResource(selector.resource.clone())),
    };
    let supported =
        matches!(resource, "cpu" | "memory" | "ephemeral-storage") || resource.starts_with("hugepages-");
    if !supported {
        return Err(EnvError::UnsupportedResource(selector.resource.clone()));
    }
    let mut amount = match list.and_then(|l| l.get(resource)) {
        Some(q) => parse(q)?,
        None => Amount::parse("0").map_err(EnvError::InvalidQuantity)?,
    };
    if kind == "limits" && amount.is_zero() && matches!(resource, "cpu" | "memory" | "ephemeral-storage") {
        if let Some(q) = allocatable.get(resource) {
            amount = parse(q)?;
        }
    }
    let value = if resource == "cpu" {
        ceil_div(amount.milli_value(), divisor.milli_value())
    } else {
        ceil_div(amount.value(), divisor.value())
    };
    Ok(value.to_string())
}

fn parse(q: &Quantity) -> Result<Amount, EnvError> {
    Amount::parse(&q.0).map_err(EnvError::InvalidQuantity)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}
