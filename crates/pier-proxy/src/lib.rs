//! The pure core of Pier's service proxy: Services and EndpointSlices in, nftables
//! transactions out, in the design of kube-proxy's nftables mode (one table, verdict
//! maps for O(1) dispatch, `numgen` load balancing, per-endpoint affinity sets,
//! masquerade marking, reject for Services without endpoints, partial syncs).
//!
//! Nothing here does I/O. The node's proxy task watches Services and EndpointSlices,
//! keeps a [`ProxyModel`] ([`build`], or [`ProxyModel::upsert_service`] per event),
//! renders a [`Transaction`] with [`render_full`] (at start, after a failure) or
//! [`render_partial`] (the difference from the last applied model), and feeds
//! [`Transaction::to_nft_script`] to `nft -f -` inside the node's network namespace.
//!
//! - [`model`]: [`ProxyModel`], [`ServicePort`], [`Endpoint`] and endpoint selection
//!   ([`ServicePort::categorize`]).
//! - [`render`]: [`RenderConfig`], full and partial syncs, [`RenderStats`] for metrics.
//! - [`transaction`]: [`Transaction`] and its typed [`Op`]s.
//!
//! ```
//! use k8s_openapi::api::core::v1::{Service, ServicePort as K8sPort, ServiceSpec};
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
//! use k8s_openapi::api::discovery::v1::EndpointSlice;
//! use pier_proxy::{build, render_full, Existing, NodeInfo, RenderConfig};
//!
//! let service = Service {
//!     metadata: ObjectMeta {
//!         namespace: Some("default".into()),
//!         name: Some("kubia".into()),
//!         ..Default::default()
//!     },
//!     spec: Some(ServiceSpec {
//!         cluster_ip: Some("10.96.12.34".into()),
//!         ports: Some(vec![K8sPort { port: 80, ..Default::default() }]),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! let node = NodeInfo { name: "node-1".into(), node_ips: vec![std::net::Ipv4Addr::new(172, 30, 0, 10)] };
//! let model = build([&service], Vec::<EndpointSlice>::new(), &node);
//! // A fresh network namespace: the table does not exist yet.
//! let rendered = render_full(&RenderConfig::default(), &model, &Existing::empty());
//! let script = rendered.transaction.to_nft_script();
//! // No endpoints: connections to the ClusterIP are refused at once.
//! assert!(script.contains(
//!     "add element ip pier-proxy no-endpoint-services { 10.96.12.34 . tcp . 80 comment \"default/kubia\" : goto reject-chain }"
//! ));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cidr;
pub mod model;
mod names;
pub mod render;
mod ruleset;
pub mod transaction;

pub use cidr::{InvalidCidr, Ipv4Cidr};
pub use model::{
    build, Categorized, Endpoint, HealthCheck, NodeInfo, Protocol, ProxyModel, ServiceName, ServicePort,
    ServicePortName, SessionAffinity, SkipReason, Skipped,
};
pub use render::{
    render_full, render_partial, Conflict, Existing, LoadBalancing, NodePortAddresses, RenderConfig,
    RenderStats, Rendered, RulesetCounts, RulesetDelta, SyncKind,
};
pub use transaction::{BaseChain, ChainKind, ElementKey, EndpointPick, Hook, Op, Transaction, Value};
