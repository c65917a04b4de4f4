//! Server-side apply and `managedFields`, as upstream's structured-merge-diff and
//! field manager do them, over JSON objects and Pier's schemas. Pure: no I/O.
//!
//! * [`apply`] — merges an applied configuration into the live object, removes what the
//!   same manager applied before and no longer applies, and detects [`Conflicts`] with
//!   other managers (or, with `force`, takes their fields over).
//! * [`update`] — the bookkeeping of every other write: the writer owns what it changed.
//! * [`ManagedFields`] / [`ManagedFieldsEntry`] — `metadata.managedFields`, read and
//!   written in upstream's form (`operation`, `apiVersion`, `time`, `fieldsType:
//!   FieldsV1`, `subresource`).
//! * [`FieldSet`], [`Path`], [`PathElement`] — sets of fields and their `FieldsV1`
//!   encoding (`f:spec`, `k:{"port":80,"protocol":"TCP"}`, `v:"a"`, `.`).
//! * [`ApplySchema`] — what the walk needs from a schema (list types, map types, list
//!   keys and their defaults), implemented for [`pier_schema::SchemaCursor`].
//! * [`manager_from_user_agent`] — the manager of a request without `?fieldManager=`.
//!
//! ```
//! use pier_apply::{apply, ApplyError, ManagedFields, Scope, Write};
//! use serde_json::json;
//!
//! let schema = pier_schema::patch_schema("io.k8s.api.core.v1.Service");
//! let at = |manager| Write {
//!     manager, api_version: "v1", subresource: None, time: "2024-01-01T00:00:00Z",
//!     scope: Scope::Except(&["status"]),
//! };
//! let config = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
//!     "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
//! let first = apply(schema, None, &config, &ManagedFields::new(), &at("alice"), false)?;
//!
//! let mut other = config.clone();
//! other["spec"]["ports"][0]["targetPort"] = json!(9090);
//! let err = apply(schema, Some(&first.object), &other, &first.managed, &at("bob"), false)
//!     .expect_err("bob conflicts with alice");
//! assert_eq!(
//!     err.to_string(),
//!     r#"Apply failed with 1 conflict: conflict with "alice": .spec.ports[port=80,protocol="TCP"].targetPort"#
//! );
//! # Ok::<(), ApplyError>(())
//! ```

mod apply;
mod conflict;
mod error;
mod managed;
mod path;
mod schema;
mod set;
mod typed;

pub use apply::{apply, update, Applied, Scope, Write};
pub use conflict::{Conflict, Conflicts};
pub use error::{ApplyError, FieldsError};
pub use managed::{manager_from_user_agent, ManagedFields, ManagedFieldsEntry, Operation};
pub use path::{Path, PathElement};
pub use schema::{ApplySchema, ListType, Shape};
pub use set::FieldSet;

#[cfg(test)]
mod tests;
