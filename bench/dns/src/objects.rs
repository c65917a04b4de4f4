//! The cluster the benchmark serves, generated deterministically: `services`
//! ClusterIP Services spread round-robin over `namespaces` Namespaces, each with
//! one named port (`http`, 80/TCP, so `_http._tcp.<svc>` SRV records exist) and one
//! EndpointSlice with two ready endpoints, as the EndpointSlice controller would
//! write it. The same records, as unbound `local-data`, and dnsperf query files
//! of random names from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The zone served (Pier's default, CoreDNS's default).
pub const ZONE: &str = "cluster.local";
/// Positive TTL of both servers' answers (Pier's default, as CoreDNS).
pub const TTL: u32 = 5;
/// The Services' one port.
pub const PORT_NAME: &str = "http";
pub const PORT: u16 = 80;
const TARGET_PORT: i32 = 8080;
/// Endpoints per Service (in the index only: A queries for a ClusterIP Service
/// answer with the cluster IP).
pub const ENDPOINTS: usize = 2;
/// The most Services: cluster IPs come from 10.96.0.0/12, endpoints from
/// 10.128.0.0/10.
pub const MAX_SERVICES: usize = 1_000_000;

/// The shape of the generated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub services: usize,
    pub namespaces: usize,
}

impl Layout {
    pub fn namespace_name(k: usize) -> String {
        format!("bench-{k}")
    }

    /// Service `i`'s namespace and name.
    pub fn service_key(&self, i: usize) -> (String, String) {
        (Layout::namespace_name(i % self.namespaces.max(1)), format!("svc-{i}"))
    }

    /// `svc-<i>.bench-<k>.svc.cluster.local` (no final dot).
    pub fn fqdn(&self, i: usize) -> String {
        let (ns, name) = self.service_key(i);
        format!("{name}.{ns}.svc.{ZONE}")
    }

    /// `_http._tcp.<fqdn>`.
    pub fn srv_name(&self, i: usize) -> String {
        format!("_{PORT_NAME}._tcp.{}", self.fqdn(i))
    }

    pub fn cluster_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 16 + i as u32)
    }

    fn endpoint_ip(i: usize, j: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * ENDPOINTS + j) as u32)
    }

    pub fn namespace(k: usize) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some(Layout::namespace_name(k)), ..ObjectMeta::default() },
            ..Namespace::default()
        }
    }

    pub fn service(&self, i: usize) -> Service {
        let (ns, name) = self.service_key(i);
        let ip = Layout::cluster_ip(i).to_string();
        Service {
            metadata: ObjectMeta { namespace: Some(ns), name: Some(name), ..ObjectMeta::default() },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ports: Some(vec![service_port()]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    pub fn slice(&self, i: usize) -> EndpointSlice {
        let (ns, name) = self.service_key(i);
        let labels = BTreeMap::from([("kubernetes.io/service-name".to_string(), name.clone())]);
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns),
                name: Some(format!("{name}-abcde")),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                (0..ENDPOINTS)
                    .map(|j| Endpoint {
                        addresses: vec![Layout::endpoint_ip(i, j).to_string()],
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some(PORT_NAME.into()),
                port: Some(TARGET_PORT),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        }
    }

    /// unbound's records for the same names: A and the named port's SRV (priority
    /// 0, weight 100 as CoreDNS and Pier for one port), TTL 5, under a static
    /// `cluster.local.` zone (NXDOMAIN for everything else in it).
    pub fn unbound_local_data(&self, out: &mut String) {
        let _ = writeln!(out, "  local-zone: \"{ZONE}.\" static");
        for i in 0..self.services {
            let fqdn = self.fqdn(i);
            let _ = writeln!(out, "  local-data: \"{fqdn}. {TTL} IN A {}\"", Layout::cluster_ip(i));
            let _ =
                writeln!(out, "  local-data: \"{}. {TTL} IN SRV 0 100 {PORT} {fqdn}.\"", self.srv_name(i));
        }
    }

    /// A dnsperf data file: `lines` queries for uniformly random Services, a
    /// fraction `srv` of them SRV for the named port, the rest A.
    pub fn query_file(&self, lines: usize, srv: f64, seed: u64) -> String {
        let mut rng = XorShift(seed | 1);
        let mut out = String::with_capacity(lines * 48);
        for _ in 0..lines {
            let i = rng.below(self.services);
            if rng.unit() < srv {
                let _ = writeln!(out, "{} SRV", self.srv_name(i));
            } else {
                let _ = writeln!(out, "{} A", self.fqdn(i));
            }
        }
        out
    }
}

fn service_port() -> ServicePort {
    ServicePort {
        name: Some(PORT_NAME.into()),
        port: i32::from(PORT),
        protocol: Some("TCP".into()),
        target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(TARGET_PORT)),
        ..ServicePort::default()
    }
}

/// A Service for the creation measurement: the API server allocates its cluster IP.
pub fn created_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(ServiceSpec { ports: Some(vec![service_port()]), ..ServiceSpec::default() }),
        ..Service::default()
    }
}

/// A small deterministic generator (xorshift64).
pub struct XorShift(pub u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
