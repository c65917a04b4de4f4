//! Test helpers: Kubernetes objects in a line, queries built with hickory-proto,
//! and responses parsed back with it and printed as zone-file lines.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::{Name as HName, Record, RecordType as HType};
use k8s_openapi::api::core::v1::{
    Namespace, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::answer::{answer, Answer};
use crate::index::{Config, Index, LABEL_SERVICE_NAME};
use crate::wire::{Query, MAX_TCP_MESSAGE};

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

/// A port: (name, number, protocol).
pub type Port<'a> = (Option<&'a str>, i32, &'a str);

fn service_ports(ports: &[Port<'_>]) -> Option<Vec<ServicePort>> {
    Some(
        ports
            .iter()
            .map(|(name, port, proto)| ServicePort {
                name: name.map(Into::into),
                port: *port,
                protocol: Some((*proto).into()),
                ..Default::default()
            })
            .collect(),
    )
}

/// A ClusterIP Service with `clusterIPs`.
pub fn service(ns: &str, name: &str, ips: &[&str], ports: &[Port<'_>]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|s| (*s).into()),
            cluster_ips: Some(ips.iter().map(|s| (*s).into()).collect()),
            ports: service_ports(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A headless Service.
pub fn headless(ns: &str, name: &str, ports: &[Port<'_>]) -> Service {
    service(ns, name, &["None"], ports)
}

/// An ExternalName Service.
pub fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An endpoint with one address.
pub fn ep(addr: &str, hostname: Option<&str>, ready: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec![addr.into()],
        hostname: hostname.map(Into::into),
        conditions: Some(EndpointConditions { ready, ..Default::default() }),
        ..Default::default()
    }
}

/// An EndpointSlice of `service`; the address type is guessed from the first
/// endpoint.
pub fn slice(
    ns: &str,
    service: &str,
    name: &str,
    endpoints: Vec<Endpoint>,
    ports: &[Port<'_>],
) -> EndpointSlice {
    let v6 = endpoints.first().is_some_and(|e| e.addresses.iter().any(|a| a.contains(':')));
    EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(LABEL_SERVICE_NAME.to_string(), service.to_string())])),
            ..meta(ns, name)
        },
        address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
        endpoints: Some(endpoints),
        ports: Some(
            ports
                .iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: name.map(Into::into),
                    port: Some(*port),
                    protocol: Some((*proto).into()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// A Namespace.
pub fn namespace(name: &str) -> Namespace {
    Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
}

/// A running, ready Pod with these IPs.
pub fn pod(ns: &str, name: &str, ips: &[&str]) -> Pod {
    Pod {
        metadata: meta(ns, name),
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: ips.first().map(|s| (*s).into()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: (*ip).into() }).collect()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A query packet built by hickory-proto, RD set, with EDNS if `edns` is given.
pub fn query_packet(id: u16, name: &str, qtype: HType, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(HQuery::query(HName::from_ascii(name).unwrap(), qtype));
    if let Some((payload, dnssec_ok)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(dnssec_ok);
        msg.set_edns(e);
    }
    msg.to_vec().unwrap()
}

/// Parses `packet`, answers it, and encodes over TCP limits.
pub fn respond(index: &Index, packet: &[u8], client: Option<IpAddr>, max_len: usize) -> (String, Vec<u8>) {
    let query = Query::parse(packet).unwrap();
    let outcome = answer(index, &query, client);
    let kind = kind(&outcome);
    let mut buf = Vec::new();
    outcome.encode(index, &query, &mut buf, max_len);
    (kind, buf)
}

/// The name of an outcome's variant.
pub fn kind(answer: &Answer<'_>) -> String {
    match answer {
        Answer::Authoritative(_) => "Authoritative",
        Answer::NxDomain => "NxDomain",
        Answer::NoData => "NoData",
        Answer::Refused => "Refused",
        Answer::ServFail => "ServFail",
        Answer::NotImp => "NotImp",
        Answer::BadVersion => "BadVersion",
        Answer::Forward => "Forward",
        Answer::AutopathForward(_) => "AutopathForward",
    }
    .into()
}

/// Asks `name` `qtype` without EDNS; returns the outcome and the parsed response
/// (`None` for forwarding outcomes).
pub fn ask(index: &Index, name: &str, qtype: HType) -> (String, Option<Message>) {
    ask_from(index, name, qtype, None)
}

/// [`ask`] from a client address.
pub fn ask_from(
    index: &Index,
    name: &str,
    qtype: HType,
    client: Option<IpAddr>,
) -> (String, Option<Message>) {
    let packet = query_packet(0xbeef, name, qtype, None);
    let (kind, buf) = respond(index, &packet, client, MAX_TCP_MESSAGE);
    let msg = (!buf.is_empty()).then(|| Message::from_vec(&buf).unwrap());
    if let Some(msg) = &msg {
        assert_eq!(msg.metadata.id, 0xbeef);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert_eq!(msg.queries.len(), 1);
        // The question is echoed exactly, case included.
        assert_eq!(msg.queries[0].name.to_string(), HName::from_ascii(name).unwrap().to_string());
    }
    (kind, msg)
}

/// Records as zone-file lines: `name ttl IN TYPE rdata`.
pub fn lines(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string()).collect()
}

/// The answer section of a response as lines, sorted.
pub fn answers(msg: &Message) -> Vec<String> {
    lines(&msg.answers)
}

/// A default index from objects.
pub fn build(services: &[Service], slices: &[EndpointSlice], namespaces: &[&str], pods: &[Pod]) -> Index {
    build_with(Config::default(), services, slices, namespaces, pods)
}

/// An index with `config` from objects.
pub fn build_with(
    config: Config,
    services: &[Service],
    slices: &[EndpointSlice],
    namespaces: &[&str],
    pods: &[Pod],
) -> Index {
    let namespaces: Vec<Namespace> = namespaces.iter().map(|n| namespace(n)).collect();
    Index::builder(config)
        .unwrap()
        .services(services)
        .endpoint_slices(slices)
        .namespaces(&namespaces)
        .pods(pods)
        .build()
}
