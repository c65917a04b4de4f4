//! Loopback servers and fakes shared by the tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, ContainerPort as SpecPort};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{ExecError, ExecResult, ExecRunner, PodRef, Target};

/// How the raw HTTP server answers one request.
pub enum Reply {
    /// Writes this response and closes.
    Raw(String),
    /// Reads the request and never answers.
    Hang,
}

/// A one-line-per-response HTTP/1.1 server that hands each request head to the test.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub heads: mpsc::UnboundedReceiver<String>,
    _task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// The next request head the server received, waiting at most 5 s.
    pub async fn next_head(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.heads.recv()).await.unwrap().unwrap()
    }
}

pub fn response(status: &str, extra: &str, body: &str) -> Reply {
    Reply::Raw(format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len()))
}

pub async fn http_server<F>(tls: Option<tokio_rustls::TlsAcceptor>, respond: F) -> HttpServer
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, heads) = mpsc::unbounded_channel();
    let respond = Arc::new(respond);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (tx, respond, tls) = (tx.clone(), Arc::clone(&respond), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_one(stream, tx, respond.as_ref()).await;
                        }
                    }
                    None => serve_one(stream, tx, respond.as_ref()).await,
                }
            });
        }
    });
    HttpServer { addr, heads, _task: task }
}

async fn serve_one<S, F>(mut stream: S, tx: mpsc::UnboundedSender<String>, respond: &F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(&str) -> Reply,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // A TLS ClientHello (record type 0x16) never ends like an HTTP head; answer it at once, as a
    // plain HTTP server does.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.first() != Some(&0x16) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let _ = tx.send(head.clone());
    match respond(&head) {
        Reply::Raw(text) => {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

/// A TLS acceptor with a fresh self-signed certificate.
pub fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A loopback port with nothing listening.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A target on 127.0.0.1 whose container declares `ports` as `(name, number)`.
pub fn target(ports: &[(&str, u16)]) -> Target {
    let container = Container {
        name: "app".into(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| SpecPort {
                    name: Some(name.to_string()),
                    container_port: i32::from(*port),
                    ..SpecPort::default()
                })
                .collect(),
        ),
        ..Container::default()
    };
    let pod = PodRef { name: "web".into(), namespace: "default".into(), uid: "uid-1".into() };
    Target::new(pod, &container, Some("127.0.0.1".parse().unwrap()))
}

/// What the fake runner does for a command, keyed by its first word.
#[derive(Clone, Debug)]
pub enum Behave {
    Exit(i32, &'static str),
    CannotStart,
    TimeOut,
}

/// An [`ExecRunner`] whose answers the test changes as it goes, recording when each command ran.
#[derive(Default)]
pub struct FakeRunner {
    pub behave: Mutex<HashMap<String, Behave>>,
    pub calls: Mutex<Vec<(String, Instant)>>,
}

impl FakeRunner {
    pub fn set(&self, command: &str, behave: Behave) {
        self.behave.lock().unwrap().insert(command.to_string(), behave);
    }

    /// When `command` ran, relative to `t0`, in whole seconds.
    pub fn calls_of(&self, command: &str, t0: Instant) -> Vec<u64> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(c, _)| c == command).map(|(_, at)| (*at - t0).as_secs()).collect()
    }
}

#[async_trait]
impl ExecRunner for FakeRunner {
    async fn exec(&self, command: &[String], _timeout: Duration) -> Result<ExecResult, ExecError> {
        let name = command.first().cloned().unwrap_or_default();
        self.calls.lock().unwrap().push((name.clone(), Instant::now()));
        let behave = self.behave.lock().unwrap().get(&name).cloned().unwrap_or(Behave::Exit(0, ""));
        match behave {
            Behave::Exit(code, output) => {
                Ok(ExecResult { exit_code: code, output: output.as_bytes().to_vec() })
            }
            Behave::CannotStart => {
                Err(ExecError::Start(format!("exec: {name:?}: executable file not found in $PATH")))
            }
            Behave::TimeOut => Err(ExecError::TimedOut),
        }
    }
}
