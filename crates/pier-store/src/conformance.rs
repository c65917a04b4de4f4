//! The behaviour every [`Store`] backend must have, as checks any backend's tests can run.
//!
//! Each check is an async function taking a `&dyn Store` that panics when the store
//! misbehaves. Each works under its own key prefix (`/conformance/<check>/`) and only
//! relies on revisions relative to the ones it observed, but compaction affects the whole
//! store: give each check its own store (the macro does).
//!
//! [`store_conformance_tests!`](crate::store_conformance_tests) expands into one
//! `#[tokio::test]` per check, given an async factory of a fresh store:
//!
//! ```no_run
//! // tests/my_backend_conformance.rs
//! pier_store::store_conformance_tests!(|| async {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = pier_store::SqliteStore::open(dir.path().join("store.db")).expect("open");
//!     (store, dir) // the directory lives as long as the test
//! });
//! # fn main() {}
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, KeyValue, RangeOptions, Result, Store, WatchStream};

/// How long a check waits for anything before failing.
const DEADLINE: Duration = Duration::from_secs(20);

/// What a conformance factory returns: something that holds a store (and whatever must
/// live as long as it, e.g. a temporary directory).
pub trait StoreFixture: Send {
    /// The store under test.
    fn store(&self) -> &dyn Store;
}

impl<S: Store> StoreFixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl StoreFixture for Arc<dyn Store> {
    fn store(&self) -> &dyn Store {
        self.as_ref()
    }
}

/// A store with a guard that must outlive it.
impl<F: StoreFixture, G: Send> StoreFixture for (F, G) {
    fn store(&self) -> &dyn Store {
        self.0.store()
    }
}

/// Expands into one `#[tokio::test]` per conformance check, each on a fresh store made by
/// the given factory: a closure returning a future of a
/// [`StoreFixture`](crate::conformance::StoreFixture). The calling crate needs `tokio`
/// with the `macros` and `rt-multi-thread` features.
///
/// See the [module docs](crate::conformance) for an example.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@checks $factory;
            create_then_get,
            create_existing_fails,
            create_rejects_empty_key,
            update_succeeds_at_expected_revision,
            update_conflict_reports_current,
            update_missing_is_not_found,
            delete_unconditionally,
            delete_with_expected_revision,
            range_prefix_is_a_byte_prefix,
            range_paginates_at_first_page_revision,
            range_at_past_revision,
            range_at_future_revision_fails,
            watch_replays_history_then_live,
            watch_start_races_with_writes,
            watch_filters_by_prefix,
            watch_from_future_revision_waits,
            compaction_drops_old_history_only,
            compaction_keeps_revision_counter,
            revisions_strictly_increase,
            create_revision_preserved_across_updates,
            recreate_after_delete_gets_new_create_revision,
        );
    };
    (@checks $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = ($factory)().await;
                $crate::conformance::$check(
                    $crate::conformance::StoreFixture::store(&fixture),
                )
                .await;
            }
        )*
    };
}

// ---- helpers ----

/// The value of a `Result` or a panic naming what failed.
#[track_caller]
fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: unexpected error: {error} ({error:?})"),
    }
}

/// The error of a `Result` or a panic naming what unexpectedly succeeded.
#[track_caller]
fn err<T: std::fmt::Debug>(result: Result<T>, what: &str) -> Error {
    match result {
        Ok(value) => panic!("{what}: expected an error, got {value:?}"),
        Err(error) => error,
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {DEADLINE:?}"),
    }
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn create(store: &dyn Store, key: &str, text: &str) -> KeyValue {
    ok(store.create(key, value(text)).await, key)
}

async fn next_event(stream: &mut WatchStream, what: &str) -> Event {
    match within(what, stream.next()).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("{what}: watch failed: {error} ({error:?})"),
        None => panic!("{what}: watch ended"),
    }
}

/// Reads events up to and including the one for `sentinel` (a key written last), which
/// proves nothing else was pending before it.
async fn events_until(stream: &mut WatchStream, sentinel: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream, &format!("waiting for {sentinel}")).await;
        let done = event.key() == sentinel;
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The error of a watch from `after`, whether `watch` itself or the stream reports it.
async fn watch_error(store: &dyn Store, prefix: &str, after: i64) -> Error {
    match store.watch(prefix, after).await {
        Err(error) => error,
        Ok(mut stream) => match within("watch error", stream.next()).await {
            Some(Err(error)) => error,
            other => panic!("watch from {after}: expected an error, got {other:?}"),
        },
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

// ---- create / get ----

/// A created key reads back with its value and revisions.
pub async fn create_then_get(store: &dyn Store) {
    let key = "/conformance/create_then_get/a";
    let before = ok(store.current_revision().await, "current revision");
    let kv = create(store, key, "v1").await;
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, value("v1"));
    assert!(kv.mod_revision > before, "{kv:?} not after {before}");
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(ok(store.get(key).await, "get"), Some(kv.clone()));
    assert!(ok(store.current_revision().await, "current revision") >= kv.mod_revision);
    assert_eq!(ok(store.get("/conformance/create_then_get/missing").await, "get missing"), None);
    // A key is not a prefix match of another.
    assert_eq!(ok(store.get("/conformance/create_then_get/").await, "get dir"), None);
}

/// Creating a key that exists fails and leaves it unchanged.
pub async fn create_existing_fails(store: &dyn Store) {
    let key = "/conformance/create_existing_fails/a";
    let first = create(store, key, "v1").await;
    match err(store.create(key, value("v2")).await, "second create") {
        Error::AlreadyExists { key: k, mod_revision } => {
            assert_eq!(k, key);
            assert_eq!(mod_revision, first.mod_revision);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(ok(store.get(key).await, "get"), Some(first));
}

/// The empty key cannot be created.
pub async fn create_rejects_empty_key(store: &dyn Store) {
    match err(store.create("", value("v")).await, "create empty key") {
        Error::InvalidKey { .. } => {}
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}

// ---- update ----

/// Compare-and-swap at the current mod revision replaces the value.
pub async fn update_succeeds_at_expected_revision(store: &dyn Store) {
    let key = "/conformance/update_succeeds/a";
    let v1 = create(store, key, "v1").await;
    let v2 = ok(store.update(key, value("v2"), v1.mod_revision).await, "update");
    assert_eq!(v2.key, key);
    assert_eq!(v2.value, value("v2"));
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);
    assert_eq!(ok(store.get(key).await, "get"), Some(v2));
}

/// A stale compare-and-swap fails with the current value, and a retry with it succeeds.
pub async fn update_conflict_reports_current(store: &dyn Store) {
    let key = "/conformance/update_conflict/a";
    let v1 = create(store, key, "v1").await;
    let v2 = ok(store.update(key, value("v2"), v1.mod_revision).await, "update");
    match err(store.update(key, value("v3"), v1.mod_revision).await, "stale update") {
        Error::Conflict { key: k, expected, current } => {
            assert_eq!(k, key);
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, Some(v2.clone()));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(ok(store.get(key).await, "get"), Some(v2.clone()));
    let v3 = ok(store.update(key, value("v3"), v2.mod_revision).await, "retry");
    assert_eq!(v3.value, value("v3"));
}

/// Updating a key that does not exist (or no longer does) is `NotFound`.
pub async fn update_missing_is_not_found(store: &dyn Store) {
    let key = "/conformance/update_missing/a";
    match err(store.update(key, value("v"), 1).await, "update missing") {
        Error::NotFound { key: k } => assert_eq!(k, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let kv = create(store, key, "v1").await;
    ok(store.delete(key, None).await, "delete");
    match err(store.update(key, value("v"), kv.mod_revision).await, "update deleted") {
        Error::NotFound { .. } => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---- delete ----

/// Delete without a precondition returns the last version and its own revision.
pub async fn delete_unconditionally(store: &dyn Store) {
    let key = "/conformance/delete_unconditionally/a";
    let v1 = create(store, key, "v1").await;
    let v2 = ok(store.update(key, value("v2"), v1.mod_revision).await, "update");
    let deleted = ok(store.delete(key, None).await, "delete");
    assert_eq!(deleted.prev, v2);
    assert!(deleted.revision > v2.mod_revision);
    assert!(ok(store.current_revision().await, "current revision") >= deleted.revision);
    assert_eq!(ok(store.get(key).await, "get"), None);
    match err(store.delete(key, None).await, "second delete") {
        Error::NotFound { key: k } => assert_eq!(k, key),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Delete with a precondition: a stale one conflicts, the right one deletes.
pub async fn delete_with_expected_revision(store: &dyn Store) {
    let key = "/conformance/delete_expected/a";
    let v1 = create(store, key, "v1").await;
    let v2 = ok(store.update(key, value("v2"), v1.mod_revision).await, "update");
    match err(store.delete(key, Some(v1.mod_revision)).await, "stale delete") {
        Error::Conflict { expected, current, .. } => {
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, Some(v2.clone()));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(ok(store.get(key).await, "get"), Some(v2.clone()));
    let deleted = ok(store.delete(key, Some(v2.mod_revision)).await, "delete");
    assert_eq!(deleted.prev, v2);
    match err(store.delete(key, Some(v2.mod_revision)).await, "delete deleted") {
        Error::NotFound { .. } => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---- range ----

/// A prefix is a byte prefix: with a trailing `/` it lists a directory and no sibling.
pub async fn range_prefix_is_a_byte_prefix(store: &dyn Store) {
    let base = "/conformance/range_prefix/pods";
    for key in ["default/b", "default/a", "default2/c", "def", "de/x", "default/gone"] {
        create(store, &format!("{base}/{key}"), key).await;
    }
    ok(store.delete(&format!("{base}/default/gone"), None).await, "delete");

    let dir = ok(store.range(&format!("{base}/default/"), RangeOptions::default()).await, "range dir");
    assert_eq!(keys(&dir.kvs), [format!("{base}/default/a"), format!("{base}/default/b")]);
    assert!(!dir.more);
    assert!(dir.revision >= dir.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0));

    let partial = ok(store.range(&format!("{base}/def"), RangeOptions::default()).await, "range partial");
    assert_eq!(
        keys(&partial.kvs),
        [
            format!("{base}/def"),
            format!("{base}/default/a"),
            format!("{base}/default/b"),
            format!("{base}/default2/c"),
        ]
    );
    let none = ok(store.range(&format!("{base}/def/"), RangeOptions::default()).await, "range def/");
    assert!(none.kvs.is_empty(), "{none:?}");
    let all = ok(store.range(&format!("{base}/"), RangeOptions::default()).await, "range all");
    assert_eq!(all.kvs.len(), 5);
    assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key), "not sorted: {all:?}");
}

/// `limit` + `start_after` pages through a list at the first page's revision, unaffected
/// by writes between pages.
pub async fn range_paginates_at_first_page_revision(store: &dyn Store) {
    let prefix = "/conformance/range_paginates/";
    let mut expected = Vec::new();
    for i in 0..10 {
        expected.push(create(store, &format!("{prefix}k{i:02}"), &format!("v{i}")).await);
    }
    let page_size = 3;
    let mut seen = Vec::new();
    let mut options = RangeOptions { limit: Some(page_size), ..RangeOptions::default() };
    let mut pages = 0;
    loop {
        let page = ok(store.range(prefix, options.clone()).await, "range page");
        pages += 1;
        assert!(page.kvs.len() <= page_size);
        if pages == 1 {
            options.revision = Some(page.revision);
            // Writes after the first page must not show up in later pages.
            create(store, &format!("{prefix}k05a"), "late").await;
            ok(store.delete(&format!("{prefix}k08"), None).await, "delete k08");
            let k09 = &expected[9];
            ok(store.update(&k09.key, value("late"), k09.mod_revision).await, "update k09");
        } else {
            assert_eq!(Some(page.revision), options.revision);
        }
        seen.extend(page.kvs.iter().cloned());
        if !page.more {
            break;
        }
        options.start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, expected);

    // The latest view has the later writes.
    let latest = ok(store.range(prefix, RangeOptions::default()).await, "range latest");
    assert_eq!(latest.kvs.len(), 10);
    assert!(latest.kvs.iter().any(|kv| kv.key.ends_with("k05a")));
    assert!(!latest.kvs.iter().any(|kv| kv.key.ends_with("k08")));

    // A zero limit means no limit, as in etcd.
    let unlimited = RangeOptions { limit: Some(0), ..RangeOptions::default() };
    let all = ok(store.range(prefix, unlimited).await, "range limit 0");
    assert_eq!((all.kvs.len(), all.more), (10, false));

    // A limit that fits exactly reports no more.
    let exact = RangeOptions { limit: Some(10), ..RangeOptions::default() };
    assert!(!ok(store.range(prefix, exact).await, "range exact").more);
}

/// A read at a past revision sees the keys as they were then.
pub async fn range_at_past_revision(store: &dyn Store) {
    let prefix = "/conformance/range_past/";
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let a1 = create(store, &a, "a1").await;
    let a2 = ok(store.update(&a, value("a2"), a1.mod_revision).await, "update a");
    let b1 = create(store, &b, "b1").await;
    let deleted = ok(store.delete(&a, None).await, "delete a");

    let at = |revision: i64| RangeOptions { revision: Some(revision), ..RangeOptions::default() };
    let r1 = ok(store.range(prefix, at(a1.mod_revision)).await, "range at a1");
    assert_eq!(r1.kvs, std::slice::from_ref(&a1));
    assert_eq!(r1.revision, a1.mod_revision);
    let r2 = ok(store.range(prefix, at(a2.mod_revision)).await, "range at a2");
    assert_eq!(r2.kvs, std::slice::from_ref(&a2));
    let r3 = ok(store.range(prefix, at(b1.mod_revision)).await, "range at b1");
    assert_eq!(r3.kvs, [a2.clone(), b1.clone()]);
    let r4 = ok(store.range(prefix, at(deleted.revision)).await, "range at delete");
    assert_eq!(r4.kvs, std::slice::from_ref(&b1));
    let before = ok(store.range(prefix, at(a1.mod_revision - 1)).await, "range before");
    assert!(before.kvs.is_empty());
    let latest = ok(store.range(prefix, RangeOptions::default()).await, "range latest");
    assert_eq!(latest.kvs, [b1]);
    assert!(latest.revision >= deleted.revision);
}

/// A read above the current revision fails.
pub async fn range_at_future_revision_fails(store: &dyn Store) {
    let kv = create(store, "/conformance/range_future/a", "v").await;
    let current = ok(store.current_revision().await, "current revision");
    assert!(current >= kv.mod_revision);
    let options = RangeOptions { revision: Some(current + 1000), ..RangeOptions::default() };
    match err(store.range("/conformance/range_future/", options).await, "future range") {
        Error::FutureRevision { requested, .. } => assert_eq!(requested, current + 1000),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

// ---- watch ----

/// A watch from a past revision replays the history, with previous values, then
/// continues live.
pub async fn watch_replays_history_then_live(store: &dyn Store) {
    let prefix = "/conformance/watch_history/";
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let start = ok(store.current_revision().await, "current revision");
    let a1 = create(store, &a, "a1").await;
    let a2 = ok(store.update(&a, value("a2"), a1.mod_revision).await, "update");
    let deleted = ok(store.delete(&a, None).await, "delete");

    let mut stream = ok(store.watch(prefix, start).await, "watch");
    let expected = [
        Event::Put { kv: a1.clone(), prev: None },
        Event::Put { kv: a2.clone(), prev: Some(a1.clone()) },
        Event::Delete { prev: a2.clone(), revision: deleted.revision },
    ];
    for want in &expected {
        assert_eq!(&next_event(&mut stream, "history").await, want);
    }
    let b1 = create(store, &b, "b1").await;
    assert_eq!(next_event(&mut stream, "live").await, Event::Put { kv: b1, prev: None });

    // From the middle of the history: only what came after.
    let mut stream = ok(store.watch(prefix, a2.mod_revision).await, "watch from a2");
    assert_eq!(next_event(&mut stream, "from a2").await, expected[2]);
}

/// Writes racing with the start of a watch are each delivered exactly once, in order.
pub async fn watch_start_races_with_writes(store: &dyn Store) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 25;
    for (round, watch_after) in [0, 7, 40, 99, 150].into_iter().enumerate() {
        let prefix = format!("/conformance/watch_race/{round}/");
        let sentinel = format!("{prefix}~done");
        let start = ok(store.current_revision().await, "current revision");
        let acked = AtomicUsize::new(0);
        let progress = tokio::sync::Notify::new();

        let writes = async {
            let writers = (0..WRITERS).map(|w| {
                let (prefix, acked, progress) = (&prefix, &acked, &progress);
                async move {
                    let mut revisions = Vec::new();
                    for i in 0..PER_WRITER {
                        let key = format!("{prefix}w{w}-{i}");
                        let kv = create(store, &key, "v").await;
                        revisions.push(kv.mod_revision);
                        if i % 3 == 0 {
                            let updated = ok(store.update(&key, value("u"), kv.mod_revision).await, "update");
                            revisions.push(updated.mod_revision);
                        }
                        acked.fetch_add(1, Ordering::SeqCst);
                        progress.notify_waiters();
                    }
                    revisions
                }
            });
            let mut revisions: Vec<i64> =
                futures::future::join_all(writers).await.into_iter().flatten().collect();
            revisions.push(create(store, &sentinel, "done").await.mod_revision);
            progress.notify_waiters();
            revisions
        };
        let watcher = async {
            // Start the watch once `watch_after` writes were acknowledged (or all of
            // them), while the others are still in flight.
            loop {
                let notified = progress.notified();
                if acked.load(Ordering::SeqCst) >= watch_after.min(WRITERS * PER_WRITER) {
                    break;
                }
                within("writer progress", notified).await;
            }
            let mut stream = ok(store.watch(&prefix, start).await, "watch");
            events_until(&mut stream, &sentinel).await
        };
        let (mut revisions, events) = tokio::join!(writes, watcher);
        revisions.sort_unstable();
        let seen: Vec<i64> = events.iter().map(Event::revision).collect();
        assert_eq!(
            seen, revisions,
            "round {round}: watch started after {watch_after} writes saw a gap, a duplicate or a reordering"
        );
    }
}

/// A watch sees only keys under its prefix.
pub async fn watch_filters_by_prefix(store: &dyn Store) {
    let base = "/conformance/watch_prefix";
    let start = ok(store.current_revision().await, "current revision");
    // Some history, then some live writes.
    for key in ["a/1", "ab/2", "b/3"] {
        create(store, &format!("{base}/{key}"), key).await;
    }
    let mut stream = ok(store.watch(&format!("{base}/a/"), start).await, "watch");
    for key in ["a/4", "abc/5", "c/6", "a/7"] {
        create(store, &format!("{base}/{key}"), key).await;
    }
    let events = events_until(&mut stream, &format!("{base}/a/7")).await;
    let seen: Vec<&str> = events.iter().map(Event::key).collect();
    assert_eq!(seen, [format!("{base}/a/1"), format!("{base}/a/4"), format!("{base}/a/7")]);
}

/// A watch from above the current revision delivers only events after it.
pub async fn watch_from_future_revision_waits(store: &dyn Store) {
    let prefix = "/conformance/watch_future/";
    let current = ok(store.current_revision().await, "current revision");
    let mut stream = ok(store.watch(prefix, current + 2).await, "watch");
    let mut revisions = Vec::new();
    for i in 0..4 {
        revisions.push(create(store, &format!("{prefix}k{i}"), "v").await.mod_revision);
    }
    let want: Vec<i64> = revisions.into_iter().filter(|r| *r > current + 2).collect();
    let last = want.last().copied().unwrap_or(i64::MAX);
    let mut seen = Vec::new();
    while seen.last().copied() != Some(last) {
        seen.push(next_event(&mut stream, "future watch").await.revision());
    }
    assert_eq!(seen, want);
}

// ---- compaction ----

/// Compaction keeps each key's state at the compacted revision and everything after,
/// and refuses reads and watches that need older history.
pub async fn compaction_drops_old_history_only(store: &dyn Store) {
    let prefix = "/conformance/compaction/";
    let (a, b, c) = (format!("{prefix}a"), format!("{prefix}b"), format!("{prefix}c"));
    let a1 = create(store, &a, "a1").await;
    let a2 = ok(store.update(&a, value("a2"), a1.mod_revision).await, "update a");
    create(store, &b, "b1").await;
    let b_deleted = ok(store.delete(&b, None).await, "delete b");
    let c1 = create(store, &c, "c1").await;
    let at = b_deleted.revision;
    ok(store.compact(at).await, "compact");
    assert_eq!(ok(store.compacted_revision().await, "compacted revision"), at);

    let options = |revision: i64| RangeOptions { revision: Some(revision), ..RangeOptions::default() };
    match err(store.range(prefix, options(at - 1)).await, "range below") {
        Error::Compacted { requested, compacted_revision } => {
            assert_eq!(requested, at - 1);
            assert_eq!(compacted_revision, at);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(
        ok(store.range(prefix, options(at)).await, "range at compacted").kvs,
        std::slice::from_ref(&a2)
    );
    assert_eq!(
        ok(store.range(prefix, RangeOptions::default()).await, "range latest").kvs,
        [a2.clone(), c1.clone()]
    );
    match watch_error(store, prefix, at - 1).await {
        Error::Compacted { compacted_revision, .. } => assert_eq!(compacted_revision, at),
        other => panic!("expected Compacted, got {other:?}"),
    }
    match err(store.compact(at).await, "compact again") {
        Error::Compacted { .. } => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    let current = ok(store.current_revision().await, "current revision");
    match err(store.compact(current + 100).await, "compact future") {
        Error::FutureRevision { requested, .. } => assert_eq!(requested, current + 100),
        other => panic!("expected FutureRevision, got {other:?}"),
    }

    // History above the compacted revision is intact, previous values included.
    let mut stream = ok(store.watch(prefix, at).await, "watch at compacted");
    assert_eq!(next_event(&mut stream, "c created").await, Event::Put { kv: c1.clone(), prev: None });
    let a3 = ok(store.update(&a, value("a3"), a2.mod_revision).await, "update a after");
    assert_eq!(next_event(&mut stream, "a updated").await, Event::Put { kv: a3.clone(), prev: Some(a2) });
    let a_deleted = ok(store.delete(&a, None).await, "delete a");
    assert_eq!(
        next_event(&mut stream, "a deleted").await,
        Event::Delete { prev: a3, revision: a_deleted.revision }
    );
    assert_eq!(ok(store.get(&c).await, "get c"), Some(c1));
}

/// Compacting away the newest row (a delete) does not move the revision counter back.
pub async fn compaction_keeps_revision_counter(store: &dyn Store) {
    let key = "/conformance/compaction_counter/a";
    create(store, key, "v").await;
    let deleted = ok(store.delete(key, None).await, "delete");
    let current = ok(store.current_revision().await, "current revision");
    ok(store.compact(current).await, "compact");
    assert_eq!(ok(store.current_revision().await, "current revision"), current);
    let latest = ok(store.range("/conformance/compaction_counter/", RangeOptions::default()).await, "range");
    assert!(latest.kvs.is_empty());
    assert_eq!(latest.revision, current);
    let next = create(store, key, "v2").await;
    assert!(next.mod_revision > current.max(deleted.revision));
}

// ---- revisions ----

/// Concurrent writes get distinct revisions, increasing in each writer's order.
pub async fn revisions_strictly_increase(store: &dyn Store) {
    let writers = (0..8).map(|w| async move {
        let mut revisions = Vec::new();
        for i in 0..20 {
            let key = format!("/conformance/revisions/w{w}/k{i}");
            let kv = create(store, &key, "v").await;
            revisions.push(kv.mod_revision);
            let kv = ok(store.update(&key, value("u"), kv.mod_revision).await, "update");
            revisions.push(kv.mod_revision);
            if i % 2 == 0 {
                revisions.push(ok(store.delete(&key, None).await, "delete").revision);
            }
        }
        revisions
    });
    let per_writer = futures::future::join_all(writers).await;
    let mut all = BTreeSet::new();
    for revisions in &per_writer {
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "not increasing: {revisions:?}");
        for revision in revisions {
            assert!(all.insert(*revision), "revision {revision} given twice");
        }
    }
    let max = all.last().copied().unwrap_or(0);
    assert!(ok(store.current_revision().await, "current revision") >= max);
}

/// Updates keep the create revision.
pub async fn create_revision_preserved_across_updates(store: &dyn Store) {
    let key = "/conformance/create_revision/a";
    let mut kv = create(store, key, "v0").await;
    let created = kv.create_revision;
    for i in 1..4 {
        let next = ok(store.update(key, value(&format!("v{i}")), kv.mod_revision).await, "update");
        assert_eq!(next.create_revision, created);
        assert!(next.mod_revision > kv.mod_revision);
        kv = next;
    }
    assert_eq!(ok(store.get(key).await, "get").map(|kv| kv.create_revision), Some(created));
}

/// A key created again after a delete is a new key: new create revision, no previous
/// value in its event.
pub async fn recreate_after_delete_gets_new_create_revision(store: &dyn Store) {
    let key = "/conformance/recreate/a";
    let start = ok(store.current_revision().await, "current revision");
    let first = create(store, key, "v1").await;
    let deleted = ok(store.delete(key, None).await, "delete");
    let second = create(store, key, "v2").await;
    assert!(second.create_revision > deleted.revision);
    assert_eq!(second.create_revision, second.mod_revision);
    assert_ne!(second.create_revision, first.create_revision);

    let mut stream = ok(store.watch("/conformance/recreate/", start).await, "watch");
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(next_event(&mut stream, "recreate events").await);
    }
    assert_eq!(
        events,
        [
            Event::Put { kv: first.clone(), prev: None },
            Event::Delete { prev: first, revision: deleted.revision },
            Event::Put { kv: second, prev: None },
        ]
    );
}
