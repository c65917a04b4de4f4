//! Pod IP allocation (pure logic plus one small JSON file).
//!
//! Like the CNI `host-local` plugin: the network address, the gateway (`.1`) and the
//! broadcast address are never handed out, and the search for a free address starts
//! after the last one handed out, so a just-released IP is not reused at once (stale
//! endpoints and conntrack entries would send traffic to the wrong pod).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::Ipv4Cidr;

/// The file in the state directory.
pub const STATE_FILE: &str = "pod-ips.json";

/// Why an allocation or its persistence failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The CIDR is too small to hold a gateway and one pod (`/31`, `/32`).
    #[error("pod CIDR {0} has no room for a gateway and pods")]
    CidrTooSmall(Ipv4Cidr),
    /// Every usable address is taken.
    #[error("pod CIDR {cidr} is exhausted ({used} addresses in use)")]
    Exhausted {
        /// The CIDR.
        cidr: Ipv4Cidr,
        /// How many are allocated.
        used: usize,
    },
    /// The state file belongs to another CIDR: the node's podCIDR changed.
    #[error("state file {path} is for pod CIDR {found}, not {expected}")]
    CidrMismatch {
        /// The file.
        path: PathBuf,
        /// What the file says.
        found: Ipv4Cidr,
        /// What the node has.
        expected: Ipv4Cidr,
    },
    /// Reading or writing the state file failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("parse {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    cidr: Ipv4Cidr,
    /// The last address handed out, where the next search starts.
    last: Option<Ipv4Addr>,
    /// IP to owner (the pod uid). A BTreeMap keeps the file sorted and diffable.
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// Allocates pod IPs from a node's pod CIDR, persisted in `dir/pod-ips.json`.
///
/// Every change through [`PodIpAllocator::allocate`] and [`PodIpAllocator::release`] is
/// written (to a temporary file, then renamed) before it is returned, so a node
/// restarted after a crash keeps its pods' addresses. [`PodIpAllocator::allocate_unsaved`]
/// leaves the write to a [`StateWriter`], which shares one write among concurrent
/// allocations.
#[derive(Debug)]
pub struct PodIpAllocator {
    path: PathBuf,
    state: State,
    /// Counts changes since `open`; a write covers every change up to the generation
    /// it was taken at.
    generation: u64,
}

impl PodIpAllocator {
    /// Opens the allocator state in `dir` (created if missing), or starts empty.
    pub fn open(dir: &Path, cidr: Ipv4Cidr) -> Result<Self, IpamError> {
        let cidr = cidr.network();
        if cidr.prefix() > 30 {
            return Err(IpamError::CidrTooSmall(cidr));
        }
        fs::create_dir_all(dir).map_err(|source| IpamError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: State = serde_json::from_slice(&bytes)
                    .map_err(|source| IpamError::Parse { path: path.clone(), source })?;
                if state.cidr != cidr {
                    return Err(IpamError::CidrMismatch { path, found: state.cidr, expected: cidr });
                }
                state
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                State { cidr, last: None, allocations: BTreeMap::new() }
            }
            Err(source) => return Err(IpamError::Io { op: "read", path, source }),
        };
        Ok(Self { path, state, generation: 0 })
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.state.cidr
    }

    /// The gateway, the CIDR's first address (`cbr0`'s).
    pub fn gateway(&self) -> Ipv4Addr {
        // prefix <= 30 was checked in `open`, so .1 exists.
        self.state.cidr.nth(1).unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The IP of `owner` (a pod uid), allocating one if it has none. Asking again for
    /// the same owner returns the same IP, so a restarted node re-running its pods
    /// gets their old addresses.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.get(owner) {
            return Ok(ip);
        }
        let (ip, _) = self.allocate_unsaved(owner)?;
        if let Err(e) = self.save() {
            // Do not hand out an address that would be forgotten on restart.
            self.state.allocations.remove(&ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// [`PodIpAllocator::allocate`] in memory only: the address must not be used until
    /// a [`StateWriter`] has persisted the returned generation.
    pub fn allocate_unsaved(&mut self, owner: &str) -> Result<(Ipv4Addr, u64), IpamError> {
        if let Some(ip) = self.get(owner) {
            // Possibly not written yet either: the caller waits for the current state.
            return Ok((ip, self.generation));
        }
        let cidr = self.state.cidr;
        // Usable: 2 ..= size-2 (0 is the network, 1 the gateway, size-1 broadcast).
        let size = 1u32 << (32 - u32::from(cidr.prefix()));
        let first = 2u32;
        let last = size - 2;
        let count = last - first + 1;
        let start = match self.state.last {
            Some(ip) if cidr.contains(ip) => {
                let n = u32::from(ip) - u32::from(cidr.addr());
                if n >= first && n < last {
                    n + 1
                } else {
                    first
                }
            }
            _ => first,
        };
        for i in 0..count {
            let n = first + (start - first + i) % count;
            let Some(ip) = cidr.nth(n) else { continue };
            if let std::collections::btree_map::Entry::Vacant(slot) = self.state.allocations.entry(ip) {
                slot.insert(owner.to_string());
                self.state.last = Some(ip);
                self.generation += 1;
                return Ok((ip, self.generation));
            }
        }
        Err(IpamError::Exhausted { cidr, used: self.state.allocations.len() })
    }

    /// The state as it would be written now, the generation it covers and where it
    /// goes (for [`write_state`]).
    pub fn snapshot(&self) -> Result<(u64, PathBuf, Vec<u8>), IpamError> {
        Ok((self.generation, self.path.clone(), self.encode()?))
    }

    /// The IP allocated to `owner`, if any.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.state.allocations.iter().find(|(_, o)| o.as_str() == owner).map(|(ip, _)| *ip)
    }

    /// Releases `owner`'s IP; returns it, or `None` if it had none (releasing twice is
    /// not an error, as pod deletion may be retried).
    pub fn release(&mut self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let Some(ip) = self.get(owner) else {
            return Ok(None);
        };
        self.state.allocations.remove(&ip);
        self.generation += 1;
        if let Err(e) = self.save() {
            self.state.allocations.insert(ip, owner.to_string());
            return Err(e);
        }
        Ok(Some(ip))
    }

    /// All allocations, IP to owner.
    pub fn allocations(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.state.allocations.iter().map(|(ip, owner)| (*ip, owner.as_str()))
    }

    fn encode(&self) -> Result<Vec<u8>, IpamError> {
        let mut bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|source| IpamError::Parse { path: self.path.clone(), source })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    fn save(&self) -> Result<(), IpamError> {
        write_state(&self.path, &self.encode()?)
    }
}

/// Writes a state file atomically: a temporary file, `fsync`, then rename, so after a
/// crash the file is the old or the new state, never empty.
pub fn write_state(path: &Path, bytes: &[u8]) -> Result<(), IpamError> {
    let io_err = |op, source| IpamError::Io { op, path: path.to_path_buf(), source };
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io_err("create", e))?;
    f.write_all(bytes).map_err(|e| io_err("write", e))?;
    f.sync_all().map_err(|e| io_err("sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("rename", e))
}

/// Persists allocations made with [`PodIpAllocator::allocate_unsaved`], one write for
/// all the changes made while the previous write was under way (group commit): in a
/// burst of 100 pod starts each allocation used to rewrite and `fsync` the file while
/// holding the allocator, so pods queued behind each other's `fsync`.
#[derive(Debug, Default)]
pub struct StateWriter {
    /// The generation on disk; holding it is being the one writer.
    written: tokio::sync::Mutex<u64>,
    writes: std::sync::atomic::AtomicUsize,
}

impl StateWriter {
    /// Returns once a state at least as new as `generation` is on disk.
    pub async fn persist(
        &self,
        allocator: &tokio::sync::Mutex<PodIpAllocator>,
        generation: u64,
    ) -> Result<(), IpamError> {
        let mut written = self.written.lock().await;
        if *written >= generation {
            // Written by whoever held the lock meanwhile.
            return Ok(());
        }
        // The allocator stays locked while the file is written: `release` writes the
        // same file, and the newest state must be the last one renamed into place.
        // Allocations wait meanwhile and are all covered by the next write.
        let allocator = allocator.lock().await;
        let (latest, path, bytes) = allocator.snapshot()?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_state(&target, &bytes))
            .await
            .map_err(|e| IpamError::Io { op: "write", path, source: io::Error::other(e) })??;
        drop(allocator);
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *written = latest;
        Ok(())
    }

    /// How many writes this writer made.
    pub fn writes(&self) -> usize {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("test cidr")
    }

    #[test]
    fn skips_network_gateway_and_broadcast() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        let mut a = PodIpAllocator::open(dir.path(), cidr("10.244.3.0/24"))?;
        assert_eq!(a.gateway(), Ipv4Addr::new(10, 244, 3, 1));
        let mut seen = Vec::new();
        for i in 0..253 {
            seen.push(a.allocate(&format!("pod-{i}"))?);
        }
        assert_eq!(seen[0], Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(seen[252], Ipv4Addr::new(10, 244, 3, 254));
        assert!(matches!(a.allocate("one-too-many"), Err(IpamError::Exhausted { used: 253, .. })));
        Ok(())
    }

    #[test]
    fn same_owner_same_ip_and_persisted_across_reopen() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        let c = cidr("10.244.0.0/24");
        let (ip_a, ip_b) = {
            let mut a = PodIpAllocator::open(dir.path(), c)?;
            (a.allocate("uid-a")?, a.allocate("uid-b")?)
        };
        let mut a = PodIpAllocator::open(dir.path(), c)?;
        assert_eq!(a.get("uid-a"), Some(ip_a));
        assert_eq!(a.allocate("uid-b")?, ip_b);
        assert_eq!(a.allocate("uid-c")?, Ipv4Addr::new(10, 244, 0, 4));
        Ok(())
    }

    #[test]
    fn released_ip_is_not_reused_at_once() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        let mut a = PodIpAllocator::open(dir.path(), cidr("10.244.0.0/24"))?;
        let first = a.allocate("a")?;
        assert_eq!(a.release("a")?, Some(first));
        assert_eq!(a.release("a")?, None);
        let second = a.allocate("b")?;
        assert_ne!(first, second);
        assert_eq!(a.allocations().count(), 1);
        // After a reopen the released address stays free and the cursor is kept.
        let mut a = PodIpAllocator::open(dir.path(), cidr("10.244.0.0/24"))?;
        assert_eq!(a.allocate("c")?, Ipv4Addr::new(10, 244, 0, 4));
        Ok(())
    }

    #[test]
    fn wraps_around_to_free_addresses() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        // A /29 has .2 to .6 usable.
        let mut a = PodIpAllocator::open(dir.path(), cidr("10.0.0.0/29"))?;
        for o in ["a", "b", "c", "d", "e"] {
            a.allocate(o)?;
        }
        a.release("b")?;
        assert_eq!(a.allocate("f")?, Ipv4Addr::new(10, 0, 0, 3));
        Ok(())
    }

    #[test]
    fn rejects_other_cidr_and_garbage() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        PodIpAllocator::open(dir.path(), cidr("10.244.0.0/24"))?.allocate("a")?;
        assert!(matches!(
            PodIpAllocator::open(dir.path(), cidr("10.244.1.0/24")),
            Err(IpamError::CidrMismatch { .. })
        ));
        fs::write(dir.path().join(STATE_FILE), b"{not json").map_err(|source| IpamError::Io {
            op: "write",
            path: PathBuf::new(),
            source,
        })?;
        assert!(matches!(
            PodIpAllocator::open(dir.path(), cidr("10.244.0.0/24")),
            Err(IpamError::Parse { .. })
        ));
        assert!(matches!(
            PodIpAllocator::open(dir.path(), cidr("10.0.0.0/31")),
            Err(IpamError::CidrTooSmall(_))
        ));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_share_writes_and_all_reach_the_disk() -> Result<(), IpamError> {
        let dir = tempfile::tempdir().map_err(|source| IpamError::Io {
            op: "tempdir",
            path: PathBuf::from("/tmp"),
            source,
        })?;
        let allocator = tokio::sync::Mutex::new(PodIpAllocator::open(dir.path(), cidr("10.244.3.0/24"))?);
        let writer = StateWriter::default();
        let starts = (0..50).map(|i| {
            let (allocator, writer) = (&allocator, &writer);
            async move {
                let owner = format!("pod-{i}");
                let (ip, generation) = allocator.lock().await.allocate_unsaved(&owner)?;
                writer.persist(allocator, generation).await?;
                Ok::<_, IpamError>((owner, ip))
            }
        });
        let got = futures::future::join_all(starts).await.into_iter().collect::<Result<Vec<_>, _>>()?;
        let distinct: std::collections::BTreeSet<Ipv4Addr> = got.iter().map(|(_, ip)| *ip).collect();
        assert_eq!(distinct.len(), 50);
        assert!(writer.writes() < 50, "{} writes for 50 allocations", writer.writes());
        // Everything handed out is on disk.
        let reopened = PodIpAllocator::open(dir.path(), cidr("10.244.3.0/24"))?;
        for (owner, ip) in &got {
            assert_eq!(reopened.get(owner), Some(*ip), "{owner}");
        }
        Ok(())
    }
}
