//! The embedded backend: a kine-like revision log in one SQLite file.
//!
//! Every write appends one row to `kv`; the row id is the revision. A row records the key
//! (`name`), whether it created or deleted the key, the key's create revision, the
//! revision of the version it replaced (`prev_revision`) and the value (empty for a
//! delete). The latest row of a key at revision R is its state at R, which makes reads at
//! an old revision and watch history plain queries. `meta` holds the compacted revision.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit is on disk (WAL fsynced) before
//! any caller hears of it. Throughput: one writer thread commits whatever queued up while
//! the previous commit was syncing in one transaction (see `writer`).
//!
//! One process owns a database file: the writer keeps the revision counter in memory.

mod reader;
mod writer;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::mpsc;

use crate::hub::{Hub, Subscription};
use crate::store::validate_key;
use crate::{Deleted, Error, Event, KeyValue, RangeOptions, RangeResult, Result, Store, WatchStream};
use reader::ReadPool;
use writer::{Pending, Request, Writer};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Tuning of a [`SqliteStore`]; the defaults suit the API server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Undelivered events a watcher may accumulate before it is ended with
    /// [`Error::WatchLagged`].
    pub watch_buffer: usize,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Writes waiting for the writer before callers wait to enqueue (backpressure).
    pub queue: usize,
    /// Idle read connections kept open.
    pub read_connections: usize,
    /// Events read from the log per query while a watch replays history.
    pub history_page: usize,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            watch_buffer: 16 * 1024,
            max_batch: 1024,
            queue: 4096,
            read_connections: 4,
            history_page: 512,
        }
    }
}

/// State shared by the store handles and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    hub: Arc<Hub>,
    /// Revision of the last committed write.
    current: AtomicI64,
    compacted: AtomicI64,
}

/// The SQLite [`Store`]. Cheap to clone; the database closes when the last clone is
/// dropped (after the writes already queued are committed).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writes: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    reads: Arc<ReadPool>,
    history_page: usize,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` with default options.
    ///
    /// # Errors
    ///
    /// When SQLite cannot open or set up the file, or the writer thread cannot start.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    ///
    /// When SQLite cannot open or set up the file, or the writer thread cannot start.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let conn = open_writer(&path)?;
        let (current, compacted) = conn
            .query_row(
                "SELECT COALESCE((SELECT MAX(id) FROM kv), 0),
                        COALESCE((SELECT value FROM meta WHERE name = 'compacted'), 0)",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .map_err(Error::sqlite("read revisions"))?;
        // A compaction may have dropped the newest row (a tombstone), never the counter.
        let current = current.max(compacted);
        let shared = Arc::new(Shared {
            hub: Arc::new(Hub::new(current, options.watch_buffer)),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
        });
        let (writes, rx) = mpsc::channel(options.queue.max(1));
        let writer = Writer::new(conn, rx, Arc::clone(&shared), options.max_batch);
        std::thread::Builder::new()
            .name("pier-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| Error::Io { op: "start writer thread for", path: path.clone(), source })?;
        tracing::debug!(path = %path.display(), current, compacted, "store opened");
        Ok(SqliteStore {
            writes,
            shared,
            reads: Arc::new(ReadPool::new(path, options.read_connections)),
            history_page: options.history_page.max(1),
        })
    }

    /// Number of live watch subscriptions (dropped watch streams are not counted).
    pub fn watcher_count(&self) -> usize {
        self.shared.hub.subscriber_count()
    }

    async fn send(&self, request: Request) -> Result<()> {
        self.writes.send(request).await.map_err(|_| Error::Closed)
    }
}

fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(Error::sqlite("open"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(Error::sqlite("set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Sqlite { op: "set journal_mode", source: rusqlite::Error::InvalidQuery });
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives a
    // crash or power loss (NORMAL would only sync at checkpoints).
    conn.pragma_update(None, "synchronous", "FULL").map_err(Error::sqlite("set synchronous"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(Error::sqlite("set busy timeout"))?;
    let tx = conn.transaction().map_err(Error::sqlite("begin schema transaction"))?;
    tx.execute_batch(SCHEMA).map_err(Error::sqlite("create schema"))?;
    tx.commit().map_err(Error::sqlite("commit schema"))?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.reads.run(move |conn| reader::get(conn, &key)).await
    }

    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangeResult> {
        let prefix = prefix.to_owned();
        self.reads.run(move |conn| reader::range(conn, &prefix, &options)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        let (reply, rx) = Pending::new();
        self.send(Request::Create { key: key.to_owned(), value, reply }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: i64) -> Result<KeyValue> {
        let (reply, rx) = Pending::new();
        self.send(Request::Update { key: key.to_owned(), value, expected: expected_mod_revision, reply })
            .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<i64>) -> Result<Deleted> {
        let (reply, rx) = Pending::new();
        self.send(Request::Delete { key: key.to_owned(), expected: expected_mod_revision, reply }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let (reply, rx) = Pending::new();
        self.send(Request::Compact { revision, reply }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after_revision < compacted {
            return Err(Error::Compacted { requested: after_revision, compacted_revision: compacted });
        }
        let subscription = self.shared.hub.subscribe(prefix)?;
        let watch = Watch {
            reads: Arc::clone(&self.reads),
            prefix: prefix.to_owned(),
            last: after_revision,
            history_next: after_revision,
            history_until: subscription.published,
            history_page: self.history_page,
            pending: VecDeque::new(),
            subscription,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|item| (item, watch))
        })))
    }
}

/// The state of one watch stream: replaying the log up to the revision published when it
/// subscribed, then forwarding live events.
struct Watch {
    reads: Arc<ReadPool>,
    prefix: String,
    /// Revision of the last event yielded (the start revision before any).
    last: i64,
    /// History was read up to here.
    history_next: i64,
    /// History ends here; live events start above it.
    history_until: i64,
    history_page: usize,
    pending: VecDeque<Event>,
    subscription: Subscription,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        let item = self.next_item().await;
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }

    async fn next_item(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision();
                return Ok(event);
            }
            if self.history_next < self.history_until {
                let (prefix, after, until, page) =
                    (self.prefix.clone(), self.history_next, self.history_until, self.history_page);
                let (events, complete) =
                    self.reads.run(move |conn| reader::history(conn, &prefix, after, until, page)).await?;
                self.history_next = match events.last() {
                    Some(_) if complete => until,
                    Some(last) => last.revision(),
                    None => until,
                };
                self.pending.extend(events);
                continue;
            }
            match self.subscription.rx.recv().await {
                // Only when the watch started above the published revision.
                Some(event) if event.revision() <= self.last => continue,
                Some(event) => {
                    self.last = event.revision();
                    return Ok(event);
                }
                None if self.subscription.lagged.load(Ordering::Acquire) => {
                    return Err(Error::WatchLagged { prefix: self.prefix.clone(), last_revision: self.last })
                }
                None => return Err(Error::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writer_connection_syncs_every_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = super::open_writer(&dir.path().join("store.db")).expect("open");
        let synchronous: i64 =
            conn.pragma_query_value(None, "synchronous", |row| row.get(0)).expect("read synchronous");
        assert_eq!(synchronous, 2, "synchronous must be FULL");
    }
}
