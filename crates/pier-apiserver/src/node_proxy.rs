//! The pod subresources a node serves: `pods/exec`, `pods/attach`, `pods/portforward`
//! and `pods/log`. As upstream's pod registry does, the API server finds the pod, its
//! container and its node, then dials the node's kubelet endpoint over TLS (the node's
//! certificate checked against the cluster CA, the `kube-apiserver-kubelet-client`
//! certificate presented) and forwards: upgrades (WebSocket, SPDY) are relayed byte for
//! byte once the node answers 101; logs are streamed as the node writes them. The node,
//! not the API server, speaks WebSocket and SPDY.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use pier_api::field::{aggregate_message, FieldError, FieldPath};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::handlers::{error_response, Api, Body};
use crate::pki::{CertPair, Pki};
use crate::request::{Query, ResourceRequest};
use crate::server::{certs, key, ServeError};
use crate::status::ApiError;

/// The kubelet's port when a Node does not say (upstream's `--kubelet-port` default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Upstream's kubelet client dial timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a failed log response's body becomes the error message (upstream's limit).
const MAX_ERROR_BODY: usize = 4 * 1024;

/// The pod subresources forwarded to nodes.
const NODE_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward", "log"];

/// The API server's TLS client towards nodes.
#[derive(Clone)]
pub struct NodeDialer {
    connector: TlsConnector,
}

impl NodeDialer {
    /// Trusts only the cluster CA and presents the `kube-apiserver-kubelet-client` pair.
    pub fn new(pki: &Pki) -> Result<NodeDialer, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&pki.ca.cert_pem, "ca certificate")? {
            roots.add(c)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                certs(&pki.kubelet_client.cert_pem, "kubelet client certificate")?,
                key(&pki.kubelet_client.key_pem, "kubelet client key")?,
            )?;
        // Upgrades exist only in HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeDialer { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// TCP then TLS to `addr`, the certificate checked for `addr`'s IP. Errors read as
    /// Go's dialer words them, since upstream's messages quote them.
    async fn dial(&self, addr: SocketAddr) -> Result<TlsStream<TcpStream>, String> {
        let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("dial tcp {addr}: connect: {}", go_io_error(&e))),
            Err(_) => return Err(format!("dial tcp {addr}: i/o timeout")),
        };
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        match tokio::time::timeout(DIAL_TIMEOUT, self.connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(format!("tls: {e}")),
            Err(_) => Err("net/http: TLS handshake timeout".to_string()),
        }
    }
}

fn go_io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::TimedOut => "i/o timeout".into(),
        K::HostUnreachable => "no route to host".into(),
        K::NetworkUnreachable => "network is unreachable".into(),
        _ => e.to_string(),
    }
}

/// The TLS a node's kubelet endpoint serves with: its serving certificate, and client
/// certificates REQUIRED and checked against the cluster CA, so that only the API
/// server (not pods, which hold no such certificate) can use the endpoint.
pub fn kubelet_server_config(ca_pem: &str, serving: &CertPair) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "ca certificate")? {
        roots.add(c)?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&serving.cert_pem, "node serving certificate")?,
            key(&serving.key_pem, "node serving key")?,
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the request is for a subresource the node serves.
pub fn is_node_subresource(r: &ResourceRequest) -> bool {
    r.resource.group.is_empty()
        && r.resource.plural == "pods"
        && r.name.is_some()
        && r.subresource.as_deref().is_some_and(|s| NODE_SUBRESOURCES.contains(&s))
}

/// A failure: an API error, or one upstream reports as a bare Go error (code 500, no reason).
enum Failure {
    Api(ApiError),
    Backend(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl Failure {
    fn into_response(self) -> Response<Body> {
        match self {
            Failure::Api(e) => error_response(&e),
            Failure::Backend(message) => {
                let status = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": message, "code": 500,
                });
                let mut resp = Response::new(full(serde_json::to_vec(&status).unwrap_or_default()));
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            }
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// Serves `pods/{exec,attach,portforward,log}`.
pub async fn serve(api: &Api, r: &ResourceRequest, req: Request<Incoming>) -> Response<Body> {
    match proxy(api, r, req).await {
        Ok(resp) => resp,
        Err(f) => f.into_response(),
    }
}

async fn proxy(api: &Api, r: &ResourceRequest, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let sub = r.subresource.as_deref().unwrap_or_default();
    // Pods exist only inside namespaces; `/api/v1/pods/<name>/exec` names nothing.
    let Some(ns) = r.namespace.as_deref() else {
        return Err(ApiError::path_not_found().into());
    };
    let name = r.name.as_deref().unwrap_or_default();
    let allowed = match sub {
        "log" => req.method() == Method::GET,
        _ => req.method() == Method::GET || req.method() == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(req.method().as_str(), &format!("pods/{sub}")).into());
    }
    let query = Query::parse(req.uri().query());
    if sub == "log" {
        check_log_options(&query, name)?;
    }

    let pods = resource("pods")?;
    let pod = api.objects.get(pods, Some(ns), name).await?;
    let container = match sub {
        "portforward" => None,
        _ => Some(pick_container(&pod, name, query.get("container"))?),
    };
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if node_name.is_empty() {
        if sub == "log" {
            // Upstream streams nothing for a pod that has no node yet.
            return Ok(text_response(StatusCode::OK, Bytes::new()));
        }
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")).into());
    }
    let node = api.objects.get(resource("nodes")?, None, node_name).await?;
    let addr = kubelet_address(&node)?;

    let path = match (sub, container) {
        ("exec", Some(c)) => format!("/exec/{ns}/{name}/{c}"),
        ("attach", Some(c)) => format!("/attach/{ns}/{name}/{c}"),
        ("log", Some(c)) => format!("/containerLogs/{ns}/{name}/{c}"),
        _ => format!("/portForward/{ns}/{name}"),
    };
    let forwarded = forwarded_query(req.uri().query());
    let path_and_query = if forwarded.is_empty() { path } else { format!("{path}?{forwarded}") };

    if sub == "log" {
        return stream_log(&api.nodes, addr, &path_and_query, name).await;
    }
    if !is_upgrade(&req) {
        return Err(ApiError::bad_request("Upgrade request required").into());
    }
    upgrade(&api.nodes, addr, &path_and_query, req).await
}

fn resource(plural: &str) -> Result<&'static pier_api::ResourceDef, Failure> {
    pier_api::registry::find("", plural).ok_or_else(|| Failure::Backend(format!("no resource {plural}")))
}

/// The container a request is for, as upstream's `validateContainer`: the named one if
/// the pod has it (among init, regular and ephemeral containers), else the only one.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let names_in = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let regular = names_in("containers");
    let all: Vec<String> = names_in("initContainers")
        .into_iter()
        .chain(regular.clone())
        .chain(names_in("ephemeralContainers"))
        .collect();
    match requested {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None => match regular.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}"))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

/// The node's kubelet endpoint: its InternalIP (ExternalIP failing that) and
/// `status.daemonEndpoints.kubeletEndpoint.Port`.
fn kubelet_address(node: &Value) -> Result<SocketAddr, Failure> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array).cloned().unwrap_or_default();
    let of_type = |t: &str| {
        addresses
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .find_map(|a| a.get("address").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()))
    };
    let Some(ip) = of_type("InternalIP").or_else(|| of_type("ExternalIP")) else {
        let known: Vec<String> = addresses
            .iter()
            .map(|a| {
                format!(
                    "{{{} {}}}",
                    a.get("type").and_then(Value::as_str).unwrap_or_default(),
                    a.get("address").and_then(Value::as_str).unwrap_or_default()
                )
            })
            .collect();
        return Err(Failure::Backend(format!(
            "no preferred addresses found; known addresses: [{}]",
            known.join(" ")
        )));
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(SocketAddr::new(ip, port))
}

/// The client's query minus `container`, which is in the node's path instead.
fn forwarded_query(raw: Option<&str>) -> String {
    raw.unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode_str(&key.replace('+', " ")).decode_utf8_lossy() != "container"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `PodLogOptions` as upstream decodes and validates them: values that do not parse
/// are 400s, values out of range 422s naming the fields.
fn check_log_options(query: &Query, name: &str) -> Result<(), ApiError> {
    let int = |key: &str| -> Result<Option<i64>, ApiError> {
        match query.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            }),
        }
    };
    let tail_lines = int("tailLines")?;
    let limit_bytes = int("limitBytes")?;
    let since_seconds = int("sinceSeconds")?;
    let since_time = match query.get("sinceTime") {
        None => None,
        Some(v) => Some(chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
            ApiError::bad_request(format!(
                "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?}"
            ))
        })?),
    };
    let mut errors = Vec::new();
    if let Some(t) = tail_lines.filter(|t| *t < 0) {
        errors.push(FieldError::invalid(
            &FieldPath::new("tailLines"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = limit_bytes.filter(|l| *l < 1) {
        errors.push(FieldError::invalid(&FieldPath::new("limitBytes"), l, "must be greater than 0"));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            &FieldPath::new(""),
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(s), None) if s < 1 => {
            errors.push(FieldError::invalid(&FieldPath::new("sinceSeconds"), s, "must be greater than 0"))
        }
        _ => {}
    }
    if errors.is_empty() {
        return Ok(());
    }
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.kind.cause_reason(), "message": e.body(), "field": e.field.as_str()}))
        .collect();
    Err(ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("PodLogOptions {name:?} is invalid: {}", aggregate_message(&errors)),
        details: Some(json!({"name": name, "kind": "PodLogOptions", "causes": causes})),
    })
}

fn text_response(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Whether the request asks to switch protocols (`Connection: Upgrade` with `Upgrade`),
/// as upstream's `httpstream.IsUpgradeRequest`.
fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// An HTTP/1.1 client connection over `io`, its driver running in the background.
async fn handshake<T>(
    io: T,
    with_upgrades: bool,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let result = if with_upgrades { conn.with_upgrades().await } else { conn.await };
        if let Err(e) = result {
            tracing::debug!(error = %e, "node connection ended with an error");
        }
    });
    Ok(sender)
}

/// Headers that describe the client's connection to us, not a request to the node.
fn forwardable(name: &header::HeaderName) -> bool {
    !matches!(
        *name,
        header::HOST | header::AUTHORIZATION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
    )
}

async fn upgrade(
    dialer: &NodeDialer,
    addr: SocketAddr,
    path_and_query: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let dial_error = |e: String| Failure::Backend(format!("error dialing backend: {e}"));
    let tls = dialer.dial(addr).await.map_err(dial_error)?;
    let mut sender = handshake(tls, true).await.map_err(dial_error)?;

    let mut forward = Request::builder().method(req.method().clone()).uri(path_and_query);
    if let Some(h) = forward.headers_mut() {
        copy_headers(req.headers(), h, forwardable);
        if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
            h.insert(header::HOST, v);
        }
    }
    let forward = forward
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Backend(format!("building the request to the node: {e}")))?;
    let mut answer = sender.send_request(forward).await.map_err(|e| dial_error(e.to_string()))?;

    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The node refused to upgrade: its answer goes to the client as it is, as upstream's proxy does.
        let mut resp = Response::new(Body::default());
        *resp.status_mut() = answer.status();
        copy_headers(answer.headers(), resp.headers_mut(), |_| true);
        let (_, body) = answer.into_parts();
        *resp.body_mut() = relay_body(body);
        return Ok(resp);
    }

    let client_side = hyper::upgrade::on(&mut req);
    let node_side = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, node) = match tokio::try_join!(client_side, node_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "completing an upgrade");
                return;
            }
        };
        splice(TokioIo::new(client), TokioIo::new(node)).await;
    });
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`,
    // `X-Stream-Protocol-Version`: whatever the node agreed to is what the client gets.
    copy_headers(answer.headers(), resp.headers_mut(), |n| {
        !matches!(*n, header::CONTENT_LENGTH | header::TRANSFER_ENCODING)
    });
    Ok(resp)
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, keep: impl Fn(&header::HeaderName) -> bool) {
    for (name, value) in from {
        if keep(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Copies both ways until either side ends, then closes both, as upstream's
/// upgrade-aware proxy does (a half-open stream would otherwise hold the pair forever).
async fn splice<A, B>(client: A, node: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut node_r, mut node_w) = tokio::io::split(node);
    tokio::select! {
        r = tokio::io::copy(&mut node_r, &mut client_w) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "copying from the node");
            }
            let _ = client_w.shutdown().await;
        }
        r = tokio::io::copy(&mut client_r, &mut node_w) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "copying to the node");
            }
            let _ = node_w.shutdown().await;
        }
    }
}

/// The node's body, frame by frame as it arrives: `logs -f` sees each line at once.
fn relay_body(body: Incoming) -> Body {
    let frames = futures::stream::unfold(body, |mut body| async move {
        loop {
            match body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((Ok::<_, Infallible>(Frame::data(data)), body)),
                    Err(_trailers) => continue,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "reading from the node");
                    return None;
                }
            }
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

async fn stream_log(
    dialer: &NodeDialer,
    addr: SocketAddr,
    path_and_query: &str,
    name: &str,
) -> Result<Response<Body>, Failure> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let get_error = |e: String| Failure::Backend(format!("Get \"https://{addr}{path}\": {e}"));
    let tls = dialer.dial(addr).await.map_err(get_error)?;
    let mut sender = handshake(tls, false).await.map_err(get_error)?;
    let mut request = Request::builder().method(Method::GET).uri(path_and_query);
    if let Some(h) = request.headers_mut() {
        if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
            h.insert(header::HOST, v);
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Backend(format!("building the request to the node: {e}")))?;
    let answer = sender.send_request(request).await.map_err(|e| get_error(e.to_string()))?;
    let status = answer.status();
    if status.is_success() && status.as_u16() <= 206 {
        let mut resp = Response::new(relay_body(answer.into_body()));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    // Upstream's `GenericHttpResponseChecker`: the node's words become the error.
    let body = http_body_util::Limited::new(answer.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim_end().to_string();
    let e = match status.as_u16() {
        400 => ApiError::bad_request(text),
        500 => ApiError::internal(text),
        404 => ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ( pods/log {name})"),
            details: Some(json!({"name": name, "kind": "pods/log"})),
        },
        code => ApiError { code, reason: "", message: text, details: None },
    };
    Err(e.into())
}
