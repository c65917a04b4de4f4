//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for.
//!
//! kubectl sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
//! columns the server chose; `-o wide` adds those of `priority: 1`. This crate reproduces
//! upstream's printers (`pkg/printers/internalversion/printers.go`) for every resource
//! Pier serves, so that kubectl's output on Pier reads exactly as on Kubernetes:
//!
//! - [`column_definitions`] gives a kind's [`Column`]s (names, types, formats,
//!   descriptions, priorities), wide ones included, as the server always sends them;
//! - [`row_cells`] gives the cells of one object's row, one per column;
//! - [`table`] builds a whole Table for a list, [`watch_table`] the Table of a
//!   watch event, with the row `object` chosen by [`IncludeObject`];
//! - [`human_duration`] is the AGE format (`5s`, `2m30s`, `22h`, `3d4h`, `2y`).
//!
//! Objects are `serde_json::Value`s as stored; any field may be missing, and missing data
//! prints as upstream prints the zero value (`<none>`, `<unknown>`, `0`, ...). Nothing
//! here does I/O or panics on input.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use serde_json::json;
//!
//! let svc = json!({
//!     "metadata": {"name": "kubia", "creationTimestamp": "2024-05-01T10:00:00Z"},
//!     "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.44"], "selector": {"app": "kubia"},
//!              "ports": [{"port": 80, "protocol": "TCP"}]},
//! });
//! let now = Utc.with_ymd_and_hms(2024, 5, 2, 8, 0, 0).unwrap();
//! let headers: Vec<String> = pier_printers::column_definitions("", "Service")
//!     .into_iter().map(|c| c.name).collect();
//! assert_eq!(headers, ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
//! assert_eq!(
//!     pier_printers::row_cells("", "Service", &svc, now),
//!     vec![json!("kubia"), json!("ClusterIP"), json!("10.96.0.44"), json!("<none>"),
//!          json!("80/TCP"), json!("22h"), json!("app=kubia")],
//! );
//! ```

mod cells;
mod columns;
mod descriptions;
mod duration;
mod json;
mod pod;
mod selector;
mod table;

pub use cells::{row_cells, row_conditions};
pub use columns::{column_definitions, has_printer, Column};
pub use duration::{human_duration, translate_timestamp_since};
pub use table::{
    partial_object_metadata, table, table_row, watch_table, IncludeObject, UnknownIncludeObject,
    TABLE_API_VERSION,
};

#[cfg(test)]
mod tests;
