//! The node's streaming endpoint (the kubelet's port 10250): container logs, exec and
//! port-forward, reached only through the API server's proxy.
//!
//! It serves HTTPS with the node's certificate and requires a client certificate
//! signed by the cluster CA. Only the API server holds one, so a pod that can reach
//! the node's address still cannot exec into its neighbours.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pier_sandbox::join::ExecError;
use pier_sandbox::pty::WinSize;
use pier_sandbox::{ContainerCommand, Netns};
use pier_stream::{ExecOutcome, ExecRequest, ExecStreams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::pod::SharedContainer;
use crate::Node;

type Body = BoxBody<Bytes, io::Error>;

fn full(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn boxed(resp: Response<pier_stream::Body>) -> Response<Body> {
    resp.map(|b| b.map_err(|never| match never {}).boxed())
}

/// TLS for the endpoint: the node's serving pair, client certificates from `ca` required.
pub fn tls_config(dir: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context;
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read("kubelet.crt")?.as_slice())
        .collect::<Result<_, _>>()
        .context("parsing kubelet.crt")?;
    let key = rustls_pemfile::private_key(&mut read("kubelet.key")?.as_slice())
        .context("parsing kubelet.key")?
        .context("kubelet.key has no key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut read("ca.crt")?.as_slice()) {
        roots.add(ca.context("parsing ca.crt")?).context("adding the cluster CA")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .context("building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("loading the node's certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves until the task is dropped.
pub async fn serve(node: Arc<Node>, listener: TcpListener, tls: rustls::ServerConfig) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the node endpoint");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "node endpoint TLS handshake");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, std::convert::Infallible>(route(node, req, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "node endpoint connection");
            }
        });
    }
}

async fn route(node: Arc<Node>, mut req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            logs(&node, ns, pod, container, &query).await
        }
        (&Method::GET | &Method::POST, ["exec", ns, pod, container]) => {
            exec(&node, &mut req, ns, pod, container, &query).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            port_forward(&node, &mut req, ns, pod).await
        }
        _ => full(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

async fn find(node: &Node, ns: &str, pod: &str) -> Option<Arc<tokio::sync::Mutex<crate::pod::PodShared>>> {
    node.pods.lock().await.values().find(|(n, p, _)| n == ns && p == pod).map(|(_, _, s)| s.clone())
}

async fn container(node: &Node, ns: &str, pod: &str, name: &str) -> Result<SharedContainer, Response<Body>> {
    let Some(shared) = find(node, ns, pod).await else {
        return Err(full(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found")));
    };
    let shared = shared.lock().await;
    shared
        .containers
        .get(name)
        .cloned()
        .ok_or_else(|| full(StatusCode::NOT_FOUND, format!("container {name:?} in pod {pod:?} not found")))
}

fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A query flag, read as the kubelet reads it (Go's `ParseBool`; bad values are false).
fn truthy(v: Option<&str>) -> bool {
    v.and_then(pier_stream::request::go_bool).unwrap_or(false)
}

async fn logs(node: &Node, ns: &str, pod: &str, name: &str, query: &str) -> Response<Body> {
    let c = match container(node, ns, pod, name).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let previous = truthy(query_value(&pairs, "previous"));
    let (path, follower) = if previous {
        match c.logs.len().checked_sub(2).and_then(|i| c.logs.get(i)) {
            Some(p) => (p.clone(), None),
            None => {
                return full(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {name:?} in pod {pod:?} not found"),
                )
            }
        }
    } else {
        match c.logs.last() {
            Some(p) => (p.clone(), c.follower.clone()),
            None => {
                let reason = c.waiting_reason.unwrap_or_else(|| "ContainerCreating".to_string());
                return full(
                    StatusCode::BAD_REQUEST,
                    format!("container {name:?} in pod {pod:?} is waiting to start: {reason}"),
                );
            }
        }
    };
    let parse_int = |key: &str| query_value(&pairs, key).and_then(|v| v.parse::<i64>().ok());
    let since_time = query_value(&pairs, "sinceTime")
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let opts = pier_logs::LogOptions {
        tail_lines: parse_int("tailLines").and_then(|n| u64::try_from(n).ok()),
        since: pier_logs::resolve_since(parse_int("sinceSeconds"), since_time, chrono::Utc::now()),
        timestamps: truthy(query_value(&pairs, "timestamps")),
        limit_bytes: parse_int("limitBytes").and_then(|n| u64::try_from(n).ok()),
        follow: truthy(query_value(&pairs, "follow")),
        stream: None,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if let Err(e) = pier_logs::read_logs(&path, &opts, follower, &tx).await {
            tracing::debug!(error = %e, "reading logs");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, io::Error>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

async fn exec(
    node: &Node,
    req: &mut Request<Incoming>,
    ns: &str,
    pod: &str,
    name: &str,
    query: &str,
) -> Response<Body> {
    let exec = match ExecRequest::from_query(query, false) {
        Ok(e) => e,
        Err(message) => return full(StatusCode::BAD_REQUEST, message),
    };
    let c = match container(node, ns, pod, name).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(pid) = c.pid.filter(|_| c.running) else {
        return full(StatusCode::BAD_REQUEST, format!("container not found ({name:?})"));
    };
    let shared = find(node, ns, pod).await;
    let id = format!("{ns}_{pod}_{name}");
    boxed(pier_stream::serve_exec(req, exec.clone(), move |streams| async move {
        run_exec(streams, pid, exec, c, shared, id).await
    }))
}

fn exec_error(id: &str, e: &ExecError) -> String {
    format!(
        "failed to exec in container: failed to start exec \"{id}\": OCI runtime exec failed: exec failed: \
         unable to start container process: {e}: unknown"
    )
}

async fn run_exec(
    streams: ExecStreams,
    pid: u32,
    exec: ExecRequest,
    c: SharedContainer,
    shared: Option<Arc<tokio::sync::Mutex<crate::pod::PodShared>>>,
    id: String,
) -> ExecOutcome {
    let ExecStreams { stdin, stdout, stderr, resize } = streams;
    let mut cmd = ContainerCommand::new(exec.command.clone());
    cmd.env = c.env.clone();
    cmd.working_dir = c.working_dir.clone();
    if exec.tty {
        let (mut child, pty) = match pier_sandbox::join::spawn_in_tty(pid, cmd, None) {
            Ok(x) => x,
            Err(e) => return ExecOutcome::Error(exec_error(&id, &e)),
        };
        let child_pid = child.id();
        track(&shared, child_pid, true).await;
        let resizer = pty.resizer();
        if let Some(mut sizes) = resize {
            tokio::spawn(async move {
                while let Some(s) = sizes.recv().await {
                    let _ = resizer.resize(WinSize { cols: s.width, rows: s.height });
                }
            });
        }
        let (mut pty_read, mut pty_write) = tokio::io::split(pty);
        if let Some(mut input) = stdin {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut input, &mut pty_write).await;
            });
        }
        let output = tokio::spawn(async move {
            if let Some(mut out) = stdout {
                let _ = tokio::io::copy(&mut pty_read, &mut out).await;
                let _ = out.shutdown().await;
            }
        });
        let status = child.wait().await;
        // The master reads EOF once the process (and its session) is gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), output).await;
        track(&shared, child_pid, false).await;
        return outcome(status);
    }
    cmd.stdin = if stdin.is_some() { pier_sandbox::Stdio::piped() } else { pier_sandbox::Stdio::null() };
    cmd.stdout = if stdout.is_some() { pier_sandbox::Stdio::piped() } else { pier_sandbox::Stdio::null() };
    cmd.stderr = if stderr.is_some() { pier_sandbox::Stdio::piped() } else { pier_sandbox::Stdio::null() };
    let mut child = match pier_sandbox::join::spawn_in_tokio(pid, cmd) {
        Ok(c) => c,
        Err(e) => return ExecOutcome::Error(exec_error(&id, &e)),
    };
    let child_pid = child.id();
    track(&shared, child_pid, true).await;
    if let (Some(mut input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut input, &mut pipe).await;
            let _ = pipe.shutdown().await;
        });
    }
    let out = copy_out(child.stdout.take(), stdout);
    let err = copy_out(child.stderr.take(), stderr);
    let (status, _, _) = tokio::join!(child.wait(), out, err);
    track(&shared, child_pid, false).await;
    outcome(status)
}

async fn copy_out(
    from: Option<impl tokio::io::AsyncRead + Unpin>,
    to: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
) {
    if let (Some(mut from), Some(mut to)) = (from, to) {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = to.flush().await;
                }
            }
        }
        let _ = to.shutdown().await;
    }
}

async fn track(shared: &Option<Arc<tokio::sync::Mutex<crate::pod::PodShared>>>, pid: Option<u32>, add: bool) {
    if let (Some(s), Some(pid)) = (shared, pid) {
        let mut s = s.lock().await;
        if add {
            s.exec_pids.insert(pid);
        } else {
            s.exec_pids.remove(&pid);
        }
    }
}

fn outcome(status: io::Result<std::process::ExitStatus>) -> ExecOutcome {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => ExecOutcome::Exited(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))),
        Err(e) => ExecOutcome::Error(format!("waiting for the command: {e}")),
    }
}

async fn port_forward(node: &Node, req: &mut Request<Incoming>, ns: &str, pod: &str) -> Response<Body> {
    let Some(shared) = find(node, ns, pod).await else {
        return full(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found"));
    };
    let Some(netns) = shared.lock().await.netns.clone() else {
        return full(StatusCode::BAD_REQUEST, format!("pod {pod:?} has no network yet"));
    };
    boxed(pier_stream::serve_port_forward(req, pod.to_string(), move |port| {
        let netns = netns.clone();
        async move { connect_in_pod(netns, port).await }
    }))
}

/// Connects to `localhost:port` inside the pod's network namespace, as the kubelet's
/// port-forward does (so servers bound to 127.0.0.1 in the pod are reachable).
async fn connect_in_pod(netns: pier_sandbox::NetnsName, port: u16) -> Result<tokio::net::TcpStream, String> {
    let ns = netns.clone();
    let stream = tokio::task::spawn_blocking(move || {
        pier_sandbox::netlink::in_netns(&Netns::Named(ns.clone()), || {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
                pier_sandbox::OpError::Sys { op: "connect", path: std::path::PathBuf::from(addr.to_string()), source: e }
            })
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        let cause = match &e {
            pier_sandbox::OpError::Sys { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        format!(
            "failed to execute portforward in network namespace \"/var/run/netns/{netns}\": failed to connect to \
             localhost:{port} inside namespace \"{netns}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: {}",
            cause.to_lowercase().split(" (os error").next().unwrap_or_default()
        )
    })?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
}
