//! The small plain-HTTP endpoints node components serve: Prometheus metrics, health
//! and readiness, kube-proxy's health check node ports. Every request is answered
//! by one handler from the path to a [`Reply`]; there is nothing else to route.
//!
//! ```no_run
//! use pier_status_http::{serve, Reply};
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9153").await?;
//! serve(listener, |path| match path {
//!     "/health" => Reply::ok("OK"),
//!     _ => Reply::not_found(),
//! })
//! .await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What an endpoint answers: status, content type, extra headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// More headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// Plain text with `status`.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", headers: Vec::new(), body: body.into() }
    }

    /// 200 with a text body.
    pub fn ok(body: impl Into<String>) -> Self {
        Self::text(StatusCode::OK, body)
    }

    /// 503 with a text body.
    pub fn unavailable(body: impl Into<String>) -> Self {
        Self::text(StatusCode::SERVICE_UNAVAILABLE, body)
    }

    /// Go's `http.NotFound` body, as Kubernetes components answer.
    pub fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 page not found\n")
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn metrics(body: impl Into<String>) -> Self {
        Self { content_type: "text/plain; version=0.0.4; charset=utf-8", ..Self::ok(body) }
    }
}

/// Answers every request on `listener` with `handler(path)` until the task is
/// dropped.
pub async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let reply = handler(req.uri().path());
                async move { Ok::<_, Infallible>(to_response(reply)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(reply.status).header("Content-Type", reply.content_type);
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Full::new(Bytes::from(reply.body))).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"bad header value\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_status_type_and_headers() {
        let r = to_response(Reply {
            headers: vec![("X-Load-Balancing-Endpoint-Weight", "1".into())],
            ..Reply::metrics("a 1\n")
        });
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(r.headers()["x-load-balancing-endpoint-weight"], "1");
        let bad = to_response(Reply { headers: vec![("X", "a\nb".into())], ..Reply::ok("") });
        assert_eq!(bad.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(Reply::not_found().status, StatusCode::NOT_FOUND);
        assert_eq!(Reply::unavailable("x").status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
