//! Service cluster-IP and NodePort allocation (upstream's `ipallocator`,
//! `portallocator` and the service registry's `alloc.go`) as a pure state machine.
//!
//! The API server owns one [`ServiceAllocator`] behind a lock. Every mutating call
//! returns an [`AllocationTx`]: what it reserved and what it will free. Once the store
//! write succeeds the caller commits it (deferred releases happen then); if the write
//! fails it rolls it back (new reservations are freed, old ones kept), so no IP or port
//! leaks and none is freed early.

mod prepare;
mod range;

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use pier_api::{ErrorType, FieldError, FieldPath};
use serde_json::{json, Value};

pub use prepare::{drop_type_dependent_fields, patch_allocated_values};
use prepare::{needs_cluster_ip, needs_node_port, should_allocate_node_ports};
use range::{ip_static_band, port_static_band, Bitmap, Rng};

use crate::util::{arr_at, int_at, str_at};
use crate::validation::service::{cluster_ips_related, is_headless, needs_health_check};

/// A parsed IPv4 CIDR such as `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`; host bits are masked off as Go's `ParseCIDR` does.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError::Parse { cidr: s.to_string() };
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Ipv4Cidr { network: u32::from(ip) & mask, prefix })
    }

    /// The number of addresses in the block, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The `n`th address of the block (`0` is the network address).
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(self.network + n as u32))
    }

    /// The offset of `ip` from the network address, if it is inside the block.
    fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let d = u32::from(ip).wrapping_sub(self.network);
        (u64::from(d) < self.size() && u32::from(ip) >= self.network).then_some(u64::from(d))
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// A bad allocator configuration. Fatal at startup: fix the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an IPv4 CIDR.
    #[error("invalid service CIDR {cidr:?}: want an IPv4 CIDR such as 10.96.0.0/12")]
    Parse { cidr: String },
    /// Upstream refuses IPv4 service ranges larger than /12 (the bitmap would be huge).
    #[error("service CIDR {cidr} is too large: the prefix length must be at least 12")]
    TooLarge { cidr: String },
    /// The block has no usable address.
    #[error("service CIDR {cidr} is too small: it has no usable address")]
    TooSmall { cidr: String },
    /// The block has no `n`th address.
    #[error("service CIDR {cidr} has no address number {n}")]
    OutOfRange { cidr: String, n: u64 },
    /// An empty or inverted NodePort range.
    #[error("invalid NodePort range {start}-{end}")]
    PortRange { start: u16, end: u16 },
}

/// The `n`th address of `cidr`: `nth_ip("10.96.0.0/12", 1)` is `10.96.0.1` (the
/// `kubernetes` Service), `nth_ip(.., 10)` is `10.96.0.10` (`kube-dns`).
pub fn nth_ip(cidr: &str, n: u64) -> Result<Ipv4Addr, CidrError> {
    let c = Ipv4Cidr::parse(cidr)?;
    c.nth(n).ok_or(CidrError::OutOfRange { cidr: c.to_string(), n })
}

/// Which pool ran dry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    ServiceIp,
    NodePort,
    HealthCheckNodePort,
}

impl Pool {
    /// Upstream's message for an exhausted pool.
    pub fn exhausted_message(self) -> &'static str {
        match self {
            Pool::ServiceIp => "failed to allocate a serviceIP: range is full",
            Pool::NodePort => "failed to allocate a nodePort: range is full",
            Pool::HealthCheckNodePort => "failed to allocate a HealthCheck NodePort 0: range is full",
        }
    }

    fn field(self) -> FieldPath {
        match self {
            Pool::ServiceIp => FieldPath::new("spec").child("clusterIPs"),
            Pool::NodePort => FieldPath::new("spec").child("ports"),
            Pool::HealthCheckNodePort => FieldPath::new("spec").child("healthCheckNodePort"),
        }
    }
}

/// An allocation failure that upstream reports as an internal error (HTTP 500,
/// `Internal error occurred: <detail>`) rather than an invalid field: an exhausted
/// pool, or an unusable requested `healthCheckNodePort`. Its kind is
/// [`ErrorType::Internal`]; see [`is_internal`].
fn internal(field: FieldPath, detail: String) -> FieldError {
    FieldError { kind: ErrorType::Internal, field, value: None, detail }
}

/// Whether allocation errors are upstream internal errors (answer 500 with
/// `Internal error occurred: <detail>`) rather than an `Invalid` status (422).
pub fn is_internal(errors: &[FieldError]) -> bool {
    errors.iter().any(|e| e.kind == ErrorType::Internal)
}

type AllocResult<T> = Result<T, Vec<FieldError>>;

/// What one create or update reserved and will release. Hand it back with
/// [`AllocationTx::commit`] after the store write succeeds, or
/// [`AllocationTx::rollback`] if it (or validation) fails; dropping it without either
/// keeps the new reservations and skips the releases.
#[must_use = "commit or roll back the allocation once the store write is done"]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AllocationTx {
    allocated_ips: Vec<Ipv4Addr>,
    allocated_ports: Vec<u16>,
    release_ips: Vec<Ipv4Addr>,
    release_ports: Vec<u16>,
}

impl AllocationTx {
    /// The write succeeded: free what the old object held and the new one does not.
    pub fn commit(self, alloc: &mut ServiceAllocator) {
        for ip in self.release_ips {
            alloc.release_ip(ip);
        }
        for p in self.release_ports {
            alloc.release_port(p);
        }
    }

    /// The write failed: free what this transaction reserved; keep the old object's.
    pub fn rollback(self, alloc: &mut ServiceAllocator) {
        for ip in self.allocated_ips {
            alloc.release_ip(ip);
        }
        for p in self.allocated_ports {
            alloc.release_port(p);
        }
    }

    /// The IPs this transaction reserved.
    pub fn allocated_ips(&self) -> &[Ipv4Addr] {
        &self.allocated_ips
    }

    /// The node ports this transaction reserved.
    pub fn allocated_ports(&self) -> &[u16] {
        &self.allocated_ports
    }

    /// The IPs freed on commit.
    pub fn released_ips(&self) -> &[Ipv4Addr] {
        &self.release_ips
    }

    /// The node ports freed on commit.
    pub fn released_ports(&self) -> &[u16] {
        &self.release_ports
    }
}

/// Cluster IPs from one IPv4 service CIDR and node ports from one port range.
#[derive(Debug, Clone)]
pub struct ServiceAllocator {
    cidr: Ipv4Cidr,
    /// Offset 0 is the network address + 1; the network and broadcast addresses are
    /// never allocatable.
    ips: Bitmap,
    ports: Bitmap,
    port_base: u16,
    port_range: RangeInclusive<u16>,
    rng: Rng,
}

impl ServiceAllocator {
    /// An empty allocator over `service_cidr` and `node_port_range`, randomly seeded.
    pub fn new(service_cidr: &str, node_port_range: RangeInclusive<u16>) -> Result<Self, CidrError> {
        Self::with_rng(service_cidr, node_port_range, Rng::from_entropy())
    }

    /// Like [`ServiceAllocator::new`] with a fixed seed, for reproducible tests.
    pub fn with_seed(
        service_cidr: &str,
        node_port_range: RangeInclusive<u16>,
        seed: u64,
    ) -> Result<Self, CidrError> {
        Self::with_rng(service_cidr, node_port_range, Rng::new(seed))
    }

    fn with_rng(
        service_cidr: &str,
        node_port_range: RangeInclusive<u16>,
        rng: Rng,
    ) -> Result<Self, CidrError> {
        let cidr = Ipv4Cidr::parse(service_cidr)?;
        if cidr.prefix < 12 {
            return Err(CidrError::TooLarge { cidr: cidr.to_string() });
        }
        // Neither the network nor the broadcast address is handed out.
        let usable = cidr.size().saturating_sub(2);
        if usable == 0 {
            return Err(CidrError::TooSmall { cidr: cidr.to_string() });
        }
        let (start, end) = (*node_port_range.start(), *node_port_range.end());
        if start > end || start == 0 {
            return Err(CidrError::PortRange { start, end });
        }
        let port_size = u32::from(end - start) + 1;
        Ok(ServiceAllocator {
            ips: Bitmap::new(usable as u32, ip_static_band(cidr.size())),
            ports: Bitmap::new(port_size, port_static_band(port_size)),
            port_base: start,
            port_range: node_port_range,
            cidr,
            rng,
        })
    }

    /// The service CIDR.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// Whether `ip` is currently allocated.
    pub fn is_ip_allocated(&self, ip: Ipv4Addr) -> bool {
        self.ip_offset(ip).is_some_and(|o| self.ips.has(o))
    }

    /// Whether node port `port` is currently allocated.
    pub fn is_port_allocated(&self, port: u16) -> bool {
        self.port_offset(i64::from(port)).is_some_and(|o| self.ports.has(o))
    }

    /// How many cluster IPs are free.
    pub fn free_ips(&self) -> u32 {
        self.ips.size() - self.ips.used()
    }

    /// How many node ports are free.
    pub fn free_ports(&self) -> u32 {
        self.ports.size() - self.ports.used()
    }

    /// Forgets everything and marks what `existing_services` hold: the recovery path
    /// after a restart. Values outside the configured ranges (e.g. after the flags
    /// changed) are skipped; they cannot collide with new allocations.
    pub fn restore(&mut self, existing_services: &[Value]) {
        self.ips.reset();
        self.ports.reset();
        for svc in existing_services {
            for ip in held_ips(svc) {
                if let Some(o) = self.ip_offset(ip) {
                    self.ips.set(o);
                }
            }
            for p in held_ports(svc) {
                if let Some(o) = self.port_offset(p) {
                    self.ports.set(o);
                }
            }
        }
    }

    /// Frees everything `svc` holds, at once: call it after the delete is stored.
    pub fn release(&mut self, svc: &Value) {
        for ip in held_ips(svc) {
            self.release_ip(ip);
        }
        for p in held_ports(svc) {
            if let Ok(p) = u16::try_from(p) {
                self.release_port(p);
            }
        }
    }

    /// Reserves what a new Service needs and writes it into `svc`: `clusterIP`,
    /// `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`, node ports and the health-check
    /// node port. Explicit values are reserved as asked or rejected.
    ///
    /// # Errors
    /// `Invalid` field errors for unusable requested values (upstream wording); an
    /// [`ErrorType::Internal`] one when a pool is full (see [`is_internal`]). Nothing
    /// stays reserved on error.
    pub fn allocate_on_create(&mut self, svc: &mut Value) -> AllocResult<AllocationTx> {
        let mut tx = AllocationTx::default();
        let result = self.create_into(svc, &mut tx);
        self.finish(result, tx)
    }

    /// Reconciles reservations for an update of `old` to `new`: patches omitted
    /// allocated values from `old`, drops values the new type no longer uses, reserves
    /// what the new type needs (ClusterIP -> NodePort gets node ports, ExternalName ->
    /// ClusterIP gets an IP) and schedules the release of what it no longer holds
    /// (NodePort -> ClusterIP, ClusterIP -> ExternalName) for [`AllocationTx::commit`].
    ///
    /// # Errors
    /// As [`ServiceAllocator::allocate_on_create`], plus
    /// `spec.clusterIP: Invalid value: ...: field is immutable` for a changed cluster IP.
    pub fn allocate_on_update(&mut self, old: &Value, new: &mut Value) -> AllocResult<AllocationTx> {
        patch_allocated_values(old, new);
        drop_type_dependent_fields(old, new);
        normalize_cluster_ips(new);
        let mut tx = AllocationTx::default();
        let result = self.update_into(old, new, &mut tx);
        self.finish(result, tx)
    }

    /// Same as [`AllocationTx::commit`], for callers holding the allocator.
    pub fn commit(&mut self, tx: AllocationTx) {
        tx.commit(self);
    }

    /// Same as [`AllocationTx::rollback`], for callers holding the allocator.
    pub fn rollback(&mut self, tx: AllocationTx) {
        tx.rollback(self);
    }

    fn finish(&mut self, result: AllocResult<()>, tx: AllocationTx) -> AllocResult<AllocationTx> {
        match result {
            Ok(()) => Ok(tx),
            Err(e) => {
                tx.rollback(self);
                Err(e)
            }
        }
    }

    fn create_into(&mut self, svc: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        normalize_cluster_ips(svc);
        if needs_cluster_ip(svc) {
            self.init_cluster_ip(svc, tx)?;
        }
        if needs_node_port(svc) {
            self.init_node_ports(svc, tx)?;
        }
        if needs_health_check(svc) {
            self.init_health_check(svc, tx)?;
        }
        Ok(())
    }

    fn update_into(&mut self, old: &Value, new: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        match (needs_cluster_ip(old), needs_cluster_ip(new)) {
            (true, true) => {
                let (o, n) = (str_at(old, "spec.clusterIP"), str_at(new, "spec.clusterIP"));
                if o != n {
                    let path = FieldPath::new("spec").child("clusterIP");
                    return Err(vec![FieldError::invalid(&path, n, "field is immutable")]);
                }
            }
            (false, true) => self.init_cluster_ip(new, tx)?,
            (true, false) => tx.release_ips.extend(held_ips(old)),
            (false, false) => {}
        }
        match (needs_node_port(old), needs_node_port(new)) {
            (true, true) => self.update_node_ports(old, new, tx)?,
            (false, true) => self.init_node_ports(new, tx)?,
            _ => {}
        }
        // Whatever node port the old object held and the new one does not is freed.
        let kept = node_ports_of(new);
        for p in node_ports_of(old) {
            if !kept.contains(&p) {
                if let Ok(p) = u16::try_from(p) {
                    tx.release_ports.push(p);
                }
            }
        }
        let (old_hc, new_hc) = (needs_health_check(old), needs_health_check(new));
        if new_hc && !old_hc {
            self.init_health_check(new, tx)?;
        }
        let old_hc_port = int_at(old, "spec.healthCheckNodePort").unwrap_or(0);
        let new_hc_port = if new_hc { int_at(new, "spec.healthCheckNodePort").unwrap_or(0) } else { 0 };
        if old_hc_port != 0 && old_hc_port != new_hc_port && !kept.contains(&old_hc_port) {
            if let Ok(p) = u16::try_from(old_hc_port) {
                tx.release_ports.push(p);
            }
        }
        Ok(())
    }

    fn init_cluster_ip(&mut self, svc: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        let errs = cluster_ips_related(svc);
        if !errs.is_empty() {
            return Err(errs);
        }
        let headless = is_headless(svc);
        let requested = str_at(svc, "spec.clusterIP").to_string();
        let ip = if headless {
            None
        } else if requested.is_empty() {
            let at = self.ips.allocate_next(&mut self.rng).ok_or_else(|| {
                vec![internal(Pool::ServiceIp.field(), Pool::ServiceIp.exhausted_message().into())]
            })?;
            let ip = self.ip_at(at);
            tx.allocated_ips.push(ip);
            Some(ip)
        } else {
            let ip = self.allocate_specific_ip(&requested, svc)?;
            tx.allocated_ips.push(ip);
            Some(ip)
        };
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            let value = ip.map_or_else(|| "None".to_string(), |ip| ip.to_string());
            spec.insert("clusterIP".into(), json!(value));
            spec.insert("clusterIPs".into(), json!([value]));
            // Pier's service network is single-stack IPv4.
            crate::util::default_field(spec, "ipFamilies", json!(["IPv4"]));
            crate::util::default_field(spec, "ipFamilyPolicy", json!("SingleStack"));
        }
        Ok(())
    }

    fn allocate_specific_ip(&mut self, requested: &str, svc: &Value) -> AllocResult<Ipv4Addr> {
        let fail = |reason: String| {
            let path = FieldPath::new("spec").child("clusterIPs");
            let ips = Value::Array(arr_at(svc, "spec.clusterIPs").to_vec());
            let detail = format!("failed to allocate IP {requested}: {reason}");
            vec![FieldError::invalid(&path, ips, &detail)]
        };
        let not_in_range = || {
            format!(
                "the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                self.cidr
            )
        };
        let ip = match requested.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            _ => return Err(fail(not_in_range())),
        };
        let offset = self.ip_offset(ip).ok_or_else(|| fail(not_in_range()))?;
        if !self.ips.set(offset) {
            return Err(fail("provided IP is already allocated".to_string()));
        }
        Ok(ip)
    }

    /// Upstream's initNodePorts: ports sharing a port number (TCP and UDP of the same
    /// service port) share one node port.
    fn init_node_ports(&mut self, svc: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        let allocate = should_allocate_node_ports(svc);
        let snapshot = arr_at(svc, "spec.ports").to_vec();
        let mut by_port: Vec<(i64, i64)> = Vec::new();
        let mut assigned = Vec::with_capacity(snapshot.len());
        for (i, p) in snapshot.iter().enumerate() {
            let port = int_at(p, "port").unwrap_or(0);
            let np = int_at(p, "nodePort").unwrap_or(0);
            if np == 0 && !allocate {
                assigned.push(0);
                continue;
            }
            let shared = by_port.iter().find(|(pt, _)| *pt == port).map(|(_, n)| *n);
            let value = match shared {
                None => {
                    let requested = snapshot
                        .iter()
                        .skip(i)
                        .find(|q| int_at(q, "port") == Some(port) && int_at(q, "nodePort").unwrap_or(0) != 0)
                        .and_then(|q| int_at(q, "nodePort"))
                        .unwrap_or(0);
                    let got = if requested != 0 {
                        self.allocate_specific_port(requested, i, tx)?
                    } else {
                        self.allocate_next_port(Pool::NodePort, tx)?
                    };
                    by_port.push((port, got));
                    got
                }
                Some(shared) if np == 0 || np == shared => shared,
                Some(_) => self.allocate_specific_port(np, i, tx)?,
            };
            assigned.push(value);
        }
        set_node_ports(svc, &assigned);
        Ok(())
    }

    /// Upstream's updateNodePorts: keep ports the old object held, reserve new explicit
    /// ones, allocate for ports without one.
    fn update_node_ports(&mut self, old: &Value, new: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        let old_ports = node_ports_of(old);
        let allocate = should_allocate_node_ports(new);
        let snapshot = arr_at(new, "spec.ports").to_vec();
        let mut reserved: Vec<i64> = Vec::new();
        let mut assigned = Vec::with_capacity(snapshot.len());
        for (i, p) in snapshot.iter().enumerate() {
            let np = int_at(p, "nodePort").unwrap_or(0);
            if np == 0 && !allocate {
                assigned.push(0);
                continue;
            }
            let value = if np != 0 {
                if !old_ports.contains(&np) && !reserved.contains(&np) {
                    self.allocate_specific_port(np, i, tx)?;
                    reserved.push(np);
                }
                np
            } else {
                self.allocate_next_port(Pool::NodePort, tx)?
            };
            assigned.push(value);
        }
        set_node_ports(new, &assigned);
        Ok(())
    }

    fn init_health_check(&mut self, svc: &mut Value, tx: &mut AllocationTx) -> AllocResult<()> {
        let requested = int_at(svc, "spec.healthCheckNodePort").unwrap_or(0);
        let port = if requested != 0 {
            let hc_err = |reason: String| {
                let detail =
                    format!("failed to allocate requested HealthCheck NodePort {requested}: {reason}");
                vec![internal(Pool::HealthCheckNodePort.field(), detail)]
            };
            let offset = self.port_offset(requested).ok_or_else(|| hc_err(self.port_not_in_range()))?;
            if !self.ports.set(offset) {
                return Err(hc_err("provided port is already allocated".to_string()));
            }
            tx.allocated_ports.push(self.port_at(offset));
            requested
        } else {
            self.allocate_next_port(Pool::HealthCheckNodePort, tx)?
        };
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("healthCheckNodePort".into(), json!(port));
        }
        Ok(())
    }

    fn port_not_in_range(&self) -> String {
        format!(
            "provided port is not in the valid range. The range of valid ports is {}-{}",
            self.port_range.start(),
            self.port_range.end()
        )
    }

    fn allocate_specific_port(&mut self, port: i64, index: usize, tx: &mut AllocationTx) -> AllocResult<i64> {
        let path = FieldPath::new("spec").child("ports").index(index).child("nodePort");
        let offset = self
            .port_offset(port)
            .ok_or_else(|| vec![FieldError::invalid(&path, port, &self.port_not_in_range())])?;
        if !self.ports.set(offset) {
            let err = FieldError::invalid(&path, port, "provided port is already allocated");
            return Err(vec![err]);
        }
        tx.allocated_ports.push(self.port_at(offset));
        Ok(port)
    }

    fn allocate_next_port(&mut self, pool: Pool, tx: &mut AllocationTx) -> AllocResult<i64> {
        let at = self
            .ports
            .allocate_next(&mut self.rng)
            .ok_or_else(|| vec![internal(pool.field(), pool.exhausted_message().into())])?;
        let port = self.port_at(at);
        tx.allocated_ports.push(port);
        Ok(i64::from(port))
    }

    fn ip_offset(&self, ip: Ipv4Addr) -> Option<u32> {
        // Offset 0 of the bitmap is the first host address.
        let o = self.cidr.offset_of(ip)?.checked_sub(1)?;
        (o < u64::from(self.ips.size())).then_some(o as u32)
    }

    fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.cidr.network + 1 + offset)
    }

    fn port_offset(&self, port: i64) -> Option<u32> {
        let o = port.checked_sub(i64::from(self.port_base))?;
        (o >= 0 && o < i64::from(self.ports.size())).then_some(o as u32)
    }

    fn port_at(&self, offset: u32) -> u16 {
        // Offsets never exceed the configured u16 range.
        (u32::from(self.port_base) + offset) as u16
    }

    fn release_ip(&mut self, ip: Ipv4Addr) {
        if let Some(o) = self.ip_offset(ip) {
            self.ips.clear(o);
        }
    }

    fn release_port(&mut self, port: u16) {
        if let Some(o) = self.port_offset(i64::from(port)) {
            self.ports.clear(o);
        }
    }
}

/// Keeps `clusterIP` and `clusterIPs` in step, as upstream's normalizeClusterIPs does:
/// either one set alone fills the other.
fn normalize_cluster_ips(svc: &mut Value) {
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    match (ip.is_empty(), first) {
        (false, None) => {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        (true, Some(first)) => {
            spec.insert("clusterIP".into(), json!(first));
        }
        _ => {}
    }
}

fn set_node_ports(svc: &mut Value, assigned: &[i64]) {
    let ports = svc.get_mut("spec").and_then(|s| s.get_mut("ports")).and_then(Value::as_array_mut);
    for (p, np) in ports.into_iter().flatten().zip(assigned) {
        if let Some(m) = p.as_object_mut() {
            if *np != 0 {
                m.insert("nodePort".into(), json!(np));
            }
        }
    }
}

fn node_ports_of(svc: &Value) -> Vec<i64> {
    if !needs_node_port(svc) {
        return Vec::new();
    }
    arr_at(svc, "spec.ports").iter().filter_map(|p| int_at(p, "nodePort")).filter(|p| *p != 0).collect()
}

/// The IPv4 cluster IPs a stored Service holds.
fn held_ips(svc: &Value) -> Vec<Ipv4Addr> {
    if !needs_cluster_ip(svc) {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = arr_at(svc, "spec.clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| s.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(str_at(svc, "spec.clusterIP").parse::<Ipv4Addr>().ok());
    }
    ips
}

/// The node ports (health check included) a stored Service holds.
fn held_ports(svc: &Value) -> Vec<i64> {
    let mut ports = node_ports_of(svc);
    if needs_health_check(svc) {
        ports.extend(int_at(svc, "spec.healthCheckNodePort").filter(|p| *p != 0));
    }
    ports
}

#[cfg(test)]
mod tests;
