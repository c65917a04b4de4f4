#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::rdata::{CNAME, MX, SOA, SRV, TXT};
use hickory_proto::rr::{Name as HName, RData, Record, RecordType as T};

use super::*;
use crate::testutil::{build, ep, headless, query_packet, service, slice};

fn name(s: &str) -> NameBuf {
    NameBuf::from_ascii(s).unwrap()
}

/// A query built by hand: header, one question, optional extra bytes.
fn raw_query(id: u16, qdcount: u16, arcount: u16, question: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // RD
    p.extend_from_slice(&qdcount.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&arcount.to_be_bytes());
    p.extend_from_slice(question);
    p.extend_from_slice(extra);
    p
}

const Q_EXAMPLE: &[u8] = b"\x07example\x03com\x00\x00\x01\x00\x01";

fn kind(packet: &[u8]) -> ParseErrorKind {
    Query::parse(packet).unwrap_err().kind()
}

// ---- Names ----

#[test]
fn name_from_ascii_and_display_round_trip() {
    for (text, shown) in [
        ("example.com", "example.com."),
        ("Example.COM.", "Example.COM."),
        (".", "."),
        ("", "."),
        ("a\\.b.c", "a\\.b.c."),
        ("\\065bc.", "Abc."),
        ("sp\\032ace.", "sp\\ ace."),
        ("\\000x.", "\\000x."),
    ] {
        assert_eq!(name(text).to_string(), shown, "{text}");
    }
    assert_eq!(name("a\\.b.c").as_name().label_count(), 2);
}

#[test]
fn name_limits() {
    let label63 = "a".repeat(63);
    assert!(NameBuf::from_ascii(&label63).is_ok());
    assert_eq!(NameBuf::from_ascii(&"a".repeat(64)), Err(NameError::LabelTooLong));
    // 4 labels of 63 = 256 octets in wire form with the root: too long; 3 of 63
    // and one of 61 = 255: fits.
    let too_long = [label63.as_str(); 4].join(".");
    assert_eq!(NameBuf::from_ascii(&too_long), Err(NameError::TooLong));
    let max = format!("{}.{}", [label63.as_str(); 3].join("."), "a".repeat(61));
    assert_eq!(NameBuf::from_ascii(&max).unwrap().as_wire().len(), 255);
    assert_eq!(NameBuf::from_ascii("a..b"), Err(NameError::EmptyLabel));
    assert_eq!(NameBuf::from_ascii("a\\"), Err(NameError::BadEscape));
    assert_eq!(NameBuf::from_ascii("\\256"), Err(NameError::BadEscape));
}

#[test]
fn name_comparison_ignores_case_and_respects_label_boundaries() {
    let zone = name("cluster.local");
    assert_eq!(name("A.Cluster.LOCAL"), name("a.cluster.local"));
    assert!(name("x.CLUSTER.local").as_name().is_subdomain_of(zone.as_name()));
    assert!(name("cluster.local").as_name().is_subdomain_of(zone.as_name()));
    assert!(!name("xcluster.local").as_name().is_subdomain_of(zone.as_name()));
    assert!(!name("local").as_name().is_subdomain_of(zone.as_name()));
    assert_eq!(name("a.b.cluster.local").as_name().strip_suffix(zone.as_name()), Some(&b"\x01a\x01b"[..]));
    assert!(NameRef::from_wire(b"\x01a\x00").is_ok());
    assert!(NameRef::from_wire(b"\x01a").is_err());
    assert!(NameRef::from_wire(b"\x01a\x00\x00").is_err());
    assert!(NameRef::from_wire(b"\x40").is_err());
}

// ---- Parsing ----

#[test]
fn parses_a_query_with_edns() {
    let packet = query_packet(
        0xabcd,
        "Kubernetes.Default.svc.cluster.local.",
        hickory_proto::rr::RecordType::AAAA,
        Some((4096, true)),
    );
    let q = Query::parse(&packet).unwrap();
    assert_eq!(q.header.id, 0xabcd);
    assert!(q.header.recursion_desired);
    assert!(!q.header.response);
    assert_eq!(q.header.opcode, 0);
    assert_eq!(q.name.to_string(), "Kubernetes.Default.svc.cluster.local.");
    assert_eq!(q.qtype, RecordType::AAAA);
    assert_eq!(q.qclass, Class::IN);
    assert_eq!(q.edns, Some(Edns { udp_payload_size: 4096, version: 0, dnssec_ok: true }));
    assert_eq!(q.max_udp_response_len(), 4096);
}

#[test]
fn parses_a_query_without_edns() {
    let q = Query::parse(&raw_query(1, 1, 0, Q_EXAMPLE, &[])).unwrap();
    assert_eq!(q.edns, None);
    assert_eq!(q.max_udp_response_len(), 512);
    assert_eq!(q.name.to_string(), "example.com.");
}

#[test]
fn formerr_cases_keep_the_header() {
    let cases: Vec<(Vec<u8>, ParseErrorKind)> = vec![
        (raw_query(7, 0, 0, &[], &[]), ParseErrorKind::QuestionCount(0)),
        (raw_query(7, 2, 0, &[Q_EXAMPLE, Q_EXAMPLE].concat(), &[]), ParseErrorKind::QuestionCount(2)),
        (raw_query(7, 1, 0, b"\x07exam", &[]), ParseErrorKind::Truncated),
        (raw_query(7, 1, 0, b"\x07example\x03com\x00\x00\x01", &[]), ParseErrorKind::Truncated),
        // Extended label type 0x40 and reserved 0x80.
        (raw_query(7, 1, 0, b"\x41abc\x00\x00\x01\x00\x01", &[]), ParseErrorKind::BadLabelType),
        (raw_query(7, 1, 0, b"\x81abc\x00\x00\x01\x00\x01", &[]), ParseErrorKind::BadLabelType),
        // A pointer to itself, one pointing forward, one into the header.
        (raw_query(7, 1, 0, b"\xc0\x0c\x00\x01\x00\x01", &[]), ParseErrorKind::BadPointer),
        (raw_query(7, 1, 0, b"\xc0\x20\x00\x01\x00\x01", &[]), ParseErrorKind::BadPointer),
        (raw_query(7, 1, 0, b"\xc0\x02\x00\x01\x00\x01", &[]), ParseErrorKind::BadPointer),
        // A loop through a label: "\x01a" then a pointer back to it. Each turn
        // adds a label, so it ends as a name over 255 octets.
        (raw_query(7, 1, 0, b"\x01a\xc0\x0c\x00\x01\x00\x01", &[]), ParseErrorKind::NameTooLong),
        // An additional record count with nothing there.
        (raw_query(7, 1, 1, Q_EXAMPLE, &[]), ParseErrorKind::Truncated),
        // Two OPT records.
        (raw_query(7, 1, 2, Q_EXAMPLE, &[OPT, OPT].concat()), ParseErrorKind::DuplicateOpt),
        // An OPT record whose owner is not the root.
        (
            raw_query(7, 1, 1, Q_EXAMPLE, b"\x01a\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),
            ParseErrorKind::MisplacedOpt,
        ),
        // Options that overrun the RDATA.
        (
            raw_query(7, 1, 1, Q_EXAMPLE, b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x08"),
            ParseErrorKind::BadOptions,
        ),
        // RDLENGTH past the end.
        (
            raw_query(7, 1, 1, Q_EXAMPLE, b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x10"),
            ParseErrorKind::Truncated,
        ),
    ];
    for (packet, want) in cases {
        let err = Query::parse(&packet).unwrap_err();
        assert_eq!(err.kind(), want, "{packet:02x?}");
        assert_eq!(err.header().unwrap().id, 7);
        assert!(err.should_respond());
        assert!(!err.to_string().is_empty());
    }
}

const OPT: &[u8] = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

#[test]
fn names_longer_than_255_octets_are_rejected() {
    // Four 63-octet labels: 257 octets with the root.
    let mut question = Vec::new();
    for _ in 0..4 {
        question.push(63);
        question.extend_from_slice(&[b'a'; 63]);
    }
    question.extend_from_slice(b"\x00\x00\x01\x00\x01");
    assert_eq!(kind(&raw_query(1, 1, 0, &question, &[])), ParseErrorKind::NameTooLong);
    // Exactly 255 parses.
    let mut question = Vec::new();
    for len in [63, 63, 63, 61] {
        question.push(len);
        question.extend(std::iter::repeat_n(b'a', usize::from(len)));
    }
    question.extend_from_slice(b"\x00\x00\x01\x00\x01");
    assert_eq!(Query::parse(&raw_query(1, 1, 0, &question, &[])).unwrap().name.as_wire().len(), 255);
}

#[test]
fn compressed_names_in_skipped_records_are_accepted() {
    // The question comes first, so a compressed name is read in the additional
    // section: a pointer to "example.com" inside the question (offset 16).
    let extra = b"\xc0\x10\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00";
    let q =
        Query::parse(&raw_query(1, 1, 1, b"\x03www\x07example\x03com\x00\x00\x01\x00\x01", extra)).unwrap();
    assert_eq!(q.name.to_string(), "www.example.com.");
}

#[test]
fn other_additional_records_are_skipped() {
    // A TXT record in the additional section, then an OPT.
    let mut extra = b"\x03foo\x00\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x04\x03bar".to_vec();
    extra.extend_from_slice(OPT);
    let q = Query::parse(&raw_query(1, 1, 2, Q_EXAMPLE, &extra)).unwrap();
    assert_eq!(q.edns.unwrap().udp_payload_size, 1232);
    // Trailing garbage after the counted records is ignored.
    let mut p = raw_query(1, 1, 0, Q_EXAMPLE, &[]);
    p.extend_from_slice(b"junk");
    assert!(Query::parse(&p).is_ok());
}

#[test]
fn opt_outside_additional_is_misplaced() {
    let mut p = raw_query(1, 1, 0, Q_EXAMPLE, OPT);
    p[7] = 1; // ANCOUNT
    assert_eq!(kind(&p), ParseErrorKind::MisplacedOpt);
}

#[test]
fn edns_version_and_flags_are_read() {
    let opt = b"\x00\x00\x29\x02\x00\x00\x01\x80\x00\x00\x00";
    let q = Query::parse(&raw_query(1, 1, 1, Q_EXAMPLE, opt)).unwrap();
    assert_eq!(q.edns, Some(Edns { udp_payload_size: 512, version: 1, dnssec_ok: true }));
}

#[test]
fn responses_and_short_packets_are_dropped() {
    let mut p = raw_query(1, 1, 0, Q_EXAMPLE, &[]);
    p[2] |= 0x80;
    let err = Query::parse(&p).unwrap_err();
    assert_eq!(err.kind(), ParseErrorKind::NotAQuery);
    assert!(!err.should_respond());
    for len in 0..12 {
        let err = Query::parse(&p[..len]).unwrap_err();
        assert_eq!(err.kind(), ParseErrorKind::ShortHeader);
        assert!(err.header().is_none());
        assert!(!err.should_respond());
    }
}

#[test]
fn other_opcodes_parse_header_and_question_only() {
    let mut p = raw_query(1, 1, 3, Q_EXAMPLE, b"garbage");
    p[2] = 5 << 3; // UPDATE
    let q = Query::parse(&p).unwrap();
    assert_eq!(q.header.opcode, Opcode::UPDATE.0);
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_mutated_packets_never_panic() {
    let index = build(
        &[
            service("default", "kubernetes", &["10.3.0.1"], &[(Some("https"), 443, "TCP")]),
            headless("default", "h", &[(Some("http"), 80, "TCP")]),
        ],
        &[slice(
            "default",
            "h",
            "h-1",
            vec![ep("10.1.0.1", Some("a"), None), ep("10.1.0.2", None, None)],
            &[(Some("http"), 80, "TCP")],
        )],
        &["default"],
        &[],
    );
    let seeds: Vec<Vec<u8>> = vec![
        query_packet(1, "kubernetes.default.svc.cluster.local.", T::A, Some((1232, true))),
        query_packet(2, "_http._tcp.h.default.svc.cluster.local.", T::SRV, None),
        query_packet(3, "1.0.3.10.in-addr.arpa.", T::PTR, Some((512, false))),
        query_packet(4, "example.com.default.svc.cluster.local.", T::AAAA, None),
        raw_query(
            5,
            1,
            2,
            b"\x03www\x07example\x03com\x00\x00\x01\x00\x01",
            &[b"\xc0\x10\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00", OPT].concat(),
        ),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let (mut parsed, mut answered) = (0, 0);
    for i in 0..20_000 {
        let mut p = seeds[i % seeds.len()].clone();
        match rng.below(5) {
            0 => p.truncate(rng.below(p.len() + 1)),
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(p.len());
                    p[at] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let at = rng.below(p.len());
                p[at] = rng.next() as u8;
            }
            3 => {
                let at = rng.below(p.len() + 1);
                for _ in 0..rng.below(8) {
                    p.insert(at, rng.next() as u8);
                }
            }
            _ => p = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        }
        // Keep some packets queries so the later stages get exercised.
        if p.len() > 2 && rng.below(2) == 0 {
            p[2] &= 0x7f;
        }
        out.clear();
        match Query::parse(&p) {
            Ok(q) => {
                parsed += 1;
                let outcome = crate::answer::answer(&index, &q, None);
                let limit = q.max_udp_response_len();
                if let Some(written) = outcome.encode(&index, &q, &mut out, limit) {
                    answered += 1;
                    assert!(written.len <= limit.max(q.name.as_wire().len() + 16 + 11 + 12));
                    // Whatever we send must be a valid message.
                    Message::from_vec(&out).unwrap_or_else(|e| panic!("{e}: {out:02x?} from {p:02x?}"));
                }
            }
            Err(e) => {
                if let Some(w) = crate::answer::encode_parse_error(&e, &mut out) {
                    assert_eq!(w.len, 12);
                }
            }
        }
    }
    // The mutations must leave enough valid queries to be a real test.
    assert!(parsed > 2_000 && answered > 1_000, "parsed {parsed}, answered {answered}");
}

#[test]
fn fuzz_upstream_reader_never_panics() {
    let mut upstream = Message::new(1, MessageType::Response, OpCode::Query);
    upstream.add_query(HQuery::query(HName::from_ascii("example.com.").unwrap(), T::A));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("example.com.").unwrap(),
        60,
        RData::CNAME(CNAME(HName::from_ascii("www.example.com.").unwrap())),
    ));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("example.com.").unwrap(),
        60,
        RData::MX(MX::new(10, HName::from_ascii("mail.example.com.").unwrap())),
    ));
    let seed = upstream.to_vec().unwrap();
    let mut rng = Rng(42);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let mut p = seed.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(p.len());
            p[at] = rng.next() as u8;
        }
        p.truncate(p.len() - rng.below(8));
        if let Ok(r) = UpstreamResponse::parse(&p) {
            out.clear();
            let mut w = MessageWriter::new(&mut out, Header::default());
            w.question(name("q.").as_name(), RecordType::A, Class::IN);
            for record in r.answers() {
                let Ok(record) = record else { break };
                w.upstream_record(&record, record.ttl);
            }
            w.finish(MAX_TCP_MESSAGE);
        }
    }
}

// ---- Writing ----

#[test]
fn writer_encodes_every_record_type_readably() {
    let mut buf = Vec::new();
    let header = Header { id: 9, response: true, authoritative: true, ..Header::default() };
    let mut w = MessageWriter::new(&mut buf, header);
    let q = name("Svc.NS.svc.cluster.local.");
    let target = name("target.ns.svc.cluster.local.");
    w.question(q.as_name(), RecordType::ANY, Class::IN);
    w.a(Owner::Question, 5, Ipv4Addr::new(10, 0, 0, 1));
    w.aaaa(Owner::Question, 5, Ipv6Addr::LOCALHOST);
    w.cname(Owner::Question, 5, target.as_name());
    w.ptr(Owner::Question, 5, target.as_name());
    w.srv(Owner::Question, 5, 0, 100, 443, target.as_name());
    w.txt(Owner::Question, 5, &[b"1.1.0", b"second"]);
    w.set_section(Section::Authority);
    w.soa(
        Owner::Name(name("cluster.local.").as_name()),
        5,
        name("ns.dns.cluster.local.").as_name(),
        name("hostmaster.cluster.local.").as_name(),
        1,
        7200,
        1800,
        86400,
        5,
    );
    w.set_section(Section::Additional);
    w.ns(Owner::Name(name("cluster.local.").as_name()), 5, name("ns.dns.cluster.local.").as_name());
    let written = w.finish(MAX_TCP_MESSAGE);
    assert_eq!(written.len, buf.len());
    let msg = Message::from_vec(&buf).unwrap();
    assert!(msg.metadata.authoritative);
    let answers: Vec<String> = msg.answers.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        answers,
        [
            "Svc.NS.svc.cluster.local. 5 IN A 10.0.0.1",
            "Svc.NS.svc.cluster.local. 5 IN AAAA ::1",
            // Compression matches suffixes ignoring case, so a compressed target
            // takes the question's spelling of the shared suffix (RFC 4343 §3:
            // the same name). SRV targets are never compressed (RFC 2782).
            "Svc.NS.svc.cluster.local. 5 IN CNAME target.NS.svc.cluster.local.",
            "Svc.NS.svc.cluster.local. 5 IN PTR target.NS.svc.cluster.local.",
            "Svc.NS.svc.cluster.local. 5 IN SRV 0 100 443 target.ns.svc.cluster.local.",
            "Svc.NS.svc.cluster.local. 5 IN TXT 1.1.0second",
        ]
    );
    let RData::TXT(TXT { txt_data, .. }) = &msg.answers[5].data else { panic!() };
    assert_eq!(txt_data.len(), 2);
    let RData::SOA(soa) = &msg.authorities[0].data else { panic!() };
    assert_eq!((soa.serial, soa.minimum), (1, 5));
    let _: &SOA = soa;
    assert_eq!(msg.additionals.len(), 1);
}

#[test]
fn compression_points_at_the_question_and_earlier_names() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header { response: true, ..Header::default() });
    let q = name("_http._tcp.web.ns.svc.cluster.local.");
    w.question(q.as_name(), RecordType::SRV, Class::IN);
    // Owner: a 2-octet pointer to offset 12.
    w.cname(Owner::Question, 5, name("WEB.ns.svc.cluster.local.").as_name());
    let after_first = w.size();
    // The CNAME target "WEB.ns..." matched the question's "web.ns..." suffix
    // ignoring case: 2 (owner) + 10 (fixed) + 2 (pointer).
    assert_eq!(after_first, 12 + q.as_wire().len() + 4 + 14);
    // A new label in front of a known suffix: the label plus a pointer.
    w.ptr(Owner::Question, 5, name("a.web.ns.svc.cluster.local.").as_name());
    assert_eq!(w.size(), after_first + 12 + 2 + 2);
    // A name seen only in an RDATA is a target too.
    w.a(Owner::Name(name("a.web.ns.svc.cluster.local.").as_name()), 5, Ipv4Addr::new(1, 2, 3, 4));
    let before = w.size();
    w.a(Owner::Name(name("A.web.ns.svc.cluster.local.").as_name()), 5, Ipv4Addr::new(1, 2, 3, 5));
    assert_eq!(w.size(), before + 2 + 10 + 4);
    // An unrelated name is written in full.
    w.a(Owner::Name(name("example.org.").as_name()), 5, Ipv4Addr::new(1, 2, 3, 6));
    w.finish(MAX_TCP_MESSAGE);
    let msg = Message::from_vec(&buf).unwrap();
    let got: Vec<String> = msg.answers.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        got,
        [
            "_http._tcp.web.ns.svc.cluster.local. 5 IN CNAME web.ns.svc.cluster.local.",
            "_http._tcp.web.ns.svc.cluster.local. 5 IN PTR a.web.ns.svc.cluster.local.",
            "a.web.ns.svc.cluster.local. 5 IN A 1.2.3.4",
            "a.web.ns.svc.cluster.local. 5 IN A 1.2.3.5",
            "example.org. 5 IN A 1.2.3.6",
        ]
    );
}

#[test]
fn srv_targets_are_not_compressed() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header::default());
    let q = name("web.ns.svc.cluster.local.");
    w.question(q.as_name(), RecordType::SRV, Class::IN);
    let before = w.size();
    w.srv(Owner::Question, 5, 0, 100, 80, q.as_name());
    assert_eq!(w.size(), before + 2 + 10 + 6 + q.as_wire().len());
}

#[test]
fn compression_survives_a_full_table() {
    // More distinct names than compression slots: later ones are written in full
    // or against what is remembered, and the message stays valid.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header::default());
    w.question(name("q.example.").as_name(), RecordType::A, Class::IN);
    for i in 0..200 {
        let n = name(&format!("host{i}.zone{}.example.", i % 7));
        w.a(Owner::Name(n.as_name()), 5, Ipv4Addr::new(10, 0, 0, i as u8));
    }
    w.finish(MAX_TCP_MESSAGE);
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.answers.len(), 200);
    assert_eq!(msg.answers[199].name.to_string(), "host199.zone3.example.");
}

#[test]
fn truncation_keeps_the_question_and_opt() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header::default());
    w.question(name("x.example.").as_name(), RecordType::A, Class::IN);
    w.set_edns(Some(EdnsResponse { udp_payload_size: 1232, extended_rcode: 0, version: 0, dnssec_ok: true }));
    for i in 0..100 {
        w.a(Owner::Question, 5, Ipv4Addr::new(10, 0, 0, i));
    }
    let written = w.finish(512);
    assert!(written.truncated);
    // Header, "x.example." (11 octets) with type and class, the OPT record.
    assert_eq!(written.len, 12 + 11 + 4 + OPT_RECORD_LEN);
    let msg = Message::from_vec(&buf).unwrap();
    assert!(msg.metadata.truncation);
    assert!(msg.answers.is_empty());
    assert!(msg.edns.unwrap().flags().dnssec_ok);
}

#[test]
fn exactly_at_the_limit_is_not_truncated() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header::default());
    w.question(name("x.example.").as_name(), RecordType::A, Class::IN);
    w.a(Owner::Question, 5, Ipv4Addr::new(10, 0, 0, 1));
    let len = w.size();
    assert!(!w.finish(len).truncated);
}

#[test]
fn encode_query_and_set_id() {
    let mut buf = Vec::new();
    let len =
        encode_query(&mut buf, 0x1234, name("Example.com.").as_name(), RecordType::AAAA, Some(1232), true);
    assert_eq!(len, buf.len());
    let msg = Message::from_vec(&buf).unwrap();
    assert_eq!(msg.metadata.id, 0x1234);
    assert_eq!(msg.metadata.message_type, MessageType::Query);
    assert!(msg.metadata.recursion_desired);
    assert_eq!(msg.queries[0].name.to_string(), "Example.com.");
    assert_eq!(msg.queries[0].query_type, T::AAAA);
    let edns = msg.edns.as_ref().unwrap();
    assert_eq!(edns.max_payload(), 1232);
    assert!(edns.flags().dnssec_ok);
    // Our own parser reads it back.
    let q = Query::parse(&buf).unwrap();
    assert_eq!(q.edns.unwrap().udp_payload_size, 1232);

    assert!(set_id(&mut buf, 0xfeed));
    assert_eq!(Message::from_vec(&buf).unwrap().metadata.id, 0xfeed);
    assert!(!set_id(&mut [0u8; 1], 1));
    // Without EDNS.
    buf.clear();
    encode_query(&mut buf, 1, name("a.").as_name(), RecordType::A, None, false);
    assert!(Message::from_vec(&buf).unwrap().edns.is_none());
}

#[test]
fn upstream_records_are_copied_with_names_decompressed() {
    let mut upstream = Message::new(1, MessageType::Response, OpCode::Query);
    upstream.add_query(HQuery::query(HName::from_ascii("example.com.").unwrap(), T::SRV));
    let owner = HName::from_ascii("example.com.").unwrap();
    upstream.add_answer(Record::from_rdata(
        owner.clone(),
        60,
        RData::CNAME(CNAME(HName::from_ascii("www.example.com.").unwrap())),
    ));
    upstream.add_answer(Record::from_rdata(
        owner.clone(),
        61,
        RData::MX(MX::new(10, HName::from_ascii("mail.example.com.").unwrap())),
    ));
    upstream.add_answer(Record::from_rdata(
        owner.clone(),
        62,
        RData::SRV(SRV::new(1, 2, 3, HName::from_ascii("srv.example.com.").unwrap())),
    ));
    upstream.add_answer(Record::from_rdata(
        owner.clone(),
        63,
        RData::SOA(SOA::new(
            HName::from_ascii("ns.example.com.").unwrap(),
            HName::from_ascii("admin.example.com.").unwrap(),
            7,
            1,
            2,
            3,
            4,
        )),
    ));
    upstream.add_answer(Record::from_rdata(owner, 64, RData::TXT(TXT::new(vec!["hello".into()]))));
    let bytes = upstream.to_vec().unwrap();
    let reply = UpstreamResponse::parse(&bytes).unwrap();
    assert_eq!(reply.header().rcode, 0);

    // Copy into a message whose offsets differ from upstream's.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, Header { response: true, ..Header::default() });
    w.question(name("a-much-longer-question.example.org.").as_name(), RecordType::SRV, Class::IN);
    for record in reply.answers() {
        let record = record.unwrap();
        w.upstream_record(&record, record.ttl);
    }
    w.finish(MAX_TCP_MESSAGE);
    let msg = Message::from_vec(&buf).unwrap();
    let got: Vec<String> = msg.answers.iter().map(|r| r.to_string()).collect();
    let want: Vec<String> =
        Message::from_vec(&bytes).unwrap().answers.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, want);
    assert!(UpstreamResponse::parse(&query_packet(1, "a.", T::A, None)).is_err());
}

#[test]
fn upstream_sections_and_question_are_read() {
    let mut upstream = Message::new(7, MessageType::Response, OpCode::Query);
    upstream.add_query(HQuery::query(HName::from_ascii("Nope.Example.com.").unwrap(), T::AAAA));
    upstream.add_answer(Record::from_rdata(
        HName::from_ascii("nope.example.com.").unwrap(),
        30,
        RData::CNAME(CNAME(HName::from_ascii("x.example.com.").unwrap())),
    ));
    upstream.add_authority(Record::from_rdata(
        HName::from_ascii("example.com.").unwrap(),
        300,
        RData::SOA(SOA::new(
            HName::from_ascii("ns.example.com.").unwrap(),
            HName::from_ascii("admin.example.com.").unwrap(),
            7,
            1,
            2,
            3,
            60,
        )),
    ));
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232);
    upstream.set_edns(edns);
    let bytes = upstream.to_vec().unwrap();
    let reply = UpstreamResponse::parse(&bytes).unwrap();
    let (qname, qtype, qclass) = reply.question().unwrap();
    assert!(qname.as_name().eq_ignore_case(name("nope.example.com.").as_name()));
    assert_eq!((qtype, qclass), (RecordType::AAAA, Class::IN));
    assert_eq!(reply.answers().count(), 1);
    let authority: Vec<_> = reply.authority().map(|r| r.unwrap()).collect();
    assert_eq!(authority.len(), 1);
    assert_eq!(authority[0].rtype, RecordType::SOA);
    let RecordData::Soa { fixed, .. } = authority[0].data else { panic!("an SOA") };
    assert_eq!(fixed[16..], [0, 0, 0, 60]);
    let additional: Vec<_> = reply.additional().map(|r| r.unwrap()).collect();
    assert_eq!(additional.len(), 1);
    assert_eq!(additional[0].rtype, RecordType::OPT);

    // A broken answer section: the later sections yield one error.
    let reply = UpstreamResponse::parse(&bytes[..40]).unwrap();
    assert!(matches!(reply.authority().next(), Some(Err(_))));
    assert_eq!(reply.authority().count(), 1);
    assert_eq!(reply.additional().count(), 1);
}

#[test]
fn rcode_bits() {
    assert_eq!(Rcode::BADVERS.low_bits(), 0);
    assert_eq!(Rcode::BADVERS.high_bits(), 1);
    assert_eq!(Rcode::NXDOMAIN.low_bits(), 3);
    assert_eq!(format!("{:?}", RecordType::SRV), "SRV");
    assert_eq!(format!("{:?}", RecordType(65)), "TYPE65");
}
