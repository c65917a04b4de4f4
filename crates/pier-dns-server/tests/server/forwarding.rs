//! Forwarding to upstreams and the cache, against stub upstreams on 127.0.0.1.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name as HName, RData, Record, RecordType as HType};
use pier_dns_server::DnsConfig;

use crate::support::*;

fn a_record(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        HName::from_ascii(name).expect("a name"),
        ttl,
        RData::A(A::from(std::net::Ipv4Addr::from(ip))),
    )
}

fn soa_record(zone: &str, ttl: u32, minimum: u32) -> Record {
    let n = |s: &str| HName::from_ascii(s).expect("a name");
    let soa = SOA::new(n(&format!("ns.{zone}")), n(&format!("admin.{zone}")), 1, 2, 3, 4, minimum);
    Record::from_rdata(n(zone), ttl, RData::SOA(soa))
}

/// A stub that answers every A query with 192.0.2.1 (TTL 300) for the name asked.
async fn answering_stub() -> Stub {
    Stub::start(|q, _| {
        let mut reply = reply_to(q, ResponseCode::NoError);
        let name = q.queries[0].name.to_string();
        reply.add_answer(a_record(&name, 300, [192, 0, 2, 1]));
        vec![reply]
    })
    .await
}

fn forwarding(upstreams: &[&Stub]) -> DnsConfig {
    DnsConfig { upstreams: upstreams.iter().map(|s| s.addr).collect(), ..config() }
}

fn cluster() -> pier_dns::Index {
    index(&[service("default", "web", "10.96.0.10", ("http", 80))], &[], &["default"], &[])
}

#[tokio::test]
async fn forwarded_answers_carry_the_clients_id_and_question() {
    let stub = answering_stub().await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    let udp = Udp::new().await;
    let msg = udp.exchange(dns.addr, &query(0xabcd, "WWW.Example.COM.", HType::A, Some((1232, false)))).await;
    assert_eq!(msg.metadata.id, 0xabcd);
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.metadata.recursion_available && !msg.metadata.authoritative);
    assert_eq!(msg.queries[0].name.to_string(), "WWW.Example.COM.");
    assert_eq!(answers(&msg), ["WWW.Example.COM. 300 IN A 192.0.2.1"]);
    assert!(msg.edns.is_some());

    // What the upstream saw: our own query, RD set, EDNS0 with 1232 octets.
    let seen = stub.seen.lock().expect("lock")[0].clone();
    assert!(seen.metadata.recursion_desired);
    assert_eq!(seen.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    assert_eq!(seen.queries[0].name.to_string().to_lowercase(), "www.example.com.");
}

#[tokio::test]
async fn a_second_query_is_answered_from_the_cache() {
    let stub = answering_stub().await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    let first = Udp::new().await.exchange(dns.addr, &query(1, "cached.example.", HType::A, None)).await;
    let second = Udp::new().await.exchange(dns.addr, &query(2, "Cached.Example.", HType::A, None)).await;
    // And over TCP, from the same entry.
    let third = parse(&tcp_exchange(dns.addr, &[query(3, "cached.example.", HType::A, None)]).await[0]);
    assert_eq!(stub.queries(), 1, "one upstream query for three client queries");
    assert_eq!(
        [first.metadata.id, second.metadata.id, third.metadata.id],
        [1, 2, 3],
        "each client gets its own id"
    );
    assert_eq!(answers(&second).len(), 1);
    assert!(second.answers[0].ttl <= first.answers[0].ttl);
    assert_eq!(second.queries[0].name.to_string(), "Cached.Example.");
    // Another type is another entry.
    Udp::new().await.exchange(dns.addr, &query(4, "cached.example.", HType::AAAA, None)).await;
    assert_eq!(stub.queries(), 2);

    let (_, text) = http_get(dns.metrics.expect("metrics"), "/metrics").await;
    let server = format!("dns://{}", dns.addr);
    let hits = metric(&text, &format!("coredns_cache_hits_total{{server=\"{server}\",type=\"success\""));
    assert_eq!(hits, Some(2.0), "{text}");
    let misses = metric(&text, &format!("coredns_cache_misses_total{{server=\"{server}\""));
    assert_eq!(misses, Some(2.0), "{text}");
    let forwarded = metric(&text, &format!("coredns_forward_requests_total{{to=\"{}\"}}", stub.addr));
    assert_eq!(forwarded, Some(2.0), "{text}");
    let noerror =
        metric(&text, &format!("coredns_forward_responses_total{{rcode=\"NOERROR\",to=\"{}\"}}", stub.addr));
    assert_eq!(noerror, Some(2.0), "{text}");
}

#[tokio::test]
async fn negative_answers_are_cached_for_the_soa_minimum() {
    let stub = Stub::start(|q, _| {
        let mut reply = reply_to(q, ResponseCode::NXDomain);
        if q.queries[0].name.to_string().starts_with("with-soa") {
            reply.add_authority(soa_record("example.", 3600, 60));
        }
        vec![reply]
    })
    .await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    for id in 0..3 {
        let msg = Udp::new().await.exchange(dns.addr, &query(id, "with-soa.example.", HType::A, None)).await;
        assert_eq!(rcode(&msg), ResponseCode::NXDomain);
        assert_eq!(msg.authorities.len(), 1);
        assert!(msg.authorities[0].ttl <= 3600);
    }
    assert_eq!(stub.queries(), 1, "NXDOMAIN with an SOA is cached");
    for id in 0..2 {
        let msg = Udp::new().await.exchange(dns.addr, &query(id, "no-soa.example.", HType::A, None)).await;
        assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    }
    assert_eq!(stub.queries(), 3, "NXDOMAIN without an SOA is not (RFC 2308 §5)");
}

#[tokio::test]
async fn truncated_udp_replies_are_asked_again_over_tcp() {
    let stub = Stub::start(|q, tcp| {
        let mut reply = reply_to(q, ResponseCode::NoError);
        if tcp {
            for i in 0..50u8 {
                reply.add_answer(a_record("many.example.", 60, [198, 51, 100, i]));
            }
        } else {
            reply.metadata.truncation = true;
        }
        vec![reply]
    })
    .await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    let msg = parse(&tcp_exchange(dns.addr, &[query(8, "many.example.", HType::A, None)]).await[0]);
    assert_eq!(msg.answers.len(), 50);
    assert_eq!(
        (
            stub.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
            stub.tcp_queries.load(std::sync::atomic::Ordering::SeqCst)
        ),
        (1, 1)
    );
    // A UDP client gets the cached answer cut to its 512 octets, with TC.
    let msg = Udp::new().await.exchange(dns.addr, &query(9, "many.example.", HType::A, None)).await;
    assert!(msg.metadata.truncation);
    assert_eq!(stub.queries(), 2);
}

#[tokio::test]
async fn replies_with_another_id_are_ignored() {
    let stub = Stub::start(|q, _| {
        let mut wrong = reply_to(q, ResponseCode::NoError);
        wrong.metadata.id = q.metadata.id.wrapping_add(1);
        wrong.add_answer(a_record("spoof.example.", 60, [203, 0, 113, 66]));
        let mut right = reply_to(q, ResponseCode::NoError);
        right.add_answer(a_record("spoof.example.", 60, [192, 0, 2, 7]));
        vec![wrong, right]
    })
    .await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    let msg = ask(dns.addr, "spoof.example.", HType::A).await;
    assert_eq!(answers(&msg), ["spoof.example. 60 IN A 192.0.2.7"]);
}

#[tokio::test]
async fn a_silent_upstream_times_out_to_servfail() {
    let silent = Stub::start(|_, _| Vec::new()).await;
    let timeout = Duration::from_millis(300);
    let dns = serve(cluster(), DnsConfig { upstream_timeout: timeout, ..forwarding(&[&silent]) });
    let started = Instant::now();
    let msg = ask(dns.addr, "slow.example.", HType::A).await;
    let took = started.elapsed();
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    assert!(took >= timeout && took < timeout * 4, "SERVFAIL after {took:?}");
    println!("SERVFAIL after {took:?} with a {timeout:?} upstream timeout");
    let (_, text) = http_get(dns.metrics.expect("metrics"), "/metrics").await;
    let errors = format!("pier_dns_forward_upstream_errors_total{{to=\"{}\",kind=\"timeout\"}}", silent.addr);
    assert_eq!(metric(&text, &errors), Some(1.0), "{text}");
}

#[tokio::test]
async fn the_next_upstream_answers_when_one_is_dead_or_silent() {
    let stub = answering_stub().await;
    // A closed port: the ICMP port unreachable fails the attempt at once.
    let dead = dead_addr().await;
    let dns = serve(
        cluster(),
        DnsConfig { upstreams: vec![dead, stub.addr], upstream_timeout: Duration::from_secs(3), ..config() },
    );
    let started = Instant::now();
    let msg = ask(dns.addr, "first.example.", HType::A).await;
    assert_eq!(answers(&msg), ["first.example. 300 IN A 192.0.2.1"]);
    assert!(started.elapsed() < Duration::from_secs(3), "did not wait for the dead upstream's timeout");

    // A silent one costs one timeout, then the next answers.
    let silent = Stub::start(|_, _| Vec::new()).await;
    let timeout = Duration::from_millis(200);
    let dns = serve(cluster(), DnsConfig { upstream_timeout: timeout, ..forwarding(&[&silent, &stub]) });
    let started = Instant::now();
    let msg = ask(dns.addr, "second.example.", HType::A).await;
    assert_eq!(answers(&msg), ["second.example. 300 IN A 192.0.2.1"]);
    assert!(started.elapsed() >= timeout);
    // The upstream that answered is asked first from now on.
    let started = Instant::now();
    ask(dns.addr, "third.example.", HType::A).await;
    assert!(started.elapsed() < timeout, "went straight to the upstream that answered");
    assert_eq!(silent.queries(), 1);
}

#[tokio::test]
async fn without_upstreams_forwarded_names_get_servfail() {
    let dns = serve(cluster(), config());
    let msg = ask(dns.addr, "example.com.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
}

#[tokio::test]
async fn names_in_the_zone_are_never_forwarded() {
    let stub = answering_stub().await;
    let dns = serve(cluster(), forwarding(&[&stub]));
    assert_eq!(
        rcode(&ask(dns.addr, "nope.default.svc.cluster.local.", HType::A).await),
        ResponseCode::NXDomain
    );
    assert_eq!(rcode(&ask(dns.addr, "x.nowhere.svc.cluster.local.", HType::A).await), ResponseCode::NXDomain);
    assert_eq!(ask(dns.addr, "web.default.svc.cluster.local.", HType::A).await.answers.len(), 1);
    assert_eq!(stub.queries(), 0);
    // Reverse names of addresses the cluster does not know are forwarded (CoreDNS).
    ask(dns.addr, "1.2.0.192.in-addr.arpa.", HType::PTR).await;
    assert_eq!(stub.queries(), 1);
}

#[tokio::test]
async fn autopath_continues_upstream_for_a_known_pod() {
    let stub = answering_stub().await;
    // The client (127.0.0.1) is a pod in `default`.
    let cluster = index(
        &[service("default", "web", "10.96.0.10", ("http", 80))],
        &[],
        &["default"],
        &[pod("default", "client", "127.0.0.1")],
    );
    let dns = serve(cluster, forwarding(&[&stub]));
    let msg = ask(dns.addr, "example.org.default.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert_eq!(
        answers(&msg),
        [
            "example.org.default.svc.cluster.local. 300 IN CNAME example.org.",
            "example.org. 300 IN A 192.0.2.1",
        ]
    );
    let asked: Vec<String> =
        stub.seen.lock().expect("lock").iter().map(|m| m.queries[0].name.to_string()).collect();
    assert_eq!(asked, ["example.org."]);
    // In-cluster names still answer directly for the same client.
    let msg = ask(dns.addr, "web.default.svc.cluster.local.", HType::A).await;
    assert_eq!(answers(&msg), ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]);

    // Upstream NXDOMAIN: the original NXDOMAIN.
    let nx = Stub::start(|q, _| vec![reply_to(q, ResponseCode::NXDomain)]).await;
    let cluster = index(&[], &[], &["default"], &[pod("default", "client", "127.0.0.1")]);
    let dns = serve(cluster, forwarding(&[&nx]));
    let msg = ask(dns.addr, "gone.example.default.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
}

#[tokio::test]
async fn an_external_name_target_outside_the_zone_is_resolved_upstream() {
    let stub = answering_stub().await;
    let cluster = index(&[external("default", "db", "db.example.net")], &[], &["default"], &[]);
    let dns = serve(cluster, forwarding(&[&stub]));
    let msg = ask(dns.addr, "db.default.svc.cluster.local.", HType::A).await;
    assert_eq!(
        answers(&msg),
        ["db.default.svc.cluster.local. 5 IN CNAME db.example.net.", "db.example.net. 300 IN A 192.0.2.1"]
    );
    // A CNAME question gets the CNAME alone.
    let msg = ask(dns.addr, "db.default.svc.cluster.local.", HType::CNAME).await;
    assert_eq!(answers(&msg), ["db.default.svc.cluster.local. 5 IN CNAME db.example.net."]);
    assert_eq!(stub.queries(), 1);
}

#[tokio::test]
async fn forwarded_queries_beyond_the_limit_get_servfail() {
    let silent = Stub::start(|_, _| Vec::new()).await;
    let dns = serve(
        cluster(),
        DnsConfig {
            max_concurrent_forwards: 1,
            upstream_timeout: Duration::from_secs(2),
            ..forwarding(&[&silent])
        },
    );
    let waiting = Udp::new().await;
    waiting.send(dns.addr, &query(1, "a.example.", HType::A, None)).await;
    // Wait until the first one holds the only slot (the stub has it).
    pier_testkit::in_process::eventually("the stub to see the first query", || async {
        if silent.queries() == 1 {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    let started = Instant::now();
    let msg = ask(dns.addr, "b.example.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(1), "rejected at once");
    let _: Message = parse(&waiting.recv().await);
}
