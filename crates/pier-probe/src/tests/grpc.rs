use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::GRPCAction;
use tokio::net::TcpListener;

use super::support::{closed_port, target};
use crate::grpc::{decode_request, encode_response};
use crate::{grpc, Outcome};

/// A gRPC health server over h2c: `""` is SERVING, `"down"` NOT_SERVING, anything else unknown
/// (grpc-go's health server answers NotFound "unknown service").
async fn health_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn handle(request: Request<Incoming>) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
    assert_eq!(request.headers()["content-type"], "application/grpc");
    let body = request.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let service = decode_request(body).unwrap_or_default();
    let status = match service.as_str() {
        "" => 1,
        "down" => 2,
        _ => {
            let response = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "5")
                .header("grpc-message", "unknown%20service")
                .body(Empty::new().map_err(|e| match e {}).boxed())
                .unwrap();
            return Ok(response);
        }
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let body = Full::new(encode_response(status)).with_trailers(async move { Some(Ok(trailers)) }).boxed();
    Ok(Response::builder().header("content-type", "application/grpc").body(body).unwrap())
}

fn action(port: u16, service: Option<&str>) -> GRPCAction {
    GRPCAction { port: i32::from(port), service: service.map(str::to_string), ..GRPCAction::default() }
}

#[tokio::test]
async fn health_statuses_map_to_upstream_results() {
    let port = health_server().await;
    let t = target(&[]);
    let second = Duration::from_secs(1);
    assert_eq!(grpc(&action(port, None), &t, second).await, Outcome::Success("service healthy".into()));
    assert_eq!(
        grpc(&action(port, Some("down")), &t, second).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        grpc(&action(port, Some("other")), &t, second).await,
        Outcome::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service".into()
        )
    );
}

#[tokio::test]
async fn refused_connection_times_out_like_grpc_go() {
    let port = closed_port().await;
    let outcome = grpc(&action(port, None), &target(&[]), Duration::from_secs(1)).await;
    let expected = format!(
        "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
    );
    assert_eq!(outcome, Outcome::Failure(expected));
}
