//! Acknowledged writes survive `kill -9` of the writing process.
//!
//! The test re-executes its own binary as the writer: the child runs
//! `durability_child_writer` with `PIER_STORE_DURABILITY_CHILD` set to the database path,
//! writes as fast as it can and prints `ack <key> <revision>` after each acknowledged
//! write. The parent SIGKILLs it mid-stream, reopens the database and checks that every
//! write it saw acknowledged is there.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pier_store::{RangeOptions, SqliteStore, Store};

const CHILD_ENV: &str = "PIER_STORE_DURABILITY_CHILD";
/// Acknowledgements to see before killing.
const KILL_AFTER: usize = 3000;
const DEADLINE: Duration = Duration::from_secs(120);

/// The child's entry point; does nothing in a normal test run.
#[test]
fn durability_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let store = SqliteStore::open(&path).expect("open store");
        let started = Instant::now();
        let tasks = (0..16).map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                // Bounded, so an orphaned child cannot run forever.
                let mut i = 0u64;
                while started.elapsed() < DEADLINE {
                    let key = format!("/durability/{task}/{i}");
                    let kv = store.create(&key, "v".into()).await.expect("create");
                    // Straight to fd 1 (not captured by the test harness), one line per
                    // write: the parent counts a write once its line is complete.
                    let line = format!("ack {key} {}\n", kv.mod_revision);
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("write ack");
                    out.flush().expect("flush ack");
                    i += 1;
                }
            })
        });
        for task in futures::future::join_all(tasks).await {
            task.expect("writer task");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "durability_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut record = |line: String| {
        // Other lines are the harness's; a torn last line never arrives (lines() only
        // yields what ends in a newline or EOF, and a partial ack does not parse).
        let mut parts = line.split(' ');
        if let (Some("ack"), Some(key), Some(revision), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            if let Ok(revision) = revision.parse::<i64>() {
                acked.insert(key.to_owned(), revision);
            }
        }
    };
    let deadline = Instant::now() + DEADLINE;
    let mut seen = 0;
    while seen < KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if line.starts_with("ack ") {
                    seen += 1;
                }
                record(line);
            }
            Err(error) => {
                let _ = child.kill();
                panic!("child acknowledged only {seen} writes ({error})");
            }
        }
    }
    assert!(child.try_wait().expect("poll child").is_none(), "child exited before it was killed");
    // SIGKILL, by PID: no destructor, no SQLite close, no checkpoint runs in the child.
    child.kill().expect("kill child");
    let status = child.wait().expect("wait child");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "child was not killed: {status}");
    }
    // Acks printed before the kill are still in the pipe.
    for line in lines.iter() {
        record(line);
    }
    reader.join().expect("reader thread");
    assert!(acked.len() >= KILL_AFTER);

    let store = SqliteStore::open(&path).expect("reopen after kill");
    let max_acked = acked.values().copied().max().unwrap_or(0);
    let current = store.current_revision().await.expect("current revision");
    assert!(current >= max_acked, "revision {current} < acknowledged {max_acked}");
    for (key, revision) in &acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write {key} at revision {revision} was lost"));
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
    let all = store.range("/durability/", RangeOptions::default()).await.expect("range");
    assert!(all.kvs.len() >= acked.len());
    let next = store.create("/after-restart", "v".into()).await.expect("create");
    assert!(next.mod_revision > current);
    println!(
        "durability: {} acknowledged writes before SIGKILL, all present; {} committed",
        acked.len(),
        all.kvs.len()
    );
}
