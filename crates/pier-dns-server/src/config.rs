//! How the server runs: [`DnsConfig`], and the upstreams of a `resolv.conf`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The DNS port (RFC 1035 §4.2).
pub const DNS_PORT: u16 = 53;
/// CoreDNS's `prometheus` plugin port.
pub const METRICS_PORT: u16 = 9153;

/// How the cluster DNS server runs. [`DnsConfig::default`] listens on `0.0.0.0:53`
/// with no upstreams (fill them with [`upstreams_from_resolv_conf`]), CoreDNS's
/// zone defaults, a 10 000-entry cache, 2 s per upstream attempt and no metrics.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to answer, over UDP and TCP on each (the node's IP, port 53). Port 0
    /// picks a free port, the same for UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Where names outside the cluster zone go, tried in order (the last one that
    /// answered first). A listen address in this list is dropped (it would loop).
    pub upstreams: Vec<SocketAddr>,
    /// The zone and how it is answered.
    pub index: pier_dns::Config,
    /// How many upstream answers the cache holds (0: no cache).
    pub cache_entries: usize,
    /// How long one upstream attempt may take (UDP, then TCP if the reply was
    /// truncated) before the next upstream is tried; SERVFAIL when all fail.
    pub upstream_timeout: Duration,
    /// Where to serve Prometheus metrics (`/metrics`), `/health` and `/ready`
    /// (port 9153, as CoreDNS).
    pub metrics: Option<SocketAddr>,
    /// Threads answering UDP per listen address, each with its own socket on the
    /// same port (`SO_REUSEPORT`; the kernel spreads clients by address and port).
    pub udp_workers: usize,
    /// How many TCP connections are served at once; further ones are closed at
    /// once.
    pub tcp_connections: usize,
    /// How long a TCP connection may wait for its next query (RFC 7766 §6.2.3).
    pub tcp_idle_timeout: Duration,
    /// How many forwarded queries may wait for upstreams at once; beyond that
    /// queries are answered SERVFAIL (CoreDNS's `max_concurrent`).
    pub max_concurrent_forwards: usize,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, DNS_PORT))],
            upstreams: Vec::new(),
            index: pier_dns::Config::default(),
            cache_entries: 10_000,
            upstream_timeout: Duration::from_secs(2),
            metrics: None,
            udp_workers: 2,
            tcp_connections: 1_000,
            tcp_idle_timeout: Duration::from_secs(10),
            max_concurrent_forwards: 2_000,
        }
    }
}

/// A `resolv.conf` that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("read nameservers from {}", path.display())]
pub struct ResolvConfError {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    #[source]
    pub source: std::io::Error,
}

/// The `nameserver` lines of a `resolv.conf` (resolv.conf(5)), as upstreams on
/// port 53, in order. Addresses with a zone (`fe80::1%eth0`) and lines that do not
/// parse are skipped.
///
/// # Errors
///
/// If the file cannot be read.
pub fn upstreams_from_resolv_conf(path: impl AsRef<Path>) -> Result<Vec<SocketAddr>, ResolvConfError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|source| ResolvConfError { path: path.to_path_buf(), source })?;
    Ok(parse_resolv_conf(&text))
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n; nameserver 1.1.1.1\n\
                    nameserver\tfd00::53 \nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n\
                    nameserver 10.0.0.3";
        let want: Vec<SocketAddr> = vec![
            "10.0.0.2:53".parse().expect("addr"),
            "[fd00::53]:53".parse().expect("addr"),
            "10.0.0.3:53".parse().expect("addr"),
        ];
        assert_eq!(parse_resolv_conf(text), want);
    }

    #[test]
    fn missing_resolv_conf_names_the_file() {
        let err = upstreams_from_resolv_conf("/nonexistent/resolv.conf").expect_err("no such file");
        assert_eq!(err.to_string(), "read nameservers from /nonexistent/resolv.conf");
    }
}
