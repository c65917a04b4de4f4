//! The HTTP/1.1 server the kubia apps share: keep-alive, HEAD, 400 on malformed requests (all from
//! hyper), dual-stack listening, and a prompt exit on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::kubia::Kubia;

/// Prints the start line, listens on `port` and serves until SIGTERM or SIGINT.
pub(crate) async fn run(app: Kubia, port: u16) -> Result<(), String> {
    // Handlers go in before the port opens, so anyone who can connect can also stop us cleanly.
    let termination = Termination::install()?;
    say("Kubia server starting...");
    let listener = bind(port).map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let listener =
        TcpListener::from_std(listener).map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    serve(listener, Arc::new(app), async {
        termination.wait().await;
    })
    .await;
    Ok(())
}

/// Binds `[::]:port` accepting IPv4 too; falls back to `0.0.0.0:port` where IPv6 is unavailable. A port
/// that is taken is an error either way.
pub(crate) fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    match bind_one(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(e),
        Err(_) => bind_one(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
    }
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Lets a restarted container rebind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves `app` on `listener` until `shutdown` completes; open connections are dropped then.
pub(crate) async fn serve(listener: TcpListener, app: Arc<Kubia>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(respond(&app, peer.ip(), &request)) }
            });
            // Errors here are the client's (resets, malformed requests already answered with 400).
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(app: &Kubia, peer: IpAddr, _request: &Request<Incoming>) -> Response<Full<Bytes>> {
    // Node prints `request.connection.remoteAddress`: the bare IP, IPv4 clients as `::ffff:a.b.c.d` on a
    // dual-stack socket, which is also how std formats a mapped address.
    say(&format!("Received request from {peer}"));
    let answer = app.answer();
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// Writes a line to stdout, ignoring a closed stdout rather than dying on it.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// SIGTERM and SIGINT handlers; installed before waiting so no signal in between is lost.
pub(crate) struct Termination {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Termination {
    /// Installs the handlers (needs a running tokio runtime).
    pub(crate) fn install() -> Result<Self, String> {
        let term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(Termination { term, int })
    }

    /// Waits for either signal and names the one that came.
    pub(crate) async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "Terminated",
            _ = self.int.recv() => "Interrupt",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpStream;

    /// Starts `app` on a loopback port in a background thread; returns the port and a stop handle.
    fn start(app: Kubia) -> (u16, tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                serve(listener, Arc::new(app), async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        (port, stop, thread)
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    /// Reads one response; reads the body by Content-Length unless `head` says there is none.
    fn read_reply(reader: &mut BufReader<TcpStream>, head: bool) -> Reply {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let length: usize =
            headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; if head { 0 } else { length }];
        reader.read_exact(&mut body).unwrap();
        Reply { status, headers, body: String::from_utf8(body).unwrap() }
    }

    fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    #[test]
    fn keep_alive_head_and_bad_requests() {
        let (port, stop, thread) = start(Kubia::new(None).with_hostname("kubia-test"));
        let (mut stream, mut reader) = connect(port);
        // Several requests on one connection, including a HEAD in the middle.
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let first = read_reply(&mut reader, false);
        assert_eq!((first.status, first.body.as_str()), (200, "You've hit kubia-test\n"));
        stream.write_all(b"HEAD /anything HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = read_reply(&mut reader, true);
        assert_eq!(head.status, 200);
        assert!(head.headers.iter().any(|(k, v)| k == "content-length" && v == "22"), "{:?}", head.headers);
        stream.write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        let third = read_reply(&mut reader, false);
        assert_eq!((third.status, third.body.as_str()), (200, "You've hit kubia-test\n"));

        // HTTP/1.0 without keep-alive gets its answer and a closed connection.
        let (mut old, mut old_reader) = connect(port);
        old.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut old_reader, false).status, 200);
        let mut rest = Vec::new();
        old_reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        // Garbage gets a 400.
        let (mut bad, mut bad_reader) = connect(port);
        bad.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
        let mut text = String::new();
        bad_reader.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");

        stop.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn unhealthy_fails_from_the_sixth_request() {
        let (port, stop, thread) = start(Kubia::unhealthy().with_hostname("sick"));
        let (mut stream, mut reader) = connect(port);
        let mut seen = Vec::new();
        for _ in 0..7 {
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let reply = read_reply(&mut reader, false);
            seen.push((reply.status, reply.body));
        }
        assert_eq!(seen[4], (200, "You've hit sick\n".to_string()));
        assert_eq!(seen[5], (500, "I'm not well. Please restart me!".to_string()));
        assert_eq!(seen[6].0, 500);
        stop.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn taken_port_is_an_error() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let err = bind(port).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
