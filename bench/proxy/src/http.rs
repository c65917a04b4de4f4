//! A small HTTP/1.1 server and client, enough for the benchmark: `GET /` answers a
//! fixed small body, `GET /bytes/<n>` streams `n` bytes. Blocking sockets, one thread
//! per connection from a fixed pool (no thread is started per request, so every path
//! pays the same server cost).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The body of `GET /`.
pub const SMALL_BODY: &[u8] = b"You've hit pier-bench-proxy\n";
/// How much the server writes, and the client reads, per call for large bodies.
pub const CHUNK: usize = 256 * 1024;
/// A connect that takes longer failed (a working path takes well under a millisecond).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// No read or write waits longer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `/bytes/<n>` the server sends.
const MAX_BYTES: u64 = 1 << 40;

/// The CPU the server threads serve new connections on (`usize::MAX`: any).
static SERVER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// From now on, connections are served on `cpu` (`None`: on any CPU). Which CPU a
/// server thread ran on relative to the client decided a keep-alive connection's
/// latency more than its path did (a connection's p50 was 25 or 90 µs by luck of
/// placement, the same for either path), so the latency runs fix it.
pub fn serve_connections_on(cpu: Option<usize>) {
    SERVER_CPU.store(cpu.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// Pins the calling thread to `cpu`, or lets it run anywhere again (`None`).
pub fn pin_this_thread(cpu: Option<usize>) -> io::Result<()> {
    let mut set = CpuSet::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted: Vec<usize> = match cpu {
        Some(c) => vec![c],
        None => (0..cpus.min(CpuSet::count())).collect(),
    };
    for c in wanted {
        set.set(c).map_err(io::Error::from)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Serves `listener` from `threads` threads, each taking one connection at a time.
pub fn serve(listener: TcpListener, threads: usize) -> io::Result<()> {
    for i in 0..threads {
        let listener = listener.try_clone()?;
        std::thread::Builder::new().name(format!("pbp-server-{i}")).spawn(move || {
            let chunk = vec![b'x'; CHUNK];
            let mut pinned = usize::MAX;
            loop {
                match listener.accept() {
                    // A failed connection concerns its client only; the client reports it.
                    Ok((stream, _)) => {
                        let cpu = SERVER_CPU.load(Ordering::Relaxed);
                        if cpu != pinned && pin_this_thread((cpu != usize::MAX).then_some(cpu)).is_ok() {
                            pinned = cpu;
                        }
                        drop(handle(stream, &chunk))
                    }
                    // Out of descriptors or similar: let it pass.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
    }
    Ok(())
}

enum Body {
    Small,
    Bytes(u64),
    NotFound,
}

fn route(path: &str) -> Body {
    if path == "/" {
        return Body::Small;
    }
    match path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if n <= MAX_BYTES => Body::Bytes(n),
        _ => Body::NotFound,
    }
}

/// Answers requests on one connection until the client closes it. With
/// `Connection: close` the server still waits for the client to close first, so the
/// server pod never holds TIME_WAIT sockets whose tuples a later connection through
/// another path (same client address and port, same server address) could hit.
fn handle(stream: TcpStream, chunk: &[u8]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let connection = if close { "close" } else { "keep-alive" };
        match route(&path) {
            Body::Small => {
                let mut response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                    SMALL_BODY.len()
                )
                .into_bytes();
                response.extend_from_slice(SMALL_BODY);
                out.write_all(&response)?;
            }
            Body::Bytes(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: {connection}\r\n\r\n"
                );
                out.write_all(head.as_bytes())?;
                let mut left = n;
                while left > 0 {
                    let k = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                    out.write_all(&chunk[..k])?;
                    left -= k as u64;
                }
            }
            Body::NotFound => {
                out.write_all(
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n"
                    )
                    .as_bytes(),
                )?;
            }
        }
    }
}

/// A TCP connection to `addr` with the benchmark's timeouts and `TCP_NODELAY`.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// One client connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Client {
    /// A client on a connected stream.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
            line: String::new(),
        })
    }

    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        Ok(self.line.trim_end())
    }

    /// `GET path`, the whole body read into `sink` (and dropped); the body's length.
    /// `close` asks the server for `Connection: close`.
    pub fn get(&mut self, path: &str, close: bool, sink: &mut [u8]) -> io::Result<u64> {
        let connection = if close { "close" } else { "keep-alive" };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: pier-bench-proxy\r\nConnection: {connection}\r\n\r\n");
        self.writer.write_all(request.as_bytes())?;
        let status = self.read_line()?;
        if !status.starts_with("HTTP/1.1 200 ") {
            return Err(bad(format!("unexpected response to GET {path}: {status:?}")));
        }
        let mut length = None;
        loop {
            let header = self.read_line()?;
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    let n = value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
                    length = Some(n);
                }
            }
        }
        let length = length.ok_or_else(|| bad(format!("no Content-Length in the response to GET {path}")))?;
        let mut left = length;
        while left > 0 {
            let want = usize::try_from(left).map_or(sink.len(), |l| l.min(sink.len()));
            let n = self.reader.read(&mut sink[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
            }
            left -= n as u64;
        }
        Ok(length)
    }
}
