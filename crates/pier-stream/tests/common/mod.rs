//! A loopback HTTP/1.1 server that serves a fake pod's exec and port-forward with pier-stream.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pier_stream::{serve_exec, serve_port_forward, ExecOutcome, ExecRequest, ExecStreams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The fake "process": `echo-exit <code>` copies stdin to stdout, writes `to-stderr\n` on stderr
/// (without a TTY), reports resizes on stdout, and exits with `<code>`.
pub async fn fake_process(exec: ExecRequest, mut s: ExecStreams) -> ExecOutcome {
    let code: i32 = exec.command.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if exec.command.first().map(String::as_str) == Some("resize") {
        let size = s.resize.as_mut().unwrap().recv().await.unwrap();
        let mut out = s.stdout.take().unwrap();
        out.write_all(format!("{}x{}\n", size.width, size.height).as_bytes()).await.unwrap();
        return ExecOutcome::Exited(0);
    }
    if exec.command.first().map(String::as_str) != Some("echo-exit") {
        return ExecOutcome::Error(format!("no such command {:?}", exec.command));
    }
    if let Some(mut err) = s.stderr.take() {
        err.write_all(b"to-stderr\n").await.unwrap();
    }
    if let (Some(mut input), Some(out)) = (s.stdin.take(), s.stdout.as_mut()) {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = input.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await.unwrap();
        }
    }
    if let Some(mut out) = s.stdout.take() {
        out.write_all(b"done\n").await.unwrap();
    }
    ExecOutcome::Exited(code)
}

const POD: &str = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x","namespace":"default","uid":"u1"},
"spec":{"containers":[{"name":"c","image":"busybox"}]},
"status":{"phase":"Running","containerStatuses":[{"name":"c","ready":true,"restartCount":0,"image":"busybox","imageID":"","started":true,"state":{"running":{}}}]}}"#;

const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const CORE_RESOURCES: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[
{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},
{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},
{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

fn json(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api") => json(API_VERSIONS),
        (Method::GET, "/apis") => json(API_GROUPS),
        (Method::GET, "/api/v1") => json(CORE_RESOURCES),
        (Method::GET, "/api/v1/namespaces/default/pods/x") => json(POD),
        (_, "/api/v1/namespaces/default/pods/x/exec") => match ExecRequest::from_query(&query, false) {
            Ok(exec) => {
                let e2 = exec.clone();
                serve_exec(&mut req, exec, move |s| fake_process(e2, s))
            }
            Err(msg) => pier_stream::plain_error(StatusCode::BAD_REQUEST, &msg),
        },
        (_, "/api/v1/namespaces/default/pods/x/portforward") => {
            serve_port_forward(&mut req, "x".to_string(), |port: u16| async move {
                TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("dial tcp 127.0.0.1:{port}: {e}"))
            })
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

/// Starts the server on an ephemeral loopback port.
pub async fn start_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
    addr
}

/// A loopback echo server: echoes each connection's bytes until it half-closes, then closes.
pub async fn start_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
