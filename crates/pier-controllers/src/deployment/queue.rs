//! A work queue with client-go's guarantees: a key waits in the queue at most once,
//! no two workers hold the same key, a key added while it is being worked on is worked
//! on again afterwards, and failures come back after an exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// Upstream's per-item rate limiter starts at 5 ms and doubles; Pier caps it lower than
/// upstream's 1000 s because its failures are mostly write conflicts that clear at once.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(30);

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
}

pub struct Queue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Queue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A worker that panicked while holding the lock left consistent sets behind
        // (every critical section is a few set operations), so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if s.processing.contains(&key) {
            // Re-queued by `done`.
            return;
        }
        s.queue.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        // Weak: a delayed key must not keep a stopped controller's queue alive.
        let queue: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = queue.upgrade() {
                q.add(key);
            }
        });
    }

    /// Queues `key` after a delay that doubles with each consecutive failure; returns
    /// how many times it has failed.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) -> u32 {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BASE_DELAY.saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX)).min(MAX_DELAY);
        self.add_after(key, delay);
        n
    }

    /// Clears `key`'s failure count (after a successful sync).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key; the caller owns it until [`Queue::done`].
    pub async fn get(&self) -> K {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an `add` between the look and the wait
            // still wakes this worker.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the baton: another worker may take the next key.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Releases `key`; if it was added meanwhile, it goes back into the queue.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_requeued_when_added_while_processing() {
        let q: Arc<Queue<&str>> = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await;
        assert_eq!(k, "a");
        // Added while a worker holds it: not handed to a second worker...
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "b");
        // ...but queued again once the first is done.
        q.done(&"a");
        assert_eq!(q.get().await, "a");
        q.done(&"a");
        q.done(&"b");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_forget_resets() {
        let q: Arc<Queue<&str>> = Queue::new();
        assert_eq!(q.add_rate_limited("a"), 1);
        assert_eq!(q.add_rate_limited("a"), 2);
        q.forget(&"a");
        assert_eq!(q.add_rate_limited("a"), 1);
        let got = tokio::time::timeout(Duration::from_secs(1), q.get()).await;
        assert_eq!(got.ok(), Some("a"));
    }
}
