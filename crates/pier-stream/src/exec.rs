//! Exec and attach: WebSocket channel protocols (v1–v5) and SPDY (channel.k8s.io v1–v5).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::request::ExecRequest;
use crate::spdy::frame::RST_PROTOCOL_ERROR;
use crate::spdy::{Session, Stream, StreamSender};
use crate::status::{error_channel_payload, exec_status, ExecOutcome};
use crate::upgrade::{negotiate, take_over, Body, Transport};
use crate::ws;

/// WebSocket subprotocols for exec/attach, best first.
pub const WEBSOCKET_PROTOCOLS: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
/// SPDY `X-Stream-Protocol-Version`s for exec/attach (v5 over SPDY behaves as v4).
pub const SPDY_PROTOCOLS: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// How long the client gets to open its SPDY streams (the kubelet's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a WebSocket client gets to register its streams before the first message.
const CLIENT_STREAM_SETUP: Duration = Duration::from_millis(100);
/// How long to wait for the client to hang up after the final status before dropping the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const PIPE_SIZE: usize = 64 * 1024;

const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
const CH_CLOSE: u8 = 255;

/// A terminal size sent by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width", alias = "width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height", alias = "height")]
    pub height: u16,
}

/// The streams a handler wires to the process; each is present iff the request asked for it.
/// Drop (or shut down) stdout/stderr when the process's output ends: the final status is only sent
/// after both have been closed.
pub struct ExecStreams {
    /// Client's stdin; EOF when the client closes it.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// To the client's stdout.
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// To the client's stderr (never with a TTY).
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal resizes (only with a TTY and a protocol that carries them).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

/// Answers an exec/attach upgrade request. Returns the response to send (101, or a 4xx explaining
/// why not); on success a task takes over the upgraded connection, calls `handler` with the
/// streams, reports its outcome as the final Status and closes the session.
pub fn serve_exec<B, H, F>(req: &mut Request<B>, exec: ExecRequest, handler: H) -> Response<Body>
where
    H: FnOnce(ExecStreams) -> F + Send + 'static,
    F: Future<Output = ExecOutcome> + Send + 'static,
{
    let transport = match negotiate(req, WEBSOCKET_PROTOCOLS, SPDY_PROTOCOLS, "channel.k8s.io") {
        Ok(t) => t,
        Err(resp) => return *resp,
    };
    take_over(req, transport, "exec", move |io, transport| async move {
        let protocol = transport.protocol().to_string();
        match transport {
            Transport::WebSocket { .. } => exec_over_websocket(io, &protocol, exec, handler).await,
            Transport::Spdy { .. } => exec_over_spdy(io, &protocol, exec, handler).await,
        }
    })
}

fn json_status(protocol: &str) -> bool {
    matches!(protocol, "v4.channel.k8s.io" | "v5.channel.k8s.io")
}

fn supports_resize(protocol: &str) -> bool {
    matches!(protocol, "v3.channel.k8s.io" | "v4.channel.k8s.io" | "v5.channel.k8s.io")
}

/// Runs an exec session over an upgraded WebSocket connection speaking `protocol`.
pub async fn exec_over_websocket<T, H, F>(io: T, protocol: &str, exec: ExecRequest, handler: H)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: FnOnce(ExecStreams) -> F,
    F: Future<Output = ExecOutcome>,
{
    let (mut sink, mut source) = ws::server_socket(io).await.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // gorilla/websocket (client-go) reports any close but 1000 as an error, failing the exec.
        let _ = sink.send(ws::normal_close()).await;
        let _ = sink.close().await;
    });

    // client-go starts reading before it has registered its streams and discards messages
    // for streams it does not know yet ("Unknown stream id"), so a command that finishes
    // at once could lose its output and its exit status. Upstream's chain (API server
    // translator, kubelet, CRI exec) always takes longer than that window; a node that
    // answers directly must wait it out.
    tokio::time::sleep(CLIENT_STREAM_SETUP).await;
    // Like the kubelet: an empty message on the first writable channel tells the client we are up.
    let first = if exec.stdout {
        CH_STDOUT
    } else if exec.stderr {
        CH_STDERR
    } else {
        CH_ERROR
    };
    let _ = out_tx.send(Message::Binary(Bytes::from(vec![first]))).await;

    let (stdin_pipe, stdin) = pipe_if(exec.stdin);
    let (resize_tx, resize) = resize_channel(exec.tty && supports_resize(protocol));
    let close_signal = protocol == "v5.channel.k8s.io";
    let reader = tokio::spawn(async move {
        let mut stdin_pipe = stdin_pipe;
        let mut resize = ResizeDecoder::new(resize_tx);
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    CH_STDIN => {
                        if let Some(w) = stdin_pipe.as_mut() {
                            if w.write_all(&b[1..]).await.is_err() {
                                stdin_pipe = None;
                            }
                        }
                    }
                    CH_RESIZE => resize.push(&b[1..]).await,
                    // Dropping our end of the pipe is what gives the process EOF on stdin.
                    CH_CLOSE if close_signal && b.get(1) == Some(&CH_STDIN) => stdin_pipe = None,
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
    });

    let mut copiers = Vec::new();
    let mut out_stream = |on: bool, channel: u8| -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        on.then(|| {
            let (w, task) = ws_output(out_tx.clone(), channel);
            copiers.push(task);
            w
        })
    };
    let stdout = out_stream(exec.stdout, CH_STDOUT);
    let stderr = out_stream(exec.stderr, CH_STDERR);
    let outcome = handler(ExecStreams { stdin, stdout, stderr, resize }).await;
    for task in copiers {
        let _ = task.await;
    }

    let payload = error_channel_payload(&exec_status(&outcome, &exec.command), json_status(protocol));
    if !payload.is_empty() {
        let mut msg = Vec::with_capacity(payload.len() + 1);
        msg.push(CH_ERROR);
        msg.extend_from_slice(&payload);
        let _ = out_tx.send(Message::Binary(msg.into())).await;
    }
    drop(out_tx);
    let _ = writer.await;
    // The writer sent our Close; give the client a moment to answer before dropping the socket.
    let abort = reader.abort_handle();
    if tokio::time::timeout(CLOSE_GRACE, reader).await.is_err() {
        abort.abort();
    }
}

/// Runs an exec session over an upgraded SPDY/3.1 connection speaking `protocol`.
pub async fn exec_over_spdy<T, H, F>(io: T, protocol: &str, exec: ExecRequest, handler: H)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    H: FnOnce(ExecStreams) -> F,
    F: Future<Output = ExecOutcome>,
{
    let mut session = match Session::new(io) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("exec: cannot start spdy session: {e}");
            return;
        }
    };
    let want_resize = exec.tty && supports_resize(protocol);
    let mut streams = SpdyStreams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !streams.complete(&exec, want_resize) {
        let stream = match tokio::time::timeout_at(deadline, session.accept()).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!("exec: timed out waiting for client to create streams");
                session.close(CLOSE_GRACE).await;
                return;
            }
        };
        let slot = match stream.header("streamtype") {
            Some("error") => &mut streams.error,
            Some("stdin") => &mut streams.stdin,
            Some("stdout") => &mut streams.stdout,
            Some("stderr") => &mut streams.stderr,
            Some("resize") => &mut streams.resize,
            other => {
                tracing::debug!("exec: unexpected stream type {other:?}");
                let _ = stream.sender().reset(RST_PROTOCOL_ERROR).await;
                continue;
            }
        };
        *slot = Some(stream);
    }
    let Some(error) = streams.error else { return };

    let mut copiers = Vec::new();
    let mut out_stream = |s: Option<Stream>| -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        s.map(|s| {
            let (w, task) = spdy_output(s.sender());
            copiers.push(task);
            w
        })
    };
    let stdout = out_stream(streams.stdout.filter(|_| exec.stdout));
    let stderr = out_stream(streams.stderr.filter(|_| exec.stderr));
    let stdin = streams.stdin.filter(|_| exec.stdin).map(spdy_input);
    let resize = streams.resize.filter(|_| want_resize).map(spdy_resize);
    let outcome = handler(ExecStreams { stdin, stdout, stderr, resize }).await;
    for task in copiers {
        let _ = task.await;
    }

    let payload = error_channel_payload(&exec_status(&outcome, &exec.command), json_status(protocol));
    let sender = error.sender();
    if !payload.is_empty() {
        let _ = sender.send(&payload).await;
    }
    let _ = sender.finish().await;
    session.close(CLOSE_GRACE).await;
}

#[derive(Default)]
struct SpdyStreams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl SpdyStreams {
    fn complete(&self, exec: &ExecRequest, want_resize: bool) -> bool {
        self.error.is_some()
            && (!exec.stdin || self.stdin.is_some())
            && (!exec.stdout || self.stdout.is_some())
            && (!exec.stderr || self.stderr.is_some())
            && (!want_resize || self.resize.is_some())
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

fn pipe_if(on: bool) -> (Option<DuplexStream>, Option<BoxRead>) {
    if !on {
        return (None, None);
    }
    let (ours, theirs) = tokio::io::duplex(PIPE_SIZE);
    (Some(ours), Some(Box::new(theirs)))
}

fn resize_channel(on: bool) -> (Option<mpsc::Sender<TerminalSize>>, Option<mpsc::Receiver<TerminalSize>>) {
    if !on {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(16);
    (Some(tx), Some(rx))
}

/// A pipe whose read end is copied into channel-tagged WebSocket messages.
fn ws_output(tx: mpsc::Sender<Message>, channel: u8) -> (BoxWrite, JoinHandle<()>) {
    let (mut ours, theirs) = tokio::io::duplex(PIPE_SIZE);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024 + 1];
        buf[0] = channel;
        loop {
            match ours.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(Bytes::copy_from_slice(&buf[..=n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (Box::new(theirs), task)
}

/// A pipe whose read end is copied to a SPDY stream, half-closed at EOF.
fn spdy_output(sender: StreamSender) -> (BoxWrite, JoinHandle<()>) {
    let (mut ours, theirs) = tokio::io::duplex(PIPE_SIZE);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match ours.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sender.finish().await;
    });
    (Box::new(theirs), task)
}

/// Copies a SPDY stream into a pipe; the process sees EOF when the client half-closes.
fn spdy_input(mut stream: Stream) -> BoxRead {
    let (mut ours, theirs) = tokio::io::duplex(PIPE_SIZE);
    tokio::spawn(async move {
        while let Some(data) = stream.recv().await {
            if ours.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    Box::new(theirs)
}

fn spdy_resize(mut stream: Stream) -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut decoder = ResizeDecoder::new(Some(tx));
        while let Some(data) = stream.recv().await {
            decoder.push(&data).await;
        }
    });
    rx
}

/// Decodes the resize channel: a stream of concatenated JSON objects (Go's json.Encoder output),
/// which may be split across messages.
struct ResizeDecoder {
    buf: Vec<u8>,
    tx: Option<mpsc::Sender<TerminalSize>>,
}

impl ResizeDecoder {
    fn new(tx: Option<mpsc::Sender<TerminalSize>>) -> Self {
        ResizeDecoder { buf: Vec::new(), tx }
    }

    async fn push(&mut self, data: &[u8]) {
        let Some(tx) = &self.tx else { return };
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let mut iter = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        loop {
            match iter.next() {
                Some(Ok(size)) => {
                    sizes.push(size);
                    consumed = iter.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!("exec: dropping malformed resize message: {e}");
                    consumed = self.buf.len();
                    break;
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        for size in sizes {
            if tx.send(size).await.is_err() {
                self.tx = None;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resize_decoder_handles_split_and_concatenated_objects() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut d = ResizeDecoder::new(Some(tx));
        d.push(b"{\"Width\":80,\"Hei").await;
        d.push(b"ght\":24}\n{\"width\":100,\"height\":40}\n").await;
        assert_eq!(rx.recv().await, Some(TerminalSize { width: 80, height: 24 }));
        assert_eq!(rx.recv().await, Some(TerminalSize { width: 100, height: 40 }));
        d.push(b"garbage").await;
        d.push(b"{\"Width\":1,\"Height\":2}").await;
        assert_eq!(rx.recv().await, Some(TerminalSize { width: 1, height: 2 }));
    }
}
