//! Names of the per-Service chains and sets, as kube-proxy's nftables mode forms them:
//! `<prefix><HASH>-<namespace>/<name>/<protocol>/<port name>`, and for an endpoint
//! `...__<ip>/<port>`. `HASH` is the first 8 characters of the base32 SHA-256 of the
//! readable part: it keeps names unique if they ever have to be truncated, and makes
//! chains of one Service that differ in a digit easy to tell apart.
//!
//! nft(8) identifiers are `[A-Za-z_.][A-Za-z0-9/_.-]*` and at most 255 bytes long.
//! Kubernetes names only use `[a-z0-9-]`, and `/` separates the parts because no name
//! contains it (it also marks a chain as per-Service: no fixed chain name has one).

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::model::ServicePortName;

/// nft's limit on a chain or set name (NFT_NAME_MAXLEN, including the NUL).
const NAME_LENGTH_MAX: usize = 256;
/// The longest prefix below (`endpoint-`, `affinity-`...) plus room to spare.
const PREFIX_LENGTH_MAX: usize = 16;
const BASE_LENGTH_MAX: usize = NAME_LENGTH_MAX - PREFIX_LENGTH_MAX;

/// Chain of a Service port's "Cluster" policy endpoints.
pub(crate) const SERVICE_PREFIX: &str = "service-";
/// Chain of a Service port's "Local" policy endpoints.
pub(crate) const LOCAL_PREFIX: &str = "local-";
/// Chain for traffic to NodePorts, externalIPs and load-balancer IPs.
pub(crate) const EXTERNAL_PREFIX: &str = "external-";
/// Chain applying `loadBalancerSourceRanges`.
pub(crate) const FIREWALL_PREFIX: &str = "firewall-";
/// Chain of one endpoint (DNAT).
pub(crate) const ENDPOINT_PREFIX: &str = "endpoint-";
/// Set of client IPs stuck to one endpoint (ClientIP affinity).
pub(crate) const AFFINITY_PREFIX: &str = "affinity-";

/// Whether a chain name is one of the per-Service chains (as opposed to the fixed
/// ones), i.e. a candidate for removal when no Service uses it any more.
pub(crate) fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// Prefix of the endpoint maps, `endpoints-<protocol>-<group>`.
pub(crate) const ENDPOINT_MAP_PREFIX: &str = "endpoints-";

/// Whether a map name is an endpoint map.
pub(crate) fn is_endpoint_map(name: &str) -> bool {
    name.starts_with(ENDPOINT_MAP_PREFIX)
}

/// Whether a set name is an affinity set.
pub(crate) fn is_affinity_set(name: &str) -> bool {
    name.starts_with(AFFINITY_PREFIX)
}

/// `HASH-namespace/name/protocol/portname`.
pub(crate) fn service_port_base(port: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        port.namespace,
        port.name,
        port.protocol.as_nft(),
        port.port_name
    ))
}

/// `HASH-namespace/name/protocol/portname__ip/port`.
pub(crate) fn endpoint_base(port: &ServicePortName, ip: Ipv4Addr, endpoint_port: u16) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        port.namespace,
        port.name,
        port.protocol.as_nft(),
        port.port_name,
        ip,
        endpoint_port
    ))
}

fn hash_and_truncate(readable: &str) -> String {
    let digest = Sha256::digest(readable.as_bytes());
    let mut name = base32_prefix(&digest);
    name.push('-');
    // The hash is over the original text, so replacing characters nft would refuse
    // (names are validated by the API server, but one bad object must not break
    // the whole transaction) cannot make two names collide.
    name.extend(readable.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-') {
            c
        } else {
            '_'
        }
    }));
    if name.len() > BASE_LENGTH_MAX {
        // All characters are ASCII now, so any byte index is a char boundary.
        name.truncate(BASE_LENGTH_MAX - 3);
        name.push_str("...");
    }
    name
}

/// The first 8 characters of the RFC 4648 base32 encoding of `bytes` (40 bits = the
/// first 5 bytes), as Go's `base32.StdEncoding` gives them.
fn base32_prefix(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    for b in bytes.iter().take(5) {
        bits = (bits << 8) | u64::from(*b);
    }
    (0..8).rev().map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn port(ns: &str, name: &str, port_name: &str) -> ServicePortName {
        ServicePortName {
            namespace: ns.into(),
            name: name.into(),
            port_name: port_name.into(),
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 section 10: BASE32("fooba") = "MZXW6YTB".
        assert_eq!(base32_prefix(b"fooba"), "MZXW6YTB");
    }

    #[test]
    fn names_match_kube_proxy() {
        // The examples in kube-proxy's nftables proxier comments.
        assert_eq!(service_port_base(&port("ns1", "svc1", "p80")), "ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(
            endpoint_base(&port("ns1", "svc1", "p80"), Ipv4Addr::new(10, 180, 0, 1), 80),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    #[test]
    fn long_names_are_truncated_and_stay_unique() {
        let long = "a".repeat(300);
        let a = service_port_base(&port("ns", &long, "x"));
        let b = service_port_base(&port("ns", &long, "y"));
        assert_eq!(a.len(), BASE_LENGTH_MAX);
        assert!(a.ends_with("..."));
        assert_ne!(a, b);
    }

    #[test]
    fn odd_characters_are_replaced() {
        let name = service_port_base(&port("ns", "we\"ird name", "p"));
        assert!(name.ends_with("-ns/we_ird_name/tcp/p"), "{name}");
    }
}
