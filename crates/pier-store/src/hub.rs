//! Fan-out of committed events to live watchers.
//!
//! The writer publishes every committed batch here, in revision order, and records the
//! revision it has published up to. A new watcher subscribes and learns that revision
//! under the same lock, so everything at or below it is in the log (read as history)
//! and everything above it arrives on its channel: no gap, no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::mpsc;

use crate::{Error, Event, Result};

/// The live watchers of one store.
#[derive(Debug)]
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    buffer: usize,
}

#[derive(Debug)]
struct HubInner {
    /// Every event with a revision at or below this one was published.
    published: i64,
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<Event>,
    lagged: Arc<AtomicBool>,
}

/// A watcher's end of the hub.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Live events with a revision above `published`.
    pub(crate) rx: mpsc::Receiver<Event>,
    /// The revision published when subscribing: history up to it is in the log.
    pub(crate) published: i64,
    /// Set when the hub dropped this subscriber for being too slow.
    pub(crate) lagged: Arc<AtomicBool>,
    /// Unsubscribes on drop.
    pub(crate) _guard: SubscriptionGuard,
}

/// Removes its subscriber from the hub when dropped, so an abandoned watch costs nothing.
#[derive(Debug)]
pub(crate) struct SubscriptionGuard {
    hub: Weak<Hub>,
    id: u64,
}

impl Hub {
    /// A hub whose watchers each buffer at most `buffer` undelivered events.
    pub(crate) fn new(published: i64, buffer: usize) -> Hub {
        Hub {
            inner: Mutex::new(HubInner { published, next_id: 0, subscribers: HashMap::new() }),
            buffer: buffer.max(1),
        }
    }

    pub(crate) fn subscribe(self: &Arc<Self>, prefix: &str) -> Result<Subscription> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut inner = self.inner.lock().map_err(|_| Error::Poisoned { what: "watch hub" })?;
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.insert(id, Subscriber { prefix: prefix.to_owned(), tx, lagged: lagged.clone() });
        Ok(Subscription {
            rx,
            published: inner.published,
            lagged,
            _guard: SubscriptionGuard { hub: Arc::downgrade(self), id },
        })
    }

    /// Delivers the events of one committed batch (in revision order) and records that
    /// everything up to `revision` is published. Never blocks: a watcher whose buffer is
    /// full is dropped and told it lagged.
    pub(crate) fn publish(&self, events: &[Event], revision: i64) {
        let mut inner = self.lock_recovering();
        inner.subscribers.retain(|_, sub| {
            for event in events.iter().filter(|e| e.key().starts_with(&sub.prefix)) {
                match sub.tx.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Set before the sender is dropped, so the receiver sees the flag
                        // when it finds the channel closed.
                        sub.lagged.store(true, Ordering::Release);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        inner.published = inner.published.max(revision);
    }

    /// Number of live subscribers (for tests and metrics).
    pub(crate) fn subscriber_count(&self) -> usize {
        self.lock_recovering().subscribers.len()
    }

    // The writer thread has no caller to hand an error to, and a panic elsewhere must not
    // stop event delivery. Recovering is sound: no code panics between the mutations of
    // `HubInner`, each of which leaves it consistent.
    fn lock_recovering(&self) -> MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.lock_recovering().subscribers.remove(&self.id);
        }
    }
}
