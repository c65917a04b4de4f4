//! Server side of a SPDY session: a reader task that demultiplexes frames into streams and a
//! writer task that owns the outgoing compression context, so header blocks hit the wire in
//! the order they were compressed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::compress::{HeaderCompressor, HeaderDecompressor};
use super::frame::{self, Frame, Headers, FLAG_FIN, RST_PROTOCOL_ERROR, RST_REFUSED_STREAM};
use super::SpdyError;

/// Window every stream starts with in both directions (SPDY/3 default).
const INITIAL_WINDOW: i64 = 64 * 1024;
/// Largest DATA frame we send; keeps one stream from hogging the connection.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// DATA frames buffered per stream before the reader applies backpressure to the connection.
const STREAM_BUFFER: usize = 16;

enum Command {
    Frame(Frame),
    Shutdown,
}

/// Send-side flow control. moby/spdystream never sends WINDOW_UPDATE, so the peer's window is only
/// enforced once the peer shows it does flow control (a WINDOW_UPDATE or an initial-window
/// SETTINGS); otherwise kubectl would stall after 64 KiB.
#[derive(Default)]
struct Flow {
    enforce: bool,
    initial: i64,
    windows: HashMap<u32, i64>,
    reset: HashSet<u32>,
}

struct Conn {
    tx: mpsc::Sender<Command>,
    closed: CancellationToken,
    flow: Mutex<Flow>,
    flow_changed: Notify,
    last_stream: AtomicU32,
}

impl Conn {
    async fn send(&self, frame: Frame) -> Result<(), SpdyError> {
        self.tx.send(Command::Frame(frame)).await.map_err(|_| SpdyError::Closed)
    }

    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        // A poisoned lock only means another task panicked mid-update; the numbers are still usable.
        self.flow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `want` bytes (or part of them) may be sent on `id`; returns how many.
    async fn reserve(&self, id: u32, want: usize) -> Result<usize, SpdyError> {
        loop {
            let notified = self.flow_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut flow = self.flow();
                if flow.reset.contains(&id) {
                    return Err(SpdyError::Reset(id));
                }
                if !flow.enforce {
                    return Ok(want);
                }
                let initial = flow.initial;
                let window = flow.windows.entry(id).or_insert(initial);
                if *window > 0 {
                    let n = want.min(*window as usize);
                    *window -= n as i64;
                    return Ok(n);
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return Err(SpdyError::Closed),
            }
        }
    }
}

/// A stream opened by the peer, already accepted with SYN_REPLY.
pub struct Stream {
    /// Stream id (odd: opened by the client).
    pub id: u32,
    /// Headers of the SYN_STREAM.
    pub headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    sender: StreamSender,
}

impl Stream {
    /// Next chunk of data; `None` once the peer half-closed or reset the stream, or the session ended.
    /// Consumed bytes are returned to the peer's window.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let data = self.rx.recv().await?;
        if !data.is_empty() {
            let update = Frame::WindowUpdate { stream_id: self.id, delta: data.len() as u32 };
            // Best effort: if the session is gone the data is still worth handing out.
            let _ = self.sender.conn.send(update).await;
        }
        Some(data)
    }

    /// The sending half, cloneable so several tasks can write.
    pub fn sender(&self) -> StreamSender {
        self.sender.clone()
    }

    /// First value of a SYN_STREAM header.
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

/// Writes to one stream.
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    conn: Arc<Conn>,
}

impl StreamSender {
    /// Sends `data`, split into frames and paced by the peer's window when it uses one.
    pub async fn send(&self, mut data: &[u8]) -> Result<(), SpdyError> {
        while !data.is_empty() {
            let n = self.conn.reserve(self.id, data.len().min(MAX_DATA_FRAME)).await?;
            let chunk = Bytes::copy_from_slice(&data[..n]);
            self.conn.send(Frame::Data { stream_id: self.id, flags: 0, data: chunk }).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes the stream (empty DATA frame with FIN), as spdystream's `Close` does.
    pub async fn finish(&self) -> Result<(), SpdyError> {
        self.conn.send(Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Bytes::new() }).await
    }

    /// Aborts the stream with RST_STREAM `status`.
    pub async fn reset(&self, status: u32) -> Result<(), SpdyError> {
        self.conn.send(Frame::RstStream { stream_id: self.id, status }).await
    }

    /// Resolves once the session's connection has ended (peer gone or read error).
    pub async fn session_closed(&self) {
        self.conn.closed.cancelled().await
    }
}

/// A server-side SPDY session over an upgraded connection.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    conn: Arc<Conn>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Session {
    /// Starts the reader and writer tasks on `io` (must be called inside a tokio runtime).
    pub fn new<T>(io: T) -> Result<Session, SpdyError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let comp = HeaderCompressor::new()?;
        let (rd, wr) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel(64);
        let conn = Arc::new(Conn {
            tx,
            closed: CancellationToken::new(),
            flow: Mutex::new(Flow { initial: INITIAL_WINDOW, ..Flow::default() }),
            flow_changed: Notify::new(),
            last_stream: AtomicU32::new(0),
        });
        let (new_tx, incoming) = mpsc::channel(16);
        let writer = tokio::spawn(writer_loop(wr, rx, comp)).abort_handle();
        let reader = tokio::spawn(reader_loop(rd, conn.clone(), new_tx)).abort_handle();
        Ok(Session { incoming, conn, tasks: [writer, reader] })
    }

    /// Next stream the peer opened; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves once the connection has ended.
    pub async fn closed(&self) {
        self.conn.closed.cancelled().await
    }

    /// Sends GOAWAY, flushes and half-closes the connection, then waits up to `grace` for the peer
    /// to hang up, so closing never races the peer's last unread bytes into a TCP reset.
    pub async fn close(self, grace: Duration) {
        let last = self.conn.last_stream.load(Ordering::Relaxed);
        let _ = self.conn.send(Frame::GoAway { last_good_stream_id: last, status: 0 }).await;
        let _ = self.conn.tx.send(Command::Shutdown).await;
        drop(self.incoming);
        if tokio::time::timeout(grace, self.conn.closed.cancelled()).await.is_err() {
            // The peer neither hung up nor read; stop both directions so the connection is freed.
            for task in &self.tasks {
                task.abort();
            }
        }
    }
}

async fn writer_loop<T: AsyncWrite>(
    mut wr: WriteHalf<T>,
    mut rx: mpsc::Receiver<Command>,
    mut comp: HeaderCompressor,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(mut cmd) = rx.recv().await {
        let mut shutdown = false;
        // Batch whatever is already queued into one write.
        loop {
            match cmd {
                Command::Frame(f) => {
                    if let Err(e) = frame::encode(&f, &mut comp, &mut buf) {
                        tracing::warn!("spdy: dropping frame that cannot be encoded: {e}");
                    }
                }
                Command::Shutdown => shutdown = true,
            }
            if shutdown || buf.len() >= 256 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => cmd = next,
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        }
        .await
        {
            tracing::debug!("spdy: write failed: {e}");
            return;
        }
        buf.clear();
        if shutdown {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn reader_loop<T: AsyncRead>(mut rd: ReadHalf<T>, conn: Arc<Conn>, new_streams: mpsc::Sender<Stream>) {
    let mut decomp = HeaderDecompressor::default();
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let frame = match frame::read_frame(&mut rd, &mut decomp).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("spdy: read failed: {e}");
                break;
            }
        };
        match frame {
            Frame::SynStream { stream_id, flags, headers, .. } => {
                if stream_id == 0 || stream_id % 2 == 0 || streams.contains_key(&stream_id) {
                    let _ = conn.send(Frame::RstStream { stream_id, status: RST_PROTOCOL_ERROR }).await;
                    continue;
                }
                conn.last_stream.fetch_max(stream_id, Ordering::Relaxed);
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                if flags & FLAG_FIN == 0 {
                    streams.insert(stream_id, tx);
                }
                let reply = Frame::SynReply { stream_id, flags: 0, headers: Vec::new() };
                if conn.send(reply).await.is_err() {
                    break;
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    rx,
                    sender: StreamSender { id: stream_id, conn: conn.clone() },
                };
                if new_streams.send(stream).await.is_err() {
                    streams.remove(&stream_id);
                    let _ = conn.send(Frame::RstStream { stream_id, status: RST_REFUSED_STREAM }).await;
                }
            }
            Frame::Data { stream_id, flags, data } => {
                if let Some(tx) = streams.get(&stream_id) {
                    // A consumer that went away just stops receiving; the rest of the session goes on.
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        streams.remove(&stream_id);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::Headers { stream_id, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
                conn.flow().reset.insert(stream_id);
                conn.flow_changed.notify_waiters();
            }
            Frame::Ping { id } => {
                // Odd ids are client-initiated and must be echoed; even ones would be answers to ours.
                if id % 2 == 1 && conn.send(Frame::Ping { id }).await.is_err() {
                    break;
                }
            }
            Frame::Settings { entries, .. } => {
                for (_, id, value) in entries {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let mut flow = conn.flow();
                        let delta = i64::from(value) - flow.initial;
                        flow.initial = i64::from(value);
                        flow.enforce = true;
                        for w in flow.windows.values_mut() {
                            *w += delta;
                        }
                    }
                }
                conn.flow_changed.notify_waiters();
            }
            Frame::WindowUpdate { stream_id, delta } => {
                if stream_id != 0 {
                    let mut flow = conn.flow();
                    flow.enforce = true;
                    let initial = flow.initial;
                    *flow.windows.entry(stream_id).or_insert(initial) += i64::from(delta);
                }
                conn.flow_changed.notify_waiters();
            }
            // GOAWAY only stops new streams; existing ones finish normally until the peer hangs up.
            Frame::GoAway { .. } | Frame::SynReply { .. } | Frame::Unknown { .. } => {}
        }
    }
    drop(streams);
    conn.closed.cancel();
}
