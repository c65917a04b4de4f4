//! `udp-echo`: a UDP server that answers each datagram with `<hostname> <payload>`, so a client
//! sees which pod answered, and its client, which sends from a fixed source port so that a test can
//! follow one conntrack entry (every datagram of it goes where the first one went).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::args::UdpClient;
use crate::http::{say, Termination};

/// The answer to `payload`: the host name, a space, the payload.
pub(crate) fn answer(hostname: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hostname.len() + 1 + payload.len());
    out.extend_from_slice(hostname.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Listens on UDP `0.0.0.0:port` and answers every datagram until SIGTERM or SIGINT.
pub(crate) async fn serve(port: u16) -> Result<(), String> {
    let termination = Termination::install()?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .await
        .map_err(|e| format!("cannot listen on UDP port {port}: {e}"))?;
    say(&format!("UDP echo server listening on 0.0.0.0:{port}"));
    serve_on(&socket, &crate::kubia::hostname(), async {
        let signal = termination.wait().await;
        eprintln!("Shutting down, got signal: {signal}");
    })
    .await;
    Ok(())
}

/// Answers datagrams on `socket` as `host` until `shutdown` completes.
pub(crate) async fn serve_on(socket: &UdpSocket, host: &str, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut buf = vec![0; 65_536];
    loop {
        let received = tokio::select! {
            () = &mut shutdown => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (n, peer) = match received {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        say(&format!("Received datagram from {peer}"));
        if let Err(e) = socket.send_to(&answer(host, &buf[..n]), peer).await {
            eprintln!("answering {peer} failed: {e}");
        }
    }
}

/// One line per datagram sent: the answer, `timeout`, or `refused` (an ICMP port unreachable came
/// back). Fails when no datagram was answered.
pub(crate) async fn query(client: &UdpClient) -> Result<(), String> {
    let unspecified = if client.server.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, client.source_port))
        .await
        .map_err(|e| format!("cannot bind UDP port {}: {e}", client.source_port))?;
    socket.connect(client.server).await.map_err(|e| format!("cannot send to {}: {e}", client.server))?;
    let mut answered = 0;
    for n in 1..=client.count {
        let payload = format!("{}-{n}", client.message);
        let outcome = match socket.send(payload.as_bytes()).await {
            Ok(_) => match tokio::time::timeout(client.timeout, receive(&socket, &payload)).await {
                Ok(received) => received,
                Err(_) => {
                    say("timeout");
                    continue;
                }
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(text) => {
                answered += 1;
                say(&text);
            }
            // The error of an earlier datagram may surface on a later send.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => say("refused"),
            Err(e) => return Err(format!("talking to {}: {e}", client.server)),
        }
    }
    if answered == 0 {
        return Err(format!("no answer from {}", client.server));
    }
    Ok(())
}

/// The answer to `payload`; late answers to earlier datagrams are skipped.
async fn receive(socket: &UdpSocket, payload: &str) -> io::Result<String> {
    let mut buf = vec![0; 65_536];
    let suffix = format!(" {payload}");
    loop {
        let n = socket.recv(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.ends_with(&suffix) {
            return Ok(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_the_host_name() {
        assert_eq!(answer("echo-a", b"hi-1"), b"echo-a hi-1");
        assert_eq!(answer("h", b""), b"h ");
    }

    #[test]
    fn serves_until_shutdown() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = server.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(async move {
                serve_on(&server, "echo-test", async {
                    let _ = stopped.await;
                })
                .await;
            });
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            client.connect(addr).await.unwrap();
            for payload in ["one", "two"] {
                client.send(payload.as_bytes()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(10), receive(&client, payload))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, format!("echo-test {payload}"));
            }
            stop.send(()).unwrap();
            serving.await.unwrap();
        });
    }
}
