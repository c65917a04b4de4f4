//! The node proxy end to end: the in-process API server forwards `pods/exec`,
//! `pods/portforward` and `pods/log` to a fake node, a TLS server in this test that
//! holds a `node_credentials` certificate and requires client certificates from the
//! cluster CA, exactly as the node agent's kubelet endpoint does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// Every test must finish well within this.
const DEADLINE: Duration = Duration::from_secs(30);

/// What the fake node saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: http::HeaderMap,
}

struct FakeNode {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Lets the log stream write its second line.
    release_log: Arc<Notify>,
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn empty() -> FakeBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn text(s: &'static str) -> FakeBody {
    http_body_util::Full::new(Bytes::from_static(s.as_bytes())).map_err(|never| match never {}).boxed()
}

/// Serves like a kubelet: upgrades `/exec`, `/attach`, `/portForward` (greets, then
/// echoes what it reads), and streams `/containerLogs` one line now, one on release.
async fn fake_node(server: &pier_apiserver::RunningServer) -> FakeNode {
    let creds = server.pki.node_credentials("node-1", "127.0.0.1".parse().expect("ip")).expect("node creds");
    let config = pier_apiserver::node_proxy::kubelet_server_config(&server.pki.ca.cert_pem, &creds.serving)
        .expect("kubelet TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake node");
    let addr = listener.local_addr().expect("addr");
    let (tx, seen) = mpsc::unbounded_channel();
    let release_log = Arc::new(Notify::new());
    let release = release_log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let release = release.clone();
            tokio::spawn(async move {
                // A client without a certificate from the CA ends here.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    let release = release.clone();
                    async move { Ok::<_, std::convert::Infallible>(kubelet(req, tx, release)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    FakeNode { addr, seen, release_log }
}

fn kubelet(
    mut req: Request<Incoming>,
    tx: mpsc::UnboundedSender<Seen>,
    release: Arc<Notify>,
) -> Response<FakeBody> {
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let _ = tx.send(Seen {
        method: req.method().to_string(),
        path_and_query: path_and_query.clone(),
        headers: req.headers().clone(),
    });
    if path_and_query.starts_with("/containerLogs/") {
        let (lines, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
        tokio::spawn(async move {
            let _ = lines.send(Ok(Frame::data(Bytes::from_static(b"first line\n")))).await;
            release.notified().await;
            let _ = lines.send(Ok(Frame::data(Bytes::from_static(b"second line\n")))).await;
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
        return Response::new(body);
    }
    let upgrade = req.headers().get(header::UPGRADE).cloned();
    let Some(upgrade) = upgrade else {
        let mut resp = Response::new(text("Upgrade request required"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let _ = io.write_all(b"hello from node\n").await;
        let mut buf = [0u8; 64];
        if let Ok(n) = io.read(&mut buf).await {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = io.write_all(&reply).await;
        }
        let _ = io.shutdown().await;
    });
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, upgrade.clone());
    if upgrade.as_bytes().eq_ignore_ascii_case(b"websocket") {
        h.insert("sec-websocket-accept", header::HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        h.insert("sec-websocket-protocol", header::HeaderValue::from_static("v5.channel.k8s.io"));
    } else {
        h.insert("x-stream-protocol-version", header::HeaderValue::from_static("portforward.k8s.io"));
    }
    resp
}

/// A raw HTTPS client to the API server (admin certificate unless `anonymous`).
struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

impl Client {
    fn new(server: &pier_apiserver::RunningServer, anonymous: bool, h2: bool) -> Client {
        Client { config: Arc::new(client_config(server, anonymous, h2)), addr: server.addr }
    }

    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect to the API server");
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp).await.expect("TLS")
    }

    async fn http1(&self, req: Request<Empty<Bytes>>) -> Response<Incoming> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.connect().await))
            .await
            .expect("handshake");
        tokio::spawn(conn.with_upgrades());
        sender.send_request(req).await.expect("response")
    }

    async fn http2(&self, req: Request<Empty<Bytes>>) -> Response<Incoming> {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(self.connect().await))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("response")
    }
}

fn client_config(server: &pier_apiserver::RunningServer, anonymous: bool, h2: bool) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut server.pki.ca.cert_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = if anonymous {
        builder.with_no_client_auth()
    } else {
        let certs = rustls_pemfile::certs(&mut server.pki.admin.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("admin cert");
        let key = rustls_pemfile::private_key(&mut server.pki.admin.key_pem.as_bytes())
            .expect("admin key PEM")
            .expect("admin key");
        builder.with_client_auth_cert(certs, key).expect("client auth")
    };
    config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    config
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header(header::HOST, "localhost").body(Empty::new()).expect("request")
}

fn websocket(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .body(Empty::new())
        .expect("request")
}

fn spdy(path: &str) -> Request<Empty<Bytes>> {
    Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("x-stream-protocol-version", "portforward.k8s.io")
        .body(Empty::new())
        .expect("request")
}

async fn status_of(resp: Response<Incoming>) -> (u16, Value) {
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body))))
}

struct Cluster {
    inner: pier_testkit::in_process::InProcess,
    node: FakeNode,
}

impl Cluster {
    fn server(&self) -> &pier_apiserver::RunningServer {
        &self.inner.server
    }
}

async fn register_node(client: &kube::Client, name: &str, addr: SocketAddr) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("create node");
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": addr.ip().to_string()}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("node status");
}

async fn create_pod(client: &kube::Client, name: &str, node: Option<&str>, containers: &[&str]) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let containers: Vec<Value> =
        containers.iter().map(|c| json!({"name": c, "image": "luksa/kubia"})).collect();
    let mut spec = json!({"containers": containers});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
}

/// An API server, a fake node `node-1` registered at its address, and pod `kubia` bound to it.
async fn cluster() -> Cluster {
    let inner = pier_testkit::in_process::InProcess::start().await.expect("API server starts");
    let node = fake_node(&inner.server).await;
    register_node(&inner.client, "node-1", node.addr).await;
    create_pod(&inner.client, "kubia", Some("node-1"), &["kubia"]).await;
    Cluster { inner, node }
}

async fn exchange(resp: Response<Incoming>) -> String {
    let upgraded = hyper::upgrade::on(resp).await.expect("upgraded");
    let mut io = TokioIo::new(upgraded);
    let mut greeting = [0u8; 16];
    io.read_exact(&mut greeting).await.expect("greeting from the node");
    assert_eq!(&greeting, b"hello from node\n");
    io.write_all(b"ping").await.expect("write to the node");
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.expect("read until the node closes");
    String::from_utf8_lossy(&rest).into_owned()
}

#[tokio::test]
async fn exec_websocket_upgrade_reaches_the_node_and_bytes_flow_both_ways() {
    tokio::time::timeout(DEADLINE, async {
        let mut c = cluster().await;
        let client = Client::new(c.server(), false, false);
        let resp = client
            .http1(websocket(
                "/api/v1/namespaces/default/pods/kubia/exec?command=sh&command=-c&command=echo+hi&container=kubia&stdout=true",
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = resp.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(exchange(resp).await, "echo:ping");

        let seen = c.node.seen.recv().await.expect("the node saw the request");
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path_and_query, "/exec/default/kubia/kubia?command=sh&command=-c&command=echo+hi&stdout=true");
        assert_eq!(seen.headers["upgrade"], "websocket");
        assert_eq!(seen.headers["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(seen.headers["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert!(seen.headers.get(header::AUTHORIZATION).is_none());
    })
    .await
    .expect("within the deadline");
}

#[tokio::test]
async fn portforward_spdy_upgrade_reaches_the_node() {
    tokio::time::timeout(DEADLINE, async {
        let mut c = cluster().await;
        let client = Client::new(c.server(), false, false);
        let resp = client.http1(spdy("/api/v1/namespaces/default/pods/kubia/portforward?ports=8080")).await;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
        assert_eq!(resp.headers()["x-stream-protocol-version"], "portforward.k8s.io");
        assert_eq!(exchange(resp).await, "echo:ping");
        let seen = c.node.seen.recv().await.expect("the node saw the request");
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path_and_query, "/portForward/default/kubia?ports=8080");
        assert_eq!(seen.headers["x-stream-protocol-version"], "portforward.k8s.io");
    })
    .await
    .expect("within the deadline");
}

/// The first line arrives while the node still holds the stream open: nothing buffers.
async fn follow_log(c: &mut Cluster, resp: Response<Incoming>) {
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while !got.ends_with(b"first line\n") {
        let frame = body.frame().await.expect("a frame before the node closes").expect("frame");
        got.extend_from_slice(&frame.into_data().unwrap_or_default());
    }
    let seen = c.node.seen.recv().await.expect("the node saw the request");
    assert_eq!(seen.path_and_query, "/containerLogs/default/kubia/kubia?follow=true&tailLines=10");
    c.node.release_log.notify_one();
    let rest = body.collect().await.expect("rest of the log").to_bytes();
    assert_eq!(&rest[..], b"second line\n");
}

#[tokio::test]
async fn log_follow_streams_lines_as_the_node_writes_them_over_http1_and_http2() {
    tokio::time::timeout(DEADLINE, async {
        let mut c = cluster().await;
        let path = "/api/v1/namespaces/default/pods/kubia/log?follow=true&tailLines=10";
        let resp = Client::new(c.server(), false, false).http1(get(path)).await;
        follow_log(&mut c, resp).await;
        let resp = Client::new(c.server(), false, true).http2(get(path)).await;
        follow_log(&mut c, resp).await;
    })
    .await
    .expect("within the deadline");
}

#[tokio::test]
async fn the_node_refuses_clients_without_a_certificate_from_the_ca() {
    tokio::time::timeout(DEADLINE, async {
        let mut c = cluster().await;
        // What a pod could do: trust the CA (it is public) but present no certificate.
        let mut config = client_config(c.server(), true, false);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(c.node.addr).await.expect("connect to the node");
        let name = rustls::pki_types::ServerName::IpAddress(c.node.addr.ip().into());
        let refused = match tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
            Err(_) => true,
            // Under TLS 1.3 the server's refusal arrives after the client's handshake ends.
            Ok(mut tls) => {
                let _ = tls
                    .write_all(b"GET /containerLogs/default/kubia/kubia HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
                let mut buf = Vec::new();
                matches!(tls.read_to_end(&mut buf).await, Err(_) | Ok(0))
            }
        };
        assert!(refused, "the node answered a client without a certificate");
        assert!(c.node.seen.try_recv().is_err(), "no request reached the kubelet handler");
    })
    .await
    .expect("within the deadline");
}

#[tokio::test]
async fn errors_in_upstream_words() {
    tokio::time::timeout(DEADLINE, async {
        let c = cluster().await;
        let client = &c.inner.client;
        create_pod(client, "multi", Some("node-1"), &["a", "b"]).await;
        create_pod(client, "pending", None, &["kubia"]).await;
        let http = Client::new(c.server(), false, false);
        let ns = "/api/v1/namespaces/default/pods";
        let cases: Vec<(Request<Empty<Bytes>>, u16, &str, &str)> = vec![
            (websocket(&format!("{ns}/nope/exec?command=ls")), 404, "NotFound", "pods \"nope\" not found"),
            (get(&format!("{ns}/nope/log")), 404, "NotFound", "pods \"nope\" not found"),
            (
                websocket(&format!("{ns}/multi/exec?command=ls")),
                400,
                "BadRequest",
                "a container name must be specified for pod multi, choose one of: [a b]",
            ),
            (
                get(&format!("{ns}/multi/log?container=x")),
                400,
                "BadRequest",
                "container x is not valid for pod multi",
            ),
            (
                websocket(&format!("{ns}/pending/attach?container=kubia")),
                400,
                "BadRequest",
                "pod pending does not have a host assigned",
            ),
            (get(&format!("{ns}/kubia/exec?command=ls")), 400, "BadRequest", "Upgrade request required"),
            (
                get(&format!("{ns}/kubia/log?tailLines=-1")),
                422,
                "Invalid",
                "PodLogOptions \"kubia\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                get(&format!("{ns}/kubia/log?limitBytes=0")),
                422,
                "Invalid",
                "PodLogOptions \"kubia\" is invalid: limitBytes: Invalid value: 0: must be greater than 0",
            ),
            (
                get(&format!("{ns}/kubia/log?sinceSeconds=10&sinceTime=2024-01-01T00:00:00Z")),
                422,
                "Invalid",
                "PodLogOptions \"kubia\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
            (
                get(&format!("{ns}/kubia/log?tailLines=ten")),
                400,
                "BadRequest",
                "strconv.ParseInt: parsing \"ten\": invalid syntax",
            ),
        ];
        for (req, code, reason, message) in cases {
            let what = req.uri().to_string();
            let (got, status) = status_of(http.http1(req).await).await;
            assert_eq!((got, status["reason"].as_str(), status["message"].as_str()), (code, Some(reason), Some(message)), "{what}: {status}");
        }

        // A pod with no node yet has no log, as upstream streams nothing for it.
        let resp = http.http1(get(&format!("{ns}/pending/log"))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.into_body().collect().await.expect("body").to_bytes().is_empty());

        // Authentication applies as to any request.
        let anonymous = Client::new(c.server(), true, false);
        let (code, _) = status_of(anonymous.http1(websocket(&format!("{ns}/kubia/exec?command=ls"))).await).await;
        assert_eq!(code, 401);
    })
    .await
    .expect("within the deadline");
}

#[tokio::test]
async fn an_unreachable_node_is_an_error_dialing_backend() {
    tokio::time::timeout(DEADLINE, async {
        let inner = pier_testkit::in_process::InProcess::start().await.expect("API server starts");
        // A port nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        register_node(&inner.client, "gone", closed).await;
        create_pod(&inner.client, "orphan", Some("gone"), &["kubia"]).await;
        let http = Client::new(&inner.server, false, false);
        let (code, status) =
            status_of(http.http1(websocket("/api/v1/namespaces/default/pods/orphan/exec?command=ls")).await).await;
        assert_eq!(code, 500, "{status}");
        assert_eq!(
            status["message"],
            format!("error dialing backend: dial tcp {closed}: connect: connection refused")
        );
        assert!(status.get("reason").is_none(), "{status}");
        let (code, status) = status_of(http.http1(get("/api/v1/namespaces/default/pods/orphan/log")).await).await;
        assert_eq!(code, 500, "{status}");
        assert_eq!(
            status["message"],
            format!(
                "Get \"https://{closed}/containerLogs/default/orphan/kubia\": dial tcp {closed}: connect: connection refused"
            )
        );
    })
    .await
    .expect("within the deadline");
}
