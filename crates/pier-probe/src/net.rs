//! TCP dialing with Go's error texts, shared by every network handler.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::gofmt;

/// Why a dial failed.
#[derive(Debug)]
pub(crate) enum DialError {
    /// The deadline passed first; `addr` is the `host:port` being dialed.
    Timeout { addr: String },
    /// The connection (or name lookup) failed; the text is Go's `net.OpError`.
    Failed(String),
}

impl DialError {
    /// Go's text for the error on its own, as `net.DialTimeout` reports it.
    pub(crate) fn message(&self) -> String {
        match self {
            DialError::Timeout { addr } => format!("dial tcp {addr}: i/o timeout"),
            DialError::Failed(text) => text.clone(),
        }
    }
}

/// Connects to `host:port` (an IP literal or a name to resolve) before `deadline`, if any.
pub(crate) async fn dial(host: &str, port: u16, deadline: Option<Instant>) -> Result<TcpStream, DialError> {
    let addr = gofmt::join_host_port(host, port);
    let connect = async {
        let socket = resolve(host, port).await?;
        TcpStream::connect(socket).await.map_err(|e| DialError::Failed(gofmt::dial_error(&addr, &e)))
    };
    match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, connect).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout { addr: addr.clone() }),
        },
        None => connect.await,
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, DialError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.is_empty() {
        // Go dials the local host for an empty host; the agent must not probe its own node instead of
        // a pod, so this reports what an unassigned pod IP would get from a closed port.
        return Err(DialError::Failed(format!("dial tcp :{port}: connect: connection refused")));
    }
    let no_such_host = || DialError::Failed(format!("dial tcp: lookup {host}: no such host"));
    let mut found = tokio::net::lookup_host((host, port)).await.map_err(|_| no_such_host())?;
    found.next().ok_or_else(no_such_host)
}
