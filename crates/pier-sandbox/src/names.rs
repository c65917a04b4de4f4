//! Validated names and addresses: interface names, namespace names, IPv4 CIDRs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Linux's `IFNAMSIZ` is 16 bytes including the terminating NUL.
pub const IFNAMSIZ_MAX: usize = 15;

/// A name was not acceptable where it was used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An interface name longer than 15 bytes, empty, or with `/`, `:` or whitespace.
    #[error("invalid interface name {0:?}: must be 1-15 bytes without '/', ':' or whitespace")]
    IfName(String),
    /// A namespace name that cannot be a file name under `/run/netns`.
    #[error("invalid network namespace name {0:?}: must be a plain file name")]
    Netns(String),
    /// Text that is not `a.b.c.d/len` with `len` at most 32.
    #[error("invalid IPv4 CIDR {0:?}")]
    Cidr(String),
}

/// A network interface name the kernel accepts (at most 15 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(pub(crate) String);

impl IfName {
    /// Checks `name` against the kernel's rules (`dev_valid_name`).
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= IFNAMSIZ_MAX
            && name != "."
            && name != ".."
            && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if ok {
            Ok(Self(name))
        } else {
            Err(NameError::IfName(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl TryFrom<String> for IfName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a persistent network namespace, a file under `/run/netns` as with `ip netns`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetnsName(String);

impl NetnsName {
    /// Accepts a plain file name (no `/`, not `.` or `..`, at most 255 bytes).
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 255
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0')
            && !name.chars().any(char::is_whitespace);
        if ok {
            Ok(Self(name))
        } else {
            Err(NameError::Netns(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NetnsName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl From<NetnsName> for String {
    fn from(n: NetnsName) -> String {
        n.0
    }
}

impl fmt::Display for NetnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 address with a prefix length, e.g. an interface address `10.244.0.1/24`.
///
/// The address keeps its host bits: `10.244.0.1/24` is an interface address, and
/// [`Ipv4Cidr::network`] gives `10.244.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix`; `prefix` must be at most 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NameError> {
        if prefix > 32 {
            return Err(NameError::Cidr(format!("{addr}/{prefix}")));
        }
        Ok(Self { addr, prefix })
    }

    /// The address part.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p)),
        }
    }

    /// The network this address is in, host bits cleared.
    pub fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), prefix: self.prefix }
    }

    /// The broadcast address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// The `n`th address of the network (0 is the network address), if inside it.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        if u64::from(n) >= size {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network().addr) + n))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = || NameError::Cidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix).map_err(|_| bad())
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// FNV-1a, 64 bit: a hash whose output is fixed by its definition, unlike std's
/// `DefaultHasher`, so names derived from it stay the same across Rust releases and
/// node restarts (the node finds its pods' links again by name).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Ten hex digits (40 bits) of the hash of `key`: short enough for `veth` + 10 = 14
/// bytes, long enough that collisions among a node's pods are negligible.
pub fn short_hash(key: &str) -> String {
    format!("{:010x}", fnv1a64(key.as_bytes()) & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_enforces_ifnamsiz() {
        assert!(IfName::new("veth0123456789a").is_ok());
        assert!(IfName::new("veth0123456789ab").is_err());
        assert!(IfName::new("").is_err());
        assert!(IfName::new("a/b").is_err());
        assert!(IfName::new("a b").is_err());
    }

    #[test]
    fn netns_name_is_a_plain_file_name() {
        assert!(NetnsName::new("pier-pod-a").is_ok());
        assert!(NetnsName::new("..").is_err());
        assert!(NetnsName::new("a/b").is_err());
    }

    #[test]
    fn cidr_parses_and_computes() {
        let c: Ipv4Cidr = "10.244.3.1/24".parse().expect("valid");
        assert_eq!(c.network().to_string(), "10.244.3.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 244, 3, 255));
        assert!(c.contains(Ipv4Addr::new(10, 244, 3, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 4, 1)));
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 244, 3, 1)));
        assert_eq!(c.nth(256), None);
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn fnv_is_the_published_function() {
        // Test vectors from the FNV reference (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
