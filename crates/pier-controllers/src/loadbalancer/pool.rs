//! The address pool of the LoadBalancer controller: the `--lb-range` text, and the
//! in-memory record of which Service holds which address. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An inclusive range of IPv4 addresses that LoadBalancer Services get their
/// `status.loadBalancer.ingress[0].ip` from, as a MetalLB `IPAddressPool`.
///
/// Written as `172.30.0.200-172.30.0.250` (both ends included) or as a CIDR such as
/// `172.30.0.200/29`. A CIDR of /30 or wider leaves out its network and broadcast
/// addresses: the pool sits on an L2 underlay, where those addresses of the block may
/// be broadcast addresses of the underlay itself (`172.30.0.0/24`'s `.255` is the last
/// address of `172.30.0.248/29`). An explicit range is taken as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LbRange {
    first: Ipv4Addr,
    last: Ipv4Addr,
}

/// Why `--lb-range` text was refused. `Display` names the text and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbRangeError {
    /// Neither `<first>-<last>` nor `<address>/<prefix>` with IPv4 addresses.
    #[error(
        "invalid load balancer range {0:?}: expected <first>-<last> (e.g. 172.30.0.200-172.30.0.250) \
         or an IPv4 CIDR (e.g. 172.30.0.200/29)"
    )]
    Syntax(String),
    /// The range ends before it starts.
    #[error("invalid load balancer range {first}-{last}: {last} comes before {first}")]
    Reversed {
        /// The first address as written.
        first: Ipv4Addr,
        /// The last address as written.
        last: Ipv4Addr,
    },
    /// A CIDR whose address has bits set past the prefix (`172.30.0.201/29`).
    #[error("invalid load balancer range {text:?}: host bits are set (the block is {network})")]
    HostBits {
        /// The CIDR as written.
        text: String,
        /// The block it was probably meant to be.
        network: String,
    },
}

/// Parses `--lb-range`: `<first>-<last>` or an IPv4 CIDR (see [`LbRange`]).
///
/// ```
/// use pier_controllers::loadbalancer::parse_lb_range;
/// let r = parse_lb_range("172.30.0.200-172.30.0.250")?;
/// assert_eq!(r.len(), 51);
/// let r = parse_lb_range("172.30.0.200/29")?;
/// assert_eq!(r.to_string(), "172.30.0.201-172.30.0.206");
/// # Ok::<(), pier_controllers::loadbalancer::LbRangeError>(())
/// ```
///
/// # Errors
///
/// [`LbRangeError`] naming what is wrong with the text.
pub fn parse_lb_range(text: &str) -> Result<LbRange, LbRangeError> {
    text.parse()
}

impl LbRange {
    /// The range from `first` to `last`, both included.
    ///
    /// # Errors
    ///
    /// [`LbRangeError::Reversed`] if `last` comes before `first`.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Result<Self, LbRangeError> {
        if last < first {
            return Err(LbRangeError::Reversed { first, last });
        }
        Ok(LbRange { first, last })
    }

    /// The lowest address of the pool.
    pub fn first(&self) -> Ipv4Addr {
        self.first
    }

    /// The highest address of the pool.
    pub fn last(&self) -> Ipv4Addr {
        self.last
    }

    /// Whether `ip` is in the pool.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// How many addresses the pool has (at least 1).
    #[allow(clippy::len_without_is_empty)] // never empty: `new` refuses reversed ends
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    fn from_cidr(text: &str, addr: &str, prefix: &str) -> Result<Self, LbRangeError> {
        let bad = || LbRangeError::Syntax(text.to_string());
        let addr: Ipv4Addr = addr.trim().parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.trim().parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let network = u32::from(addr) & mask;
        if network != u32::from(addr) {
            return Err(LbRangeError::HostBits {
                text: text.to_string(),
                network: format!("{}/{prefix}", Ipv4Addr::from(network)),
            });
        }
        let broadcast = network | !mask;
        // /31 and /32 have no network or broadcast address (RFC 3021).
        let (first, last) = if prefix <= 30 { (network + 1, broadcast - 1) } else { (network, broadcast) };
        LbRange::new(Ipv4Addr::from(first), Ipv4Addr::from(last))
    }
}

impl FromStr for LbRange {
    type Err = LbRangeError;

    fn from_str(text: &str) -> Result<Self, LbRangeError> {
        let bad = || LbRangeError::Syntax(text.to_string());
        if let Some((addr, prefix)) = text.split_once('/') {
            return LbRange::from_cidr(text, addr, prefix);
        }
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: Ipv4Addr = first.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = last.trim().parse().map_err(|_| bad())?;
        LbRange::new(first, last)
    }
}

impl fmt::Display for LbRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why an address could not be given to a Service. `Display` is the text after
/// `Failed to allocate IP for "<namespace>/<name>": ` in the `AllocationFailed` event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The requested address is outside the pool.
    #[error("{:?} is not in the load balancer pool {range}", ip.to_string())]
    NotInPool {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The pool.
        range: LbRange,
    },
    /// The requested address belongs to another Service.
    #[error("{:?} is already in use by {owner}", ip.to_string())]
    InUse {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The Service holding it, as `namespace/name`.
        owner: String,
    },
    /// Every address of the pool is taken (MetalLB's wording).
    #[error("no available IPs")]
    Exhausted,
}

impl AllocError {
    /// Whether the failure may go away when another Service releases its address, so
    /// the Service should be tried again then.
    pub fn may_clear_on_release(&self) -> bool {
        !matches!(self, AllocError::NotInPool { .. })
    }
}

/// Which Service (`namespace/name`) holds which address of an [`LbRange`]. At most
/// one address per Service and one Service per address: addresses are not shared.
#[derive(Debug, Clone)]
pub struct Allocator {
    range: LbRange,
    by_ip: BTreeMap<Ipv4Addr, String>,
    by_owner: HashMap<String, Ipv4Addr>,
}

impl Allocator {
    /// An allocator with every address of `range` free.
    pub fn new(range: LbRange) -> Self {
        Allocator { range, by_ip: BTreeMap::new(), by_owner: HashMap::new() }
    }

    /// The pool.
    pub fn range(&self) -> LbRange {
        self.range
    }

    /// The address `owner` holds.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.by_owner.get(owner).copied()
    }

    /// The Service holding `ip`.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.by_ip.get(&ip).map(String::as_str)
    }

    /// How many addresses are held.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Gives `ip` to `owner`, releasing what `owner` held before. Succeeds without
    /// change when `owner` already holds `ip`.
    ///
    /// # Errors
    ///
    /// [`AllocError::NotInPool`] or [`AllocError::InUse`]; `owner` then keeps what it had.
    pub fn assign(&mut self, owner: &str, ip: Ipv4Addr) -> Result<(), AllocError> {
        if !self.range.contains(ip) {
            return Err(AllocError::NotInPool { ip, range: self.range });
        }
        match self.by_ip.get(&ip) {
            Some(current) if current == owner => return Ok(()),
            Some(current) => return Err(AllocError::InUse { ip, owner: current.clone() }),
            None => {}
        }
        self.release(owner);
        self.by_ip.insert(ip, owner.to_string());
        self.by_owner.insert(owner.to_string(), ip);
        Ok(())
    }

    /// The address `owner` holds, or else the lowest free one (as MetalLB walks its
    /// pools), now held by `owner`.
    ///
    /// # Errors
    ///
    /// [`AllocError::Exhausted`] when `owner` holds nothing and nothing is free.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, AllocError> {
        if let Some(ip) = self.get(owner) {
            return Ok(ip);
        }
        let ip = self.lowest_free().ok_or(AllocError::Exhausted)?;
        self.by_ip.insert(ip, owner.to_string());
        self.by_owner.insert(owner.to_string(), ip);
        Ok(ip)
    }

    /// Frees what `owner` held and returns it.
    pub fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        let ip = self.by_owner.remove(owner)?;
        self.by_ip.remove(&ip);
        Some(ip)
    }

    /// Walks the held addresses in order and returns the first gap: O(held), never
    /// O(pool), so a /8 pool costs no more than a /29.
    fn lowest_free(&self) -> Option<Ipv4Addr> {
        let mut candidate = u32::from(self.range.first);
        let last = u32::from(self.range.last);
        for ip in self.by_ip.keys().map(|ip| u32::from(*ip)) {
            if ip > candidate {
                break;
            }
            if ip == candidate {
                if candidate == last {
                    return None;
                }
                candidate += 1;
            }
        }
        (candidate <= last).then(|| Ipv4Addr::from(candidate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn range(s: &str) -> LbRange {
        parse_lb_range(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ranges_parse_from_dash_and_cidr_forms() {
        let cases = [
            ("172.30.0.200-172.30.0.250", "172.30.0.200", "172.30.0.250", 51),
            (" 172.30.0.200 - 172.30.0.200 ", "172.30.0.200", "172.30.0.200", 1),
            ("172.30.0.200/29", "172.30.0.201", "172.30.0.206", 6),
            ("172.30.0.0/24", "172.30.0.1", "172.30.0.254", 254),
            ("172.30.0.250/31", "172.30.0.250", "172.30.0.251", 2),
            ("172.30.0.7/32", "172.30.0.7", "172.30.0.7", 1),
            ("0.0.0.0-255.255.255.255", "0.0.0.0", "255.255.255.255", 1 << 32),
        ];
        for (text, first, last, len) in cases {
            let r = range(text);
            assert_eq!((r.first(), r.last(), r.len()), (ip(first), ip(last), len), "{text}");
        }
        assert_eq!(range("172.30.0.200/29").to_string(), "172.30.0.201-172.30.0.206");
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let cases = [
            ("", r#"invalid load balancer range "": expected <first>-<last>"#),
            ("172.30.0.200", r#"invalid load balancer range "172.30.0.200": expected"#),
            ("172.30.0.200-", "expected <first>-<last>"),
            ("172.30.0.300-172.30.0.301", "expected <first>-<last>"),
            ("fd00::1-fd00::9", "expected <first>-<last>"),
            ("172.30.0.0/33", "expected <first>-<last>"),
            ("172.30.0.0/x", "expected <first>-<last>"),
            (
                "172.30.0.250-172.30.0.200",
                "invalid load balancer range 172.30.0.250-172.30.0.200: 172.30.0.200 comes before 172.30.0.250",
            ),
            (
                "172.30.0.201/29",
                r#"invalid load balancer range "172.30.0.201/29": host bits are set (the block is 172.30.0.200/29)"#,
            ),
        ];
        for (text, want) in cases {
            let err = parse_lb_range(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn allocation_takes_the_lowest_free_address_and_reuses_released_ones() {
        let mut a = Allocator::new(range("10.0.0.1-10.0.0.3"));
        assert_eq!(a.allocate("ns/a"), Ok(ip("10.0.0.1")));
        assert_eq!(a.allocate("ns/b"), Ok(ip("10.0.0.2")));
        assert_eq!(a.allocate("ns/a"), Ok(ip("10.0.0.1")), "idempotent");
        assert_eq!(a.allocate("ns/c"), Ok(ip("10.0.0.3")));
        assert_eq!(a.allocate("ns/d"), Err(AllocError::Exhausted));
        assert_eq!(a.release("ns/b"), Some(ip("10.0.0.2")));
        assert_eq!(a.release("ns/b"), None);
        assert_eq!(a.allocate("ns/d"), Ok(ip("10.0.0.2")));
        assert_eq!(a.owner(ip("10.0.0.2")), Some("ns/d"));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn allocation_finds_gaps_anywhere_and_stops_at_the_top_of_the_address_space() {
        let mut a = Allocator::new(range("255.255.255.253-255.255.255.255"));
        a.assign("x/hi", ip("255.255.255.255")).expect("assign");
        a.assign("x/lo", ip("255.255.255.253")).expect("assign");
        assert_eq!(a.allocate("x/mid"), Ok(ip("255.255.255.254")));
        assert_eq!(a.allocate("x/more"), Err(AllocError::Exhausted));
    }

    #[test]
    fn assigning_a_requested_address_checks_pool_and_owner() {
        let mut a = Allocator::new(range("10.0.0.1-10.0.0.4"));
        assert_eq!(a.assign("ns/a", ip("10.0.0.3")), Ok(()));
        assert_eq!(a.assign("ns/a", ip("10.0.0.3")), Ok(()));
        let err = a.assign("ns/b", ip("10.0.0.3")).expect_err("taken");
        assert_eq!(err.to_string(), r#""10.0.0.3" is already in use by ns/a"#);
        assert!(err.may_clear_on_release());
        let err = a.assign("ns/b", ip("10.0.0.9")).expect_err("outside");
        assert_eq!(err.to_string(), r#""10.0.0.9" is not in the load balancer pool 10.0.0.1-10.0.0.4"#);
        assert!(!err.may_clear_on_release());
        // Moving to another address frees the old one; a failed move keeps it.
        assert_eq!(a.assign("ns/a", ip("10.0.0.1")), Ok(()));
        assert_eq!(a.owner(ip("10.0.0.3")), None);
        assert!(a.assign("ns/a", ip("10.0.0.200")).is_err());
        assert_eq!(a.get("ns/a"), Some(ip("10.0.0.1")));
        assert_eq!(a.allocate("ns/b"), Ok(ip("10.0.0.2")));
    }
}
