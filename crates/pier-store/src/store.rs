//! The [`Store`] trait and the values it exchanges.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::{Error, Result};

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/services/default/kubia`.
    pub key: String,
    /// The stored bytes (for the API server, a JSON object).
    pub value: Bytes,
    /// Revision of the write that created the key (stays the same across updates; a
    /// re-create after a delete gets a new one).
    pub create_revision: i64,
    /// Revision of the write that produced this version: the object's `resourceVersion`.
    pub mod_revision: i64,
}

/// How [`Store::range`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Return only keys strictly greater than this one (the `continue` token of a list).
    pub start_after: Option<String>,
    /// Return at most this many keys; [`RangeResult::more`] says whether some were left.
    /// `Some(0)` means no limit, as in etcd.
    pub limit: Option<usize>,
    /// Read the keys as they were at this revision; `None` reads the latest.
    pub revision: Option<i64>,
}

/// What [`Store::range`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Live keys under the prefix, sorted by key (byte order).
    pub kvs: Vec<KeyValue>,
    /// The revision this read reflects: the requested one, or the latest at the time of
    /// the read. Later pages of the same list must read at this revision.
    pub revision: i64,
    /// Whether more keys matched beyond `limit`.
    pub more: bool,
}

/// The outcome of [`Store::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Revision of the delete itself.
    pub revision: i64,
    /// The last live version of the key.
    pub prev: KeyValue,
}

/// One change in the store, as seen by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A create (`prev` is `None`) or an update (`prev` is the version it replaced).
    Put {
        /// The new version; its `mod_revision` is the event's revision.
        kv: KeyValue,
        /// The version before, `None` when the key was created.
        prev: Option<KeyValue>,
    },
    /// A delete.
    Delete {
        /// The last live version of the key.
        prev: KeyValue,
        /// Revision of the delete.
        revision: i64,
    },
}

impl Event {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// The events of a watch, in revision order. It ends after yielding an error
/// ([`Error::Compacted`], [`Error::WatchLagged`], [`Error::Closed`], ...); dropping it
/// unsubscribes.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// A revisioned key-value store with watch: the etcd data model the API server needs.
///
/// Every successful write gets the next store revision (strictly increasing, never
/// reused). Reads are consistent snapshots.
///
/// # Prefixes
///
/// A `prefix` is a plain byte prefix of the key, as etcd's `WithPrefix`: the prefix
/// `/registry/pods/def` matches `/registry/pods/default/a`. Callers that mean a directory
/// end the prefix with `/` (`/registry/pods/default/`), which matches no sibling such as
/// `/registry/pods/default2/a`. The empty prefix matches every key.
///
/// # Cancel safety
///
/// Dropping a write future after it was first polled may or may not leave the write
/// applied (as with any remote store); the caller learns which by reading.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The live value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Live keys under `prefix`, sorted by key.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] when `options.revision` is below the compacted revision,
    /// [`Error::FutureRevision`] when it is above the current one.
    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangeResult>;

    /// Creates `key`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when `key` has a live value, [`Error::InvalidKey`] when it
    /// is empty.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of `key` if its mod revision is `expected_mod_revision`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when `key` has no live value, [`Error::Conflict`] (with the
    /// current value) when its mod revision differs.
    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: i64) -> Result<KeyValue>;

    /// Deletes `key`, if `expected_mod_revision` is `None` or its mod revision.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when `key` has no live value, [`Error::Conflict`] when its mod
    /// revision differs from the expected one.
    async fn delete(&self, key: &str, expected_mod_revision: Option<i64>) -> Result<Deleted>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<i64>;

    /// Drops the history up to `revision`: reads at a revision `>= revision` keep working,
    /// reads and watches that need anything older fail with [`Error::Compacted`].
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] when `revision` is not above the compacted revision,
    /// [`Error::FutureRevision`] when it is above the current one.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The revision of the last compaction (0 when never compacted).
    async fn compacted_revision(&self) -> Result<i64>;

    /// Every event with a revision above `after_revision` for keys under `prefix`, in
    /// revision order: first the history, then live, without gap or duplicate.
    ///
    /// # Errors
    ///
    /// [`Error::Compacted`] (returned here or as the stream's first item) when
    /// `after_revision` is below the compacted revision.
    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream>;
}

/// Checks that `key` can be stored: keys are non-empty.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey { key: key.to_owned(), reason: "keys must not be empty" });
    }
    Ok(())
}

/// The smallest byte string greater than every string starting with `prefix` (etcd's
/// "range end" of a prefix). Keys are UTF-8, where 0xFF never occurs, so incrementing the
/// last byte never overflows and `[0xFF]` bounds the whole key space.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0xFF]);
        // A multi-byte last character: the continuation byte is incremented.
        assert_eq!(prefix_end("é"), vec![0xC3, 0xAA]);
        assert!(b"/a/zzz".as_slice() < prefix_end("/a/").as_slice());
    }
}
