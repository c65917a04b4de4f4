//! The writer thread: the only owner of the write connection.
//!
//! Requests queue on a channel; the thread takes all that are waiting (up to a bound),
//! applies them in one transaction and commits once, so concurrent writers share one
//! fsync (group commit). Only after the commit is durable are the events published to
//! watchers and the callers answered.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::{Deleted, Error, Event, KeyValue, Result};

/// One write, with where to send its outcome.
pub(crate) enum Request {
    Create { key: String, value: Bytes, reply: Pending<KeyValue> },
    Update { key: String, value: Bytes, expected: i64, reply: Pending<KeyValue> },
    Delete { key: String, expected: Option<i64>, reply: Pending<Deleted> },
    Compact { revision: i64, reply: Pending<()> },
}

/// A caller waiting for its outcome, and the outcome once the write was applied inside
/// the current (uncommitted) transaction.
pub(crate) struct Pending<T> {
    tx: oneshot::Sender<Result<T>>,
    outcome: Option<Result<T>>,
}

impl<T> Pending<T> {
    pub(crate) fn new() -> (Pending<T>, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        (Pending { tx, outcome: None }, rx)
    }

    fn send(self) {
        // No outcome means the request was never applied; only a bug gets here.
        let outcome = self.outcome.unwrap_or(Err(Error::Closed));
        // The caller may have gone away (future dropped); the write stands regardless.
        let _ = self.tx.send(outcome);
    }

    fn fail(self, error: Error) {
        let _ = self.tx.send(Err(error));
    }
}

impl Request {
    fn reset(&mut self) {
        match self {
            Request::Create { reply, .. } | Request::Update { reply, .. } => reply.outcome = None,
            Request::Delete { reply, .. } => reply.outcome = None,
            Request::Compact { reply, .. } => reply.outcome = None,
        }
    }

    fn send(self) {
        match self {
            Request::Create { reply, .. } | Request::Update { reply, .. } => reply.send(),
            Request::Delete { reply, .. } => reply.send(),
            Request::Compact { reply, .. } => reply.send(),
        }
    }

    fn fail(self, error: Error) {
        match self {
            Request::Create { reply, .. } | Request::Update { reply, .. } => reply.fail(error),
            Request::Delete { reply, .. } => reply.fail(error),
            Request::Compact { reply, .. } => reply.fail(error),
        }
    }
}

/// The latest row of a key.
struct Latest {
    id: i64,
    create_revision: i64,
    deleted: bool,
    value: Vec<u8>,
}

impl Latest {
    fn live(self, key: &str) -> Option<KeyValue> {
        (!self.deleted).then(|| KeyValue {
            key: key.to_owned(),
            value: Bytes::from(self.value),
            create_revision: self.create_revision,
            mod_revision: self.id,
        })
    }
}

/// Revision counters as seen inside the open transaction.
#[derive(Clone, Copy)]
struct Revisions {
    current: i64,
    compacted: i64,
}

pub(crate) struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    revisions: Revisions,
    max_batch: usize,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        rx: mpsc::Receiver<Request>,
        shared: Arc<Shared>,
        max_batch: usize,
    ) -> Writer {
        let revisions = Revisions {
            current: shared.current.load(Ordering::Acquire),
            compacted: shared.compacted.load(Ordering::Acquire),
        };
        Writer { conn, rx, shared, revisions, max_batch: max_batch.max(1) }
    }

    /// Runs until every sender is gone (the store was dropped).
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!("store writer stopped: all handles dropped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        let mut events = Vec::with_capacity(batch.len());
        match self.apply_all(batch, &mut events) {
            Ok(revisions) => self.finish(revisions, &events, batch.drain(..)),
            Err(error) => {
                // One request may have caused it (e.g. a value over SQLite's size limit):
                // retry each alone so the others still succeed and each caller gets its
                // own error.
                tracing::warn!(%error, size = batch.len(), "store batch failed, retrying one by one");
                for mut request in batch.drain(..) {
                    request.reset();
                    events.clear();
                    match self.apply_all(std::slice::from_mut(&mut request), &mut events) {
                        Ok(revisions) => self.finish(revisions, &events, std::iter::once(request)),
                        Err(error) => request.fail(error),
                    }
                }
            }
        }
    }

    /// Applies `batch` in one transaction and commits it; on error nothing is applied.
    fn apply_all(&mut self, batch: &mut [Request], events: &mut Vec<Event>) -> Result<Revisions> {
        let mut revisions = self.revisions;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::sqlite("begin write transaction"))?;
        for request in batch.iter_mut() {
            apply(&tx, request, &mut revisions, events)?;
        }
        tx.commit().map_err(Error::sqlite("commit write transaction"))?;
        Ok(revisions)
    }

    /// After a durable commit: make it visible, then answer.
    fn finish(&mut self, revisions: Revisions, events: &[Event], batch: impl Iterator<Item = Request>) {
        self.revisions = revisions;
        self.shared.current.store(revisions.current, Ordering::Release);
        self.shared.compacted.store(revisions.compacted, Ordering::Release);
        // Publish before answering, so a caller that watches from the revision it was
        // given never misses its own write.
        self.shared.hub.publish(events, revisions.current);
        batch.for_each(Request::send);
    }
}

/// Applies one request inside `tx`, recording its outcome in the request. A refused
/// write (conflict, not found, ...) is an outcome; only SQLite failures are `Err`.
fn apply(
    tx: &Transaction<'_>,
    request: &mut Request,
    revisions: &mut Revisions,
    events: &mut Vec<Event>,
) -> Result<()> {
    match request {
        Request::Create { key, value, reply } => {
            let latest = latest(tx, key)?;
            if let Some(existing) = latest.as_ref().filter(|l| !l.deleted) {
                reply.outcome =
                    Some(Err(Error::AlreadyExists { key: key.clone(), mod_revision: existing.id }));
                return Ok(());
            }
            let revision = revisions.current + 1;
            let prev_id = latest.map_or(0, |l| l.id);
            insert(tx, revision, key, true, false, revision, prev_id, value)?;
            revisions.current = revision;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            events.push(Event::Put { kv: kv.clone(), prev: None });
            reply.outcome = Some(Ok(kv));
        }
        Request::Update { key, value, expected, reply } => {
            let current = match checked_current(tx, key, Some(*expected))? {
                Ok(current) => current,
                Err(refused) => {
                    reply.outcome = Some(Err(refused));
                    return Ok(());
                }
            };
            let revision = revisions.current + 1;
            insert(tx, revision, key, false, false, current.create_revision, current.mod_revision, value)?;
            revisions.current = revision;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: current.create_revision,
                mod_revision: revision,
            };
            events.push(Event::Put { kv: kv.clone(), prev: Some(current) });
            reply.outcome = Some(Ok(kv));
        }
        Request::Delete { key, expected, reply } => {
            let current = match checked_current(tx, key, *expected)? {
                Ok(current) => current,
                Err(refused) => {
                    reply.outcome = Some(Err(refused));
                    return Ok(());
                }
            };
            let revision = revisions.current + 1;
            insert(
                tx,
                revision,
                key,
                false,
                true,
                current.create_revision,
                current.mod_revision,
                &Bytes::new(),
            )?;
            revisions.current = revision;
            events.push(Event::Delete { prev: current.clone(), revision });
            reply.outcome = Some(Ok(Deleted { revision, prev: current }));
        }
        Request::Compact { revision, reply } => {
            let revision = *revision;
            if revision <= revisions.compacted {
                reply.outcome = Some(Err(Error::Compacted {
                    requested: revision,
                    compacted_revision: revisions.compacted,
                }));
                return Ok(());
            }
            if revision > revisions.current {
                reply.outcome =
                    Some(Err(Error::FutureRevision { requested: revision, current: revisions.current }));
                return Ok(());
            }
            compact(tx, revision)?;
            revisions.compacted = revision;
            reply.outcome = Some(Ok(()));
        }
    }
    Ok(())
}

/// The live value of `key`, refused with `NotFound` or `Conflict` when absent or not at
/// the expected mod revision.
fn checked_current(
    tx: &Transaction<'_>,
    key: &str,
    expected: Option<i64>,
) -> Result<Result<KeyValue, Error>> {
    let Some(current) = latest(tx, key)?.and_then(|l| l.live(key)) else {
        return Ok(Err(Error::NotFound { key: key.to_owned() }));
    };
    match expected {
        Some(expected) if expected != current.mod_revision => {
            Ok(Err(Error::Conflict { key: key.to_owned(), expected, current: Some(current) }))
        }
        _ => Ok(Ok(current)),
    }
}

fn latest(tx: &Transaction<'_>, key: &str) -> Result<Option<Latest>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, create_revision, deleted, value FROM kv
             WHERE name = ?1 ORDER BY id DESC LIMIT 1",
        )
        .map_err(Error::sqlite("prepare latest"))?;
    stmt.query_row([key], |row| {
        Ok(Latest { id: row.get(0)?, create_revision: row.get(1)?, deleted: row.get(2)?, value: row.get(3)? })
    })
    .optional()
    .map_err(Error::sqlite("read latest"))
}

#[allow(clippy::too_many_arguments)] // one argument per column of the log
fn insert(
    tx: &Transaction<'_>,
    revision: i64,
    key: &str,
    created: bool,
    deleted: bool,
    create_revision: i64,
    prev_revision: i64,
    value: &Bytes,
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(Error::sqlite("prepare insert"))?;
    stmt.execute(params![revision, key, created, deleted, create_revision, prev_revision, value.as_ref()])
        .map_err(Error::sqlite("insert"))?;
    Ok(())
}

/// Drops every row at or below `revision` except each key's latest live one, and records
/// the compacted revision (readers check it in the same snapshot as their data).
fn compact(tx: &Transaction<'_>, revision: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [revision],
    )
    .map_err(Error::sqlite("record compacted revision"))?;
    let removed = tx
        .execute(
            "DELETE FROM kv WHERE id <= ?1 AND (
                 deleted = 1
                 OR id < (SELECT MAX(newer.id) FROM kv AS newer
                          WHERE newer.name = kv.name AND newer.id <= ?1)
             )",
            [revision],
        )
        .map_err(Error::sqlite("compact"))?;
    tracing::debug!(revision, removed, "store compacted");
    Ok(())
}
