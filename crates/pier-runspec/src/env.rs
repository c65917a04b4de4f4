//! A container's environment, built as upstream's kubelet builds it (`makeEnvironmentVariables`):
//! `envFrom` first, then `env` in order (later entries override earlier ones, `$(VAR)` expanded against
//! what came before and the service variables), then the service variables no entry overrode.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use thiserror::Error;

use crate::expand::expand;
use crate::fieldref::{field_value, resource_value};
use crate::quantity::InvalidQuantity;
use crate::services::service_env;

/// An ordered list of `NAME=value` pairs without duplicate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name`, replacing an earlier value in place (so the first position is kept) or appending.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `NAME=value` strings, ready for `execve`.
    pub fn to_strings(&self) -> Vec<String> {
        self.vars.iter().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = Environment::new();
        for (k, v) in iter {
            env.set(k, v);
        }
        env
    }
}

/// The ConfigMaps and Secrets of the pod's namespace that the node fetched for it.
///
/// Implemented by [`PodObjects`]; a node with its own cache can implement it directly.
pub trait ObjectSource {
    /// The ConfigMap called `name` in the pod's namespace, if it exists.
    fn config_map(&self, name: &str) -> Option<&ConfigMap>;
    /// The Secret called `name` in the pod's namespace, if it exists.
    fn secret(&self, name: &str) -> Option<&Secret>;
}

/// ConfigMaps and Secrets by name, for one namespace.
#[derive(Debug, Clone, Default)]
pub struct PodObjects {
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
}

impl ObjectSource for PodObjects {
    fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name)
    }

    fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }
}

/// What the node knows about a pod beyond its spec, needed to resolve its containers' environments.
#[derive(Clone, Copy)]
pub struct PodFacts<'a> {
    /// The node's name (used for `spec.nodeName` when the spec does not carry it).
    pub node_name: &'a str,
    /// The node's IPs, primary first (`status.hostIP`, `status.hostIPs`).
    pub host_ips: &'a [String],
    /// The pod's IPs, primary first (`status.podIP`, `status.podIPs`).
    pub pod_ips: &'a [String],
    /// The services that exist when the container starts (any namespaces; see [`service_env`]).
    pub services: &'a [Service],
    /// The node's allocatable resources, standing in for limits a container does not set.
    pub allocatable: &'a BTreeMap<String, Quantity>,
    /// The ConfigMaps and Secrets the pod references (see [`referenced_objects`]).
    pub objects: &'a dyn ObjectSource,
}

/// Why a container's environment could not be built. The node shows the message as the container's
/// `CreateContainerConfigError` waiting message, so the wording is upstream's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A non-optional ConfigMap does not exist.
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    /// A non-optional Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A non-optional ConfigMap key does not exist.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        /// The missing key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
    },
    /// A non-optional Secret key does not exist.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        /// The missing key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The Secret.
        name: String,
    },
    /// A `fieldRef` with an `apiVersion` other than `v1`.
    #[error("unsupported pod version: {0}")]
    UnsupportedPodVersion(String),
    /// A `fieldRef` path the downward API does not know.
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
    /// A `fieldRef` path that is known but has no value for environment variables.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    /// A `resourceFieldRef` resource that is not supported.
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    /// A `resourceFieldRef.containerName` that names no container of the pod.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A resource quantity that does not parse.
    #[error(transparent)]
    InvalidQuantity(InvalidQuantity),
}

impl EnvError {
    /// The waiting reason the node reports for this error.
    pub fn reason(&self) -> &'static str {
        "CreateContainerConfigError"
    }
}

/// Builds the environment of `container` in `pod`, in the order the process should see it.
///
/// Variable names from `envFrom` are used as they are (upstream stopped skipping names that are not
/// C identifiers when relaxed environment variable validation became the default); only names a process
/// environment cannot hold (empty, or containing `=` or NUL) are dropped.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts<'_>,
) -> Result<Environment, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    // The API server defaults enableServiceLinks to true; a pod that somehow lacks it gets the default.
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = service_env(namespace, links, facts.services);
    let mut env = Environment::new();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(cm_ref) = &source.config_map_ref {
            match facts.objects.config_map(&cm_ref.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set_checked(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if cm_ref.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(cm_ref.name.clone())),
            }
        } else if let Some(secret_ref) = &source.secret_ref {
            match facts.objects.secret(&secret_ref.name) {
                Some(secret) => {
                    for (k, v) in secret_data(secret) {
                        set_checked(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if secret_ref.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(secret_ref.name.clone())),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref().filter(|v| !v.is_empty()), &var.value_from) {
            (Some(value), _) => expand(value, |name| {
                env.get(name).or_else(|| services.get(name).map(String::as_str)).map(str::to_string)
            }),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_value(field, pod, facts)?
                } else if let Some(resource) = &from.resource_field_ref {
                    resource_value(resource, pod, container, facts.allocatable)?
                } else if let Some(key_ref) = &from.config_map_key_ref {
                    let optional = key_ref.optional == Some(true);
                    let Some(cm) = facts.objects.config_map(&key_ref.name) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::ConfigMapNotFound(key_ref.name.clone()));
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&key_ref.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKeyNotFound {
                                key: key_ref.key.clone(),
                                namespace: namespace.to_string(),
                                name: key_ref.name.clone(),
                            })
                        }
                    }
                } else if let Some(key_ref) = &from.secret_key_ref {
                    let optional = key_ref.optional == Some(true);
                    let Some(secret) = facts.objects.secret(&key_ref.name) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::SecretNotFound(key_ref.name.clone()));
                    };
                    match secret_data(secret).find(|(k, _)| *k == key_ref.key) {
                        Some((_, v)) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKeyNotFound {
                                key: key_ref.key.clone(),
                                namespace: namespace.to_string(),
                                name: key_ref.name.clone(),
                            })
                        }
                    }
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        env.set(var.name.clone(), value);
    }

    // Service variables come last and never override what the container declared.
    for (name, value) in services {
        if env.get(&name).is_none() {
            env.set(name, value);
        }
    }
    Ok(env)
}

fn set_checked(env: &mut Environment, name: String, value: String) {
    if !name.is_empty() && !name.contains(['=', '\0']) {
        env.set(name, value);
    }
}

/// A Secret's decoded `data`, with `stringData` on top for objects that were never round-tripped through
/// an API server (which folds `stringData` into `data`).
fn secret_data(secret: &Secret) -> impl Iterator<Item = (&str, String)> {
    let data =
        secret.data.iter().flatten().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(&v.0).into_owned()));
    let string_data = secret.string_data.iter().flatten().map(|(k, v)| (k.as_str(), v.clone()));
    let mut merged: BTreeMap<&str, String> = data.collect();
    merged.extend(string_data);
    merged.into_iter()
}

/// The ConfigMaps and Secrets (in the pod's namespace) that a pod references and the node should fetch
/// before starting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
}

/// Lists the ConfigMaps and Secrets referenced by any container's `env`/`envFrom` (regular, init and
/// ephemeral containers) and by `configMap`, `secret` and `projected` volumes. Optional references are
/// included: the node fetches them and simply finds nothing.
pub fn referenced_objects(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(spec) = pod.spec.as_ref() else { return refs };
    let envs = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (&c.env, &c.env_from))
        .chain(spec.ephemeral_containers.iter().flatten().map(|c| (&c.env, &c.env_from)));
    for (env, env_from) in envs {
        for source in env_from.iter().flatten() {
            if let Some(r) = &source.config_map_ref {
                refs.config_maps.insert(r.name.clone());
            }
            if let Some(r) = &source.secret_ref {
                refs.secrets.insert(r.name.clone());
            }
        }
        for var in env.iter().flatten() {
            let Some(from) = &var.value_from else { continue };
            if let Some(r) = &from.config_map_key_ref {
                refs.config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                refs.secrets.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.secrets.insert(secret);
        }
        for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                refs.config_maps.insert(cm.name.clone());
            }
            if let Some(secret) = &source.secret {
                refs.secrets.insert(secret.name.clone());
            }
        }
    }
    refs.config_maps.retain(|n| !n.is_empty());
    refs.secrets.retain(|n| !n.is_empty());
    refs
}
