//! Expectations, as upstream's `UIDTrackingControllerExpectations`: after a sync asks
//! for N creations and some deletions, the controller waits until its watch has shown
//! them all before it counts pods again. Without this a sync that runs while its own
//! creates are in flight would see too few pods and create more.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Expectations older than this are considered met (upstream's `ExpectationsTimeout`),
/// so a lost watch event cannot stall a controller for ever.
const TIMEOUT: Duration = Duration::from_secs(5 * 60);

struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

#[derive(Default)]
pub struct Expectations {
    by_owner: HashMap<String, Expectation>,
}

impl Expectations {
    /// Whether the owner may count its pods and act: nothing is in flight, or what
    /// was expected is too old to wait for.
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.by_owner.get(owner) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > TIMEOUT,
        }
    }

    pub fn expect_creations(&mut self, owner: &str, count: usize) {
        self.by_owner.insert(
            owner.to_string(),
            Expectation { adds: count as i64, deletes: HashSet::new(), since: Instant::now() },
        );
    }

    /// `pods` are the `namespace/name` keys of the pods being deleted.
    pub fn expect_deletions(&mut self, owner: &str, pods: impl IntoIterator<Item = String>) {
        self.by_owner.insert(
            owner.to_string(),
            Expectation { adds: 0, deletes: pods.into_iter().collect(), since: Instant::now() },
        );
    }

    /// A pod the owner created was seen (or its create failed and will never be seen).
    pub fn creation_observed(&mut self, owner: &str) {
        if let Some(e) = self.by_owner.get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// A pod was seen terminating or gone (or its delete failed). Only pods the owner
    /// asked to delete count, each once.
    pub fn deletion_observed(&mut self, owner: &str, pod: &str) {
        if let Some(e) = self.by_owner.get_mut(owner) {
            e.deletes.remove(pod);
        }
    }

    pub fn forget(&mut self, owner: &str) {
        self.by_owner.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed() {
        let mut e = Expectations::default();
        assert!(e.satisfied("ns/rc"));
        e.expect_creations("ns/rc", 2);
        assert!(!e.satisfied("ns/rc"));
        e.creation_observed("ns/rc");
        assert!(!e.satisfied("ns/rc"));
        e.creation_observed("ns/rc");
        assert!(e.satisfied("ns/rc"));
    }

    #[test]
    fn deletions_count_once_per_expected_pod() {
        let mut e = Expectations::default();
        e.expect_deletions("ns/rc", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rc", "ns/a");
        e.deletion_observed("ns/rc", "ns/a");
        e.deletion_observed("ns/rc", "ns/other");
        assert!(!e.satisfied("ns/rc"));
        e.deletion_observed("ns/rc", "ns/b");
        assert!(e.satisfied("ns/rc"));
        e.forget("ns/rc");
        assert!(e.satisfied("ns/rc"));
    }
}
