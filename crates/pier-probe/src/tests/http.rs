use std::time::Duration;

use k8s_openapi::api::core::v1::{HTTPGetAction, HTTPHeader};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::support::{closed_port, http_server, response, self_signed_acceptor, target, Reply};
use crate::{http_get, Outcome};

fn action(port: u16, path: &str) -> HTTPGetAction {
    HTTPGetAction {
        port: IntOrString::Int(i32::from(port)),
        path: Some(path.into()),
        ..HTTPGetAction::default()
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn success_sends_upstream_default_headers() {
    let mut server = http_server(None, |_| response("200 OK", "", "ok")).await;
    let port = server.addr.port();
    let outcome = http_get(&action(port, "/healthz"), &target(&[]), SECOND).await;
    assert_eq!(outcome, Outcome::Success("ok".into()));
    let head = server.next_head().await;
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    for line in
        [format!("Host: 127.0.0.1:{port}"), "User-Agent: kube-probe/1.33".into(), "Accept: */*".into()]
    {
        assert!(head.contains(&format!("{line}\r\n")), "missing {line:?} in {head}");
    }
}

#[tokio::test]
async fn custom_headers_override_host_and_user_agent() {
    let mut server = http_server(None, |_| response("204 No Content", "", "")).await;
    let mut get = action(server.addr.port(), "");
    get.http_headers = Some(vec![
        HTTPHeader { name: "host".into(), value: "example.com".into() },
        HTTPHeader { name: "User-Agent".into(), value: "custom/1".into() },
        HTTPHeader { name: "x-custom".into(), value: "a".into() },
        HTTPHeader { name: "Accept".into(), value: "".into() },
    ]);
    assert!(http_get(&get, &target(&[]), SECOND).await.is_success());
    let head = server.next_head().await;
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Host: example.com\r\n"), "{head}");
    assert!(head.contains("User-Agent: custom/1\r\n"), "{head}");
    assert!(head.contains("X-Custom: a\r\n"), "{head}");
    assert!(!head.contains("Accept:"), "empty Accept must remove the header: {head}");
    assert!(!head.contains("kube-probe"), "{head}");
}

#[tokio::test]
async fn bad_status_fails_with_upstream_message() {
    let server = http_server(None, |_| response("500 Internal Server Error", "", "boom")).await;
    let outcome = http_get(&action(server.addr.port(), "/"), &target(&[]), SECOND).await;
    assert_eq!(outcome, Outcome::Failure("HTTP probe failed with statuscode: 500".into()));
}

#[tokio::test]
async fn follows_same_host_redirects_only() {
    let server = http_server(None, |head| {
        if head.starts_with("GET /old ") {
            response("302 Found", "Location: /new\r\n", "")
        } else if head.starts_with("GET /away ") {
            response("301 Moved Permanently", "Location: http://localhost:1/x\r\n", "moved")
        } else {
            response("200 OK", "", "new")
        }
    })
    .await;
    let port = server.addr.port();
    assert_eq!(http_get(&action(port, "/old"), &target(&[]), SECOND).await, Outcome::Success("new".into()));
    assert_eq!(
        http_get(&action(port, "/away"), &target(&[]), SECOND).await,
        Outcome::Warning("Probe terminated redirects, Response body: moved".into())
    );
}

#[tokio::test]
async fn redirect_loops_stop_after_ten_requests() {
    let server = http_server(None, |_| response("302 Found", "Location: /loop\r\n", "")).await;
    let outcome = http_get(&action(server.addr.port(), "/loop"), &target(&[]), SECOND).await;
    assert_eq!(outcome, Outcome::Failure("Get \"/loop\": stopped after 10 redirects".into()));
}

#[tokio::test]
async fn refused_connection_reads_like_go() {
    let port = closed_port().await;
    let outcome = http_get(&action(port, "/"), &target(&[]), SECOND).await;
    let expected =
        format!("Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused");
    assert_eq!(outcome, Outcome::Failure(expected));
}

#[tokio::test]
async fn silent_server_times_out_awaiting_headers() {
    let mut server = http_server(None, |_| Reply::Hang).await;
    let port = server.addr.port();
    let started = std::time::Instant::now();
    let outcome = http_get(&action(port, "/"), &target(&[]), SECOND).await;
    let expected = format!(
        "Get \"http://127.0.0.1:{port}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    );
    assert_eq!(outcome, Outcome::Failure(expected));
    assert!(started.elapsed() >= SECOND && started.elapsed() < 3 * SECOND);
    server.next_head().await;
}

#[tokio::test]
async fn named_ports_resolve_against_the_container() {
    let mut server = http_server(None, |_| response("200 OK", "", "")).await;
    let port = server.addr.port();
    let mut get = action(0, "/named");
    get.port = IntOrString::String("http".into());
    assert!(http_get(&get, &target(&[("http", port)]), SECOND).await.is_success());
    assert!(server.next_head().await.starts_with("GET /named "));

    get.port = IntOrString::String("metrics".into());
    let outcome = http_get(&get, &target(&[("http", port)]), SECOND).await;
    assert_eq!(outcome, Outcome::Errored { state: "unknown", message: "port \"metrics\" not found".into() });
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let mut server = http_server(Some(self_signed_acceptor()), |_| response("200 OK", "", "secure")).await;
    let mut get = action(server.addr.port(), "/tls");
    get.scheme = Some("HTTPS".into());
    assert_eq!(http_get(&get, &target(&[]), SECOND).await, Outcome::Success("secure".into()));
    assert!(server.next_head().await.starts_with("GET /tls "));
}

#[tokio::test]
async fn body_is_capped_at_10_kib() {
    let big = "x".repeat(20 * 1024);
    let server = http_server(None, move |_| response("200 OK", "", &big)).await;
    match http_get(&action(server.addr.port(), "/"), &target(&[]), SECOND).await {
        Outcome::Success(body) => assert_eq!(body.len(), crate::MAX_BODY),
        other => panic!("unexpected {other:?}"),
    }
}
