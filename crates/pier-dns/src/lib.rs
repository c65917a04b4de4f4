//! The pure core of Pier's cluster DNS server: DNS messages in, DNS messages out,
//! answered from Services, EndpointSlices, Namespaces and Pods as the Kubernetes
//! DNS specification (schema 1.1.0) and CoreDNS's `kubernetes` plugin do. No
//! sockets, no clock, no tasks: the server binary owns those.
//!
//! - [`wire`]: hand-written DNS wire format. [`Query::parse`] reads a query into a
//!   fixed-size value (no allocation); [`MessageWriter`] encodes into a reused
//!   `Vec<u8>` with name compression and truncation; helpers for the forwarder.
//! - [`index`]: the immutable [`Index`] of everything the zone holds, built once
//!   with [`Index::builder`] and updated per watch event by cloning (cheap:
//!   per-namespace `Arc`s and sharded address maps) and calling
//!   [`Index::upsert_service`] and friends. Lookups are hash probes on the
//!   lowercased query name, with every record precompiled.
//! - [`answer`](mod@answer): [`answer()`] turns a query into an [`Answer`]: records,
//!   NXDOMAIN/NODATA with the zone's SOA, REFUSED, SERVFAIL, NOTIMP, BADVERS, or
//!   `Forward` for names that are not the cluster's, including autopath's
//!   continuation ([`Answer::AutopathForward`]). [`Answer::encode`] writes the
//!   response.
//!
//! A server's loop, per UDP packet: parse; on error, [`encode_parse_error`]; else
//! take the current index, [`answer()`], and either encode into the reused buffer
//! with [`Query::max_udp_response_len`] as the limit, or forward. Answering an A
//! query for a Service allocates nothing.
//!
//! ```
//! use k8s_openapi::api::core::v1::{Service, ServiceSpec};
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
//! use pier_dns::wire::{encode_query, Query, RecordType, NameBuf};
//! use pier_dns::{answer, Answer, Config, Index};
//!
//! let service = Service {
//!     metadata: ObjectMeta {
//!         namespace: Some("default".into()),
//!         name: Some("kubernetes".into()),
//!         ..Default::default()
//!     },
//!     spec: Some(ServiceSpec { cluster_ip: Some("10.96.0.1".into()), ..Default::default() }),
//!     ..Default::default()
//! };
//! let index = Index::builder(Config::default()).unwrap().services([&service]).build();
//!
//! // What a client sends.
//! let mut packet = Vec::new();
//! let name = NameBuf::from_ascii("Kubernetes.default.svc.cluster.local.").unwrap();
//! encode_query(&mut packet, 0x1234, name.as_name(), RecordType::A, Some(1232), false);
//!
//! let query = Query::parse(&packet).unwrap();
//! let outcome = answer(&index, &query, None);
//! assert!(matches!(outcome, Answer::Authoritative(_)));
//! let mut response = Vec::with_capacity(512);
//! let written = outcome.encode(&index, &query, &mut response, query.max_udp_response_len()).unwrap();
//! assert!(!written.truncated);
//! // Id echoed, QR and AA set, the address at the end.
//! assert_eq!(&response[..2], &[0x12, 0x34]);
//! assert_eq!(response[2] & 0x84, 0x84);
//! assert!(response.windows(4).any(|w| w == [10, 96, 0, 1]));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod answer;
pub mod index;
pub mod wire;

#[cfg(test)]
mod testutil;

pub use answer::{answer, encode_parse_error, Answer, Autopath, Records};
pub use index::{Config, ConfigError, Index, IndexBuilder, PodMode};
pub use wire::{MessageWriter, Query};
