//! Measures create throughput of [`SqliteStore`] with concurrent writers, on a real file
//! with `synchronous=FULL` (one fsync per group-committed batch).
//!
//! ```text
//! cargo run --release -p pier-store --example write_bench -- [TASKS] [WRITES] [DIR]
//! ```
//!
//! Defaults: 32 tasks, 200000 creates, the system temp directory. Values are ~300-byte
//! JSON objects, like small Kubernetes objects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_store::{SqliteStore, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let writes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(dir)?;
    let path = dir.path().join("bench.db");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
        let value = bytes::Bytes::from(format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"x","namespace":"default","labels":{{"app":"kubia"}}}},"data":{{"k":"{}"}}}}"#,
            "v".repeat(160)
        ));
        let per_task = writes / tasks.max(1);
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (store, value) = (Arc::clone(&store), value.clone());
                tokio::spawn(async move {
                    let mut worst = Duration::ZERO;
                    for i in 0..per_task {
                        let t = Instant::now();
                        store
                            .create(&format!("/registry/configmaps/t{task}/cm-{i}"), value.clone())
                            .await?;
                        worst = worst.max(t.elapsed());
                    }
                    Ok::<_, pier_store::Error>(worst)
                })
            })
            .collect();
        let mut worst = Duration::ZERO;
        for handle in handles {
            worst = worst.max(handle.await??);
        }
        let elapsed = started.elapsed();
        let total = per_task * tasks;
        println!(
            "{total} creates by {tasks} tasks in {:.2?}: {:.0} creates/s (slowest create {:.2?}), revision {}",
            elapsed,
            total as f64 / elapsed.as_secs_f64(),
            worst,
            store.current_revision().await?,
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
