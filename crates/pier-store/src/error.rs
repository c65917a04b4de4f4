//! The one error type of every [`Store`](crate::Store) operation.

use std::path::PathBuf;

use crate::KeyValue;

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// How to react, by variant:
/// - [`NotFound`](Error::NotFound), [`AlreadyExists`](Error::AlreadyExists) and
///   [`Conflict`](Error::Conflict) are answers about the data: the write was not applied.
///   On a conflict, re-read (or use `current`) and retry.
/// - [`Compacted`](Error::Compacted): the requested history is gone; re-list at the latest
///   revision and watch from there.
/// - [`WatchLagged`](Error::WatchLagged): the consumer was too slow; watch again from
///   `last_revision` (history is still in the log unless compacted meanwhile).
/// - [`Closed`](Error::Closed), [`Sqlite`](Error::Sqlite), [`Io`](Error::Io),
///   [`Corrupt`](Error::Corrupt) and [`Poisoned`](Error::Poisoned) are failures of the
///   backend itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key has no live value (never created, or deleted).
    #[error("key {key:?} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },

    /// `create` of a key that already has a live value.
    #[error("key {key:?} already exists (mod revision {mod_revision})")]
    AlreadyExists {
        /// The key asked for.
        key: String,
        /// Mod revision of the existing value.
        mod_revision: i64,
    },

    /// Compare-and-swap failed: the key's mod revision is not the expected one.
    #[error(
        "conflict on key {key:?}: expected mod revision {expected}, found {found}",
        found = current.as_ref().map_or(0, |kv| kv.mod_revision)
    )]
    Conflict {
        /// The key asked for.
        key: String,
        /// The mod revision the caller expected.
        expected: i64,
        /// The current value, so the caller can retry without another read.
        current: Option<KeyValue>,
    },

    /// The read or watch needs history that compaction dropped.
    #[error("revision {requested} has been compacted (compacted revision {compacted_revision})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still readable.
        compacted_revision: i64,
    },

    /// A read at (or a compaction of) a revision the store has not reached yet.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },

    /// The key cannot be stored.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A watcher fell too far behind the writes and was ended rather than buffering without
    /// bound. Every event up to `last_revision` was delivered.
    #[error("watch on prefix {prefix:?} fell behind after revision {last_revision}")]
    WatchLagged {
        /// The watched prefix.
        prefix: String,
        /// Revision of the last event delivered (or the watch's start revision).
        last_revision: i64,
    },

    /// The store was shut down, or its writer stopped.
    #[error("store is closed")]
    Closed,

    /// A lock protecting shared state was poisoned by a panic.
    #[error("{what} lock poisoned")]
    Poisoned {
        /// Which lock.
        what: &'static str,
    },

    /// SQLite failed.
    #[error("sqlite: {op}")]
    Sqlite {
        /// The operation that failed.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// An operating system call failed.
    #[error("{op} {path}", path = path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Stored data breaks an invariant of the log.
    #[error("corrupt store at revision {revision}: {reason}")]
    Corrupt {
        /// Revision of the offending row.
        revision: i64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sqlite { op, source }
    }
}
