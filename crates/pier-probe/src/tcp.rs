//! The `tcpSocket` handler: success when a TCP connection opens within the timeout.

use std::time::Duration;

use k8s_openapi::api::core::v1::TCPSocketAction;
use tokio::time::Instant;

use crate::net;
use crate::outcome::Outcome;
use crate::target::Target;

/// Runs a `tcpSocket` probe against `target`, as upstream's `DoTCPProbe`.
pub async fn tcp_socket(action: &TCPSocketAction, target: &Target, timeout: Duration) -> Outcome {
    let port = match target.resolve_port(&action.port) {
        Ok(port) => port,
        Err(err) => return Outcome::unknown(err.to_string()),
    };
    let host = match action.host.as_deref() {
        Some(host) if !host.is_empty() => host.to_string(),
        _ => target.pod_ip_string(),
    };
    match net::dial(&host, port, Some(Instant::now() + timeout)).await {
        // Dropping the stream closes it: the probe only checks that the port accepts connections.
        Ok(_stream) => Outcome::Success(String::new()),
        Err(err) => Outcome::Failure(err.message()),
    }
}
