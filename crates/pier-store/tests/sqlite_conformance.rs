//! The backend-independent conformance suite, run against [`SqliteStore`].

use pier_store::SqliteStore;

pier_store::store_conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open store");
    // The directory must outlive the store.
    (store, dir)
});
