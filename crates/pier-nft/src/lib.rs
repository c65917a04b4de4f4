//! The thin applier between Pier's service proxy and the kernel: it runs nftables
//! scripts and clears stale conntrack entries, in the node's network namespace.
//!
//! What to program is decided elsewhere (the pier-proxy renderer turns Services and
//! EndpointSlices into an nft script); this crate only carries it out:
//!
//! - [`NftApplier`]: apply a script as one transaction, list a table, delete a table.
//!   [`NftCli`] runs Debian's `nft -f -` in the current namespace or a named one;
//!   [`RecordingNft`] records calls in tests. A refused script is an
//!   [`NftError::Rejected`] carrying nft's stderr and its parsed [`Diagnostic`]s
//!   (line, columns, message).
//! - [`NftNetlink`]: apply a batch of [`nftnl::NftMsg`]s (chains, endpoint rules,
//!   set elements) over netlink, without nft and without reading the ruleset back:
//!   the fast path for the proxy's small partial syncs.
//! - [`Conntrack`]: delete the UDP conntrack entries of a removed endpoint, matched
//!   by [`FlowFilter`]s. [`NetlinkConntrack`] speaks ctnetlink ([`ctnetlink`] has the
//!   byte-exact encoder and decoder); [`RecordingConntrack`] is the test double.
//!
//! Everything real needs root (`CAP_NET_ADMIN`).
//!
//! ```no_run
//! use std::net::IpAddr;
//! use pier_nft::{Conntrack, FlowFilter, NetlinkConntrack, NftApplier, NftCli};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let nft = NftCli::new();
//! nft.apply("table ip pier {\n  chain services {\n  }\n}\n").await?;
//! // An endpoint of the UDP Service 10.96.0.10:53 went away.
//! let gone: IpAddr = "10.244.1.7".parse()?;
//! let filter = FlowFilter::udp_to_service("10.96.0.10".parse()?, 53, gone);
//! let deleted = NetlinkConntrack::new().clear(&[filter]).await?;
//! # let _ = deleted; Ok(()) }
//! ```
#![deny(missing_docs)]

mod apply;
mod canonical;
mod conntrack;
pub mod ctnetlink;
mod error;
mod names;
mod netlink_apply;
pub mod nftnl;
mod nlmsg;

pub use apply::{NftApplier, NftCall, NftCli, RecordingNft};
pub use canonical::canonical_ruleset;
pub use conntrack::{Conntrack, ConntrackError, FlowFilter, NetlinkConntrack, RecordingConntrack};
pub use ctnetlink::{proto, ConntrackEntry, IpFamily, Tuple};
pub use error::{Diagnostic, NftError, Rejection};
pub use names::{Family, NameError, TableName};
pub use netlink_apply::NftNetlink;
