//! The few ctnetlink messages conntrack cleanup needs, encoded and decoded by hand:
//! a dump of the table and the deletion of one entry. Pure: bytes in, bytes out.
//!
//! Layout (`linux/netlink.h`, `linux/netfilter/nfnetlink.h`,
//! `linux/netfilter/nfnetlink_conntrack.h`): a 16-byte `nlmsghdr` in host byte order;
//! a 4-byte `nfgenmsg` (family, version 0, resource id 0); then attributes, each a
//! 4-byte header (length, type) and a payload padded to 4 bytes. Addresses and ports
//! inside tuples are in network byte order, as the kernel puts them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nlmsg::Msg;

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a ctnetlink message type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// An address family of the conntrack table; dumps are per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    fn af(self) -> u8 {
        match self {
            IpFamily::V4 => AF_INET,
            IpFamily::V6 => AF_INET6,
        }
    }
}

/// IP protocol numbers of the transport protocols Services use.
pub mod proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// One direction of a connection as conntrack records it. Ports are 0 for protocols
/// without ports (ICMP's id, type and code are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (see [`proto`]).
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// A conntrack entry: the original direction (as the first packet was, before NAT)
/// and the reply direction (as answers come back, so its source is the endpoint a
/// DNAT chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConntrackEntry {
    /// `CTA_TUPLE_ORIG`.
    pub original: Tuple,
    /// `CTA_TUPLE_REPLY`.
    pub reply: Tuple,
    /// `CTA_ZONE`, 0 when absent.
    pub zone: u16,
    /// `CTA_ID`, which makes a deletion hit this entry and not a later one with the
    /// same tuple.
    pub id: Option<u32>,
}

/// A message read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// One entry of a dump.
    Entry(ConntrackEntry),
    /// The end of a dump.
    Done,
    /// An acknowledgement (`errno` 0) or an error (`errno` positive, e.g. 2 for
    /// `ENOENT`) for the request with this sequence number.
    Ack {
        /// The request's sequence number.
        seq: u32,
        /// 0 for success, else the errno.
        errno: i32,
    },
    /// Anything else (skipped).
    Other,
}

/// Bytes that are not the netlink messages they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length field points past the end of the buffer or below its own header.
    #[error("truncated netlink {what} at byte {at}")]
    Truncated {
        /// Message or attribute.
        what: &'static str,
        /// Offset in the buffer.
        at: usize,
    },
    /// A tuple without addresses or protocol.
    #[error("conntrack entry without a complete {0} tuple")]
    IncompleteTuple(&'static str),
}

fn ct_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

/// `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`: every entry of `family`.
pub fn dump_request(seq: u32, family: IpFamily) -> Vec<u8> {
    Msg::new(ct_type(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, seq, family.af()).finish()
}

/// `IPCTNL_MSG_CT_DELETE` of the entry whose original tuple, zone and id are
/// `entry`'s, with an acknowledgement asked for.
pub fn delete_request(seq: u32, entry: &ConntrackEntry) -> Vec<u8> {
    let t = &entry.original;
    let mut m =
        Msg::new(ct_type(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, seq, IpFamily::of(t.src).af());
    let tuple = m.begin(CTA_TUPLE_ORIG);
    let ip = m.begin(CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            m.attr(CTA_IP_V4_SRC, &s.octets());
            m.attr(CTA_IP_V4_DST, &d.octets());
        }
        (s, d) => {
            m.attr(CTA_IP_V6_SRC, &v6(s).octets());
            m.attr(CTA_IP_V6_DST, &v6(d).octets());
        }
    }
    m.end(ip);
    let l4 = m.begin(CTA_TUPLE_PROTO);
    m.attr(CTA_PROTO_NUM, &[t.protocol]);
    m.attr(CTA_PROTO_SRC_PORT, &t.src_port.to_be_bytes());
    m.attr(CTA_PROTO_DST_PORT, &t.dst_port.to_be_bytes());
    m.end(l4);
    m.end(tuple);
    if entry.zone != 0 {
        m.attr(CTA_ZONE, &entry.zone.to_be_bytes());
    }
    if let Some(id) = entry.id {
        m.attr(CTA_ID, &id.to_be_bytes());
    }
    m.finish()
}

/// Tuples from the kernel never mix families; this keeps a mixed one encodable.
fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    }
}

/// Splits one datagram into its netlink messages.
///
/// # Errors
///
/// [`DecodeError`] when a length field is inconsistent or an entry lacks a tuple.
pub fn parse(buf: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_ne(buf, at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(DecodeError::Truncated { what: "message", at });
        }
        let kind = u16_ne(buf, at + 4);
        let seq = u32_ne(buf, at + 8);
        let body = &buf[at + NLMSG_HDRLEN..at + len];
        out.push(match kind {
            NLMSG_DONE => Reply::Done,
            NLMSG_ERROR if body.len() >= 4 => {
                let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                Reply::Ack { seq, errno: -code }
            }
            k if k == ct_type(IPCTNL_MSG_CT_NEW) && body.len() >= NFGENMSG_LEN => {
                Reply::Entry(entry(&body[NFGENMSG_LEN..], at + NLMSG_HDRLEN + NFGENMSG_LEN)?)
            }
            _ => Reply::Other,
        });
        at += align(len);
    }
    Ok(out)
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The attributes of `buf` as (type without flags, payload); `base` is `buf`'s offset
/// in the datagram, for error messages.
fn attrs(buf: &[u8], base: usize) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16_ne(buf, at) as usize;
        if len < 4 || at + len > buf.len() {
            return Err(DecodeError::Truncated { what: "attribute", at: base + at });
        }
        out.push((u16_ne(buf, at + 2) & NLA_TYPE_MASK, &buf[at + 4..at + len]));
        at += align(len);
    }
    Ok(out)
}

fn entry(buf: &[u8], base: usize) -> Result<ConntrackEntry, DecodeError> {
    let (mut original, mut reply, mut zone, mut id) = (None, None, 0, None);
    for (kind, payload) in attrs(buf, base)? {
        match kind {
            CTA_TUPLE_ORIG => original = Some(tuple(payload, base, "original")?),
            CTA_TUPLE_REPLY => reply = Some(tuple(payload, base, "reply")?),
            CTA_ZONE if payload.len() >= 2 => zone = u16::from_be_bytes([payload[0], payload[1]]),
            CTA_ID if payload.len() >= 4 => {
                id = Some(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]))
            }
            _ => {}
        }
    }
    Ok(ConntrackEntry {
        original: original.ok_or(DecodeError::IncompleteTuple("original"))?,
        reply: reply.ok_or(DecodeError::IncompleteTuple("reply"))?,
        zone,
        id,
    })
}

fn tuple(buf: &[u8], base: usize, which: &'static str) -> Result<Tuple, DecodeError> {
    let (mut src, mut dst, mut protocol) = (None, None, None);
    let (mut src_port, mut dst_port) = (0, 0);
    for (kind, payload) in attrs(buf, base)? {
        match kind {
            CTA_TUPLE_IP => {
                for (k, p) in attrs(payload, base)? {
                    match (k, p.len()) {
                        (CTA_IP_V4_SRC, 4) => src = Some(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
                        (CTA_IP_V4_DST, 4) => dst = Some(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
                        (CTA_IP_V6_SRC, 16) => src = Some(IpAddr::V6(ipv6(p))),
                        (CTA_IP_V6_DST, 16) => dst = Some(IpAddr::V6(ipv6(p))),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, p) in attrs(payload, base)? {
                    match (k, p.len()) {
                        (CTA_PROTO_NUM, 1..) => protocol = Some(p[0]),
                        (CTA_PROTO_SRC_PORT, 2..) => src_port = u16::from_be_bytes([p[0], p[1]]),
                        (CTA_PROTO_DST_PORT, 2..) => dst_port = u16::from_be_bytes([p[0], p[1]]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (src, dst, protocol) {
        (Some(src), Some(dst), Some(protocol)) => Ok(Tuple { src, dst, protocol, src_port, dst_port }),
        _ => Err(DecodeError::IncompleteTuple(which)),
    }
}

fn ipv6(p: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&p[..16]);
    Ipv6Addr::from(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("test address"))
    }

    /// A UDP flow 10.244.0.5:40000 -> 10.96.0.10:53 DNAT'ed to 10.244.1.7:5353.
    fn dns_flow() -> ConntrackEntry {
        ConntrackEntry {
            original: Tuple {
                src: v4("10.244.0.5"),
                dst: v4("10.96.0.10"),
                protocol: proto::UDP,
                src_port: 40000,
                dst_port: 53,
            },
            reply: Tuple {
                src: v4("10.244.1.7"),
                dst: v4("10.244.0.5"),
                protocol: proto::UDP,
                src_port: 5353,
                dst_port: 40000,
            },
            zone: 0,
            id: Some(0x01020304),
        }
    }

    /// Host-order u16/u32 as the kernel of this machine writes them.
    fn ne16(v: u16) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }
    fn ne32(v: u32) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    fn expected_delete() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(ne32(80)); // total length
        b.extend(ne16(0x0102)); // CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
        b.extend(ne16(0x0005)); // NLM_F_REQUEST | NLM_F_ACK
        b.extend(ne32(7)); // seq
        b.extend(ne32(0)); // pid
        b.extend([2, 0, 0, 0]); // nfgenmsg: AF_INET, v0, res_id 0
        b.extend(ne16(52)); // CTA_TUPLE_ORIG, nested
        b.extend(ne16(0x8001));
        b.extend(ne16(20)); //   CTA_TUPLE_IP, nested
        b.extend(ne16(0x8001));
        b.extend(ne16(8)); //     CTA_IP_V4_SRC
        b.extend(ne16(1));
        b.extend([10, 244, 0, 5]);
        b.extend(ne16(8)); //     CTA_IP_V4_DST
        b.extend(ne16(2));
        b.extend([10, 96, 0, 10]);
        b.extend(ne16(28)); //   CTA_TUPLE_PROTO, nested
        b.extend(ne16(0x8002));
        b.extend(ne16(5)); //     CTA_PROTO_NUM = 17, padded
        b.extend(ne16(1));
        b.extend([17, 0, 0, 0]);
        b.extend(ne16(6)); //     CTA_PROTO_SRC_PORT = 40000 (be), padded
        b.extend(ne16(2));
        b.extend([0x9c, 0x40, 0, 0]);
        b.extend(ne16(6)); //     CTA_PROTO_DST_PORT = 53 (be), padded
        b.extend(ne16(3));
        b.extend([0, 53, 0, 0]);
        b.extend(ne16(8)); // CTA_ID (be)
        b.extend(ne16(12));
        b.extend([1, 2, 3, 4]);
        b
    }

    #[test]
    fn dump_request_is_byte_exact() {
        let mut want = Vec::new();
        want.extend(ne32(20));
        want.extend(ne16(0x0101)); // IPCTNL_MSG_CT_GET
        want.extend(ne16(0x0301)); // NLM_F_REQUEST | NLM_F_DUMP
        want.extend(ne32(42));
        want.extend(ne32(0));
        want.extend([10, 0, 0, 0]); // AF_INET6
        assert_eq!(dump_request(42, IpFamily::V6), want);
    }

    #[test]
    fn delete_request_is_byte_exact() {
        assert_eq!(delete_request(7, &dns_flow()), expected_delete());
    }

    #[test]
    fn delete_request_names_a_zone_when_there_is_one() {
        let mut e = dns_flow();
        e.zone = 3;
        e.id = None;
        let b = delete_request(1, &e);
        assert_eq!(b.len(), 80);
        assert_eq!(&b[72..80], [ne16(6), ne16(18), vec![0, 3, 0, 0]].concat().as_slice());
    }

    /// A dump answer as the kernel writes it: the entry (with attributes the decoder
    /// skips) and the end of the dump, in one datagram.
    #[test]
    fn dump_replies_decode_to_entries_and_done() {
        // Reuse the delete encoder for the two tuples, as the kernel's layout is the same.
        let reply_tuple = {
            let mut e = dns_flow();
            e.original = e.reply;
            e.id = None;
            let b = delete_request(0, &e);
            b[20..72].to_vec()
        };
        let mut body = Vec::new();
        body.extend([2, 0, 0, 0]);
        body.extend(&expected_delete()[20..72]); // CTA_TUPLE_ORIG
        let mut reply = reply_tuple;
        reply[2..4].copy_from_slice(&ne16(0x8002)); // CTA_TUPLE_REPLY
        body.extend(reply);
        body.extend([ne16(8), ne16(3), vec![0, 0, 0, 0x8e]].concat()); // CTA_STATUS, skipped
        body.extend([ne16(8), ne16(12), vec![1, 2, 3, 4]].concat()); // CTA_ID
        let mut buf = Vec::new();
        buf.extend(ne32((16 + body.len()) as u32));
        buf.extend(ne16(0x0100));
        buf.extend(ne16(0x0002)); // NLM_F_MULTI
        buf.extend(ne32(9));
        buf.extend(ne32(1234));
        buf.extend(body);
        buf.extend([ne32(20), ne16(3), ne16(2), ne32(9), ne32(1234), ne32(0)].concat());
        assert_eq!(parse(&buf), Ok(vec![Reply::Entry(dns_flow()), Reply::Done]));
    }

    #[test]
    fn errors_and_acks_carry_the_errno() {
        let mut buf = Vec::new();
        buf.extend([ne32(36), ne16(2), ne16(0x100), ne32(5), ne32(0)].concat());
        buf.extend((-2i32).to_ne_bytes()); // -ENOENT
        buf.extend([0u8; 16]); // the request's header
        buf.extend([ne32(36), ne16(2), ne16(0x100), ne32(6), ne32(0)].concat());
        buf.extend(0i32.to_ne_bytes());
        buf.extend([0u8; 16]);
        assert_eq!(parse(&buf), Ok(vec![Reply::Ack { seq: 5, errno: 2 }, Reply::Ack { seq: 6, errno: 0 }]));
    }

    #[test]
    fn inconsistent_lengths_are_errors_not_panics() {
        let mut buf = [ne32(400), ne16(0x0100), ne16(2), ne32(1), ne32(0)].concat();
        buf.extend([2, 0, 0, 0]);
        assert_eq!(parse(&buf), Err(DecodeError::Truncated { what: "message", at: 0 }));
        let mut buf = [ne32(28), ne16(0x0100), ne16(2), ne32(1), ne32(0)].concat();
        buf.extend([2, 0, 0, 0]);
        buf.extend([ne16(90), ne16(0x8001), vec![0; 4]].concat());
        assert_eq!(parse(&buf), Err(DecodeError::Truncated { what: "attribute", at: 20 }));
        let mut buf = [ne32(20), ne16(0x0100), ne16(2), ne32(1), ne32(0)].concat();
        buf.extend([2, 0, 0, 0]);
        assert_eq!(parse(&buf), Err(DecodeError::IncompleteTuple("original")));
    }
}
