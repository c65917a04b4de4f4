//! Watch events encoded once and shared by every watcher of the same revision.
//!
//! A pod created, bound and started is three revisions, and each is sent to every
//! watch of pods: the scheduler, the controllers, the node agents, `kubectl get -w`.
//! Decoding the stored bytes and encoding the JSON line per watcher was a tenth of
//! the API server's CPU in a burst of pod starts. The line for a revision depends only
//! on the revision and the event type (`ADDED` of the object at that revision,
//! `DELETED` of the object as it was deleted at it), so watchers that do not ask for
//! Tables share one [`Bytes`]. Watchers without selectors need not decode at all
//! ([`Watched::Stored`]). The cache keeps the last few hundred lines: watchers read
//! the same revisions at nearly the same time, and a miss only costs the encoding.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use pier_store::KeyValue;
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// Lines kept: a burst's worth of revisions, a few hundred KiB to a few MiB.
const CAPACITY: usize = 512;

/// The object a watch event carries.
#[derive(Debug, Clone)]
pub enum Watched {
    /// Not looked at: the stored bytes, with `mod_revision` the event's revision.
    Stored(KeyValue),
    /// Decoded already (to match selectors).
    Decoded(Value),
}

impl Watched {
    /// The object, with its `resourceVersion` set.
    pub fn into_value(self) -> ApiResult<Value> {
        match self {
            Watched::Stored(kv) => crate::objects::Objects::decode(&kv),
            Watched::Decoded(v) => Ok(v),
        }
    }
}

/// Encoded watch lines by (revision, event type).
#[derive(Debug, Default)]
pub struct LineCache {
    inner: Mutex<Lines>,
}

#[derive(Debug, Default)]
struct Lines {
    by_key: HashMap<(i64, &'static str), Bytes>,
    order: VecDeque<(i64, &'static str)>,
}

impl LineCache {
    /// The line for `(revision, word)`, encoded by `encode` only if no watcher has
    /// asked for it recently.
    pub fn get_or_encode(
        &self,
        revision: i64,
        word: &'static str,
        encode: impl FnOnce() -> ApiResult<Bytes>,
    ) -> ApiResult<Bytes> {
        let key = (revision, word);
        if let Some(line) = self.lock()?.by_key.get(&key) {
            return Ok(line.clone());
        }
        // Encoded outside the lock: two watchers may both encode a line, never wait.
        let line = encode()?;
        let mut lines = self.lock()?;
        if lines.by_key.insert(key, line.clone()).is_none() {
            lines.order.push_back(key);
        }
        while lines.order.len() > CAPACITY {
            if let Some(old) = lines.order.pop_front() {
                lines.by_key.remove(&old);
            }
        }
        Ok(line)
    }

    fn lock(&self) -> ApiResult<std::sync::MutexGuard<'_, Lines>> {
        self.inner.lock().map_err(|_| ApiError::internal("watch line cache poisoned"))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|l| l.by_key.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_encoded_once_per_revision_and_type() {
        let cache = LineCache::default();
        let mut encoded = 0;
        for _ in 0..3 {
            let line = cache
                .get_or_encode(7, "ADDED", || {
                    encoded += 1;
                    Ok(Bytes::from_static(b"added\n"))
                })
                .expect("line");
            assert_eq!(line, "added\n");
        }
        assert_eq!(encoded, 1);
        let deleted =
            cache.get_or_encode(7, "DELETED", || Ok(Bytes::from_static(b"deleted\n"))).expect("line");
        assert_eq!(deleted, "deleted\n", "another type at the same revision is another line");
    }

    #[test]
    fn old_lines_are_dropped_beyond_the_capacity() {
        let cache = LineCache::default();
        for rev in 0..(CAPACITY as i64 + 10) {
            cache.get_or_encode(rev, "ADDED", || Ok(Bytes::from(rev.to_string()))).expect("line");
        }
        assert_eq!(cache.len(), CAPACITY);
        let mut encoded = false;
        cache
            .get_or_encode(0, "ADDED", || {
                encoded = true;
                Ok(Bytes::from_static(b"again"))
            })
            .expect("line");
        assert!(encoded, "the oldest line was evicted and is encoded again");
    }
}
