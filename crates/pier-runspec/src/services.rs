//! Service environment variables (`<NAME>_SERVICE_HOST` and the Docker-link style `<NAME>_PORT_...`), as
//! upstream's kubelet builds them (`getServiceEnvVarMap` and `pkg/kubelet/envvars`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace and name of the API server's own service, whose variables every pod gets.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// The service variables a pod in `namespace` sees, from `services` (any namespaces; the caller may pass
/// everything it knows, and only the pod's namespace plus `default/kubernetes` are used).
///
/// `default/kubernetes` is always included, even when `enable_service_links` is false, because in-cluster
/// clients read `KUBERNETES_SERVICE_HOST`. A service in the pod's own namespace that is also called
/// `kubernetes` wins over the master one when links are enabled, as upstream's map does. Services without
/// a cluster IP (empty or `None`, i.e. headless) or without ports are skipped.
pub fn service_env(
    namespace: &str,
    enable_service_links: bool,
    services: &[Service],
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let Some(name) = service.metadata.name.as_deref() else { continue };
        if cluster_ip(service).is_none() {
            continue;
        }
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        if ns == MASTER_NAMESPACE && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(service);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    let mut env = BTreeMap::new();
    for (name, service) in chosen {
        add_service(&mut env, name, service);
    }
    env
}

/// The cluster IP when it is set to an address (not empty, not `None`).
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

fn add_service(env: &mut BTreeMap<String, String>, name: &str, service: &Service) {
    let (Some(ip), Some(spec)) = (cluster_ip(service), service.spec.as_ref()) else { return };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let prefix = env_name(name);
    env.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
    env.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            env.insert(format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)), port.port.to_string());
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{ip}:{}", port.port);
        if i == 0 {
            // Docker links special-case the first port.
            env.insert(format!("{prefix}_PORT"), url.clone());
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        env.insert(format!("{port_prefix}_PROTO"), lower);
        env.insert(format!("{port_prefix}_PORT"), port.port.to_string());
        env.insert(format!("{port_prefix}_ADDR"), ip.to_string());
        env.insert(port_prefix, url);
    }
}

/// Upper case, `-` and `.` to `_`, and a leading `_` when the name starts with a digit.
fn env_name(name: &str) -> String {
    let upper = name.replace(['.', '-'], "_").to_uppercase();
    if upper.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{upper}")
    } else {
        upper
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn service(
        ns: &str,
        name: &str,
        ip: &str,
        ports: &[(Option<&str>, i32, Option<&str>)],
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(Into::into),
                            port: *p,
                            protocol: proto.map(Into::into),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The shape of upstream's envvars test: a plain service, a named multi-port UDP one, and skipped ones.
    #[test]
    fn variables_for_each_port() {
        let services = vec![
            service("ns", "foo-bar", "1.2.3.4", &[(None, 8080, Some("TCP"))]),
            service(
                "ns",
                "abc-123",
                "5.6.7.8",
                &[(Some("u-d-p"), 8081, Some("UDP")), (Some("t-c-p"), 8082, None)],
            ),
            service("ns", "headless", "None", &[(None, 80, None)]),
            service("ns", "no-ip", "", &[(None, 80, None)]),
            service("other", "elsewhere", "9.9.9.9", &[(None, 80, None)]),
        ];
        let env = service_env("ns", true, &services);
        assert_eq!(
            pairs(&env),
            vec![
                ("ABC_123_PORT", "udp://5.6.7.8:8081"),
                ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
                ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
                ("ABC_123_PORT_8081_UDP_PORT", "8081"),
                ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
                ("ABC_123_PORT_8082_TCP", "tcp://5.6.7.8:8082"),
                ("ABC_123_PORT_8082_TCP_ADDR", "5.6.7.8"),
                ("ABC_123_PORT_8082_TCP_PORT", "8082"),
                ("ABC_123_PORT_8082_TCP_PROTO", "tcp"),
                ("ABC_123_SERVICE_HOST", "5.6.7.8"),
                ("ABC_123_SERVICE_PORT", "8081"),
                ("ABC_123_SERVICE_PORT_T_C_P", "8082"),
                ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
                ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
                ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
                ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
                ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
                ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
                ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
                ("FOO_BAR_SERVICE_PORT", "8080"),
            ]
        );
    }

    #[test]
    fn master_service_always_present() {
        let services = vec![
            service("default", "kubernetes", "10.96.0.1", &[(Some("https"), 443, Some("TCP"))]),
            service("ns", "web", "10.96.0.9", &[(None, 80, None)]),
        ];
        let off = service_env("ns", false, &services);
        assert_eq!(off.get("KUBERNETES_SERVICE_HOST").map(String::as_str), Some("10.96.0.1"));
        assert_eq!(off.get("KUBERNETES_SERVICE_PORT_HTTPS").map(String::as_str), Some("443"));
        assert_eq!(off.get("KUBERNETES_PORT").map(String::as_str), Some("tcp://10.96.0.1:443"));
        assert!(!off.contains_key("WEB_SERVICE_HOST"));
        let on = service_env("ns", true, &services);
        assert_eq!(on.get("WEB_SERVICE_HOST").map(String::as_str), Some("10.96.0.9"));
    }

    #[test]
    fn own_namespace_kubernetes_service_wins_when_links_enabled() {
        for order in [false, true] {
            let mut services = vec![
                service("default", "kubernetes", "10.96.0.1", &[(None, 443, None)]),
                service("ns", "kubernetes", "10.96.0.7", &[(None, 80, None)]),
            ];
            if order {
                services.reverse();
            }
            let env = service_env("ns", true, &services);
            assert_eq!(env.get("KUBERNETES_SERVICE_HOST").map(String::as_str), Some("10.96.0.7"));
        }
    }

    #[test]
    fn names_starting_with_digit_get_underscore() {
        assert_eq!(env_name("1st.svc-x"), "_1ST_SVC_X");
    }
}
