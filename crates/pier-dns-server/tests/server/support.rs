//! Test helpers: a server on 127.0.0.1 over a given index, DNS clients over UDP
//! and TCP (queries built and replies read with hickory-proto), a stub upstream,
//! Kubernetes objects, and a metrics scrape.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery, ResponseCode};
use hickory_proto::rr::{Name as HName, RecordType as HType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pier_dns::{Config, Index};
use pier_dns_server::{DnsConfig, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How long any single exchange may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A running server; stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    pub index: Arc<ArcSwap<Index>>,
    pub metrics: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The config every test server starts from: 127.0.0.1, a free port, metrics on.
pub fn config() -> DnsConfig {
    DnsConfig {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        metrics: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        upstream_timeout: Duration::from_millis(500),
        ..DnsConfig::default()
    }
}

/// Serves `index` with `config`.
pub fn serve(index: Index, config: DnsConfig) -> Dns {
    let index = Arc::new(ArcSwap::from_pointee(index));
    let (server, addrs) = Server::bind(config, Arc::clone(&index)).expect("the server binds");
    let metrics = server.metrics_addr();
    let task = tokio::spawn(async move {
        server.serve().await.expect("the server serves");
    });
    Dns { addr: addrs[0], index, metrics, task }
}

/// An index of these objects with the default zone.
pub fn index(services: &[Service], slices: &[EndpointSlice], namespaces: &[&str], pods: &[Pod]) -> Index {
    let namespaces: Vec<Namespace> = namespaces.iter().map(|n| namespace(n)).collect();
    Index::builder(Config::default())
        .expect("the default zone")
        .services(services)
        .endpoint_slices(slices)
        .namespaces(&namespaces)
        .pods(pods)
        .build()
}

// ---- Objects ----

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

pub fn namespace(name: &str) -> Namespace {
    from_json(json!({"metadata": {"name": name}}))
}

/// A ClusterIP Service with one named TCP port.
pub fn service(ns: &str, name: &str, ip: &str, port: (&str, i32)) -> Service {
    from_json(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}]}}))
}

/// A headless Service with one named TCP port.
pub fn headless(ns: &str, name: &str, port: (&str, i32)) -> Service {
    service(ns, name, "None", port)
}

/// An ExternalName Service.
pub fn external(ns: &str, name: &str, target: &str) -> Service {
    from_json(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"type": "ExternalName", "externalName": target}}))
}

/// An IPv4 EndpointSlice of `service` with ready endpoints (address, hostname).
pub fn slice(
    ns: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>)],
    port: (&str, i32),
) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, host)| json!({"addresses": [ip], "hostname": host, "conditions": {"ready": true}}))
        .collect();
    from_json(json!({"metadata": {"namespace": ns, "name": format!("{service}-abc"),
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}]}))
}

/// A running, ready Pod with one IP.
pub fn pod(ns: &str, name: &str, ip: &str) -> Pod {
    from_json(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}]}}))
}

// ---- Clients ----

/// A query packet: RD set, EDNS with (payload, DO) if given.
pub fn query(id: u16, name: &str, qtype: HType, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(HQuery::query(HName::from_ascii(name).expect("a name"), qtype));
    if let Some((payload, dnssec_ok)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(dnssec_ok);
        msg.set_edns(e);
    }
    msg.to_vec().expect("encodable")
}

pub fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("a readable response")
}

/// A UDP client on its own socket.
pub struct Udp(UdpSocket);

impl Udp {
    pub async fn new() -> Udp {
        Udp(UdpSocket::bind("127.0.0.1:0").await.expect("a client socket"))
    }

    pub async fn send(&self, to: SocketAddr, packet: &[u8]) {
        self.0.send_to(packet, to).await.expect("send");
    }

    /// The next datagram, within [`DEADLINE`].
    pub async fn recv(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65_535];
        let n = tokio::time::timeout(DEADLINE, self.0.recv(&mut buf))
            .await
            .expect("a reply within the deadline")
            .expect("recv");
        buf.truncate(n);
        buf
    }

    pub async fn exchange(&self, to: SocketAddr, packet: &[u8]) -> Message {
        self.send(to, packet).await;
        parse(&self.recv().await)
    }
}

/// One UDP query from a fresh socket.
pub async fn ask(to: SocketAddr, name: &str, qtype: HType) -> Message {
    let msg = Udp::new().await.exchange(to, &query(0x1234, name, qtype, None)).await;
    assert_eq!(msg.metadata.id, 0x1234);
    msg
}

/// Sends every packet on one TCP connection, then reads that many replies.
pub async fn tcp_exchange(to: SocketAddr, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(to).await.expect("connect");
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    stream.write_all(&out).await.expect("write");
    let mut replies = Vec::new();
    for _ in packets {
        replies.push(tcp_read(&mut stream).await.expect("a reply"));
    }
    replies
}

/// Reads one framed message, `None` at EOF; within [`DEADLINE`].
pub async fn tcp_read(stream: &mut TcpStream) -> Option<Vec<u8>> {
    tokio::time::timeout(DEADLINE, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut msg).await.ok()?;
        Some(msg)
    })
    .await
    .expect("a reply or EOF within the deadline")
}

/// The answer section as zone-file lines.
pub fn answers(msg: &Message) -> Vec<String> {
    msg.answers.iter().map(|r| r.to_string()).collect()
}

pub fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

/// `GET path` on the metrics listener: (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut text = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut text)).await.expect("in time").expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// The value of a metric line that starts with `prefix` (its labels included).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

// ---- A stub upstream ----

/// What the stub replies to one query (`tcp` says how it came): the messages to
/// send back, in order (none: stay silent).
pub type Handler = Arc<dyn Fn(&Message, bool) -> Vec<Message> + Send + Sync>;

/// An upstream on 127.0.0.1, UDP and TCP on one port, answering with a handler
/// and counting what it was asked. Stops when dropped.
pub struct Stub {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Message>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Stub {
    pub async fn start(handler: impl Fn(&Message, bool) -> Vec<Message> + Send + Sync + 'static) -> Stub {
        let handler: Handler = Arc::new(handler);
        let (listener, udp) = loop {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("stub tcp");
            let addr = listener.local_addr().expect("addr");
            if let Ok(udp) = UdpSocket::bind(addr).await {
                break (listener, udp);
            }
        };
        let addr = listener.local_addr().expect("addr");
        let (udp_queries, tcp_queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let (handler, count, seen) = (Arc::clone(&handler), Arc::clone(&udp_queries), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else { continue };
                    let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                    count.fetch_add(1, Ordering::SeqCst);
                    seen.lock().expect("lock").push(q.clone());
                    for reply in handler(&q, false) {
                        let _ = udp.send_to(&reply.to_vec().expect("encodable"), peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (handler, count, seen) = (Arc::clone(&handler), Arc::clone(&tcp_queries), Arc::clone(&seen));
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else { continue };
                    let (handler, count, seen) =
                        (Arc::clone(&handler), Arc::clone(&count), Arc::clone(&seen));
                    tokio::spawn(async move {
                        while let Some(bytes) = tcp_read(&mut stream).await {
                            let Ok(q) = Message::from_vec(&bytes) else { return };
                            count.fetch_add(1, Ordering::SeqCst);
                            seen.lock().expect("lock").push(q.clone());
                            for reply in handler(&q, true) {
                                let bytes = reply.to_vec().expect("encodable");
                                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&bytes);
                                if stream.write_all(&framed).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            })
        };
        Stub { addr, udp_queries, tcp_queries, seen, tasks: vec![udp_task, tcp_task] }
    }

    pub fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// A reply to `q`: same id and question, RA set, `rcode`.
pub fn reply_to(q: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.add_queries(q.queries.clone());
    m
}

/// An address nothing listens on (bound, then released): UDP to it gets an ICMP
/// port unreachable.
pub async fn dead_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.local_addr().expect("addr")
}
