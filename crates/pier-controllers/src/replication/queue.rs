//! A work queue of owner keys with client-go's workqueue guarantees: a key waits at
//! most once however often it is added, one key is never processed by two workers at
//! once (an add during processing re-queues it when the worker is done), and failed
//! keys come back with a per-key exponential delay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// The first retry delay of a failing key (client-go's 5 ms) and the cap (1000 s).
const RETRY_BASE: Duration = Duration::from_millis(5);
const RETRY_MAX: Duration = Duration::from_secs(1000);

#[derive(Default)]
struct Inner {
    ready: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The sets stay consistent under every panic point (single inserts/removes).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, key: &str) {
        let mut q = self.lock();
        if !q.dirty.insert(key.to_string()) {
            return;
        }
        if q.processing.contains(key) {
            return;
        }
        q.ready.push_back(key.to_string());
        drop(q);
        self.notify.notify_one();
    }

    pub fn add_after(self: &Arc<Self>, key: &str, delay: Duration) {
        let queue = Arc::clone(self);
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// Re-adds a key that failed, later each time it fails again.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let failures = {
            let mut q = self.lock();
            let n = q.failures.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        let delay = RETRY_BASE.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(31)));
        self.add_after(key, delay.min(RETRY_MAX));
    }

    /// Clears a key's failure history after a successful sync.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to process; call [`Queue::done`] with it afterwards.
    pub async fn get(&self) -> String {
        loop {
            {
                let mut q = self.lock();
                if let Some(key) = q.ready.pop_front() {
                    q.dirty.remove(&key);
                    q.processing.insert(key.clone());
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut q = self.lock();
        q.processing.remove(key);
        if q.dirty.contains(key) {
            q.ready.push_back(key.to_string());
            drop(q);
            self.notify.notify_one();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_never_processed_twice_at_once() {
        let q = Queue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let first = q.get().await;
        assert_eq!(first, "a");
        // Added while processing: not handed out until done.
        q.add("a");
        assert_eq!(q.get().await, "b");
        assert_eq!(q.len(), 0);
        q.done("a");
        assert_eq!(q.get().await, "a");
    }
}
