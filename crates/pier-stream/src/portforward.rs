//! Port-forward over SPDY (`portforward.k8s.io`), directly or tunnelled through a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::spdy::frame::RST_PROTOCOL_ERROR;
use crate::spdy::{Session, Stream};
use crate::upgrade::{negotiate, take_over, Body, Transport};
use crate::ws;

/// The SPDY port-forward protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels a SPDY port-forward session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Answers a port-forward upgrade request. Returns the response to send; on success a task serves
/// the session: each forwarded connection calls `connect(port)`, and an `Err(message)` is reported
/// to the client as `error forwarding port <port> to pod <pod>, uid : <message>`.
pub fn serve_port_forward<B, C, F, S>(req: &mut Request<B>, pod: String, connect: C) -> Response<Body>
where
    C: Fn(u16) -> F + Send + Sync + 'static,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let transport = match negotiate(req, &[TUNNEL_PROTOCOL], &[PORT_FORWARD_PROTOCOL], PORT_FORWARD_PROTOCOL)
    {
        Ok(t) => t,
        Err(resp) => return *resp,
    };
    take_over(req, transport, "port-forward", move |io, transport| async move {
        let session = match transport {
            Transport::WebSocket { .. } => Session::new(ws::tunnel(io).await),
            Transport::Spdy { .. } => Session::new(io),
        };
        match session {
            Ok(session) => port_forward_session(session, pod, connect).await,
            Err(e) => tracing::warn!("port-forward: cannot start spdy session: {e}"),
        }
    })
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serves port-forward on an established SPDY session until the client disconnects.
pub async fn port_forward_session<C, F, S>(mut session: Session, pod: String, connect: C)
where
    C: Fn(u16) -> F + Send + Sync + 'static,
    F: Future<Output = Result<S, String>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connect = Arc::new(connect);
    let pod: Arc<str> = pod.into();
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = session.accept().await {
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        // Pre-requestid clients: the data stream is the one opened right after the error stream.
        let request_id = match stream.header("requestid") {
            Some(id) if !id.is_empty() => id.to_string(),
            _ if kind == "data" => stream.id.wrapping_sub(2).to_string(),
            _ => stream.id.to_string(),
        };
        let pair = pending.entry(request_id.clone()).or_default();
        match kind.as_str() {
            "error" => pair.error = Some(stream),
            "data" => pair.data = Some(stream),
            other => {
                tracing::debug!("port-forward: unexpected stream type {other:?}");
                let _ = stream.sender().reset(RST_PROTOCOL_ERROR).await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair { error: Some(error), data: Some(data) }) = pending.remove(&request_id) {
                tokio::spawn(forward(error, data, pod.clone(), connect.clone()));
            }
        }
    }
}

async fn forward<C, F, S>(error: Stream, mut data: Stream, pod: Arc<str>, connect: Arc<C>)
where
    C: Fn(u16) -> F,
    F: Future<Output = Result<S, String>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let error_tx = error.sender();
    let data_tx = data.sender();
    let raw_port = data.header("port").unwrap_or_default().to_string();
    let target = match raw_port.parse::<u16>() {
        Ok(port) if port > 0 => {
            connect(port).await.map_err(|e| format!("error forwarding port {port} to pod {pod}, uid : {e}"))
        }
        _ => Err(format!("invalid port {raw_port:?} in port-forward request")),
    };
    let target = match target {
        Ok(t) => t,
        Err(msg) => {
            let _ = error_tx.send(msg.as_bytes()).await;
            let _ = error_tx.finish().await;
            let _ = data_tx.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(target);
    let upload = async {
        while let Some(chunk) = data.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let download = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if data_tx.send(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                },
                _ = data_tx.session_closed() => return,
            }
        }
        let _ = data_tx.finish().await;
    };
    tokio::join!(upload, download);
    let _ = error_tx.finish().await;
}
