//! Serving the cluster zone over UDP and TCP from an index given by the test.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType as HType;
use pier_dns::{Config, Index};
use pier_dns_server::DnsConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

fn cluster() -> Index {
    index(
        &[service("default", "web", "10.96.0.10", ("http", 80)), headless("default", "db", ("pg", 5432))],
        &[slice("default", "db", &[("10.244.1.5", Some("db-0")), ("10.244.2.6", None)], ("pg", 5432))],
        &["default"],
        &[],
    )
}

#[tokio::test]
async fn cluster_names_are_answered_over_udp() {
    let dns = serve(cluster(), config());
    let msg = ask(dns.addr, "Web.default.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(answers(&msg), ["Web.default.svc.cluster.local. 5 IN A 10.96.0.10"]);

    let msg = ask(dns.addr, "_pg._tcp.db.default.svc.cluster.local.", HType::SRV).await;
    let mut srv = answers(&msg);
    srv.sort();
    assert_eq!(
        srv,
        [
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-2-6.db.default.svc.cluster.local.",
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
        ]
    );
    assert_eq!(msg.additionals.len(), 2, "A glue for both targets");

    let msg = ask(dns.addr, "10.0.96.10.in-addr.arpa.", HType::PTR).await;
    assert_eq!(answers(&msg), ["10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]);

    let msg = ask(dns.addr, "nope.default.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    assert_eq!(msg.authorities.len(), 1, "the zone's SOA");
}

#[tokio::test]
async fn several_queries_on_one_tcp_connection_are_answered_in_order() {
    let dns = serve(cluster(), config());
    let packets = vec![
        query(1, "web.default.svc.cluster.local.", HType::A, None),
        query(2, "db-0.db.default.svc.cluster.local.", HType::A, Some((1232, false))),
        query(3, "nope.default.svc.cluster.local.", HType::A, None),
    ];
    let replies: Vec<_> = tcp_exchange(dns.addr, &packets).await.iter().map(|r| parse(r)).collect();
    assert_eq!(replies.iter().map(|m| m.metadata.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(answers(&replies[0]), ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]);
    assert_eq!(answers(&replies[1]), ["db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"]);
    assert!(replies[1].edns.is_some());
    assert_eq!(rcode(&replies[2]), ResponseCode::NXDomain);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let endpoints: Vec<String> = (0..100).map(|i| format!("10.244.0.{i}")).collect();
    let endpoints: Vec<(&str, Option<&str>)> = endpoints.iter().map(|e| (e.as_str(), None)).collect();
    let dns = serve(
        index(
            &[headless("default", "big", ("p", 1))],
            &[slice("default", "big", &endpoints, ("p", 1))],
            &["default"],
            &[],
        ),
        config(),
    );
    let name = "big.default.svc.cluster.local.";
    let msg = ask(dns.addr, name, HType::A).await;
    assert!(msg.metadata.truncation);
    assert!(msg.answers.is_empty());
    // EDNS 4096 is capped at our 1232: still too large.
    let udp = Udp::new().await;
    let msg = udp.exchange(dns.addr, &query(9, name, HType::A, Some((4096, false)))).await;
    assert!(msg.metadata.truncation);
    let replies = tcp_exchange(dns.addr, &[query(9, name, HType::A, None)]).await;
    let msg = parse(&replies[0]);
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 100);
}

#[tokio::test]
async fn an_unsynced_index_answers_servfail_until_a_synced_one_is_published() {
    let dns = serve(Index::unsynced(Config::default()).expect("a zone"), config());
    let msg = ask(dns.addr, "web.default.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    let msg = ask(dns.addr, "1.0.96.10.in-addr.arpa.", HType::PTR).await;
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    let (status, _) = http_get(dns.metrics.expect("metrics"), "/ready").await;
    assert!(status.contains("503"), "{status}");

    dns.index.store(std::sync::Arc::new(cluster()));
    let msg = ask(dns.addr, "web.default.svc.cluster.local.", HType::A).await;
    assert_eq!(answers(&msg), ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]);
    let (status, _) = http_get(dns.metrics.expect("metrics"), "/ready").await;
    assert!(status.contains("200"), "{status}");
}

/// A header with QDCOUNT 2 and nothing else: readable, malformed.
fn two_questions(id: u16) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[..2].copy_from_slice(&id.to_be_bytes());
    p[2] = 0x01; // RD
    p[5] = 2;
    p
}

#[tokio::test]
async fn garbage_gets_formerr_over_udp_or_is_dropped() {
    let dns = serve(cluster(), config());
    let udp = Udp::new().await;
    let msg = udp.exchange(dns.addr, &two_questions(0x5151)).await;
    assert_eq!((msg.metadata.id, rcode(&msg)), (0x5151, ResponseCode::FormErr));

    // Too short for a header, and a response (QR set): dropped. The query sent
    // after them on the same socket (served by the same thread, in order) gets the
    // first reply.
    udp.send(dns.addr, &[1, 2, 3]).await;
    let mut response = query(0x6161, "web.default.svc.cluster.local.", HType::A, None);
    response[2] |= 0x80;
    udp.send(dns.addr, &response).await;
    let msg = udp.exchange(dns.addr, &query(0x7171, "web.default.svc.cluster.local.", HType::A, None)).await;
    assert_eq!(msg.metadata.id, 0x7171);

    // Random bytes and mangled queries never stop the server.
    let seed = query(1, "web.default.svc.cluster.local.", HType::A, Some((1232, false)));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2_000 {
        let mut p = seed.clone();
        for _ in 0..=next() % 4 {
            let at = (next() as usize) % p.len();
            p[at] = next() as u8;
        }
        p.truncate(p.len() - (next() as usize) % 12);
        // Keep QR clear so most of them are answered, and never wait for a reply.
        if i % 2 == 0 {
            p[2] &= 0x7f;
        }
        udp.send(dns.addr, &p).await;
    }
    let fresh = Udp::new().await;
    let msg =
        fresh.exchange(dns.addr, &query(0x8181, "web.default.svc.cluster.local.", HType::A, None)).await;
    assert_eq!((msg.metadata.id, msg.answers.len()), (0x8181, 1));
}

#[tokio::test]
async fn a_burst_with_garbage_among_the_queries_is_answered_query_by_query() {
    // One worker: queries sent back to back pile up behind it and are read in
    // batches, so every answer must still go to its own query.
    let dns = serve(cluster(), DnsConfig { udp_workers: 1, ..config() });
    let udp = Udp::new().await;
    let mut expected = std::collections::BTreeMap::new();
    // Few enough that all the replies fit in the client socket's receive buffer.
    for id in 0..120u16 {
        match id % 10 {
            3 => {
                udp.send(dns.addr, &two_questions(id)).await;
                expected.insert(id, (ResponseCode::FormErr, 0));
            }
            // Too short for a header: dropped, and nothing else with it.
            7 => udp.send(dns.addr, &[0xde, 0xad]).await,
            k => {
                let (name, found) = if k % 2 == 0 {
                    ("web.default.svc.cluster.local.", 1)
                } else {
                    ("nope.default.svc.cluster.local.", 0)
                };
                udp.send(dns.addr, &query(id, name, HType::A, None)).await;
                let rcode = if found == 1 { ResponseCode::NoError } else { ResponseCode::NXDomain };
                expected.insert(id, (rcode, found));
            }
        }
    }
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..expected.len() {
        let msg = parse(&udp.recv().await);
        got.insert(msg.metadata.id, (rcode(&msg), msg.answers.len()));
    }
    assert_eq!(got, expected);
}

#[tokio::test]
async fn garbage_gets_formerr_over_tcp_and_the_connection_goes_on() {
    let dns = serve(cluster(), config());
    let packets = vec![
        two_questions(0x4242),
        vec![9; 5],
        query(0x4343, "web.default.svc.cluster.local.", HType::A, None),
    ];
    // The 5-octet message is dropped: two replies.
    let mut stream = TcpStream::connect(dns.addr).await.expect("connect");
    for p in &packets {
        let mut framed = (p.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(p);
        stream.write_all(&framed).await.expect("write");
    }
    let first = parse(&tcp_read(&mut stream).await.expect("FORMERR"));
    assert_eq!((first.metadata.id, rcode(&first)), (0x4242, ResponseCode::FormErr));
    let second = parse(&tcp_read(&mut stream).await.expect("an answer"));
    assert_eq!((second.metadata.id, second.answers.len()), (0x4343, 1));
}

#[tokio::test]
async fn idle_tcp_connections_are_closed_and_their_number_is_bounded() {
    let dns = serve(
        cluster(),
        DnsConfig { tcp_idle_timeout: Duration::from_millis(300), tcp_connections: 1, ..config() },
    );
    let started = tokio::time::Instant::now();
    let mut first = TcpStream::connect(dns.addr).await.expect("connect");
    // The only slot is taken: a second connection is closed at once.
    let mut second = TcpStream::connect(dns.addr).await.expect("connect");
    assert_eq!(tcp_read(&mut second).await, None);
    // The first, idle, is closed after its timeout (tcp_read waits up to 5 s).
    assert_eq!(tcp_read(&mut first).await, None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Its slot is free again.
    let replies = tcp_exchange(dns.addr, &[query(5, "web.default.svc.cluster.local.", HType::A, None)]).await;
    assert_eq!(parse(&replies[0]).answers.len(), 1);
}

#[tokio::test]
async fn metrics_use_coredns_names() {
    let dns = serve(cluster(), config());
    ask(dns.addr, "web.default.svc.cluster.local.", HType::A).await;
    ask(dns.addr, "nope.default.svc.cluster.local.", HType::AAAA).await;
    tcp_exchange(dns.addr, &[query(1, "web.default.svc.cluster.local.", HType::SRV, None)]).await;
    let (status, text) = http_get(dns.metrics.expect("metrics"), "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let server = format!("dns://{}", dns.addr);
    let get = |prefix: String| metric(&text, &prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    let requests = |proto: &str, t: &str| {
        get(format!(
            "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",view=\"\",proto=\"{proto}\",family=\"1\",type=\"{t}\"}}"
        ))
    };
    assert_eq!(requests("udp", "A"), 1.0);
    assert_eq!(requests("udp", "AAAA"), 1.0);
    assert_eq!(requests("tcp", "SRV"), 1.0);
    let rcode = |r: &str| {
        get(format!("coredns_dns_responses_total{{server=\"{server}\",zone=\".\",view=\"\",rcode=\"{r}\""))
    };
    assert_eq!(rcode("NOERROR"), 2.0);
    assert_eq!(rcode("NXDOMAIN"), 1.0);
    let count = get(format!(
        "coredns_dns_request_duration_seconds_count{{server=\"{server}\",zone=\".\",view=\"\",type=\"A\"}}"
    ));
    assert_eq!(count, 1.0);
    assert_eq!(get("pier_dns_index_synced".into()), 1.0);
    assert_eq!(get("pier_dns_index_services".into()), 2.0);
    let (status, _) = http_get(dns.metrics.expect("metrics"), "/health").await;
    assert!(status.contains("200"), "{status}");
}

#[tokio::test]
async fn two_workers_share_one_port_and_both_answer() {
    let dns = serve(cluster(), DnsConfig { udp_workers: 2, ..config() });
    // Clients on many ports land on both sockets; every one is answered.
    for i in 0..32u16 {
        let udp = Udp::new().await;
        let msg = udp.exchange(dns.addr, &query(i, "web.default.svc.cluster.local.", HType::A, None)).await;
        assert_eq!((msg.metadata.id, msg.answers.len()), (i, 1));
    }
}

#[tokio::test]
async fn ipv6_listeners_answer_too() {
    let dns = serve(cluster(), DnsConfig { listen: vec!["[::1]:0".parse().expect("addr")], ..config() });
    let socket = tokio::net::UdpSocket::bind("[::1]:0").await.expect("an ipv6 socket");
    socket
        .send_to(&query(3, "web.default.svc.cluster.local.", HType::A, None), dns.addr)
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(DEADLINE, socket.recv(&mut buf)).await.expect("in time").expect("recv");
    assert_eq!(parse(&buf[..n]).answers.len(), 1);
}

#[tokio::test]
async fn run_reports_a_bad_zone_and_an_address_it_cannot_bind() {
    // Nothing listens there; `run` fails before it would watch.
    let client = || {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a url"));
        kube::Client::try_from(config).expect("a client")
    };
    let bad_zone = DnsConfig { index: Config { zone: "a..b".into(), ..Config::default() }, ..config() };
    let err = tokio::time::timeout(DEADLINE, pier_dns_server::run(client(), bad_zone))
        .await
        .expect("fails at once")
        .expect_err("an invalid zone");
    assert!(format!("{err:#}").starts_with("the cluster dns zone: invalid dns zone"), "{err:#}");

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let addr = taken.local_addr().expect("addr");
    let in_use = DnsConfig { listen: vec![addr], ..config() };
    let err = tokio::time::timeout(DEADLINE, pier_dns_server::run(client(), in_use))
        .await
        .expect("fails at once")
        .expect_err("the port is taken");
    assert!(format!("{err:#}").starts_with(&format!("bind dns udp socket on {addr}")), "{err:#}");
}
