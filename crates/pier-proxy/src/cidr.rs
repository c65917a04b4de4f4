//! IPv4 networks in CIDR notation (`10.244.0.0/16`), for `loadBalancerSourceRanges`,
//! the cluster's pod network and the service network.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, e.g. `10.244.0.0/16`. Valid by construction: the prefix length is at
/// most 32 and the host bits are cleared (`10.0.0.1/8` parses as `10.0.0.0/8`, as Go's
/// `net.ParseCIDR`, which kube-proxy uses, returns the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// A string that is not an IPv4 network in CIDR notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {input:?}")]
pub struct InvalidCidr {
    /// The rejected input.
    pub input: String,
}

impl Ipv4Cidr {
    /// The network of `addr` with `prefix_len` leading bits, or `None` if `prefix_len`
    /// is over 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 {
            return None;
        }
        Some(Self { network: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)), prefix_len })
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The number of leading bits that make up the network.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.network)
    }
}

fn mask(prefix_len: u8) -> u32 {
    // `checked_shl` because a shift by 32 overflows a u32: /0 masks nothing.
    u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0)
}

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCidr { input: s.to_string() };
        let (addr, len) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        // Only plain decimal digits: `u8::from_str` would also take "+8".
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let len: u8 = len.parse().map_err(|_| invalid())?;
        Self::new(addr, len).ok_or_else(invalid)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks_host_bits() {
        let c: Ipv4Cidr = "10.1.2.3/8".parse().expect("valid");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(Ipv4Addr::new(10, 255, 0, 1)));
        assert!(!c.contains(Ipv4Addr::new(11, 0, 0, 1)));
    }

    #[test]
    fn zero_and_full_prefixes() {
        let all: Ipv4Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 9)));
        let host: Ipv4Cidr = "192.0.2.7/32".parse().expect("valid");
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 8)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/+8", "fd00::/8", "x/1", "10.0.0.0/"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }
}
