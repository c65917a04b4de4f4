//! The hot path allocates nothing: parse, answer and encode into a reused buffer.
//!
//! Counting allocations needs a global allocator, which needs `unsafe impl`; it is
//! confined to this test binary (the library forbids unsafe code). Only the
//! allocations of the test's own thread, while it measures, are counted.

#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{
    Namespace, Pod, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pier_dns::wire::{encode_query, NameBuf, RecordType, MAX_TCP_MESSAGE};
use pier_dns::{answer, Config, Index, Query};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is passed to `System` unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

fn index() -> Index {
    let port = |name: &str, port| ServicePort { name: Some(name.into()), port, ..Default::default() };
    let services = [
        Service {
            metadata: meta("default", "kubernetes"),
            spec: Some(ServiceSpec {
                cluster_ips: Some(vec!["10.96.0.1".into(), "fd00::1".into()]),
                ports: Some(vec![port("https", 443)]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Service {
            metadata: meta("default", "db"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ports: Some(vec![port("pg", 5432)]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let endpoints = (1..=20)
        .map(|i| Endpoint {
            addresses: vec![format!("10.1.0.{i}")],
            hostname: Some(format!("db-{i}")),
            ..Default::default()
        })
        .collect();
    let slices = [EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), "db".to_string())])),
            ..meta("default", "db-1")
        },
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ports: Some(vec![EndpointPort { name: Some("pg".into()), port: Some(5432), ..Default::default() }]),
    }];
    let namespaces = [Namespace {
        metadata: ObjectMeta { name: Some("app".into()), ..Default::default() },
        ..Default::default()
    }];
    let pods = [Pod {
        metadata: meta("app", "client"),
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(vec![PodIP { ip: "10.244.0.5".into() }]),
            ..Default::default()
        }),
    }];
    Index::builder(Config::default())
        .unwrap()
        .services(&services)
        .endpoint_slices(&slices)
        .namespaces(&namespaces)
        .pods(&pods)
        .build()
}

#[test]
fn answering_allocates_nothing() {
    let index = index();
    let client = Some(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5)));
    let cases = [
        ("kubernetes.default.svc.cluster.local.", RecordType::A),
        ("KUBERNETES.default.svc.cluster.local.", RecordType::AAAA),
        ("db.default.svc.cluster.local.", RecordType::A),
        ("db-7.db.default.svc.cluster.local.", RecordType::A),
        ("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV),
        ("1.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("missing.default.svc.cluster.local.", RecordType::A),
        ("default.svc.cluster.local.", RecordType::A),
        ("10-244-0-5.app.pod.cluster.local.", RecordType::A),
        ("dns-version.cluster.local.", RecordType::TXT),
        ("kubernetes.default.app.svc.cluster.local.", RecordType::A),
        ("example.com.app.svc.cluster.local.", RecordType::A),
        ("example.com.", RecordType::A),
    ];
    let mut packets = Vec::new();
    for (name, qtype) in cases {
        let mut packet = Vec::new();
        encode_query(&mut packet, 1, NameBuf::from_ascii(name).unwrap().as_name(), qtype, Some(1232), false);
        packets.push(packet);
    }
    // The counter counts.
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![1u8]));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 1);
    COUNTING.with(|c| c.set(false));

    let mut buf = Vec::with_capacity(MAX_TCP_MESSAGE);
    for packet in &packets {
        COUNTING.with(|c| c.set(true));
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let query = Query::parse(packet).unwrap();
        let outcome = answer(&index, &query, client);
        buf.clear();
        outcome.encode(&index, &query, &mut buf, query.max_udp_response_len());
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        COUNTING.with(|c| c.set(false));
        assert_eq!(allocated, 0, "{} allocated {allocated} times", query.name);
    }
}
