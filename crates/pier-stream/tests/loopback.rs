//! pier-stream against hand-written clients: WebSocket v5 exec (close signal, resize, exit status)
//! and a raw SPDY/3.1 port-forward client built on the crate's own framing.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pier_stream::spdy::compress::{HeaderCompressor, HeaderDecompressor};
use pier_stream::spdy::frame::{encode, read_frame, Frame, FLAG_FIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs a v5 WebSocket exec, sending `input` messages, and returns (stdout, stderr, error channel).
async fn ws_exec(query: &str, input: Vec<Vec<u8>>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let addr = common::start_server().await;
    let url = format!("ws://{addr}/api/v1/namespaces/default/pods/x/exec?{query}");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    for m in input {
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Binary(b) => match b[0] {
                    1 => out.extend_from_slice(&b[1..]),
                    2 => err.extend_from_slice(&b[1..]),
                    3 => status.extend_from_slice(&b[1..]),
                    other => panic!("unexpected channel {other}"),
                },
                Message::Close(frame) => {
                    assert_eq!(frame.unwrap().code, CloseCode::Normal);
                    break;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("websocket exec did not finish");
    (out, err, status)
}

#[tokio::test]
async fn websocket_v5_exec_close_signal_and_exit_code() {
    let query = "command=echo-exit&command=5&stdin=true&stdout=true&stderr=true";
    let input = vec![b"\x00abc".to_vec(), b"\x00def".to_vec(), vec![255, 0]];
    let (out, err, status) = ws_exec(query, input).await;
    assert_eq!(out, b"abcdefdone\n");
    assert_eq!(err, b"to-stderr\n");
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "5"}));
}

#[tokio::test]
async fn websocket_v5_tty_resize() {
    let query = "command=resize&stdin=true&stdout=true&tty=true";
    let input = vec![b"\x04{\"Width\":132,\"Height\":43}".to_vec()];
    let (out, err, status) = ws_exec(query, input).await;
    assert_eq!(out, b"132x43\n");
    assert!(err.is_empty());
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn bad_exec_request_is_400_with_message() {
    let addr = common::start_server().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /api/v1/namespaces/default/pods/x/exec?stdout=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_string(&mut resp)).await.unwrap().unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("you must specify at least one command for the container"), "{resp}");
}

/// A minimal SPDY client: upgrade, then frames with our own codec.
struct SpdyClient {
    rd: tokio::net::tcp::OwnedReadHalf,
    wr: tokio::net::tcp::OwnedWriteHalf,
    comp: HeaderCompressor,
    decomp: HeaderDecompressor,
}

impl SpdyClient {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /api/v1/namespaces/default/pods/x/portforward HTTP/1.1\r\nHost: x\r\n\
              Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
        // Read the 101 head byte by byte so no SPDY bytes are swallowed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("x-stream-protocol-version: portforward.k8s.io"), "{head}");
        let (rd, wr) = tcp.into_split();
        SpdyClient { rd, wr, comp: HeaderCompressor::new().unwrap(), decomp: HeaderDecompressor::default() }
    }

    async fn send(&mut self, frame: Frame) {
        let mut buf = Vec::new();
        encode(&frame, &mut self.comp, &mut buf).unwrap();
        self.wr.write_all(&buf).await.unwrap();
    }

    async fn open(&mut self, id: u32, kind: &str, port: u16, request: &str) {
        let headers = vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestid".to_string(), request.to_string()),
        ];
        self.send(Frame::SynStream { stream_id: id, associated_id: 0, priority: 0, flags: 0, headers }).await;
    }
}

#[tokio::test]
async fn spdy_port_forward_echo_refused_and_ping() {
    let addr = common::start_server().await;
    let echo = common::start_echo().await;
    let refused = common::closed_port().await;
    let mut c = SpdyClient::connect(addr).await;
    c.send(Frame::Ping { id: 1 }).await;
    c.open(1, "error", echo, "0").await;
    c.open(3, "data", echo, "0").await;
    c.open(5, "error", refused, "1").await;
    c.open(7, "data", refused, "1").await;
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    for chunk in big.chunks(10_000) {
        c.send(Frame::Data { stream_id: 3, flags: 0, data: Bytes::copy_from_slice(chunk) }).await;
    }
    c.send(Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::new() }).await;

    let mut echoed = Vec::new();
    let mut refused_msg = Vec::new();
    let (mut fin, mut replies, mut pong) = (std::collections::HashSet::new(), 0, false);
    tokio::time::timeout(DEADLINE, async {
        // Done once the echo data, both error streams and the refused data stream have ended.
        while !(fin.contains(&1) && fin.contains(&3) && fin.contains(&5) && fin.contains(&7)) {
            match read_frame(&mut c.rd, &mut c.decomp).await.unwrap().expect("server hung up") {
                Frame::SynReply { .. } => replies += 1,
                Frame::Ping { id } => pong = id == 1,
                Frame::Data { stream_id, flags, data } => {
                    match stream_id {
                        3 => echoed.extend_from_slice(&data),
                        5 => refused_msg.extend_from_slice(&data),
                        1 | 7 => assert!(data.is_empty(), "unexpected data on stream {stream_id}"),
                        other => panic!("data on unknown stream {other}"),
                    }
                    if flags & FLAG_FIN != 0 {
                        fin.insert(stream_id);
                    }
                }
                Frame::WindowUpdate { .. } => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    })
    .await
    .expect("port-forward did not finish");
    assert_eq!(replies, 4);
    assert!(pong, "ping was not echoed");
    assert!(echoed == big, "echoed {} bytes", echoed.len());
    let msg = String::from_utf8(refused_msg).unwrap();
    assert!(
        msg.starts_with(&format!(
            "error forwarding port {refused} to pod x, uid : dial tcp 127.0.0.1:{refused}"
        )),
        "{msg}"
    );
}
