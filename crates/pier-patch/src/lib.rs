//! Patches as the Kubernetes API server applies them, on `serde_json::Value`s, with
//! upstream's semantics and error texts:
//!
//! - [`json_merge_patch`]: JSON merge patch (RFC 7386,
//!   `application/merge-patch+json`);
//! - [`json_patch`]: JSON patch (RFC 6902, `application/json-patch+json`), with the
//!   deviations of the `evanphx/json-patch.v4` library the API server uses;
//! - [`strategic_merge_patch`]: strategic merge patch
//!   (`application/strategic-merge-patch+json`, what `kubectl apply`, `edit` and most of
//!   `kubectl patch` send), guided by a [`PatchSchema`] that tells each list's
//!   [`ListStrategy`].
//!
//! Failures are [`PatchError`]s: `Display` is upstream's message and
//! [`PatchError::status_code`] the HTTP status upstream answers with. Inputs are only read;
//! a failed patch changes nothing. The crate is pure: no I/O.
//!
//! ```
//! use pier_patch::{strategic_merge_patch, ListStrategy, PatchSchema};
//! use serde_json::json;
//!
//! /// A schema where every list is merged by `name`.
//! struct ByName;
//! impl PatchSchema for ByName {
//!     fn field(&self, _: &str) -> Option<Self> { Some(ByName) }
//!     fn elements(&self) -> Option<Self> { Some(ByName) }
//!     fn list_strategy(&self) -> ListStrategy {
//!         ListStrategy::MergeByKey { key: "name".into() }
//!     }
//! }
//!
//! let live = json!({"containers": [{"name": "web", "image": "nginx:1"},
//!                                  {"name": "log", "image": "fluentd"}]});
//! let patch = json!({"$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
//!                    "containers": [{"name": "web", "image": "nginx:2"}]});
//! let out = strategic_merge_patch(&live, &patch, &ByName).unwrap();
//! assert_eq!(out, json!({"containers": [{"name": "web", "image": "nginx:2"},
//!                                      {"name": "log", "image": "fluentd"}]}));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Tests state their expectations with `unwrap`; library code must not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod gofmt;
mod json_patch;
mod merge_patch;
mod schema;
mod strategic;

pub use error::{IndexError, JsonType, MemberProblem, PatchError, Step};
pub use json_patch::json_patch;
pub use merge_patch::json_merge_patch;
pub use schema::{ListStrategy, PatchSchema};
pub use strategic::strategic_merge_patch;
