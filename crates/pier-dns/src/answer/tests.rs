//! Answers, checked by parsing the encoded response with hickory-proto. Tests
//! named `spec_*` are the worked examples of the Kubernetes DNS specification
//! (schema 1.1.0), by section.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, MessageType, OpCode as HOpCode, Query as HQuery, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name as HName, RData, Record, RecordType as T};
use k8s_openapi::api::core::v1::PodDNSConfig;

use super::*;
use crate::index::{Config, PodMode};
use crate::testutil::*;
use crate::wire::{encode_query, MAX_TCP_MESSAGE};

const KUBERNETES: &str = "kubernetes.default.svc.cluster.local.";

fn kubernetes() -> crate::index::Index {
    build(
        &[service("default", "kubernetes", &["10.3.0.1"], &[(Some("https"), 443, "TCP")])],
        &[],
        &["default"],
        &[],
    )
}

/// The specification's headless Service: three ready endpoints, two with
/// hostnames, one named port.
fn headless_index() -> crate::index::Index {
    build(
        &[headless("default", "headless", &[(Some("https"), 443, "TCP")])],
        &[slice(
            "default",
            "headless",
            "headless-abc",
            vec![
                ep("10.3.0.100", Some("my-pet"), Some(true)),
                ep("10.3.0.101", Some("my-pet-2"), None),
                ep("10.3.0.102", None, Some(true)),
                ep("10.3.0.103", Some("not-ready"), Some(false)),
            ],
            &[(Some("https"), 443, "TCP")],
        )],
        &["default"],
        &[],
    )
}

fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

fn soa_lines(msg: &Message) -> Vec<String> {
    lines(&msg.authorities)
}

const SOA: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5";

/// Asserts an NXDOMAIN with the zone's SOA.
fn assert_nxdomain(index: &crate::index::Index, name: &str, qtype: T) {
    let (kind, msg) = ask(index, name, qtype);
    assert_eq!(kind, "NxDomain", "{name} {qtype}");
    let msg = msg.unwrap();
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    assert!(msg.metadata.authoritative);
    assert!(msg.answers.is_empty());
    assert_eq!(soa_lines(&msg), [SOA], "{name}");
}

/// Asserts NODATA: NOERROR, no answers, the zone's SOA.
fn assert_nodata(index: &crate::index::Index, name: &str, qtype: T) {
    let (kind, msg) = ask(index, name, qtype);
    assert_eq!(kind, "NoData", "{name} {qtype}");
    let msg = msg.unwrap();
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert!(msg.answers.is_empty());
    assert_eq!(soa_lines(&msg).len(), 1, "{name}");
}

/// The answer lines of an authoritative answer.
fn records(index: &crate::index::Index, name: &str, qtype: T) -> Vec<String> {
    let (kind, msg) = ask(index, name, qtype);
    assert_eq!(kind, "Authoritative", "{name} {qtype}");
    let msg = msg.unwrap();
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert!(msg.authorities.is_empty());
    answers(&msg)
}

fn additional(index: &crate::index::Index, name: &str, qtype: T) -> Vec<String> {
    lines(&ask(index, name, qtype).1.unwrap().additionals)
}

// ---- Specification §2.2 ----

#[test]
fn spec_2_2_schema_version_txt() {
    let index = kubernetes();
    assert_eq!(
        records(&index, "dns-version.cluster.local.", T::TXT),
        ["dns-version.cluster.local. 28800 IN TXT 1.1.0"]
    );
    assert_nodata(&index, "dns-version.cluster.local.", T::A);
}

// ---- Specification §2.3: ClusterIP ----

#[test]
fn spec_2_3_1_a_record() {
    assert_eq!(
        records(&kubernetes(), KUBERNETES, T::A),
        ["kubernetes.default.svc.cluster.local. 5 IN A 10.3.0.1"]
    );
}

#[test]
fn spec_2_3_1_aaaa_record() {
    let index = build(&[service("default", "kubernetes", &["2001:db8::1"], &[])], &[], &["default"], &[]);
    assert_eq!(
        records(&index, KUBERNETES, T::AAAA),
        ["kubernetes.default.svc.cluster.local. 5 IN AAAA 2001:db8::1"]
    );
    // IPv6 single-stack: no A record, the name exists.
    assert_nodata(&index, KUBERNETES, T::A);
}

#[test]
fn dual_stack_service_has_a_and_aaaa() {
    let index = build(&[service("default", "web", &["10.96.0.10", "fd00::10"], &[])], &[], &["default"], &[]);
    assert_eq!(
        records(&index, "web.default.svc.cluster.local.", T::A),
        ["web.default.svc.cluster.local. 5 IN A 10.96.0.10"]
    );
    assert_eq!(
        records(&index, "web.default.svc.cluster.local.", T::AAAA),
        ["web.default.svc.cluster.local. 5 IN AAAA fd00::10"]
    );
}

#[test]
fn v4_only_service_aaaa_is_nodata() {
    assert_nodata(&kubernetes(), KUBERNETES, T::AAAA);
}

#[test]
fn spec_2_3_2_srv_record_with_glue() {
    let index = kubernetes();
    let name = "_https._tcp.kubernetes.default.svc.cluster.local.";
    assert_eq!(
        records(&index, name, T::SRV),
        ["_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(additional(&index, name, T::SRV), ["kubernetes.default.svc.cluster.local. 5 IN A 10.3.0.1"]);
}

#[test]
fn srv_only_for_named_ports() {
    let index = build(
        &[service(
            "ns",
            "svc",
            &["10.0.0.1"],
            &[(None, 80, "TCP"), (Some("dns"), 53, "UDP"), (Some("dns-tcp"), 53, "TCP")],
        )],
        &[],
        &["ns"],
        &[],
    );
    assert_eq!(
        records(&index, "_dns._udp.svc.ns.svc.cluster.local.", T::SRV),
        ["_dns._udp.svc.ns.svc.cluster.local. 5 IN SRV 0 100 53 svc.ns.svc.cluster.local."]
    );
    assert_eq!(records(&index, "_dns-tcp._tcp.svc.ns.svc.cluster.local.", T::SRV).len(), 1);
    // The protocol must match.
    assert_nxdomain(&index, "_dns._tcp.svc.ns.svc.cluster.local.", T::SRV);
    // The unnamed port 80 has no `_<port>._<proto>` name.
    assert_nxdomain(&index, "_80._tcp.svc.ns.svc.cluster.local.", T::SRV);
    assert_nxdomain(&index, "_._tcp.svc.ns.svc.cluster.local.", T::SRV);
    // Without underscores it is not a port name.
    assert_nxdomain(&index, "dns.udp.svc.ns.svc.cluster.local.", T::SRV);
    // Other types at an SRV name: the name exists.
    assert_nodata(&index, "_dns._udp.svc.ns.svc.cluster.local.", T::A);
    // SRV at the Service's own name lists every port, unnamed ones included
    // (CoreDNS), one record per port number, splitting the weight.
    assert_eq!(
        records(&index, "svc.ns.svc.cluster.local.", T::SRV),
        [
            "svc.ns.svc.cluster.local. 5 IN SRV 0 50 53 svc.ns.svc.cluster.local.",
            "svc.ns.svc.cluster.local. 5 IN SRV 0 50 80 svc.ns.svc.cluster.local.",
        ]
    );
}

#[test]
fn srv_at_service_name_dedups_equal_ports() {
    // TCP and UDP on 53: one record per port number and target.
    let index = build(
        &[service("ns", "dns", &["10.0.0.10"], &[(Some("dns"), 53, "UDP"), (Some("dns-tcp"), 53, "TCP")])],
        &[],
        &["ns"],
        &[],
    );
    assert_eq!(records(&index, "dns.ns.svc.cluster.local.", T::SRV).len(), 1);
}

#[test]
fn spec_2_3_3_ptr_ipv4() {
    assert_eq!(
        records(&kubernetes(), "1.0.3.10.in-addr.arpa.", T::PTR),
        ["1.0.3.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local."]
    );
}

#[test]
fn spec_2_3_3_ptr_ipv6() {
    let index = build(&[service("default", "kubernetes", &["2001:db8::1"], &[])], &[], &["default"], &[]);
    let name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        records(&index, name, T::PTR),
        [format!("{name} 5 IN PTR kubernetes.default.svc.cluster.local.")]
    );
    // Upper-case nibbles are the same name.
    let upper = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa.";
    assert_eq!(records(&index, upper, T::PTR).len(), 1);
}

#[test]
fn ptr_other_type_is_nodata_with_reverse_soa() {
    let (kind, msg) = ask(&kubernetes(), "1.0.3.10.in-addr.arpa.", T::A);
    assert_eq!(kind, "NoData");
    assert_eq!(
        soa_lines(&msg.unwrap()),
        ["in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"]
    );
}

#[test]
fn unknown_and_partial_reverse_names_are_forwarded() {
    let index = kubernetes();
    assert_eq!(ask(&index, "8.8.8.8.in-addr.arpa.", T::PTR).0, "Forward");
    assert_eq!(ask(&index, "3.10.in-addr.arpa.", T::PTR).0, "Forward");
    assert_eq!(ask(&index, "01.0.3.10.in-addr.arpa.", T::PTR).0, "Forward");
    assert_eq!(ask(&index, "256.0.3.10.in-addr.arpa.", T::PTR).0, "Forward");
    assert_eq!(ask(&index, "1.0.ip6.arpa.", T::PTR).0, "Forward");
}

#[test]
fn ptr_prefers_the_service_over_endpoints() {
    // 10.0.0.5 is both a cluster IP and (oddly) an endpoint address.
    let index = build(
        &[service("ns", "a", &["10.0.0.5"], &[]), headless("ns", "b", &[])],
        &[slice("ns", "b", "b-1", vec![ep("10.0.0.5", None, None)], &[])],
        &["ns"],
        &[],
    );
    assert_eq!(
        records(&index, "5.0.0.10.in-addr.arpa.", T::PTR),
        ["5.0.0.10.in-addr.arpa. 5 IN PTR a.ns.svc.cluster.local."]
    );
}

// ---- Specification §2.4: headless ----

#[test]
fn spec_2_4_1_headless_a_records_of_ready_endpoints() {
    assert_eq!(
        records(&headless_index(), "headless.default.svc.cluster.local.", T::A),
        [
            "headless.default.svc.cluster.local. 5 IN A 10.3.0.100",
            "headless.default.svc.cluster.local. 5 IN A 10.3.0.101",
            "headless.default.svc.cluster.local. 5 IN A 10.3.0.102",
        ]
    );
}

#[test]
fn spec_2_4_1_headless_aaaa_records() {
    let index = build(
        &[headless("default", "headless", &[])],
        &[slice(
            "default",
            "headless",
            "headless-v6",
            vec![
                ep("2001:db8::1", Some("my-pet"), None),
                ep("2001:db8::2", None, None),
                ep("2001:db8::3", None, None),
            ],
            &[],
        )],
        &["default"],
        &[],
    );
    assert_eq!(records(&index, "headless.default.svc.cluster.local.", T::AAAA).len(), 3);
    assert_eq!(
        records(&index, "my-pet.headless.default.svc.cluster.local.", T::AAAA),
        ["my-pet.headless.default.svc.cluster.local. 5 IN AAAA 2001:db8::1"]
    );
    // Dashed IPv6 names as CoreDNS spells them.
    assert_eq!(records(&index, "2001-db8--2.headless.default.svc.cluster.local.", T::AAAA).len(), 1);
    assert_nodata(&index, "headless.default.svc.cluster.local.", T::A);
}

#[test]
fn spec_2_4_1_hostname_record() {
    let index = headless_index();
    assert_eq!(
        records(&index, "my-pet.headless.default.svc.cluster.local.", T::A),
        ["my-pet.headless.default.svc.cluster.local. 5 IN A 10.3.0.100"]
    );
    // Endpoints without a hostname are named by their dashed address (CoreDNS).
    assert_eq!(
        records(&index, "10-3-0-102.headless.default.svc.cluster.local.", T::A),
        ["10-3-0-102.headless.default.svc.cluster.local. 5 IN A 10.3.0.102"]
    );
    // Not ready: no record.
    assert_nxdomain(&index, "not-ready.headless.default.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "nobody.headless.default.svc.cluster.local.", T::A);
    assert_nodata(&index, "my-pet.headless.default.svc.cluster.local.", T::AAAA);
}

#[test]
fn spec_2_4_2_headless_srv_per_endpoint() {
    let index = headless_index();
    let name = "_https._tcp.headless.default.svc.cluster.local.";
    let mut got = records(&index, name, T::SRV);
    got.sort();
    assert_eq!(
        got,
        [
            format!("{name} 5 IN SRV 0 33 443 10-3-0-102.headless.default.svc.cluster.local."),
            format!("{name} 5 IN SRV 0 33 443 my-pet-2.headless.default.svc.cluster.local."),
            format!("{name} 5 IN SRV 0 33 443 my-pet.headless.default.svc.cluster.local."),
        ]
    );
    let mut glue = additional(&index, name, T::SRV);
    glue.sort();
    assert_eq!(
        glue,
        [
            "10-3-0-102.headless.default.svc.cluster.local. 5 IN A 10.3.0.102",
            "my-pet-2.headless.default.svc.cluster.local. 5 IN A 10.3.0.101",
            "my-pet.headless.default.svc.cluster.local. 5 IN A 10.3.0.100",
        ]
    );
}

#[test]
fn headless_srv_uses_endpoint_ports() {
    // The Service says 80, the pods listen on 8080: a client of a headless
    // Service connects to the pod, so the slice's port is the one that works.
    let index = build(
        &[headless("ns", "web", &[(Some("http"), 80, "TCP")])],
        &[slice("ns", "web", "web-1", vec![ep("10.1.0.1", None, None)], &[(Some("http"), 8080, "TCP")])],
        &["ns"],
        &[],
    );
    assert_eq!(
        records(&index, "_http._tcp.web.ns.svc.cluster.local.", T::SRV),
        ["_http._tcp.web.ns.svc.cluster.local. 5 IN SRV 0 100 8080 10-1-0-1.web.ns.svc.cluster.local."]
    );
}

#[test]
fn spec_2_4_3_headless_ptr() {
    let index = headless_index();
    assert_eq!(
        records(&index, "100.0.3.10.in-addr.arpa.", T::PTR),
        ["100.0.3.10.in-addr.arpa. 5 IN PTR my-pet.headless.default.svc.cluster.local."]
    );
    assert_eq!(
        records(&index, "102.0.3.10.in-addr.arpa.", T::PTR),
        ["102.0.3.10.in-addr.arpa. 5 IN PTR 10-3-0-102.headless.default.svc.cluster.local."]
    );
    // The not-ready endpoint has no PTR: forwarded.
    assert_eq!(ask(&index, "103.0.3.10.in-addr.arpa.", T::PTR).0, "Forward");
}

#[test]
fn spec_2_4_3_headless_ptr_ipv6() {
    let index = build(
        &[headless("default", "headless", &[])],
        &[slice("default", "headless", "h", vec![ep("2001:db8::1", Some("my-pet"), None)], &[])],
        &["default"],
        &[],
    );
    let name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        records(&index, name, T::PTR),
        [format!("{name} 5 IN PTR my-pet.headless.default.svc.cluster.local.")]
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    // Specification §2.4.1: "If there are no ready endpoints for the headless
    // Service, the answer should be NXDOMAIN."
    let index = build(
        &[
            headless("ns", "empty", &[(Some("http"), 80, "TCP")]),
            headless("ns", "unready", &[(Some("http"), 80, "TCP")]),
        ],
        &[slice(
            "ns",
            "unready",
            "u-1",
            vec![ep("10.1.0.1", Some("a"), Some(false))],
            &[(Some("http"), 80, "TCP")],
        )],
        &["ns"],
        &[],
    );
    for name in ["empty", "unready"] {
        assert_nxdomain(&index, &format!("{name}.ns.svc.cluster.local."), T::A);
        assert_nxdomain(&index, &format!("{name}.ns.svc.cluster.local."), T::AAAA);
        assert_nxdomain(&index, &format!("_http._tcp.{name}.ns.svc.cluster.local."), T::SRV);
    }
}

#[test]
fn publish_not_ready_addresses_includes_unready_endpoints() {
    let mut svc = headless("ns", "peers", &[(Some("gossip"), 7946, "TCP")]);
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let index = build(
        &[svc],
        &[slice(
            "ns",
            "peers",
            "p-1",
            vec![ep("10.1.0.1", Some("p-0"), Some(false)), ep("10.1.0.2", Some("p-1"), Some(true))],
            &[(Some("gossip"), 7946, "TCP")],
        )],
        &["ns"],
        &[],
    );
    assert_eq!(records(&index, "peers.ns.svc.cluster.local.", T::A).len(), 2);
    assert_eq!(
        records(&index, "p-0.peers.ns.svc.cluster.local.", T::A),
        ["p-0.peers.ns.svc.cluster.local. 5 IN A 10.1.0.1"]
    );
    assert_eq!(records(&index, "_gossip._tcp.peers.ns.svc.cluster.local.", T::SRV).len(), 2);
}

#[test]
fn dual_stack_headless_merges_families_by_hostname() {
    let index = build(
        &[headless("ns", "db", &[])],
        &[
            slice("ns", "db", "db-v4", vec![ep("10.1.0.1", Some("db-0"), None)], &[]),
            slice("ns", "db", "db-v6", vec![ep("fd00::1", Some("db-0"), None)], &[]),
        ],
        &["ns"],
        &[],
    );
    assert_eq!(
        records(&index, "db-0.db.ns.svc.cluster.local.", T::A),
        ["db-0.db.ns.svc.cluster.local. 5 IN A 10.1.0.1"]
    );
    assert_eq!(
        records(&index, "db-0.db.ns.svc.cluster.local.", T::AAAA),
        ["db-0.db.ns.svc.cluster.local. 5 IN AAAA fd00::1"]
    );
}

#[test]
fn endpoint_names_of_cluster_ip_services() {
    // CoreDNS answers endpoint names below ClusterIP Services too.
    let index = build(
        &[service("ns", "web", &["10.96.0.5"], &[])],
        &[slice("ns", "web", "web-1", vec![ep("10.1.0.7", Some("web-0"), None)], &[])],
        &["ns"],
        &[],
    );
    assert_eq!(
        records(&index, "web-0.web.ns.svc.cluster.local.", T::A),
        ["web-0.web.ns.svc.cluster.local. 5 IN A 10.1.0.7"]
    );
    // The Service's own name still answers its cluster IP.
    assert_eq!(
        records(&index, "web.ns.svc.cluster.local.", T::A),
        ["web.ns.svc.cluster.local. 5 IN A 10.96.0.5"]
    );
}

// ---- Specification §2.5: ExternalName ----

#[test]
fn spec_2_5_external_name_cname() {
    let index = build(&[external("default", "foo", "www.example.com")], &[], &["default"], &[]);
    let packet = query_packet(7, "foo.default.svc.cluster.local.", T::A, None);
    let query = Query::parse(&packet).unwrap();
    let outcome = answer(&index, &query, None);
    let Answer::Authoritative(records_) = &outcome else { panic!("{outcome:?}") };
    assert_eq!(records_.chase().unwrap().to_string(), "www.example.com.");
    assert_eq!(
        records(&index, "foo.default.svc.cluster.local.", T::A),
        ["foo.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    );
    // Every type gets the CNAME (RFC 1034 §3.6.2); a CNAME query gets no chase.
    assert_eq!(records(&index, "foo.default.svc.cluster.local.", T::AAAA).len(), 1);
    let cname_query =
        Query::parse(&query_packet(7, "foo.default.svc.cluster.local.", T::CNAME, None)).unwrap();
    let Answer::Authoritative(r) = answer(&index, &cname_query, None) else { panic!() };
    assert!(r.chase().is_none());
    // No SRV or endpoint names below it.
    assert_nxdomain(&index, "_http._tcp.foo.default.svc.cluster.local.", T::SRV);
    assert_nxdomain(&index, "x.foo.default.svc.cluster.local.", T::A);
}

#[test]
fn spec_2_5_external_name_with_upstream_answer() {
    let index = build(&[external("default", "foo", "www.example.com")], &[], &["default"], &[]);
    let packet = query_packet(7, "foo.default.svc.cluster.local.", T::A, None);
    let query = Query::parse(&packet).unwrap();
    let outcome = answer(&index, &query, None);
    // The upstream reply for www.example.com A.
    let mut upstream = Message::new(99, MessageType::Response, HOpCode::Query);
    upstream.add_query(HQuery::query(HName::from_ascii("www.example.com.").unwrap(), T::A));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("www.example.com.").unwrap(),
        28715,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 53))),
    ));
    let upstream = upstream.to_vec().unwrap();
    let mut buf = Vec::new();
    outcome.encode_with_upstream(&index, &query, Some(&upstream), &mut buf, 512).unwrap();
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(
        answers(&msg),
        [
            "foo.default.svc.cluster.local. 5 IN CNAME www.example.com.",
            "www.example.com. 28715 IN A 192.0.2.53"
        ]
    );
    // No upstream reply: the CNAME alone.
    buf.clear();
    outcome.encode_with_upstream(&index, &query, None, &mut buf, 512).unwrap();
    assert_eq!(answers(&Message::from_vec(&buf).unwrap()).len(), 1);
}

#[test]
fn external_name_inside_the_zone_is_followed() {
    let index = build(
        &[external("a", "alias", "web.b.svc.cluster.local"), service("b", "web", &["10.96.1.1"], &[])],
        &[],
        &["a", "b"],
        &[],
    );
    assert_eq!(
        records(&index, "alias.a.svc.cluster.local.", T::A),
        [
            "alias.a.svc.cluster.local. 5 IN CNAME web.b.svc.cluster.local.",
            "web.b.svc.cluster.local. 5 IN A 10.96.1.1"
        ]
    );
}

#[test]
fn external_name_loop_stops() {
    let index = build(
        &[external("a", "x", "y.a.svc.cluster.local."), external("a", "y", "x.a.svc.cluster.local.")],
        &[],
        &["a"],
        &[],
    );
    let got = records(&index, "x.a.svc.cluster.local.", T::A);
    assert!(got.len() <= 8, "{got:?}");
    assert!(got.iter().all(|l| l.contains("CNAME")));
}

#[test]
fn external_name_that_is_an_ip_is_ignored() {
    let index = build(&[external("a", "ip", "192.0.2.1")], &[], &["a"], &[]);
    assert_nxdomain(&index, "ip.a.svc.cluster.local.", T::A);
}

// ---- Names that are not in the schema ----

#[test]
fn zone_apex_and_structure_names() {
    let index = kubernetes();
    assert_eq!(records(&index, "cluster.local.", T::SOA), [SOA]);
    assert_nodata(&index, "cluster.local.", T::A);
    assert_nodata(&index, "cluster.local.", T::NS);
    assert_nodata(&index, "svc.cluster.local.", T::A);
    assert_nodata(&index, "pod.cluster.local.", T::A);
    // An existing namespace: NODATA (CoreDNS); an unknown one: NXDOMAIN.
    assert_nodata(&index, "default.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "nope.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "foo.cluster.local.", T::A);
    assert_nxdomain(&index, "kubernetes.nope.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "missing.default.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "a.b.c.kubernetes.default.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "dns-version.svc.cluster.local.", T::TXT);
    // SOA below the apex: none.
    assert_nodata(&index, KUBERNETES, T::SOA);
    assert_nxdomain(&index, "missing.default.svc.cluster.local.", T::SOA);
}

#[test]
fn namespace_without_object_exists_through_its_services() {
    let index = build(&[service("orphan", "s", &["10.0.0.1"], &[])], &[], &[], &[]);
    assert_nodata(&index, "orphan.svc.cluster.local.", T::A);
    assert_eq!(records(&index, "s.orphan.svc.cluster.local.", T::A).len(), 1);
}

#[test]
fn nameservers_answer_ns_and_glue() {
    let config = Config { nameservers: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))], ..Config::default() };
    let index = build_with(config, &[], &[], &[], &[]);
    assert_eq!(records(&index, "cluster.local.", T::NS), ["cluster.local. 5 IN NS ns.dns.cluster.local."]);
    assert_eq!(additional(&index, "cluster.local.", T::NS), ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]);
    assert_eq!(records(&index, "ns.dns.cluster.local.", T::A), ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]);
    assert_nodata(&index, "ns.dns.cluster.local.", T::AAAA);
    // Without nameservers configured, ns.dns does not exist.
    assert_nxdomain(&kubernetes(), "ns.dns.cluster.local.", T::A);
}

#[test]
fn negative_answers_carry_the_soa_with_negative_ttl() {
    let config = Config { ttl: 30, negative_ttl: Some(10), ..Config::default() };
    let index = build_with(config, &[service("ns", "s", &["10.0.0.1"], &[])], &[], &["ns"], &[]);
    let (_, msg) = ask(&index, "x.ns.svc.cluster.local.", T::A);
    let msg = msg.unwrap();
    let soa = &msg.authorities[0];
    assert_eq!(soa.ttl, 10);
    let RData::SOA(soa) = &soa.data else { panic!() };
    assert_eq!(soa.minimum, 10);
    assert_eq!(soa.mname.to_string(), "ns.dns.cluster.local.");
    assert_eq!(soa.rname.to_string(), "hostmaster.cluster.local.");
    assert_eq!(soa.refresh, 7200);
    assert_eq!(soa.retry, 1800);
    assert_eq!(soa.expire, 86400);
    // Positive answers use the positive TTL.
    assert_eq!(msg_ttl(&index, "s.ns.svc.cluster.local."), 30);
    // Unset negative TTL follows the TTL.
    let index = build_with(Config { ttl: 30, ..Config::default() }, &[], &[], &["ns"], &[]);
    let RData::SOA(soa) = &ask(&index, "x.ns.svc.cluster.local.", T::A).1.unwrap().authorities[0].data else {
        panic!()
    };
    assert_eq!(soa.minimum, 30);
}

fn msg_ttl(index: &crate::index::Index, name: &str) -> u32 {
    ask(index, name, T::A).1.unwrap().answers[0].ttl
}

#[test]
fn serial_is_in_the_soa() {
    let mut index = kubernetes();
    index.set_serial(1_700_000_000);
    let RData::SOA(soa) = &ask(&index, "cluster.local.", T::SOA).1.unwrap().answers[0].data else { panic!() };
    assert_eq!(soa.serial, 1_700_000_000);
}

#[test]
fn custom_zone() {
    let config = Config { zone: "Corp.Example.".into(), ..Config::default() };
    let index = build_with(config, &[service("ns", "s", &["10.0.0.1"], &[])], &[], &["ns"], &[]);
    assert_eq!(records(&index, "s.ns.svc.corp.example.", T::A), ["s.ns.svc.corp.example. 5 IN A 10.0.0.1"]);
    assert_eq!(ask(&index, "s.ns.svc.cluster.local.", T::A).0, "Forward");
}

// ---- Case ----

#[test]
fn names_are_case_insensitive_and_the_question_echoed() {
    let index = headless_index();
    let (kind, msg) = ask(&index, "My-Pet.HEADLESS.Default.SVC.Cluster.Local.", T::A);
    assert_eq!(kind, "Authoritative");
    // The owner points at the question, so it keeps the client's case.
    assert_eq!(answers(&msg.unwrap()), ["My-Pet.HEADLESS.Default.SVC.Cluster.Local. 5 IN A 10.3.0.100"]);
    assert_eq!(records(&index, "_HTTPS._Tcp.headless.default.svc.cluster.local.", T::SRV).len(), 3);
    assert_eq!(records(&index, "DNS-VERSION.CLUSTER.LOCAL.", T::TXT).len(), 1);
}

#[test]
fn objects_with_upper_case_names_still_match() {
    // Names are validated lowercase by the API server, but compare anyway.
    let index = build(&[service("NS", "Web", &["10.0.0.1"], &[])], &[], &[], &[]);
    assert_eq!(records(&index, "web.ns.svc.cluster.local.", T::A).len(), 1);
}

// ---- Pods ----

#[test]
fn pods_insecure_answers_dashed_ips_in_existing_namespaces() {
    let index = build(&[], &[], &["default"], &[]);
    assert_eq!(
        records(&index, "10-244-1-5.default.pod.cluster.local.", T::A),
        ["10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"]
    );
    assert_eq!(
        records(&index, "fd00--5.default.pod.cluster.local.", T::AAAA),
        ["fd00--5.default.pod.cluster.local. 5 IN AAAA fd00::5"]
    );
    assert_nodata(&index, "10-244-1-5.default.pod.cluster.local.", T::AAAA);
    assert_nodata(&index, "default.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "10-244-1-5.nope.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "nope.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "not-an-ip.default.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "10-244-1-256.default.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "x.10-244-1-5.default.pod.cluster.local.", T::A);
}

#[test]
fn pods_disabled() {
    let config = Config { pods: PodMode::Disabled, ..Config::default() };
    let index = build_with(config, &[], &[], &["default"], &[pod("default", "p", &["10.244.1.5"])]);
    assert_nxdomain(&index, "10-244-1-5.default.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "default.pod.cluster.local.", T::A);
    assert_nodata(&index, "pod.cluster.local.", T::A);
}

#[test]
fn pods_verified() {
    let config = Config { pods: PodMode::Verified, ..Config::default() };
    let index = build_with(config, &[], &[], &["default", "other"], &[pod("default", "p", &["10.244.1.5"])]);
    assert_eq!(records(&index, "10-244-1-5.default.pod.cluster.local.", T::A).len(), 1);
    assert_nxdomain(&index, "10-244-1-6.default.pod.cluster.local.", T::A);
    assert_nxdomain(&index, "10-244-1-5.other.pod.cluster.local.", T::A);
}

#[test]
fn pod_hostname_and_subdomain_of_a_headless_service() {
    let mut p = pod("ns", "busybox-1", &["10.244.2.7"]);
    let spec = p.spec.as_mut().unwrap();
    spec.hostname = Some("busybox-1".into());
    spec.subdomain = Some("busybox-subdomain".into());
    let mut unready = pod("ns", "busybox-2", &["10.244.2.8"]);
    unready.spec.as_mut().unwrap().hostname = Some("busybox-2".into());
    unready.spec.as_mut().unwrap().subdomain = Some("busybox-subdomain".into());
    unready.status.as_mut().unwrap().conditions = None;
    let mut wrong = pod("ns", "other", &["10.244.2.9"]);
    wrong.spec.as_mut().unwrap().hostname = Some("other".into());
    wrong.spec.as_mut().unwrap().subdomain = Some("not-a-service".into());
    let index = build(&[headless("ns", "busybox-subdomain", &[])], &[], &["ns"], &[p, unready, wrong]);
    assert_eq!(
        records(&index, "busybox-1.busybox-subdomain.ns.svc.cluster.local.", T::A),
        ["busybox-1.busybox-subdomain.ns.svc.cluster.local. 5 IN A 10.244.2.7"]
    );
    assert_nxdomain(&index, "busybox-2.busybox-subdomain.ns.svc.cluster.local.", T::A);
    assert_nxdomain(&index, "other.not-a-service.ns.svc.cluster.local.", T::A);
}

// ---- Protocol outcomes ----

#[test]
fn zone_transfers_are_refused() {
    let index = kubernetes();
    for qtype in [T::AXFR, T::IXFR] {
        for name in ["cluster.local.", "example.com."] {
            let (kind, msg) = ask(&index, name, qtype);
            assert_eq!(kind, "Refused");
            assert_eq!(rcode(&msg.unwrap()), ResponseCode::Refused);
        }
    }
}

#[test]
fn unsynced_index_serves_servfail_in_the_zone_and_forwards_the_rest() {
    let index = crate::index::Index::unsynced(Config::default()).unwrap();
    let (kind, msg) = ask(&index, KUBERNETES, T::A);
    assert_eq!(kind, "ServFail");
    let msg = msg.unwrap();
    assert_eq!(rcode(&msg), ResponseCode::ServFail);
    assert!(!msg.metadata.authoritative);
    assert_eq!(ask(&index, "1.0.3.10.in-addr.arpa.", T::PTR).0, "ServFail");
    assert_eq!(ask(&index, "example.com.", T::A).0, "Forward");
}

#[test]
fn names_outside_the_zone_are_forwarded() {
    let index = kubernetes();
    for name in ["example.com.", "local.", "xcluster.local.", "cluster.local.example.com.", "."] {
        let (kind, msg) = ask(&index, name, T::A);
        assert_eq!(kind, "Forward", "{name}");
        assert!(msg.is_none());
    }
}

#[test]
fn other_opcodes_are_not_implemented() {
    let mut packet = query_packet(5, KUBERNETES, T::A, None);
    packet[2] = (packet[2] & !0x78) | (4 << 3); // NOTIFY
    let index = kubernetes();
    let (kind, buf) = respond(&index, &packet, None, 512);
    assert_eq!(kind, "NotImp");
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(rcode(&msg), ResponseCode::NotImp);
    assert_eq!(msg.metadata.op_code, HOpCode::Notify);
}

#[test]
fn non_internet_class_in_the_zone_is_refused() {
    let mut packet = query_packet(5, KUBERNETES, T::A, None);
    let len = packet.len();
    packet[len - 1] = 3; // CH
    assert_eq!(respond(&kubernetes(), &packet, None, 512).0, "Refused");
}

#[test]
fn bad_edns_version_gets_badvers_with_opt() {
    let mut packet = query_packet(5, KUBERNETES, T::A, Some((1232, false)));
    // The OPT record is last: its TTL's second octet is the version.
    let len = packet.len();
    packet[len - 5] = 1;
    let index = kubernetes();
    let (kind, buf) = respond(&index, &packet, None, 512);
    assert_eq!(kind, "BadVersion");
    let msg = Message::from_vec(&buf).unwrap();
    // 16 is BADVERS in an OPT-carrying response (hickory names it BADSIG).
    assert_eq!(u16::from(rcode(&msg)), 16);
    assert_eq!(msg.edns.as_ref().unwrap().version(), 0);
    assert!(msg.answers.is_empty());
}

#[test]
fn formerr_echoes_the_id() {
    // Two questions.
    let mut packet = query_packet(0x4242, KUBERNETES, T::A, None);
    packet[5] = 2;
    let error = Query::parse(&packet).unwrap_err();
    let mut buf = Vec::new();
    let written = encode_parse_error(&error, &mut buf).unwrap();
    assert_eq!(written.len, 12);
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.metadata.id, 0x4242);
    assert_eq!(rcode(&msg), ResponseCode::FormErr);
    assert!(msg.metadata.recursion_desired);
    // A response is never answered; neither is a packet without a header.
    packet[2] |= 0x80;
    assert!(encode_parse_error(&Query::parse(&packet).unwrap_err(), &mut buf).is_none());
    assert!(encode_parse_error(&Query::parse(&[1, 2, 3]).unwrap_err(), &mut buf).is_none());
}

// ---- EDNS and truncation ----

#[test]
fn edns_is_echoed_with_our_payload_size_and_do_bit() {
    let index = kubernetes();
    for dnssec_ok in [false, true] {
        let packet = query_packet(1, KUBERNETES, T::A, Some((4096, dnssec_ok)));
        let (_, buf) = respond(&index, &packet, None, 4096);
        let msg = Message::from_vec(&buf).unwrap();
        let edns = msg.edns.as_ref().unwrap();
        assert_eq!(edns.max_payload(), crate::wire::DEFAULT_EDNS_PAYLOAD);
        assert_eq!(edns.flags().dnssec_ok, dnssec_ok);
        assert_eq!(edns.version(), 0);
    }
    // No OPT without EDNS in the query.
    let (_, buf) = respond(&index, &query_packet(1, KUBERNETES, T::A, None), None, 512);
    assert!(Message::from_vec(&buf).unwrap().edns.is_none());
}

fn big_headless(n: u8) -> crate::index::Index {
    let endpoints = (0..n).map(|i| ep(&format!("10.1.0.{i}"), None, None)).collect();
    build(
        &[headless("ns", "big", &[(Some("http"), 80, "TCP")])],
        &[slice("ns", "big", "big-1", endpoints, &[(Some("http"), 80, "TCP")])],
        &["ns"],
        &[],
    )
}

#[test]
fn truncation_over_udp_without_edns() {
    let index = big_headless(100);
    let name = "big.ns.svc.cluster.local.";
    // 100 A records do not fit in 512 octets: TC, no records, question kept.
    let packet = query_packet(1, name, T::A, None);
    let query = Query::parse(&packet).unwrap();
    let (_, buf) = respond(&index, &packet, None, query.max_udp_response_len());
    assert!(buf.len() <= 512);
    let msg = Message::from_vec(&buf).unwrap();
    assert!(msg.metadata.truncation);
    assert!(msg.answers.is_empty());
    assert_eq!(msg.queries.len(), 1);
    // Over TCP they all fit.
    let (_, buf) = respond(&index, &packet, None, MAX_TCP_MESSAGE);
    let msg = Message::from_vec(&buf).unwrap();
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 100);
}

#[test]
fn truncation_honours_the_advertised_edns_size() {
    let index = big_headless(100);
    let name = "big.ns.svc.cluster.local.";
    // 100 compressed A records are 1600 octets: fit in 4096, not in 1232.
    let packet = query_packet(1, name, T::A, Some((4096, false)));
    let query = Query::parse(&packet).unwrap();
    assert_eq!(query.max_udp_response_len(), 4096);
    let (_, buf) = respond(&index, &packet, None, query.max_udp_response_len());
    let msg = Message::from_vec(&buf).unwrap();
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 100);
    assert!(msg.edns.is_some());

    let packet = query_packet(1, name, T::A, Some((1232, false)));
    let (_, buf) = respond(&index, &packet, None, 1232);
    assert!(buf.len() <= 1232);
    let msg = Message::from_vec(&buf).unwrap();
    assert!(msg.metadata.truncation);
    // The OPT record survives truncation.
    assert!(msg.edns.is_some());
    // An advertised size below 512 means 512.
    let packet = query_packet(1, name, T::A, Some((100, false)));
    assert_eq!(Query::parse(&packet).unwrap().max_udp_response_len(), 512);
}

#[test]
fn glue_is_dropped_before_answers_are() {
    // 10 SRV records (targets uncompressed, RFC 2782: ~54 octets each) and their
    // 10 glue records (16 octets each) need ~760 octets; in 700 only the SRV
    // records fit: glue dropped, no TC.
    let index = big_headless(10);
    let name = "_http._tcp.big.ns.svc.cluster.local.";
    let packet = query_packet(1, name, T::SRV, Some((700, false)));
    let query = Query::parse(&packet).unwrap();
    let outcome = answer(&index, &query, None);
    let mut buf = Vec::new();
    let full = outcome.encode(&index, &query, &mut buf, MAX_TCP_MESSAGE).unwrap();
    assert!(full.len > 700, "{}", full.len);
    buf.clear();
    let written = outcome.encode(&index, &query, &mut buf, 700).unwrap();
    assert!(written.dropped_additional && !written.truncated, "{written:?}");
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.answers.len(), 10);
    assert!(msg.additionals.is_empty());
    assert!(msg.edns.is_some());
}

#[test]
fn compression_keeps_responses_small() {
    // An SRV answer's targets share the question's suffix: each target costs its
    // first label and a pointer.
    let index = big_headless(20);
    let name = "_http._tcp.big.ns.svc.cluster.local.";
    let packet = query_packet(1, name, T::SRV, None);
    let (_, buf) = respond(&index, &packet, None, MAX_TCP_MESSAGE);
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.answers.len(), 20);
    assert_eq!(msg.additionals.len(), 20);
    // Uncompressed, each SRV is ~ 2 + 10 + 6 + 40 and each glue A ~ 40 + 14.
    assert!(buf.len() < 20 * (18 + 40) + 20 * 16 + 100, "{}", buf.len());
}

// ---- Autopath ----

fn autopath_index() -> crate::index::Index {
    let mut host_net = pod("kube-system", "node-agent", &["172.30.0.10"]);
    host_net.spec.as_mut().unwrap().host_network = Some(true);
    let mut custom = pod("app", "custom", &["10.244.0.9"]);
    custom.spec.as_mut().unwrap().dns_config =
        Some(PodDNSConfig { searches: Some(vec!["corp.example".into()]), ..Default::default() });
    let mut none_policy = pod("app", "none", &["10.244.0.10"]);
    none_policy.spec.as_mut().unwrap().dns_policy = Some("None".into());
    build(
        &[
            service("default", "kubernetes", &["10.96.0.1"], &[(Some("https"), 443, "TCP")]),
            service("app", "web", &["10.96.5.5"], &[]),
            external("app", "ext", "www.example.com"),
        ],
        &[],
        &["default", "app", "kube-system"],
        &[pod("app", "client", &["10.244.0.5"]), host_net, custom, none_policy],
    )
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5));

#[test]
fn autopath_finds_a_service_in_another_namespace() {
    let index = autopath_index();
    let (kind, msg) = ask_from(&index, "kubernetes.default.app.svc.cluster.local.", T::A, Some(CLIENT));
    assert_eq!(kind, "Authoritative");
    let msg = msg.unwrap();
    assert!(msg.metadata.authoritative);
    assert_eq!(
        answers(&msg),
        [
            "kubernetes.default.app.svc.cluster.local. 5 IN CNAME kubernetes.default.svc.cluster.local.",
            "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1",
        ]
    );
    // Also SRV, with glue.
    let (_, msg) =
        ask_from(&index, "_https._tcp.kubernetes.default.app.svc.cluster.local.", T::SRV, Some(CLIENT));
    let msg = msg.unwrap();
    assert_eq!(answers(&msg).len(), 2);
    assert_eq!(lines(&msg.additionals), ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]);
}

#[test]
fn autopath_zone_candidate() {
    let index = autopath_index();
    let (kind, msg) = ask_from(&index, "dns-version.app.svc.cluster.local.", T::TXT, Some(CLIENT));
    assert_eq!(kind, "Authoritative");
    assert_eq!(
        answers(&msg.unwrap()),
        [
            "dns-version.app.svc.cluster.local. 28800 IN CNAME dns-version.cluster.local.",
            "dns-version.cluster.local. 28800 IN TXT 1.1.0",
        ]
    );
}

#[test]
fn autopath_outside_the_zone_continues_upstream() {
    let index = autopath_index();
    let packet = query_packet(0x77, "Example.COM.app.svc.cluster.local.", T::A, None);
    let query = Query::parse(&packet).unwrap();
    let outcome = answer(&index, &query, Some(CLIENT));
    let Answer::AutopathForward(autopath) = &outcome else { panic!("{outcome:?}") };
    // The client's case is kept in what is resolved upstream.
    assert_eq!(autopath.target().to_string(), "Example.COM.");

    // The server resolves example.com upstream and hands the reply back.
    let mut upstream = Message::new(0x1111, MessageType::Response, HOpCode::Query);
    upstream.add_query(HQuery::query(HName::from_ascii("Example.COM.").unwrap(), T::A));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("Example.COM.").unwrap(),
        300,
        RData::CNAME(CNAME(HName::from_ascii("edge.example.net.").unwrap())),
    ));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("edge.example.net.").unwrap(),
        60,
        RData::A(A(Ipv4Addr::new(93, 184, 216, 34))),
    ));
    let upstream = upstream.to_vec().unwrap();
    let mut buf = Vec::new();
    outcome.encode_with_upstream(&index, &query, Some(&upstream), &mut buf, 512).unwrap();
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.metadata.id, 0x77);
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(!msg.metadata.authoritative);
    assert_eq!(msg.queries[0].name.to_string(), "Example.COM.app.svc.cluster.local.");
    assert_eq!(
        answers(&msg),
        [
            "Example.COM.app.svc.cluster.local. 300 IN CNAME Example.COM.",
            "Example.COM. 300 IN CNAME edge.example.net.",
            "edge.example.net. 60 IN A 93.184.216.34",
        ]
    );

    // Upstream says NXDOMAIN (or nothing): the original NXDOMAIN, so the client
    // walks its own search path as if autopath had not happened.
    let mut nx = Message::new(0x1111, MessageType::Response, HOpCode::Query);
    nx.metadata.response_code = ResponseCode::NXDomain;
    nx.add_query(HQuery::query(HName::from_ascii("Example.COM.").unwrap(), T::A));
    let nx = nx.to_vec().unwrap();
    for reply in [Some(nx.as_slice()), None] {
        buf.clear();
        outcome.encode_with_upstream(&index, &query, reply, &mut buf, 512).unwrap();
        let msg = Message::from_vec(&buf).unwrap();
        assert_eq!(rcode(&msg), ResponseCode::NXDomain);
        assert_eq!(soa_lines(&msg), [SOA]);
    }

    // NODATA upstream: NOERROR, no records, no CNAME.
    let mut empty = Message::new(0x1111, MessageType::Response, HOpCode::Query);
    empty.add_query(HQuery::query(HName::from_ascii("Example.COM.").unwrap(), T::A));
    let empty = empty.to_vec().unwrap();
    buf.clear();
    outcome.encode_with_upstream(&index, &query, Some(&empty), &mut buf, 512).unwrap();
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(rcode(&msg), ResponseCode::NoError);
    assert!(msg.answers.is_empty());
}

#[test]
fn autopath_bare_name_inside_the_zone_is_answered_directly() {
    // `kubernetes.default.svc.cluster.local` has 4 dots < ndots 5, so the client
    // tries it with its search path first.
    let index = autopath_index();
    let (kind, msg) =
        ask_from(&index, "kubernetes.default.svc.cluster.local.app.svc.cluster.local.", T::A, Some(CLIENT));
    assert_eq!(kind, "Authoritative");
    assert_eq!(
        answers(&msg.unwrap()),
        [
            "kubernetes.default.svc.cluster.local.app.svc.cluster.local. 5 IN CNAME kubernetes.default.svc.cluster.local.",
            "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1",
        ]
    );
    // A bare in-zone name that does not exist: NXDOMAIN.
    assert_nxdomain_from(&index, "nope.default.svc.cluster.local.app.svc.cluster.local.", CLIENT);
}

#[test]
fn autopath_bare_reverse_name_is_answered_directly() {
    let index = autopath_index();
    let (kind, msg) = ask_from(&index, "1.0.96.10.in-addr.arpa.app.svc.cluster.local.", T::PTR, Some(CLIENT));
    assert_eq!(kind, "Authoritative");
    assert_eq!(
        answers(&msg.unwrap()),
        [
            "1.0.96.10.in-addr.arpa.app.svc.cluster.local. 5 IN CNAME 1.0.96.10.in-addr.arpa.",
            "1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local.",
        ]
    );
    // An address we do not know goes upstream.
    let (kind, _) = ask_from(&index, "8.8.8.8.in-addr.arpa.app.svc.cluster.local.", T::PTR, Some(CLIENT));
    assert_eq!(kind, "AutopathForward");
}

fn assert_nxdomain_from(index: &crate::index::Index, name: &str, client: IpAddr) {
    let (kind, msg) = ask_from(index, name, T::A, Some(client));
    assert_eq!(kind, "NxDomain", "{name}");
    assert_eq!(rcode(&msg.unwrap()), ResponseCode::NXDomain);
}

#[test]
fn autopath_nodata_candidate_stops_the_walk() {
    // `default` is a namespace: `default.svc.cluster.local` exists (NODATA), which
    // ends the walk as in CoreDNS.
    let index = autopath_index();
    let (kind, _) = ask_from(&index, "default.app.svc.cluster.local.", T::A, Some(CLIENT));
    assert_eq!(kind, "NoData");
}

#[test]
fn autopath_never_rewrites_existing_names() {
    let index = autopath_index();
    let (kind, msg) = ask_from(&index, "web.app.svc.cluster.local.", T::A, Some(CLIENT));
    assert_eq!(kind, "Authoritative");
    assert_eq!(answers(&msg.unwrap()), ["web.app.svc.cluster.local. 5 IN A 10.96.5.5"]);
    // An existing name without records of the type stays NODATA.
    let (kind, _) = ask_from(&index, "web.app.svc.cluster.local.", T::AAAA, Some(CLIENT));
    assert_eq!(kind, "NoData");
    // ExternalName answers are its own CNAME, not an autopath one.
    let (_, msg) = ask_from(&index, "ext.app.svc.cluster.local.", T::A, Some(CLIENT));
    assert_eq!(answers(&msg.unwrap()), ["ext.app.svc.cluster.local. 5 IN CNAME www.example.com."]);
}

#[test]
fn autopath_only_for_the_clients_own_namespace() {
    let index = autopath_index();
    // The client is in `app`; `.default.svc` is not its first search domain.
    assert_nxdomain_from(&index, "example.com.default.svc.cluster.local.", CLIENT);
    // The namespace label alone is no query for autopath.
    assert_nxdomain_from(&index, "example.com.svc.cluster.local.", CLIENT);
}

#[test]
fn autopath_needs_a_known_pod_with_the_cluster_search_path() {
    let index = autopath_index();
    let name = "example.com.app.svc.cluster.local.";
    // Unknown client, no client, a host-network pod, a pod with extra search
    // domains, a pod with dnsPolicy None: plain NXDOMAIN.
    assert_nxdomain_from(&index, name, IpAddr::V4(Ipv4Addr::new(10, 244, 0, 99)));
    assert_eq!(ask(&index, name, T::A).0, "NxDomain");
    assert_nxdomain_from(
        &index,
        "example.com.kube-system.svc.cluster.local.",
        IpAddr::V4(Ipv4Addr::new(172, 30, 0, 10)),
    );
    assert_nxdomain_from(&index, name, IpAddr::V4(Ipv4Addr::new(10, 244, 0, 9)));
    assert_nxdomain_from(&index, name, IpAddr::V4(Ipv4Addr::new(10, 244, 0, 10)));
    // Autopath off.
    let mut config = Config { autopath: false, ..Config::default() };
    config.pods = PodMode::Insecure;
    let off = build_with(config, &[], &[], &["app"], &[pod("app", "client", &["10.244.0.5"])]);
    assert_nxdomain_from(&off, name, CLIENT);
}

#[test]
fn autopath_is_off_when_an_ip_is_shared_across_namespaces() {
    let index =
        build(&[], &[], &["a", "b"], &[pod("a", "p", &["10.244.0.5"]), pod("b", "q", &["10.244.0.5"])]);
    assert_nxdomain_from(&index, "example.com.a.svc.cluster.local.", CLIENT);
}

// ---- No allocation, sizes ----

#[test]
fn answer_holds_no_heap_data() {
    // The answer borrows the index; its size bounds what the hot path copies.
    assert!(std::mem::size_of::<Answer<'_>>() < 2048, "{}", std::mem::size_of::<Answer<'_>>());
}

#[test]
fn encode_appends_after_existing_bytes() {
    // A TCP caller reserves the 2-octet length prefix first.
    let index = kubernetes();
    let mut packet = Vec::new();
    let name = crate::wire::NameBuf::from_ascii(KUBERNETES).unwrap();
    encode_query(&mut packet, 9, name.as_name(), crate::wire::RecordType::A, None, false);
    let query = Query::parse(&packet).unwrap();
    let mut buf = vec![0, 0];
    let written = answer(&index, &query, None).encode(&index, &query, &mut buf, MAX_TCP_MESSAGE).unwrap();
    assert_eq!(buf.len(), written.len + 2);
    let msg = Message::from_vec(&buf[2..]).unwrap();
    assert_eq!(answers(&msg), ["kubernetes.default.svc.cluster.local. 5 IN A 10.3.0.1"]);
}
