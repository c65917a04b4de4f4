//! `healthCheckNodePort`s: for a LoadBalancer Service with `externalTrafficPolicy:
//! Local`, each node answers on that port whether it has local endpoints (200) or not
//! (503), so a load balancer sends traffic only to nodes that can serve it. The body
//! and headers are kube-proxy's.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::StatusCode;
use pier_proxy::{HealthCheck, ServiceName};
use tokio::task::JoinHandle;

use pier_status_http::{self as http, Reply};

/// What one health check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    service: ServiceName,
    local_endpoints: usize,
}

/// The answer for a service with `local` endpoints on this node.
pub fn reply(service: &ServiceName, local: usize) -> Reply {
    // Field order as kube-proxy writes it (a Go struct), not sorted.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let body = format!(
        r#"{{"service":{{"namespace":{},"name":{}}},"localEndpoints":{local},"serviceProxyHealthy":true}}"#,
        quote(&service.namespace),
        quote(&service.name)
    );
    Reply {
        status: if local > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        content_type: "application/json",
        headers: vec![
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("X-Load-Balancing-Endpoint-Weight", local.to_string()),
        ],
        body,
    }
}

/// One listener per health check port, started and stopped as Services change.
#[derive(Debug, Default)]
pub struct HealthServers {
    servers: HashMap<u16, (Arc<Mutex<Report>>, JoinHandle<()>)>,
}

impl HealthServers {
    /// Serves exactly `checks` on `bind` (a port that cannot be bound is logged and
    /// tried again on the next sync).
    pub async fn update(&mut self, bind: Ipv4Addr, checks: &[HealthCheck]) {
        let wanted: HashMap<u16, &HealthCheck> = checks.iter().map(|c| (c.node_port, c)).collect();
        self.servers.retain(|port, (_, task)| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, check) in wanted {
            let report = Report { service: check.service.clone(), local_endpoints: check.local_endpoints };
            if let Some((current, _)) = self.servers.get(&port) {
                *current.lock().unwrap_or_else(PoisonError::into_inner) = report;
                continue;
            }
            let addr = SocketAddr::from((bind, port));
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let shared = Arc::new(Mutex::new(report));
                    let reading = Arc::clone(&shared);
                    let task = tokio::spawn(http::serve(listener, move |_path| {
                        let r = reading.lock().unwrap_or_else(PoisonError::into_inner).clone();
                        reply(&r.service, r.local_endpoints)
                    }));
                    self.servers.insert(port, (shared, task));
                }
                Err(e) => tracing::warn!(%addr, error = %e, "binding a health check node port"),
            }
        }
    }

    /// The ports being served.
    pub fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.servers.keys().copied().collect();
        p.sort_unstable();
        p
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        for (_, task) in self.servers.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_decide_the_status() {
        let svc = ServiceName { namespace: "default".into(), name: "kubia-lb".into() };
        let ok = reply(&svc, 2);
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(
            ok.body,
            r#"{"service":{"namespace":"default","name":"kubia-lb"},"localEndpoints":2,"serviceProxyHealthy":true}"#
        );
        assert!(ok.headers.contains(&("X-Load-Balancing-Endpoint-Weight", "2".to_string())));
        assert_eq!(reply(&svc, 0).status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
