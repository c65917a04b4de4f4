//! Pier's storage: a revisioned key-value store with watch, the etcd data model the API
//! server keeps every Kubernetes object in.
//!
//! - [`Store`] is the interface the API server uses (as `Arc<dyn Store>`): [`get`],
//!   [`range`] (by key prefix, paginated, at a past revision), [`create`], compare-and-swap
//!   [`update`] and [`delete`], [`compact`], and [`watch`] (history then live events,
//!   without gap or duplicate).
//! - [`KeyValue`] is one version of a key; its `mod_revision` is the object's
//!   `resourceVersion`. [`Event`] is one change seen by a watch.
//! - [`SqliteStore`] is the embedded backend: a kine-like append-only log in SQLite,
//!   durable (WAL, `synchronous=FULL`) and group-committed by one writer thread.
//! - [`conformance`] holds the checks every backend must pass, and
//!   [`store_conformance_tests!`] turns them into tests.
//! - [`Error`] says why an operation failed, with the keys and revisions involved.
//!
//! Prefixes are plain byte prefixes; end one with `/` to mean a directory (see [`Store`]).
//!
//! [`get`]: Store::get
//! [`range`]: Store::range
//! [`create`]: Store::create
//! [`update`]: Store::update
//! [`delete`]: Store::delete
//! [`compact`]: Store::compact
//! [`watch`]: Store::watch
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use futures::StreamExt;
//! use pier_store::{Event, RangeOptions, SqliteStore, Store};
//!
//! # async fn example() -> pier_store::Result<()> {
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open("/var/lib/pier/state.db")?);
//! let created = store
//!     .create("/registry/services/default/kubia", r#"{"kind":"Service"}"#.into())
//!     .await?;
//! let updated = store
//!     .update(
//!         "/registry/services/default/kubia",
//!         r#"{"kind":"Service","spec":{}}"#.into(),
//!         created.mod_revision,
//!     )
//!     .await?;
//! assert_eq!(updated.create_revision, created.create_revision);
//!
//! let list = store.range("/registry/services/", RangeOptions::default()).await?;
//! let mut events = store.watch("/registry/services/", list.revision).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         Event::Put { kv, prev } => println!("{} at {} (new: {})", kv.key, kv.mod_revision, prev.is_none()),
//!         Event::Delete { prev, revision } => println!("{} deleted at {revision}", prev.key),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod conformance;
mod error;
mod hub;
mod sqlite;
mod store;

pub use error::{Error, Result};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{Deleted, Event, KeyValue, RangeOptions, RangeResult, Store, WatchStream};
