//! Behaviour specific to [`SqliteStore`]: reopening, watcher back-pressure, shutdown.

use std::time::Duration;

use futures::StreamExt;
use pier_store::{Error, Event, RangeOptions, SqliteOptions, SqliteStore, Store, WatchStream};

const DEADLINE: Duration = Duration::from_secs(20);

async fn next(stream: &mut WatchStream) -> Option<Result<Event, Error>> {
    tokio::time::timeout(DEADLINE, stream.next()).await.expect("watch answered within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_restores_revisions_data_and_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let (a1, a2, deleted) = {
        let store = SqliteStore::open(&path).expect("open");
        let a1 = store.create("/r/a", "a1".into()).await.expect("create a");
        let a2 = store.update("/r/a", "a2".into(), a1.mod_revision).await.expect("update a");
        store.create("/r/b", "b1".into()).await.expect("create b");
        let deleted = store.delete("/r/b", None).await.expect("delete b");
        // Compacting away the newest row (b's tombstone) must not lose the counter.
        store.compact(deleted.revision).await.expect("compact");
        (a1, a2, deleted)
    };

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.current_revision().await.expect("current"), deleted.revision);
    assert_eq!(store.compacted_revision().await.expect("compacted"), deleted.revision);
    assert_eq!(store.get("/r/a").await.expect("get a"), Some(a2.clone()));
    assert_eq!(store.get("/r/b").await.expect("get b"), None);
    let list = store.range("/r/", RangeOptions::default()).await.expect("range");
    assert_eq!(list.kvs, std::slice::from_ref(&a2));
    assert_eq!(list.revision, deleted.revision);

    let mut stream = store.watch("/r/", deleted.revision).await.expect("watch");
    let a3 = store.update("/r/a", "a3".into(), a2.mod_revision).await.expect("update after reopen");
    assert_eq!(a3.mod_revision, deleted.revision + 1);
    assert_eq!(a3.create_revision, a1.create_revision);
    match next(&mut stream).await {
        Some(Ok(Event::Put { kv, prev })) => {
            assert_eq!(kv, a3);
            assert_eq!(prev, Some(a2));
        }
        other => panic!("expected the update, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_ended_and_can_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = SqliteOptions::default();
    options.watch_buffer = 4;
    let store = SqliteStore::open_with(dir.path().join("store.db"), options).expect("open");
    let start = store.current_revision().await.expect("current");
    let mut stream = store.watch("/lag/", start).await.expect("watch");
    let mut revisions = Vec::new();
    for i in 0..20 {
        let kv = store.create(&format!("/lag/{i:02}"), "v".into()).await.expect("create");
        revisions.push(kv.mod_revision);
    }
    // The four buffered events are still delivered, then the error, then the end.
    let mut seen = Vec::new();
    let last_revision = loop {
        match next(&mut stream).await {
            Some(Ok(event)) => seen.push(event.revision()),
            Some(Err(Error::WatchLagged { prefix, last_revision })) => {
                assert_eq!(prefix, "/lag/");
                break last_revision;
            }
            other => panic!("expected events then WatchLagged, got {other:?}"),
        }
    };
    assert_eq!(seen, revisions[..4]);
    assert_eq!(last_revision, revisions[3]);
    assert!(next(&mut stream).await.is_none(), "stream ends after the error");
    assert_eq!(store.watcher_count(), 0);

    // History is still there: resume from the last delivered revision.
    let mut stream = store.watch("/lag/", last_revision).await.expect("rewatch");
    for want in &revisions[4..] {
        match next(&mut stream).await {
            Some(Ok(event)) => assert_eq!(event.revision(), *want),
            other => panic!("expected revision {want}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_watch_unsubscribes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open");
    let first = store.watch("/a/", 0).await.expect("watch");
    let second = store.watch("", 0).await.expect("watch");
    assert_eq!(store.watcher_count(), 2);
    drop(first);
    assert_eq!(store.watcher_count(), 1);
    drop(second);
    assert_eq!(store.watcher_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_with_closed_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open");
    let mut stream = store.watch("/", 0).await.expect("watch");
    store.create("/a", "v".into()).await.expect("create");
    drop(store);
    assert!(matches!(next(&mut stream).await, Some(Ok(Event::Put { .. }))));
    assert!(matches!(next(&mut stream).await, Some(Err(Error::Closed))));
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let _store = SqliteStore::open(&path).expect("open");
    let conn = rusqlite::Connection::open(&path).expect("open directly");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
}
