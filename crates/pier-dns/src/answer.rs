//! What to answer: [`answer`] maps a parsed [`Query`] and the [`Index`] to an
//! [`Answer`], and [`Answer::encode`] writes it.
//!
//! # Names in the cluster zone
//!
//! From the Kubernetes DNS specification (schema 1.1.0), with CoreDNS's
//! `kubernetes` plugin where the specification leaves room:
//!
//! | name | answers |
//! | --- | --- |
//! | `<zone>` | SOA; NS `ns.dns.<zone>` if [`Config::nameservers`] is set; else NODATA |
//! | `dns-version.<zone>` | TXT `"1.1.0"` (TTL 28800) |
//! | `ns.dns.<zone>` | A/AAAA of [`Config::nameservers`] (NXDOMAIN when empty) |
//! | `svc.<zone>`, `pod.<zone>` | NODATA |
//! | `<ns>.svc.<zone>` | NODATA if the namespace exists, else NXDOMAIN |
//! | `<svc>.<ns>.svc.<zone>` | ClusterIP: A/AAAA per family of `clusterIPs`. Headless: A/AAAA of every ready endpoint (all with `publishNotReadyAddresses`); NXDOMAIN with none (§2.4.1). ExternalName: CNAME to `externalName` for every type. SRV: every port (CoreDNS) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per named port (§2.3.2, §2.4.2), priority 0, weight `100/n` (CoreDNS), with A/AAAA glue |
//! | `<hostname>.<svc>.<ns>.svc.<zone>` | A/AAAA of the endpoint with that hostname, or with that dashed address (`10-1-2-3`, CoreDNS); or of a ready Pod with `hostname` and `subdomain: <svc>` for a headless Service |
//! | `<a-b-c-d>.<ns>.pod.<zone>` | A/AAAA of the dashed address, per [`PodMode`] |
//! | reverse names of cluster IPs and endpoint addresses | PTR to the Service (first), else to every endpoint name (§2.3.3, §2.4.3) |
//!
//! Anything else in the zone is NXDOMAIN. Names are matched ignoring case; the
//! question is echoed as received and answers' owners point at it.
//!
//! Outside the zone, and reverse names of addresses the index does not know, the
//! answer is [`Answer::Forward`] (CoreDNS's default Corefile falls through to
//! `forward` for `in-addr.arpa` and `ip6.arpa`). AXFR and IXFR are REFUSED
//! everywhere; opcodes other than QUERY get NOTIMP; an EDNS version other than 0
//! gets BADVERS; before the index is synced, names in the zone and reverse names get
//! SERVFAIL.
//!
//! # Autopath
//!
//! A pod with the usual `ndots:5` and search path `<ns>.svc.<zone> svc.<zone>
//! <zone>` asks for `example.com` as `example.com.<ns>.svc.<zone>` first, and walks
//! the search path one NXDOMAIN at a time. When [`Config::autopath`] is on, the
//! client address is a known pod's (in one namespace only, resolving with exactly
//! that search path: `dnsPolicy` ClusterFirst, no `dnsConfig.searches`, not on the
//! host network), the name is `<X>.<that ns>.svc.<zone>` and it does not exist, the
//! server walks the rest of the path itself, as CoreDNS's `autopath @kubernetes`:
//! `<X>.svc.<zone>`, `<X>.<zone>`, then `<X>.`. The first candidate that is not
//! NXDOMAIN gives the answer: a CNAME from the question to the candidate plus the
//! candidate's records, or NODATA. When the walk reaches `<X>.` outside the zone, the
//! answer is [`Answer::AutopathForward`]: the server resolves the target upstream
//! and passes the reply to [`Answer::encode_with_upstream`], which adds the CNAME,
//! or answers the original NXDOMAIN if the target does not exist either.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::index::{
    Index, NsData, PodMode, PtrEntry, ServiceData, ServiceKind, SrvRecord, SCHEMA_VERSION, SCHEMA_VERSION_TTL,
};
use crate::wire::{
    Class, EdnsResponse, MessageWriter, NameBuf, NameRef, Opcode, Owner, ParseError, Query, Rcode,
    RecordType, Section, UpstreamResponse, Written, DEFAULT_EDNS_PAYLOAD, MIN_UDP_PAYLOAD,
};

#[cfg(doc)]
use crate::index::Config;

/// How many RRsets one answer holds at most (a CNAME chain through ExternalName
/// Services stops when it is full).
const MAX_SETS: usize = 8;
/// How many in-zone CNAMEs (ExternalName to ExternalName) are followed.
const MAX_CHASE: usize = 4;

/// The outcome of a query.
// About 1 KiB, on the stack: boxing the records would allocate per query.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Answer<'a> {
    /// NOERROR, authoritative, with records.
    Authoritative(Records<'a>),
    /// The name does not exist: NXDOMAIN with the zone's SOA.
    NxDomain,
    /// The name exists without records of that type: NOERROR, no answer, the SOA.
    NoData,
    /// REFUSED: zone transfers.
    Refused,
    /// SERVFAIL: the index is not synced yet.
    ServFail,
    /// NOTIMP: an opcode other than QUERY.
    NotImp,
    /// BADVERS: an EDNS version other than 0.
    BadVersion,
    /// Not ours: forward the query upstream as is.
    Forward,
    /// Autopath reached a name outside the zone: resolve [`Autopath::target`]
    /// upstream, then [`Answer::encode_with_upstream`].
    AutopathForward(Autopath),
}

/// An autopath continuation; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Autopath {
    target: NameBuf,
}

impl Autopath {
    /// The name to resolve upstream (same type and class as the query): `<X>.`.
    pub fn target(&self) -> NameRef<'_> {
        self.target.as_name()
    }
}

/// The records of an authoritative answer, borrowed from the index.
#[derive(Clone)]
pub struct Records<'a> {
    /// Set by autopath: the answer starts with a CNAME from the question to this
    /// name, which then owns the records.
    subject: Option<NameBuf>,
    answer: RrList<'a>,
    additional: RrList<'a>,
    chase: Option<NameRef<'a>>,
}

impl std::fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("subject", &self.subject)
            .field("answer", &self.answer.iter().collect::<Vec<_>>())
            .field("additional", &self.additional.iter().collect::<Vec<_>>())
            .field("chase", &self.chase)
            .finish()
    }
}

impl<'a> Records<'a> {
    fn new() -> Records<'a> {
        Records { subject: None, answer: RrList::new(), additional: RrList::new(), chase: None }
    }

    /// The answer ends in a CNAME to this name outside the zone (an ExternalName
    /// Service): the server may resolve it upstream and pass the reply to
    /// [`Answer::encode_with_upstream`] to append its records, as CoreDNS does, or
    /// send the CNAME alone and let the client's resolver follow it.
    pub fn chase(&self) -> Option<NameRef<'a>> {
        self.chase
    }

    /// The autopath CNAME target, if this answer came from autopath.
    pub fn autopath_target(&self) -> Option<NameRef<'_>> {
        self.subject.as_ref().map(NameBuf::as_name)
    }

    /// How many records the answer section gets (autopath's CNAME included).
    pub fn answer_count(&self) -> usize {
        usize::from(self.subject.is_some()) + self.answer.iter().map(|s| s.count()).sum::<usize>()
    }
}

/// A fixed-capacity list of RRsets.
#[derive(Clone, Copy)]
struct RrList<'a> {
    items: [Option<RrSet<'a>>; MAX_SETS],
}

impl<'a> RrList<'a> {
    fn new() -> RrList<'a> {
        RrList { items: [None; MAX_SETS] }
    }

    /// Adds a set; false if the list is full.
    fn push(&mut self, set: RrSet<'a>) -> bool {
        match self.items.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(set);
                true
            }
            None => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &RrSet<'a>> {
        self.items.iter().map_while(Option::as_ref)
    }

    fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

/// Records of one owner and type, described rather than materialized.
#[derive(Debug, Clone, Copy)]
struct RrSet<'a> {
    owner: RrOwner<'a>,
    ttl: u32,
    data: RrData<'a>,
}

#[derive(Debug, Clone, Copy)]
enum RrOwner<'a> {
    /// The name being answered: the question, or the autopath subject.
    Subject,
    Name(NameRef<'a>),
}

#[derive(Clone, Copy)]
enum RrData<'a> {
    A(&'a [Ipv4Addr]),
    Aaaa(&'a [Ipv6Addr]),
    OneA(Ipv4Addr),
    OneAaaa(Ipv6Addr),
    Cname(NameRef<'a>),
    Ptr(&'a [PtrEntry]),
    Srv(&'a ServiceData, &'a [SrvRecord]),
    /// A/AAAA of SRV targets.
    Glue {
        service: &'a ServiceData,
        records: &'a [SrvRecord],
        v6: bool,
    },
    Txt(&'static [u8]),
    Soa,
    Ns,
    /// [`Config::nameservers`] of one family.
    Nameservers {
        v6: bool,
    },
}

impl std::fmt::Debug for RrData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RrData::A(a) => write!(f, "A{a:?}"),
            RrData::Aaaa(a) => write!(f, "AAAA{a:?}"),
            RrData::OneA(a) => write!(f, "A[{a}]"),
            RrData::OneAaaa(a) => write!(f, "AAAA[{a}]"),
            RrData::Cname(n) => write!(f, "CNAME {n}"),
            RrData::Ptr(e) => write!(f, "PTR x{}", e.len()),
            RrData::Srv(s, r) => write!(f, "SRV {} x{}", s.fqdn, r.len()),
            RrData::Glue { service, v6, .. } => write!(f, "glue {} v6={v6}", service.fqdn),
            RrData::Txt(t) => write!(f, "TXT {:?}", String::from_utf8_lossy(t)),
            RrData::Soa => f.write_str("SOA"),
            RrData::Ns => f.write_str("NS"),
            RrData::Nameservers { v6 } => write!(f, "nameservers v6={v6}"),
        }
    }
}

impl RrSet<'_> {
    fn count(&self) -> usize {
        match self.data {
            RrData::A(a) => a.len(),
            RrData::Aaaa(a) => a.len(),
            RrData::Ptr(e) => e.len(),
            RrData::Srv(_, r) => r.len(),
            _ => 1,
        }
    }
}

impl Answer<'_> {
    /// The response code this answer is sent with; `None` for the forwarding
    /// outcomes.
    pub fn rcode(&self) -> Option<Rcode> {
        Some(match self {
            Answer::Authoritative(_) | Answer::NoData => Rcode::NOERROR,
            Answer::NxDomain => Rcode::NXDOMAIN,
            Answer::Refused => Rcode::REFUSED,
            Answer::ServFail => Rcode::SERVFAIL,
            Answer::NotImp => Rcode::NOTIMP,
            Answer::BadVersion => Rcode::BADVERS,
            Answer::Forward | Answer::AutopathForward(_) => return None,
        })
    }
}

// ---- Answering ----

/// Answers `query` from `index`. `client` is the query's source address (for
/// autopath; `None` turns it off). Allocates nothing.
pub fn answer<'a>(index: &'a Index, query: &Query, client: Option<IpAddr>) -> Answer<'a> {
    if query.header.opcode != Opcode::QUERY.0 {
        return Answer::NotImp;
    }
    if query.edns.is_some_and(|e| e.version != 0) {
        return Answer::BadVersion;
    }
    if query.qtype == RecordType::AXFR || query.qtype == RecordType::IXFR {
        return Answer::Refused;
    }
    let in_class = query.qclass == Class::IN || query.qclass == Class::ANY;
    let mut lower = query.name;
    lower.make_lowercase();
    let outcome = answer_name(index, lower.as_name(), query.qtype, in_class);
    if let Answer::NxDomain = outcome {
        if let Some(rel) = lower.as_name().strip_suffix(index.zone().name.as_name()) {
            if let Some(autopath) = autopath(index, query, rel, client) {
                return autopath;
            }
        }
    }
    outcome
}

/// Answers a lowercase name: in the zone, a reverse name, or forwarded.
fn answer_name<'a>(index: &'a Index, name: NameRef<'_>, qtype: RecordType, in_class: bool) -> Answer<'a> {
    if let Some(rel) = name.strip_suffix(index.zone().name.as_name()) {
        if !index.is_synced() {
            return Answer::ServFail;
        }
        if !in_class {
            return Answer::Refused;
        }
        return lookup(index, rel, qtype);
    }
    match reverse_ip(name) {
        Some(_) if !index.is_synced() => Answer::ServFail,
        Some(ip) => {
            let entries = index.reverse(ip);
            if entries.is_empty() {
                Answer::Forward
            } else if qtype == RecordType::PTR {
                let mut records = Records::new();
                records.answer.push(RrSet {
                    owner: RrOwner::Subject,
                    ttl: index.config().ttl,
                    data: RrData::Ptr(entries),
                });
                Answer::Authoritative(records)
            } else {
                Answer::NoData
            }
        }
        None => Answer::Forward,
    }
}

/// Answers a name in the zone, given as its labels in front of the zone (wire
/// form, lowercase, no root label).
fn lookup<'a>(index: &'a Index, rel: &[u8], qtype: RecordType) -> Answer<'a> {
    let Some(node) = resolve(index, rel) else { return Answer::NxDomain };
    let mut records = Records::new();
    match select(index, node, qtype, RrOwner::Subject, &mut records, 0) {
        Selected::Records => Answer::Authoritative(records),
        Selected::NoData => Answer::NoData,
    }
}

/// A name that exists in the zone.
#[derive(Clone, Copy)]
enum Node<'a> {
    Apex,
    /// Exists, holds nothing: `svc`, `pod`, `<ns>.svc`, `<ns>.pod`.
    Empty,
    DnsVersion,
    NsDns,
    Service(&'a ServiceData),
    Endpoint(&'a ServiceData, usize),
    PodHost {
        v4: &'a [Ipv4Addr],
        v6: &'a [Ipv6Addr],
    },
    Srv(&'a ServiceData, &'a [SrvRecord]),
    PodIp(IpAddr),
}

/// Up to 127 labels of a name, as (start, end) offsets.
struct LabelOffsets {
    offsets: [(u8, u8); 128],
    len: usize,
}

impl LabelOffsets {
    fn of(wire: &[u8]) -> LabelOffsets {
        let mut out = LabelOffsets { offsets: [(0, 0); 128], len: 0 };
        let mut pos = 0usize;
        while let Some(&len) = wire.get(pos) {
            let len = usize::from(len);
            if len == 0 || out.len == out.offsets.len() || pos + 1 + len > wire.len() {
                break;
            }
            out.offsets[out.len] = ((pos + 1) as u8, (pos + 1 + len) as u8);
            out.len += 1;
            pos += 1 + len;
        }
        out
    }

    fn label<'w>(&self, wire: &'w [u8], i: usize) -> &'w [u8] {
        let (s, e) = self.offsets[i];
        wire.get(usize::from(s)..usize::from(e)).unwrap_or_default()
    }

    /// The wire bytes of labels `0..i` (length octets included).
    fn prefix<'w>(&self, wire: &'w [u8], i: usize) -> &'w [u8] {
        let end = if i < self.len { usize::from(self.offsets[i].0) - 1 } else { wire.len() };
        wire.get(..end).unwrap_or_default()
    }
}

fn resolve<'a>(index: &'a Index, rel: &[u8]) -> Option<Node<'a>> {
    let labels = LabelOffsets::of(rel);
    let n = labels.len;
    let label = |i: usize| labels.label(rel, i);
    if n == 0 {
        return Some(Node::Apex);
    }
    let config = index.config();
    match label(n - 1) {
        b"dns-version" if n == 1 => Some(Node::DnsVersion),
        b"dns" if n == 2 && label(0) == b"ns" && !config.nameservers.is_empty() => Some(Node::NsDns),
        b"svc" => {
            if n == 1 {
                return Some(Node::Empty);
            }
            let ns = index.namespace(label(n - 2))?;
            if n == 2 {
                return Some(Node::Empty);
            }
            let service = &**ns.services.get(label(n - 3))?;
            match n {
                3 if service.is_empty_headless() => None,
                3 => Some(Node::Service(service)),
                4 => endpoint_node(ns, service, label(0), labels.prefix(rel, 2)),
                5 if label(0).starts_with(b"_") && label(1).starts_with(b"_") => {
                    if matches!(service.kind, ServiceKind::ExternalName(_)) {
                        return None;
                    }
                    let records = service.srv_set(labels.prefix(rel, 2))?;
                    Some(Node::Srv(service, records))
                }
                _ => None,
            }
        }
        b"pod" => {
            if n == 1 {
                return Some(Node::Empty);
            }
            if config.pods == PodMode::Disabled {
                return None;
            }
            let ns = label(n - 2);
            index.namespace(ns)?;
            match n {
                2 => Some(Node::Empty),
                3 => {
                    let ip = dashed_to_ip(label(0))?;
                    match config.pods {
                        PodMode::Insecure => Some(Node::PodIp(ip)),
                        PodMode::Verified if index.pod_has_ip(ns, ip) => Some(Node::PodIp(ip)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `<label>.<svc>.<ns>.svc.<zone>`: an endpoint by hostname or dashed address, or
/// a pod's `hostname.subdomain` (`host_key` is the two labels in wire form).
fn endpoint_node<'a>(
    ns: &'a NsData,
    service: &'a ServiceData,
    label: &[u8],
    host_key: &[u8],
) -> Option<Node<'a>> {
    if matches!(service.kind, ServiceKind::ExternalName(_)) {
        return None;
    }
    if let Some(i) = service.endpoint(label) {
        return Some(Node::Endpoint(service, i));
    }
    if service.kind != ServiceKind::Headless {
        return None;
    }
    // A Pod naming this headless Service as its subdomain, ready (or the Service
    // publishes not-ready addresses); the first such pod wins.
    let host = ns.pod_hosts.get(host_key)?.iter().find(|h| h.ready || service.publish_not_ready)?;
    Some(Node::PodHost { v4: &host.v4, v6: &host.v6 })
}

/// `10-1-2-3` or `fd00--1` as an address (CoreDNS: three dashes and no double
/// dash is IPv4, anything else IPv6).
fn dashed_to_ip(label: &[u8]) -> Option<IpAddr> {
    let mut buf = [0u8; 64];
    let text = buf.get_mut(..label.len())?;
    let dashes = label.iter().filter(|b| **b == b'-').count();
    let v4 = dashes == 3 && !label.windows(2).any(|w| w == b"--");
    for (out, b) in text.iter_mut().zip(label) {
        *out = match b {
            b'-' if v4 => b'.',
            b'-' => b':',
            other => *other,
        };
    }
    let text = std::str::from_utf8(text).ok()?;
    if v4 {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

enum Selected {
    Records,
    NoData,
}

/// Adds the records of `node` for `qtype` to `records`, owned by `owner`.
fn select<'a>(
    index: &'a Index,
    node: Node<'a>,
    qtype: RecordType,
    owner: RrOwner<'a>,
    records: &mut Records<'a>,
    depth: usize,
) -> Selected {
    let ttl = index.config().ttl;
    let before = records.answer.iter().count();
    let mut push = |data| {
        records.answer.push(RrSet { owner, ttl, data });
    };
    match (node, qtype) {
        (Node::Apex, RecordType::SOA) => {
            records.answer.push(RrSet { owner, ttl: index.zone().negative_ttl(), data: RrData::Soa });
        }
        (Node::Apex, RecordType::NS) if !index.config().nameservers.is_empty() => {
            push(RrData::Ns);
            let ns = index.zone().mname.as_name();
            records.additional.push(RrSet {
                owner: RrOwner::Name(ns),
                ttl,
                data: RrData::Nameservers { v6: false },
            });
            records.additional.push(RrSet {
                owner: RrOwner::Name(ns),
                ttl,
                data: RrData::Nameservers { v6: true },
            });
        }
        (Node::DnsVersion, RecordType::TXT) => {
            records.answer.push(RrSet {
                owner,
                ttl: SCHEMA_VERSION_TTL,
                data: RrData::Txt(SCHEMA_VERSION.as_bytes()),
            });
        }
        (Node::NsDns, RecordType::A) if index.config().nameservers.iter().any(IpAddr::is_ipv4) => {
            push(RrData::Nameservers { v6: false })
        }
        (Node::NsDns, RecordType::AAAA) if index.config().nameservers.iter().any(IpAddr::is_ipv6) => {
            push(RrData::Nameservers { v6: true })
        }
        (Node::Service(service), qtype) => match (&service.kind, qtype) {
            (ServiceKind::ExternalName(target), qtype) => {
                push(RrData::Cname(target.as_name()));
                if qtype != RecordType::CNAME {
                    chase(index, target.as_name(), qtype, records, depth);
                }
            }
            (ServiceKind::ClusterIp, RecordType::A) if !service.cluster_v4.is_empty() => {
                push(RrData::A(&service.cluster_v4))
            }
            (ServiceKind::ClusterIp, RecordType::AAAA) if !service.cluster_v6.is_empty() => {
                push(RrData::Aaaa(&service.cluster_v6))
            }
            (ServiceKind::Headless, RecordType::A) if !service.all_v4.is_empty() => {
                push(RrData::A(&service.all_v4))
            }
            (ServiceKind::Headless, RecordType::AAAA) if !service.all_v6.is_empty() => {
                push(RrData::Aaaa(&service.all_v6))
            }
            (_, RecordType::SRV) if !service.srv_all.is_empty() => {
                push(RrData::Srv(service, &service.srv_all));
                add_glue(records, service, &service.srv_all, ttl);
            }
            _ => {}
        },
        (Node::Endpoint(service, i), RecordType::A | RecordType::AAAA) => {
            if let Some(ep) = service.endpoints.get(i) {
                if qtype == RecordType::A && !service.endpoint_v4(ep).is_empty() {
                    push(RrData::A(service.endpoint_v4(ep)));
                } else if qtype == RecordType::AAAA && !service.endpoint_v6(ep).is_empty() {
                    push(RrData::Aaaa(service.endpoint_v6(ep)));
                }
            }
        }
        (Node::PodHost { v4, .. }, RecordType::A) if !v4.is_empty() => push(RrData::A(v4)),
        (Node::PodHost { v6, .. }, RecordType::AAAA) if !v6.is_empty() => push(RrData::Aaaa(v6)),
        (Node::Srv(service, set), RecordType::SRV) => {
            push(RrData::Srv(service, set));
            add_glue(records, service, set, ttl);
        }
        (Node::PodIp(IpAddr::V4(ip)), RecordType::A) => push(RrData::OneA(ip)),
        (Node::PodIp(IpAddr::V6(ip)), RecordType::AAAA) => push(RrData::OneAaaa(ip)),
        _ => {}
    }
    if records.answer.iter().count() > before {
        Selected::Records
    } else {
        Selected::NoData
    }
}

/// A/AAAA records for the targets of SRV records, in the additional section.
fn add_glue<'a>(records: &mut Records<'a>, service: &'a ServiceData, set: &'a [SrvRecord], ttl: u32) {
    for v6 in [false, true] {
        records.additional.push(RrSet {
            owner: RrOwner::Name(service.fqdn.as_name()),
            ttl,
            data: RrData::Glue { service, records: set, v6 },
        });
    }
}

/// Follows a CNAME from an ExternalName Service: inside the zone, the target's
/// records are added (at most [`MAX_CHASE`] deep); outside it, the target is left
/// for the server to resolve ([`Records::chase`]).
fn chase<'a>(
    index: &'a Index,
    target: NameRef<'a>,
    qtype: RecordType,
    records: &mut Records<'a>,
    depth: usize,
) {
    let mut lower = target.to_buf();
    lower.make_lowercase();
    let Some(rel) = lower.as_name().strip_suffix(index.zone().name.as_name()) else {
        records.chase = Some(target);
        return;
    };
    if depth >= MAX_CHASE {
        return;
    }
    if let Some(node) = resolve(index, rel) {
        select(index, node, qtype, RrOwner::Name(target), records, depth + 1);
    }
}

/// Autopath; see the module docs. `rel` is the lowercase query name in front of
/// the zone.
fn autopath<'a>(index: &'a Index, query: &Query, rel: &[u8], client: Option<IpAddr>) -> Option<Answer<'a>> {
    if !index.config().autopath {
        return None;
    }
    let namespace = index.autopath_namespace(client?)?;
    let labels = LabelOffsets::of(rel);
    let n = labels.len;
    // `<X>.<ns>.svc`, with X at least one label.
    if n < 3 || labels.label(rel, n - 1) != b"svc" || labels.label(rel, n - 2) != namespace.as_bytes() {
        return None;
    }
    // X with the client's case, for the names we hand back.
    let x = LabelOffsets::of(query.name.as_wire()).prefix(query.name.as_wire(), n - 2);
    let zone = index.zone().name.as_name();
    let mut svc_zone = NameBuf::root();
    svc_zone.push_label(b"svc").ok()?;
    svc_zone.push_name(zone).ok()?;
    let candidates =
        [NameBuf::concat(x, svc_zone.as_name()), NameBuf::concat(x, zone), NameBuf::concat(x, NameRef::ROOT)];
    for candidate in candidates.into_iter().flatten() {
        let mut lower = candidate;
        lower.make_lowercase();
        // Each candidate gets what a query for it would (the first two are in the
        // zone; `<X>.` may be anywhere).
        return Some(match answer_name(index, lower.as_name(), query.qtype, true) {
            Answer::NxDomain => continue,
            Answer::Authoritative(mut records) => {
                records.subject = Some(candidate);
                Answer::Authoritative(records)
            }
            // Not ours: the server continues upstream.
            Answer::Forward => Answer::AutopathForward(Autopath { target: candidate }),
            other => other,
        });
    }
    None
}

/// Reads a full reverse name: `d.c.b.a.in-addr.arpa` or 32 nibbles under
/// `ip6.arpa` (lowercase). Partial names (`10.in-addr.arpa`) are `None`.
fn reverse_ip(name: NameRef<'_>) -> Option<IpAddr> {
    let wire = name.as_wire();
    if let Some(rel) = wire.strip_suffix(b"\x07in-addr\x04arpa\x00") {
        let labels = LabelOffsets::of(rel);
        if labels.len != 4 || labels.prefix(rel, 4).len() != rel.len() {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, octet) in octets.iter_mut().enumerate() {
            let label = labels.label(rel, 3 - i);
            if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
                return None;
            }
            *octet = std::str::from_utf8(label).ok()?.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rel) = wire.strip_suffix(b"\x03ip6\x04arpa\x00") {
        // 32 labels of one hex digit each: "\x01d" repeated.
        if rel.len() != 64 {
            return None;
        }
        let mut value: u128 = 0;
        for pair in rel.chunks(2).rev() {
            let [1, digit] = pair else { return None };
            let nibble = (*digit as char).to_digit(16)?;
            value = (value << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

// ---- Encoding ----

impl Answer<'_> {
    /// Writes the response to `query` into `buf` (appending), within `max_len`
    /// octets: [`Query::max_udp_response_len`] over UDP,
    /// [`crate::wire::MAX_TCP_MESSAGE`] over TCP. `None` for the forwarding
    /// outcomes, which the server handles.
    pub fn encode(&self, index: &Index, query: &Query, buf: &mut Vec<u8>, max_len: usize) -> Option<Written> {
        let rcode = self.rcode()?;
        let mut w = start(query, buf, rcode);
        w.header_mut().authoritative =
            matches!(self, Answer::Authoritative(_) | Answer::NxDomain | Answer::NoData);
        match self {
            Answer::Authoritative(records) => {
                write_answer(&mut w, index, records);
                write_additional(&mut w, index, records);
            }
            Answer::NxDomain | Answer::NoData => write_soa(&mut w, index, query),
            _ => {}
        }
        Some(w.finish(max_len))
    }

    /// Writes the response to `query` given the upstream reply for a forwarding
    /// step: for [`Answer::AutopathForward`] the reply for [`Autopath::target`],
    /// for an answer with [`Records::chase`] the reply for that name (its answer
    /// records are appended). `upstream` may be `None` (no reply, timeout).
    /// Other answers are encoded as by [`Answer::encode`].
    pub fn encode_with_upstream(
        &self,
        index: &Index,
        query: &Query,
        upstream: Option<&[u8]>,
        buf: &mut Vec<u8>,
        max_len: usize,
    ) -> Option<Written> {
        let upstream = upstream
            .and_then(|msg| UpstreamResponse::parse(msg).ok())
            .filter(|r| r.header().rcode == Rcode::NOERROR.low_bits());
        match self {
            Answer::AutopathForward(autopath) => {
                let Some(reply) = upstream else {
                    return Answer::NxDomain.encode(index, query, buf, max_len);
                };
                let mut w = start(query, buf, Rcode::NOERROR);
                let mut first = true;
                for record in reply.answers() {
                    let Ok(record) = record else { break };
                    if first {
                        w.cname(Owner::Question, record.ttl, autopath.target());
                        first = false;
                    }
                    w.upstream_record(&record, record.ttl);
                }
                Some(w.finish(max_len))
            }
            Answer::Authoritative(records) if records.chase.is_some() => {
                let mut w = start(query, buf, Rcode::NOERROR);
                w.header_mut().authoritative = true;
                write_answer(&mut w, index, records);
                for record in upstream.iter().flat_map(|r| r.answers()) {
                    let Ok(record) = record else { break };
                    w.upstream_record(&record, record.ttl);
                }
                write_additional(&mut w, index, records);
                Some(w.finish(max_len))
            }
            other => other.encode(index, query, buf, max_len),
        }
    }
}

/// Writes FORMERR for a query that could not be parsed, if it should be answered
/// ([`ParseError::should_respond`]): the header only, id, opcode and RD echoed.
pub fn encode_parse_error(error: &ParseError, buf: &mut Vec<u8>) -> Option<Written> {
    if !error.should_respond() {
        return None;
    }
    let mut header = error.header()?.response_to();
    header.rcode = Rcode::FORMERR.low_bits();
    header.recursion_available = true;
    Some(MessageWriter::new(buf, header).finish(MIN_UDP_PAYLOAD))
}

/// Starts a response: header (RA set: the server forwards what is not its own),
/// the question as received, and the OPT record if the query had one.
fn start<'b>(query: &Query, buf: &'b mut Vec<u8>, rcode: Rcode) -> MessageWriter<'b> {
    let mut header = query.header.response_to();
    header.rcode = rcode.low_bits();
    header.recursion_available = true;
    let mut w = MessageWriter::new(buf, header);
    w.question(query.name.as_name(), query.qtype, query.qclass);
    w.set_edns(query.edns.map(|edns| EdnsResponse {
        udp_payload_size: DEFAULT_EDNS_PAYLOAD,
        extended_rcode: rcode.high_bits(),
        version: 0,
        dnssec_ok: edns.dnssec_ok,
    }));
    w
}

fn write_answer(w: &mut MessageWriter<'_>, index: &Index, records: &Records<'_>) {
    let subject = match &records.subject {
        Some(target) => {
            let ttl = records.answer.iter().next().map_or(index.config().ttl, |s| s.ttl);
            w.cname(Owner::Question, ttl, target.as_name());
            Owner::Name(target.as_name())
        }
        None => Owner::Question,
    };
    for set in records.answer.iter() {
        write_set(w, index, set, subject);
    }
}

fn write_additional(w: &mut MessageWriter<'_>, index: &Index, records: &Records<'_>) {
    if records.additional.is_empty() {
        return;
    }
    w.set_section(Section::Additional);
    let subject = match &records.subject {
        Some(target) => Owner::Name(target.as_name()),
        None => Owner::Question,
    };
    for set in records.additional.iter() {
        write_set(w, index, set, subject);
    }
}

/// The negative answer's SOA: the zone's, or for reverse names the reverse zone's
/// (`in-addr.arpa.` / `ip6.arpa.`), which is what CoreDNS serves them under.
fn write_soa(w: &mut MessageWriter<'_>, index: &Index, query: &Query) {
    w.set_section(Section::Authority);
    let zone = index.zone();
    let in_addr = NameRef::from_wire(b"\x07in-addr\x04arpa\x00").unwrap_or(NameRef::ROOT);
    let ip6 = NameRef::from_wire(b"\x03ip6\x04arpa\x00").unwrap_or(NameRef::ROOT);
    let name = query.name.as_name();
    let owner = if name.is_subdomain_of(zone.name.as_name()) {
        zone.name.as_name()
    } else if name.is_subdomain_of(in_addr) {
        in_addr
    } else if name.is_subdomain_of(ip6) {
        ip6
    } else {
        zone.name.as_name()
    };
    write_soa_record(w, index, Owner::Name(owner));
}

fn write_soa_record(w: &mut MessageWriter<'_>, index: &Index, owner: Owner<'_>) {
    let zone = index.zone();
    let negative = zone.negative_ttl();
    // CoreDNS's refresh, retry and expire; MINIMUM is the negative TTL.
    w.soa(
        owner,
        negative,
        zone.mname.as_name(),
        zone.rname.as_name(),
        index.serial(),
        7200,
        1800,
        86400,
        negative,
    );
}

fn write_set(w: &mut MessageWriter<'_>, index: &Index, set: &RrSet<'_>, subject: Owner<'_>) {
    let owner = match set.owner {
        RrOwner::Subject => subject,
        RrOwner::Name(name) => Owner::Name(name),
    };
    let ttl = set.ttl;
    match set.data {
        RrData::A(addrs) => addrs.iter().for_each(|a| w.a(owner, ttl, *a)),
        RrData::Aaaa(addrs) => addrs.iter().for_each(|a| w.aaaa(owner, ttl, *a)),
        RrData::OneA(a) => w.a(owner, ttl, a),
        RrData::OneAaaa(a) => w.aaaa(owner, ttl, a),
        RrData::Cname(target) => w.cname(owner, ttl, target),
        RrData::Ptr(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let target = entry.target();
                // Two endpoint entries can share a name (one endpoint in two slices).
                if entries[..i].iter().any(|e| e.target() == target) {
                    continue;
                }
                w.ptr(owner, ttl, target);
            }
        }
        RrData::Srv(service, records) => {
            // CoreDNS: priority 0, weights splitting 100 evenly (at least 1).
            let weight = (100 / records.len().max(1)).max(1) as u16;
            for record in records {
                w.srv(owner, ttl, 0, weight, record.port, service.srv_target(record));
            }
        }
        RrData::Glue { service, records, v6 } => write_glue(w, service, records, v6, ttl),
        RrData::Txt(text) => w.txt(owner, ttl, &[text]),
        RrData::Soa => write_soa_record(w, index, owner),
        RrData::Ns => w.ns(owner, ttl, index.zone().mname.as_name()),
        RrData::Nameservers { v6 } => {
            for ip in &index.config().nameservers {
                match ip {
                    IpAddr::V4(a) if !v6 => w.a(owner, ttl, *a),
                    IpAddr::V6(a) if v6 => w.aaaa(owner, ttl, *a),
                    _ => {}
                }
            }
        }
    }
}

/// The addresses of SRV targets: a ClusterIP Service's cluster IPs, or each
/// target endpoint's addresses (once per endpoint).
fn write_glue(w: &mut MessageWriter<'_>, service: &ServiceData, records: &[SrvRecord], v6: bool, ttl: u32) {
    if service.kind == ServiceKind::ClusterIp {
        let owner = Owner::Name(service.fqdn.as_name());
        if v6 {
            service.cluster_v6.iter().for_each(|a| w.aaaa(owner, ttl, *a));
        } else {
            service.cluster_v4.iter().for_each(|a| w.a(owner, ttl, *a));
        }
        return;
    }
    // Once per endpoint (SRV at the Service's name lists each endpoint once per
    // port). Endpoints past the first 4096 get no glue: their records alone
    // overflow the largest message.
    let mut seen = [0u64; 64];
    for record in records {
        let Some(e) = record.endpoint.map(|e| e as usize) else { continue };
        let Some(word) = seen.get_mut(e / 64) else { continue };
        if *word & (1 << (e % 64)) != 0 {
            continue;
        }
        *word |= 1 << (e % 64);
        let Some(ep) = service.endpoints.get(e) else { continue };
        let owner = Owner::Name(service.endpoint_name(ep));
        if v6 {
            service.endpoint_v6(ep).iter().for_each(|a| w.aaaa(owner, ttl, *a));
        } else {
            service.endpoint_v4(ep).iter().for_each(|a| w.a(owner, ttl, *a));
        }
    }
}
