//! The `grpc` handler: `grpc.health.v1.Health/Check` over cleartext HTTP/2, as upstream's prober
//! (which uses grpc-go with `WithBlock`, so connection failures are retried until the timeout).

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::GRPCAction;
use tokio::time::Instant;

use crate::outcome::Outcome;
use crate::target::Target;
use crate::{gofmt, net, KUBE_VERSION};

/// Largest health response accepted; the real one is a few bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// How long grpc-go waits before redialing after a failed connection attempt (its base backoff).
const REDIAL: Duration = Duration::from_secs(1);

/// Runs a `grpc` probe against the pod IP of `target`.
pub async fn grpc(action: &GRPCAction, target: &Target, timeout: Duration) -> Outcome {
    let host = target.pod_ip_string();
    let service = action.service.clone().unwrap_or_default();
    let Ok(port) = u16::try_from(action.port) else {
        return Outcome::Failure(format!(
            "error: failed to connect service at {}: invalid port",
            action.port
        ));
    };
    check(&host, port, &service, timeout).await
}

async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let addr = gofmt::join_host_port(host, port);
    let connect_timeout = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {} within {}: context deadline exceeded",
            gofmt::quote(&addr),
            gofmt::duration(timeout)
        ))
    };

    let mut sender = loop {
        match connect(host, port, deadline).await {
            Ok(sender) => break sender,
            Err(()) if Instant::now() + REDIAL < deadline => tokio::time::sleep(REDIAL).await,
            Err(()) => {
                tokio::time::sleep_until(deadline).await;
                return connect_timeout();
            }
        }
    };

    let rpc = async {
        let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", format!("kube-probe/{KUBE_VERSION}"))
            .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)))
            .body(Full::new(encode_request(service)))
            .map_err(|e| rpc_error("Internal", &e.to_string()))?;
        let response =
            sender.send_request(request).await.map_err(|e| rpc_error("Unavailable", &e.to_string()))?;
        let (parts, body) = response.into_parts();
        if let Some(status) = grpc_status(&parts.headers) {
            // A trailers-only response: the status came with the headers.
            return Err(status);
        }
        if parts.status != http::StatusCode::OK {
            return Err(http_status_error(parts.status));
        }
        let collected = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| rpc_error("Internal", &e.to_string()))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        if let Some(status) = grpc_status(&trailers) {
            return Err(status);
        }
        decode_response(collected.to_bytes())
            .ok_or_else(|| rpc_error("Internal", "failed to decode response"))
    };

    let result = match tokio::time::timeout_at(deadline, rpc).await {
        Ok(result) => result,
        Err(_) => Err(RpcError { code: "DeadlineExceeded", message: "context deadline exceeded".into() }),
    };
    match result {
        Ok(1) => Outcome::Success("service healthy".into()),
        Ok(status) => Outcome::Failure(format!(
            "service unhealthy (responded with {})",
            gofmt::quote(&serving_status_name(status))
        )),
        Err(e) if e.code == "Unimplemented" => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            e.message
        )),
        Err(e) if e.code == "DeadlineExceeded" => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            gofmt::duration(timeout)
        )),
        Err(e) => Outcome::Failure(format!("error: health rpc probe failed: {e}")),
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// Dials and completes the HTTP/2 handshake (prior knowledge, no TLS) before `deadline`.
async fn connect(host: &str, port: u16, deadline: Instant) -> Result<Sender, ()> {
    let tcp = net::dial(host, port, Some(deadline)).await.map_err(|_| ())?;
    let handshake =
        hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(tcp));
    let (sender, conn) =
        tokio::time::timeout_at(deadline, handshake).await.map_err(|_| ())?.map_err(|_| ())?;
    // The connection task ends when `sender` is dropped at the end of the check.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A gRPC status other than OK, printed as grpc-go's `status.Error`.
#[derive(Debug)]
struct RpcError {
    code: &'static str,
    message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rpc error: code = {} desc = {}", self.code, self.message)
    }
}

fn rpc_error(code: &'static str, message: &str) -> RpcError {
    RpcError { code, message: message.to_string() }
}

fn grpc_status(headers: &HeaderMap) -> Option<RpcError> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    if code == 0 {
        return None;
    }
    let message = headers.get("grpc-message").map(|v| percent_decode(v.as_bytes())).unwrap_or_default();
    Some(RpcError { code: code_name(code), message })
}

/// grpc-go's mapping for a response that is not gRPC at all.
fn http_status_error(status: http::StatusCode) -> RpcError {
    let code = match status.as_u16() {
        400 => "Internal",
        401 => "Unauthenticated",
        403 => "PermissionDenied",
        404 => "Unimplemented",
        429 | 502 | 503 | 504 => "Unavailable",
        _ => "Unknown",
    };
    let reason = status.canonical_reason().unwrap_or("");
    let message = format!("unexpected HTTP status code received from server: {} ({reason})", status.as_u16());
    RpcError { code, message }
}

fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// The enum's name as Go's generated `String()` prints it (the number when unknown).
fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A length-prefixed gRPC message holding `HealthCheckRequest { string service = 1; }`.
pub(crate) fn encode_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    frame(&message)
}

/// A length-prefixed gRPC message: uncompressed flag, big-endian length, payload.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// Reads `HealthCheckResponse { ServingStatus status = 1; }` from the first message of a gRPC body.
pub(crate) fn decode_response(mut body: Bytes) -> Option<u64> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    let mut message = body.get(..len)?;
    let mut status = 0;
    while !message.is_empty() {
        let key = get_varint(&mut message)?;
        match key & 7 {
            0 => {
                let value = get_varint(&mut message)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            1 => message = message.get(8..)?,
            2 => {
                let n = usize::try_from(get_varint(&mut message)?).ok()?;
                message = message.get(n..)?;
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

/// Decodes a `HealthCheckRequest`'s service name from a gRPC body (for test servers).
#[cfg(test)]
pub(crate) fn decode_request(mut body: Bytes) -> Option<String> {
    if body.len() < 5 {
        return None;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    let mut message = body.get(..len)?;
    let mut service = String::new();
    while !message.is_empty() {
        let key = get_varint(&mut message)?;
        if key & 7 != 2 {
            return None;
        }
        let n = usize::try_from(get_varint(&mut message)?).ok()?;
        let value = message.get(..n)?;
        if key >> 3 == 1 {
            service = String::from_utf8_lossy(value).into_owned();
        }
        message = &message[n..];
    }
    Some(service)
}

/// Encodes a `HealthCheckResponse` with `status` as a gRPC body (for test servers).
#[cfg(test)]
pub(crate) fn encode_response(status: u64) -> Bytes {
    let mut message = vec![0x08];
    put_varint(&mut message, status);
    frame(&message)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages_round_trip() {
        assert_eq!(decode_request(encode_request("")), Some(String::new()));
        assert_eq!(decode_request(encode_request("db")), Some("db".into()));
        assert_eq!(decode_response(encode_response(2)), Some(2));
        assert_eq!(decode_response(encode_response(300)), Some(300));
        assert_eq!(percent_decode(b"unknown%20service"), "unknown service");
    }
}
