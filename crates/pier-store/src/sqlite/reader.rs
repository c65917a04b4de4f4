//! Reads, on their own connections so they never wait behind the writer's fsync (WAL
//! readers see the last committed snapshot without taking the write lock).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql};

use crate::store::prefix_end;
use crate::{Error, Event, KeyValue, RangeOptions, RangeResult, Result};

/// Idle read connections, opened on demand.
#[derive(Debug)]
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf, max_idle: usize) -> ReadPool {
        ReadPool { path, idle: Mutex::new(Vec::new()), max_idle }
    }

    /// Runs `f` on a read connection, on tokio's blocking pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(&conn);
            pool.put(conn);
            result
        });
        match task.await {
            Ok(result) => result,
            // A panic in a read is a bug: let it surface where the read was awaited.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(Error::Closed),
        }
    }

    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().map_err(|_| Error::Poisoned { what: "read pool" })?.pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn put(&self, conn: Connection) {
        // A poisoned pool just stops recycling: the connection is closed instead.
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
    }
}

fn open_reader(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(Error::sqlite("open read connection"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(Error::sqlite("set busy timeout"))?;
    conn.pragma_update(None, "query_only", true).map_err(Error::sqlite("set query_only"))?;
    Ok(conn)
}

/// Binds raw bytes as TEXT. The end of a prefix range may not be valid UTF-8 (its last
/// byte is incremented); SQLite compares TEXT with memcmp, which is what we want.
struct TextBytes<'a>(&'a [u8]);

impl ToSql for TextBytes<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// The current and compacted revisions of the snapshot `conn` is reading. Compaction may
/// have removed the newest row (a tombstone), so the current revision is at least the
/// compacted one.
fn revisions(conn: &Connection) -> Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT COALESCE((SELECT MAX(id) FROM kv), 0),
                COALESCE((SELECT value FROM meta WHERE name = 'compacted'), 0)",
    )
    .and_then(|mut stmt| stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
    .map(|(max_id, compacted): (i64, i64)| (max_id.max(compacted), compacted))
    .map_err(Error::sqlite("read revisions"))
}

pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, create_revision, deleted, value FROM kv
             WHERE name = ?1 ORDER BY id DESC LIMIT 1",
        )
        .map_err(Error::sqlite("prepare get"))?;
    stmt.query_row([key], |row| {
        let deleted: bool = row.get(2)?;
        if deleted {
            return Ok(None);
        }
        Ok(Some(KeyValue {
            key: key.to_owned(),
            value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            create_revision: row.get(1)?,
            mod_revision: row.get(0)?,
        }))
    })
    .optional()
    .map(Option::flatten)
    .map_err(Error::sqlite("get"))
}

pub(crate) fn range(conn: &Connection, prefix: &str, options: &RangeOptions) -> Result<RangeResult> {
    // One transaction, so the revision check and the rows come from the same snapshot.
    let tx = conn.unchecked_transaction().map_err(Error::sqlite("begin read transaction"))?;
    let (current, compacted) = revisions(&tx)?;
    let revision = options.revision.unwrap_or(current);
    if revision < compacted {
        return Err(Error::Compacted { requested: revision, compacted_revision: compacted });
    }
    if revision > current {
        return Err(Error::FutureRevision { requested: revision, current });
    }
    let end = prefix_end(prefix);
    // Keys are never empty, so "after the empty key" excludes nothing.
    let start_after = options.start_after.as_deref().unwrap_or("");
    // Ask for one more than the limit to learn whether there are more.
    // `Some(0)` means no limit, as in etcd.
    let limit = options.limit.filter(|limit| *limit > 0);
    let fetch = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
    let mut stmt = tx
        .prepare_cached(
            // Walks the (name, id) index in key order and keeps each key's latest row at
            // `revision`, so LIMIT stops the walk early (a GROUP BY subquery would
            // materialize and sort the whole prefix for every page).
            "SELECT kv.id, kv.name, kv.create_revision, kv.value FROM kv
             WHERE kv.name >= ?1 AND kv.name < ?2 AND kv.name > ?3 AND kv.id <= ?4
               AND kv.id = (SELECT MAX(newer.id) FROM kv AS newer
                            WHERE newer.name = kv.name AND newer.id <= ?4)
               AND kv.deleted = 0
             ORDER BY kv.name
             LIMIT ?5",
        )
        .map_err(Error::sqlite("prepare range"))?;
    let mut kvs = stmt
        .query_map(params![prefix, TextBytes(&end), start_after, revision, fetch], |row| {
            Ok(KeyValue {
                mod_revision: row.get(0)?,
                key: row.get(1)?,
                create_revision: row.get(2)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(Error::sqlite("range"))?;
    let more = limit.is_some_and(|limit| kvs.len() > limit);
    if let Some(limit) = limit {
        kvs.truncate(limit);
    }
    Ok(RangeResult { kvs, revision, more })
}

/// A page of the history of `prefix`: events with a revision in `(after, until]`, at
/// most `limit`, and whether the page reached `until`.
pub(crate) fn history(
    conn: &Connection,
    prefix: &str,
    after: i64,
    until: i64,
    limit: usize,
) -> Result<(Vec<Event>, bool)> {
    let tx = conn.unchecked_transaction().map_err(Error::sqlite("begin read transaction"))?;
    let (_, compacted) = revisions(&tx)?;
    if after < compacted {
        return Err(Error::Compacted { requested: after, compacted_revision: compacted });
    }
    let end = prefix_end(prefix);
    // `+kv.name` keeps SQLite on the revision range: a watch usually resumes from a recent
    // revision, so that range is short while the prefix may hold many keys.
    let mut stmt = tx
        .prepare_cached(
            "SELECT kv.id, kv.name, kv.created, kv.deleted, kv.create_revision,
                    kv.prev_revision, kv.value, prev.create_revision, prev.value
             FROM kv LEFT JOIN kv AS prev ON prev.id = kv.prev_revision
             WHERE kv.id > ?1 AND kv.id <= ?2 AND +kv.name >= ?3 AND +kv.name < ?4
             ORDER BY kv.id
             LIMIT ?5",
        )
        .map_err(Error::sqlite("prepare history"))?;
    let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, until, prefix, TextBytes(&end), limit_sql], |row| {
            Ok(HistoryRow {
                id: row.get(0)?,
                name: row.get(1)?,
                created: row.get(2)?,
                deleted: row.get(3)?,
                create_revision: row.get(4)?,
                prev_revision: row.get(5)?,
                value: row.get(6)?,
                prev_create_revision: row.get(7)?,
                prev_value: row.get(8)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(Error::sqlite("history"))?;
    let complete = rows.len() < limit;
    let events = rows.into_iter().map(HistoryRow::into_event).collect::<Result<Vec<_>>>()?;
    Ok((events, complete))
}

struct HistoryRow {
    id: i64,
    name: String,
    created: bool,
    deleted: bool,
    create_revision: i64,
    prev_revision: i64,
    value: Vec<u8>,
    prev_create_revision: Option<i64>,
    prev_value: Option<Vec<u8>>,
}

impl HistoryRow {
    fn into_event(self) -> Result<Event> {
        let prev = match (self.prev_create_revision, self.prev_value) {
            (Some(create_revision), Some(value)) if !self.created => Some(KeyValue {
                key: self.name.clone(),
                value: Bytes::from(value),
                create_revision,
                mod_revision: self.prev_revision,
            }),
            _ => None,
        };
        if self.deleted {
            // Compaction keeps the version a later delete or update refers to (it is the
            // latest at the compacted revision), so a missing one is corruption.
            let prev = prev.ok_or(Error::Corrupt {
                revision: self.id,
                reason: "delete without the version it deleted",
            })?;
            return Ok(Event::Delete { prev, revision: self.id });
        }
        if !self.created && prev.is_none() {
            return Err(Error::Corrupt {
                revision: self.id,
                reason: "update without the version it replaced",
            });
        }
        Ok(Event::Put {
            kv: KeyValue {
                key: self.name,
                value: Bytes::from(self.value),
                create_revision: self.create_revision,
                mod_revision: self.id,
            },
            prev,
        })
    }
}
