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
/// Every change is written (to a temporary file, then renamed) before it is returned,
/// so a node restarted after a crash keeps its pods' addresses.
#[derive(Debug)]
pub struct PodIpAllocator {
    path: PathBuf,
    state: State,
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
        Ok(Self { path, state })
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
                if let Err(e) = self.save() {
                    // Do not hand out an address that would be forgotten on restart.
                    self.state.allocations.remove(&ip);
                    return Err(e);
                }
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted { cidr, used: self.state.allocations.len() })
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

    fn save(&self) -> Result<(), IpamError> {
        let io_err = |op, source| IpamError::Io { op, path: self.path.clone(), source };
        let tmp = self.path.with_extension("json.tmp");
        let mut bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|source| IpamError::Parse { path: self.path.clone(), source })?;
        bytes.push(b'\n');
        let mut f = fs::File::create(&tmp).map_err(|e| io_err("create", e))?;
        f.write_all(&bytes).map_err(|e| io_err("write", e))?;
        // fsync before rename: after a crash the file is the old or the new state,
        // never empty.
        f.sync_all().map_err(|e| io_err("sync", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io_err("rename", e))
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
}
