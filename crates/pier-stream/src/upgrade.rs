//! Protocol negotiation for the upgrade request and the HTTP responses that answer it.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;

/// Body of the responses this crate builds.
pub type Body = Full<Bytes>;

const STREAM_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
const ACCEPTED_STREAM_PROTOCOLS: &str = "X-Accepted-Stream-Protocol-Versions";

/// The transport the client asked for, with the negotiated subprotocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    /// RFC 6455 WebSocket; `protocol` is the chosen `Sec-WebSocket-Protocol` (may be empty).
    WebSocket { accept: String, protocol: String },
    /// SPDY/3.1; `protocol` is the chosen `X-Stream-Protocol-Version` (empty when the client sent none).
    Spdy { protocol: String },
}

impl Transport {
    /// The negotiated subprotocol.
    pub(crate) fn protocol(&self) -> &str {
        match self {
            Transport::WebSocket { protocol, .. } | Transport::Spdy { protocol } => protocol,
        }
    }

    /// The `101 Switching Protocols` answer.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut b =
            Response::builder().status(StatusCode::SWITCHING_PROTOCOLS).header(header::CONNECTION, "Upgrade");
        match self {
            Transport::WebSocket { accept, protocol } => {
                b = b
                    .header(header::UPGRADE, "websocket")
                    .header(header::SEC_WEBSOCKET_ACCEPT, accept.as_str());
                if !protocol.is_empty() {
                    b = b.header(header::SEC_WEBSOCKET_PROTOCOL, protocol.as_str());
                }
            }
            Transport::Spdy { protocol } => {
                b = b.header(header::UPGRADE, "SPDY/3.1");
                if !protocol.is_empty() {
                    b = b.header(STREAM_PROTOCOL_VERSION, protocol.as_str());
                }
            }
        }
        b.body(Body::default())
            .unwrap_or_else(|_| plain_error(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
    }
}

/// A plain-text error response, as Go's `http.Error` writes it.
pub fn plain_error(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(format!("{message}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert("X-Content-Type-Options", header::HeaderValue::from_static("nosniff"));
    resp
}

/// All values of a (possibly repeated, comma-separated) header.
fn values<B>(req: &Request<B>, name: impl header::AsHeaderName) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn has_token<B>(req: &Request<B>, name: header::HeaderName, token: &str) -> bool {
    values(req, name).iter().any(|v| v.eq_ignore_ascii_case(token))
}

/// Picks the first client protocol the server supports (the client lists in preference order).
fn choose(client: &[String], server: &[&str]) -> Option<String> {
    client.iter().find(|c| server.contains(&c.as_str())).cloned()
}

/// Works out the transport and subprotocol; `Err` is the response to send instead of upgrading.
/// `default_*` is used when the client offers no subprotocol at all (old clients).
pub(crate) fn negotiate<B>(
    req: &Request<B>,
    websocket: &[&str],
    spdy: &[&str],
    default_spdy: &str,
) -> Result<Transport, Box<Response<Body>>> {
    let upgrade_requested = has_token(req, header::CONNECTION, "upgrade");
    if upgrade_requested && has_token(req, header::UPGRADE, "websocket") {
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok());
        let Some(key) = key else {
            return Err(Box::new(plain_error(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing Sec-WebSocket-Key",
            )));
        };
        if !has_token(req, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(Box::new(plain_error(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: unsupported websocket version",
            )));
        }
        let client = values(req, header::SEC_WEBSOCKET_PROTOCOL);
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        return match choose(&client, websocket) {
            Some(protocol) => Ok(Transport::WebSocket { accept, protocol }),
            None => Err(Box::new(plain_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {}, server supports {}",
                    go_list(&client),
                    go_list(websocket)
                ),
            ))),
        };
    }
    if upgrade_requested && has_token(req, header::UPGRADE, "spdy/3.1") {
        let client = values(req, STREAM_PROTOCOL_VERSION);
        if client.is_empty() {
            return Ok(Transport::Spdy { protocol: default_spdy.to_string() });
        }
        return match choose(&client, spdy) {
            Some(protocol) => Ok(Transport::Spdy { protocol }),
            None => {
                let mut resp = plain_error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {}, server accepts {}",
                        go_list(&client),
                        go_list(spdy)
                    ),
                );
                for p in spdy {
                    if let Ok(v) = header::HeaderValue::from_str(p) {
                        resp.headers_mut().append(ACCEPTED_STREAM_PROTOCOLS, v);
                    }
                }
                Err(Box::new(resp))
            }
        };
    }
    Err(Box::new(plain_error(
        StatusCode::BAD_REQUEST,
        "unable to upgrade: missing upgrade headers in request",
    )))
}

/// Formats a list the way Go's `%v` prints a string slice.
fn go_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<&str> = items.iter().map(|s| s.as_ref()).collect();
    format!("[{}]", parts.join(" "))
}

/// Answers an upgrade request the caller has negotiated: returns the 101 response and
/// spawns a task that waits for the upgraded connection and hands it to `run`.
pub(crate) fn take_over<B, R, Fut>(
    req: &mut Request<B>,
    transport: Transport,
    what: &'static str,
    run: R,
) -> Response<Body>
where
    R: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>, Transport) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(req);
    let response = transport.response();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(hyper_util::rt::TokioIo::new(upgraded), transport).await,
            Err(e) => tracing::debug!("{what}: upgrade failed: {e}"),
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/exec");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn websocket_prefers_client_order_and_computes_accept() {
        let r = req(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
        ]);
        let t = negotiate(&r, &["v4.channel.k8s.io", "v5.channel.k8s.io"], &[], "").unwrap();
        assert_eq!(
            t,
            Transport::WebSocket {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
                protocol: "v5.channel.k8s.io".into()
            }
        );
        let resp = t.response();
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    }

    #[test]
    fn spdy_negotiation_and_refusal() {
        let r = req(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v9.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ]);
        let t = negotiate(&r, &[], &["v4.channel.k8s.io", "v3.channel.k8s.io"], "").unwrap();
        assert_eq!(t, Transport::Spdy { protocol: "v4.channel.k8s.io".into() });
        let resp = t.response();
        assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
        assert_eq!(resp.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");

        let err = negotiate(&r, &[], &["portforward.k8s.io"], "").unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.headers()["x-accepted-stream-protocol-versions"], "portforward.k8s.io");

        let plain = negotiate(&req(&[]), &[], &[], "").unwrap_err();
        assert_eq!(plain.status(), 400);
    }
}
