//! What a handler acts on: the pod's address and the container's declared ports and environment.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A port the container declares (`spec.containers[].ports[]`), used to resolve named ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    /// The port's `name`, if it has one.
    pub name: Option<String>,
    /// The `containerPort` number.
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`; upstream ignores it when resolving names, and so do we.
    pub protocol: String,
}

/// The pod a container belongs to, as upstream's `format.Pod` prints it in hook messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}({})", self.name, self.namespace, self.uid)
    }
}

/// Everything a probe or hook needs to know about the container it targets.
///
/// The caller fills it from the pod spec and the pod's sandbox; [`Target::new`] does the usual case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The pod's IP, used when an action has no `host`. `None` before the sandbox has an address.
    pub pod_ip: Option<IpAddr>,
    /// The container's name.
    pub container: String,
    /// The pod, for hook failure messages.
    pub pod: PodRef,
    /// The container's declared ports.
    pub ports: Vec<ContainerPort>,
    /// The container's environment as `name = value` (`valueFrom` entries as empty), for `$(VAR)`
    /// expansion in exec probe commands, as upstream's `ExpandContainerCommandOnlyStatic` does.
    pub env: Vec<(String, String)>,
}

impl Target {
    /// Builds the target for `container` of the pod `pod` whose sandbox has `pod_ip`.
    pub fn new(pod: PodRef, container: &Container, pod_ip: Option<IpAddr>) -> Self {
        let ports = container
            .ports
            .iter()
            .flatten()
            .map(|p| ContainerPort {
                name: p.name.clone(),
                port: p.container_port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            })
            .collect();
        let env = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        Target { pod_ip, container: container.name.clone(), pod, ports, env }
    }

    /// The pod IP as upstream prints it (`status.podIP`), empty when unknown.
    pub(crate) fn pod_ip_string(&self) -> String {
        self.pod_ip.map(|ip| ip.to_string()).unwrap_or_default()
    }

    /// Resolves an action's `port` (a number or a container port name), with upstream's errors.
    pub fn resolve_port(&self, port: &IntOrString) -> Result<u16, PortError> {
        let number = match port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.port)
                .ok_or_else(|| PortError::NotFound(name.clone()))?,
        };
        match u16::try_from(number) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(PortError::Invalid(number)),
        }
    }
}

/// Why an action's port could not be resolved; `Display` is upstream's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A named port that the container does not declare.
    #[error("port {} not found", crate::gofmt::quote(.0))]
    NotFound(String),
    /// A number outside 1..=65535.
    #[error("invalid port number: {0}")]
    Invalid(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            ports: vec![ContainerPort { name: Some("http".into()), port: 8080, protocol: "TCP".into() }],
            ..Target::default()
        }
    }

    #[test]
    fn resolves_numbers_and_names() {
        let t = target();
        assert_eq!(t.resolve_port(&IntOrString::Int(81)), Ok(81));
        assert_eq!(t.resolve_port(&IntOrString::String("http".into())), Ok(8080));
        let missing = t.resolve_port(&IntOrString::String("metrics".into())).unwrap_err();
        assert_eq!(missing.to_string(), "port \"metrics\" not found");
        assert_eq!(t.resolve_port(&IntOrString::Int(0)).unwrap_err().to_string(), "invalid port number: 0");
    }

    #[test]
    fn pod_ref_renders_like_format_pod() {
        let pod = PodRef { name: "web".into(), namespace: "default".into(), uid: "u1".into() };
        assert_eq!(pod.to_string(), "web_default(u1)");
    }
}
