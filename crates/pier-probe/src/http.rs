//! The `httpGet` handler, with Go's `net/http` client behaviour and error texts as upstream probes
//! and lifecycle hooks see them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::{self, DialError};
use crate::outcome::Outcome;
use crate::target::Target;
use crate::url::Url;
use crate::{gofmt, tls, KUBE_VERSION};

/// Upstream reads at most this much of a response body (`maxRespBodyLength`).
pub const MAX_BODY: usize = 10 * 1024;

/// Go's client gives up after this many requests in one redirect chain.
const MAX_REQUESTS: usize = 10;

/// Who is asking: decides the `User-Agent` and transport details, as upstream's two HTTP clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Probes: `kube-probe/<v>`, no keep-alive, no compression, a timeout.
    Probe,
    /// Lifecycle hooks: `kube-lifecycle/<v>`, Go's default transport, no timeout of its own.
    Lifecycle,
}

/// A request built from an action: the URL and the headers in the order they are sent.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub(crate) url: Url,
    /// The `Host` header value, when the action overrides it.
    pub(crate) host: Option<String>,
    headers: Vec<(String, String)>,
}

impl Prepared {
    /// Upstream's `NewRequestForHTTPGetAction`; fails only when the port does not resolve.
    pub(crate) fn new(action: &HTTPGetAction, target: &Target, purpose: Purpose) -> Result<Self, String> {
        let scheme = match action.scheme.as_deref() {
            None | Some("") => "http".to_string(),
            Some(s) => s.to_ascii_lowercase(),
        };
        let host = match action.host.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => target.pod_ip_string(),
        };
        let port = target.resolve_port(&action.port).map_err(|e| e.to_string())?;
        let url = Url::for_action(&scheme, &host, port, action.path.as_deref().unwrap_or_default());

        // Go's `http.Header.Add` canonicalises names, so `user-agent` and `User-Agent` are one header.
        let mut headers: Vec<(String, String)> = Vec::new();
        for h in action.http_headers.iter().flatten() {
            headers.push((canonical_key(&h.name), h.value.clone()));
        }
        let first = |headers: &[(String, String)], name: &str| {
            headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        let agent = match purpose {
            Purpose::Probe => "probe",
            Purpose::Lifecycle => "lifecycle",
        };
        if first(&headers, "User-Agent").is_none() {
            headers.push(("User-Agent".into(), format!("kube-{agent}/{KUBE_VERSION}")));
        }
        match first(&headers, "Accept") {
            None => headers.push(("Accept".into(), "*/*".into())),
            // An explicitly empty Accept means "send none".
            Some(v) if v.is_empty() => headers.retain(|(n, _)| n != "Accept"),
            Some(_) => {}
        }
        let host_override = first(&headers, "Host").filter(|h| !h.is_empty());
        headers.retain(|(n, _)| n != "Host");
        // Go writes User-Agent right after Host (first value only, none if empty), the rest sorted.
        let user_agent = first(&headers, "User-Agent").unwrap_or_default();
        headers.retain(|(n, _)| n != "User-Agent");
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        if !user_agent.is_empty() {
            headers.insert(0, ("User-Agent".into(), user_agent));
        }
        match purpose {
            Purpose::Probe => headers.push(("Connection".into(), "close".into())),
            Purpose::Lifecycle => headers.push(("Accept-Encoding".into(), "gzip".into())),
        }
        Ok(Prepared { url, host: host_override, headers })
    }

    /// The same request over plain HTTP without credentials (hooks' HTTPS fallback).
    pub(crate) fn downgraded(&self) -> Prepared {
        let mut next = self.clone();
        next.url.scheme = "http".into();
        next.headers.retain(|(n, _)| n != "Authorization");
        next
    }
}

/// Runs an `httpGet` probe against `target`, as upstream's `DoHTTPProbe`.
pub async fn http_get(action: &HTTPGetAction, target: &Target, timeout: Duration) -> Outcome {
    let prepared = match Prepared::new(action, target, Purpose::Probe) {
        Ok(p) => p,
        Err(err) => return Outcome::unknown(err),
    };
    probe(&prepared, timeout).await
}

pub(crate) async fn probe(prepared: &Prepared, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let fetched = match fetch(prepared, Some(deadline)).await {
        Ok(f) => f,
        Err(err) => return Outcome::Failure(err.to_string()),
    };
    let status = fetched.response.status().as_u16();
    let body = match read_body(fetched.response.into_body(), Some(deadline)).await {
        Ok(body) => body,
        Err(err) => return Outcome::Errored { state: "failure", message: err },
    };
    match status {
        200..=299 => Outcome::Success(body),
        // Only a redirect that was not followed (to another host) ends the chain with a 3xx.
        300..=399 => Outcome::Warning(format!("Probe terminated redirects, Response body: {body}")),
        _ => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// Why a request failed; `Display` is Go's `*url.Error` text, e.g. `Get "http://...": EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchError {
    url: String,
    kind: FetchErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FetchErrorKind {
    DialTimeout(String),
    HeaderTimeout,
    Other(String),
}

impl FetchError {
    pub(crate) fn is_http_response_to_https(&self) -> bool {
        matches!(&self.kind, FetchErrorKind::Other(m) if m == tls::HTTP_RESPONSE_TO_HTTPS)
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = gofmt::quote(&self.url);
        match &self.kind {
            FetchErrorKind::DialTimeout(m) => {
                write!(f, "Get {url}: {m} (Client.Timeout exceeded while awaiting headers)")
            }
            FetchErrorKind::HeaderTimeout => {
                write!(
                    f,
                    "Get {url}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )
            }
            FetchErrorKind::Other(m) => write!(f, "Get {url}: {m}"),
        }
    }
}

/// A response plus the connection task that serves its body.
pub(crate) struct Fetched {
    pub(crate) response: Response<Incoming>,
    _conn: AbortOnDrop,
}

/// Sends the request, following redirects as upstream's `RedirectChecker(false)`: same host name
/// only, at most 10 requests; a redirect elsewhere ends the chain with the 3xx response.
pub(crate) async fn fetch(prepared: &Prepared, deadline: Option<Instant>) -> Result<Fetched, FetchError> {
    let first_host = prepared.url.host.clone();
    let mut url = prepared.url.clone();
    let mut host = prepared.host.clone();
    let mut referer: Option<String> = None;
    let mut requests = 0;
    loop {
        requests += 1;
        let fetched = send(prepared, &url, host.as_deref(), referer.as_deref(), deadline)
            .await
            .map_err(|kind| FetchError { url: url.to_string(), kind })?;
        let status = fetched.response.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(fetched);
        }
        let Some(location) = fetched.response.headers().get(http::header::LOCATION) else {
            return Ok(fetched);
        };
        let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
        let Some(next) = url.join(&location) else {
            let kind =
                FetchErrorKind::Other(format!("failed to parse Location header {}", gofmt::quote(&location)));
            return Err(FetchError { url: url.to_string(), kind });
        };
        if next.host != first_host {
            return Ok(fetched);
        }
        if requests >= MAX_REQUESTS {
            return Err(FetchError {
                url: location,
                kind: FetchErrorKind::Other(format!("stopped after {MAX_REQUESTS} redirects")),
            });
        }
        // Go keeps a custom Host only across relative redirects.
        let relative = !location.contains("://") && !location.starts_with("//");
        if !relative {
            host = None;
        }
        if !(url.scheme == "https" && next.scheme == "http") {
            referer = Some(url.to_string());
        }
        url = next;
    }
}

async fn send(
    prepared: &Prepared,
    url: &Url,
    host: Option<&str>,
    referer: Option<&str>,
    deadline: Option<Instant>,
) -> Result<Fetched, FetchErrorKind> {
    if url.scheme != "http" && url.scheme != "https" {
        return Err(FetchErrorKind::Other(format!(
            "unsupported protocol scheme {}",
            gofmt::quote(&url.scheme)
        )));
    }
    let mut builder = Request::get(url.request_target());
    builder = builder.header(http::header::HOST, host.map(str::to_string).unwrap_or_else(|| url.authority()));
    for (name, value) in &prepared.headers {
        let name_ok = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FetchErrorKind::Other(format!("net/http: invalid header field name {}", gofmt::quote(name)))
        })?;
        let value_ok = HeaderValue::from_str(value).map_err(|_| {
            FetchErrorKind::Other(format!("net/http: invalid header field value for {}", gofmt::quote(name)))
        })?;
        builder = builder.header(name_ok, value_ok);
    }
    if let Some(referer) = referer {
        builder = builder.header(http::header::REFERER, referer);
    }
    let request =
        builder.body(Empty::<Bytes>::new()).map_err(|e| FetchErrorKind::Other(format!("net/http: {e}")))?;

    let tcp = net::dial(&url.host, url.effective_port(), deadline).await.map_err(|e| match e {
        DialError::Timeout { .. } => FetchErrorKind::DialTimeout(e.message()),
        DialError::Failed(m) => FetchErrorKind::Other(m),
    })?;
    let addrs = (tcp.local_addr().ok(), tcp.peer_addr().ok());
    let exchange = async {
        if url.scheme == "https" {
            let tls = tls::handshake(tcp, &url.host).await.map_err(FetchErrorKind::Other)?;
            exchange(tls, request, addrs).await
        } else {
            exchange(tcp, request, addrs).await
        }
    };
    match deadline {
        Some(deadline) => {
            tokio::time::timeout_at(deadline, exchange).await.map_err(|_| FetchErrorKind::HeaderTimeout)?
        }
        None => exchange.await,
    }
}

async fn exchange<T>(
    io: T,
    request: Request<Empty<Bytes>>,
    addrs: (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
) -> Result<Fetched, FetchErrorKind>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| FetchErrorKind::Other(hyper_error_text(&e, addrs)))?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response =
        sender.send_request(request).await.map_err(|e| FetchErrorKind::Other(hyper_error_text(&e, addrs)))?;
    Ok(Fetched { response, _conn: conn })
}

/// Reads at most [`MAX_BODY`] bytes of `body`; more is silently truncated, as upstream.
pub(crate) async fn read_body(mut body: Incoming, deadline: Option<Instant>) -> Result<String, String> {
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        while buf.len() < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let take = data.len().min(MAX_BODY - buf.len());
                        buf.extend_from_slice(&data[..take]);
                    }
                }
                Some(Err(e)) if e.is_incomplete_message() => return Err("unexpected EOF".to_string()),
                Some(Err(e)) => return Err(hyper_error_text(&e, (None, None))),
            }
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, read).await.unwrap_or_else(|_| {
            Err("context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                .into())
        }),
        None => read.await,
    }
}

/// Go's wording for transport failures after the connection opened.
fn hyper_error_text(
    err: &hyper::Error,
    addrs: (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
) -> String {
    if err.is_incomplete_message() {
        return "EOF".to_string();
    }
    if err.is_parse() || err.is_parse_status() {
        return "net/http: HTTP/1.x transport connection broken: malformed HTTP response".to_string();
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if let (Some(local), Some(peer)) = addrs {
                return format!("read tcp {local}->{peer}: read: {}", gofmt::errno(io));
            }
            return gofmt::errno(io);
        }
        source = inner.source();
    }
    err.to_string()
}

/// Go's `CanonicalMIMEHeaderKey`: `x-custom-header` becomes `X-Custom-Header`.
fn canonical_key(name: &str) -> String {
    let valid = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid || name.is_empty() {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            upper = c == '-';
            out
        })
        .collect()
}

/// Aborts the connection task when the response is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_like_go() {
        assert_eq!(canonical_key("x-custom-header"), "X-Custom-Header");
        assert_eq!(canonical_key("USER-AGENT"), "User-Agent");
        assert_eq!(canonical_key("bad name"), "bad name");
    }
}
