//! Reading queries: the header, the one question, and the OPT record.

use std::fmt;

use super::name::{NameBuf, MAX_LABEL_LEN, MAX_NAME_LEN};
use super::{Class, Opcode, RecordType, HEADER_LEN, MIN_UDP_PAYLOAD};

/// The fixed header of a message (RFC 1035 §4.1.1), without the section counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Chosen by the client, echoed in the response.
    pub id: u16,
    /// QR: this is a response.
    pub response: bool,
    /// OPCODE.
    pub opcode: u8,
    /// AA: the answer comes from the zone's authority.
    pub authoritative: bool,
    /// TC: the message was cut to fit.
    pub truncated: bool,
    /// RD: the client wants recursion (echoed).
    pub recursion_desired: bool,
    /// RA: the server recurses (it forwards names outside the cluster zone).
    pub recursion_available: bool,
    /// AD: authentic data (DNSSEC); never set by this server.
    pub authentic_data: bool,
    /// CD: checking disabled (DNSSEC).
    pub checking_disabled: bool,
    /// The low 4 bits of the response code.
    pub rcode: u8,
}

impl Header {
    /// Reads the first 12 octets, if there are that many.
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let h = msg.get(..HEADER_LEN)?;
        Some(Header {
            id: u16::from_be_bytes([h[0], h[1]]),
            response: h[2] & 0x80 != 0,
            opcode: (h[2] >> 3) & 0x0f,
            authoritative: h[2] & 0x04 != 0,
            truncated: h[2] & 0x02 != 0,
            recursion_desired: h[2] & 0x01 != 0,
            recursion_available: h[3] & 0x80 != 0,
            authentic_data: h[3] & 0x20 != 0,
            checking_disabled: h[3] & 0x10 != 0,
            rcode: h[3] & 0x0f,
        })
    }

    /// The two flag octets (bytes 2 and 3 of the header).
    pub(crate) fn flag_bytes(&self) -> [u8; 2] {
        let mut b2 = (self.opcode & 0x0f) << 3;
        if self.response {
            b2 |= 0x80;
        }
        if self.authoritative {
            b2 |= 0x04;
        }
        if self.truncated {
            b2 |= 0x02;
        }
        if self.recursion_desired {
            b2 |= 0x01;
        }
        let mut b3 = self.rcode & 0x0f;
        if self.recursion_available {
            b3 |= 0x80;
        }
        if self.authentic_data {
            b3 |= 0x20;
        }
        if self.checking_disabled {
            b3 |= 0x10;
        }
        [b2, b3]
    }

    /// The header of a response to this query: id, opcode, RD and CD echoed, QR
    /// set, every other flag clear.
    pub fn response_to(&self) -> Header {
        Header {
            id: self.id,
            response: true,
            opcode: self.opcode,
            recursion_desired: self.recursion_desired,
            checking_disabled: self.checking_disabled,
            ..Header::default()
        }
    }
}

/// What a query's OPT record said (RFC 6891 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP response the client accepts, as advertised (may be below
    /// 512, which means 512).
    pub udp_payload_size: u16,
    /// The EDNS version; only 0 is supported (anything else gets BADVERS).
    pub version: u8,
    /// DO: the client wants DNSSEC records. Echoed (RFC 3225 §3); this server
    /// signs nothing.
    pub dnssec_ok: bool,
}

/// A parsed query: its header, its single question and its EDNS parameters.
/// Holds no references into the packet and allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// The header as received.
    pub header: Header,
    /// QNAME, case as received.
    pub name: NameBuf,
    /// QTYPE.
    pub qtype: RecordType,
    /// QCLASS.
    pub qclass: Class,
    /// The OPT record, if the query had one.
    pub edns: Option<Edns>,
}

/// Why a query could not be read. [`ParseError::should_respond`] says whether to
/// answer; if so, the answer is FORMERR with [`ParseError::header`]'s id
/// (see [`crate::answer::encode_parse_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    header: Option<Header>,
    kind: ParseErrorKind,
}

/// The kind of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Fewer than 12 octets: not even a header. Dropped.
    ShortHeader,
    /// QR is set: the packet is a response, not a query. Dropped, so that two
    /// servers cannot bounce errors at each other.
    NotAQuery,
    /// QDCOUNT is not 1 (RFC 9619).
    QuestionCount(u16),
    /// A section ends past the end of the packet.
    Truncated,
    /// A label type other than a plain label or a pointer (RFC 6891 §5 retired the
    /// extended label types).
    BadLabelType,
    /// A name longer than 255 octets once decompressed.
    NameTooLong,
    /// A compression pointer that does not point backwards, or too many of them.
    BadPointer,
    /// More than one OPT record (RFC 6891 §6.1.1).
    DuplicateOpt,
    /// An OPT record whose owner is not the root, or that is not in the additional
    /// section (RFC 6891 §6.1.1).
    MisplacedOpt,
    /// An OPT record whose options overrun its RDATA.
    BadOptions,
}

impl ParseError {
    pub(crate) fn new(header: Option<Header>, kind: ParseErrorKind) -> ParseError {
        ParseError { header, kind }
    }

    /// What was wrong.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The header, when the packet had one.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Whether to answer with FORMERR: only when the header was readable and the
    /// packet is a query. Otherwise drop it silently.
    pub fn should_respond(&self) -> bool {
        matches!(self.header, Some(h) if !h.response)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("parse dns query: ")?;
        match self.kind {
            ParseErrorKind::ShortHeader => f.write_str("shorter than a header"),
            ParseErrorKind::NotAQuery => f.write_str("not a query (QR set)"),
            ParseErrorKind::QuestionCount(n) => write!(f, "{n} questions, want 1"),
            ParseErrorKind::Truncated => f.write_str("truncated"),
            ParseErrorKind::BadLabelType => f.write_str("unsupported label type"),
            ParseErrorKind::NameTooLong => f.write_str("name longer than 255 octets"),
            ParseErrorKind::BadPointer => f.write_str("bad compression pointer"),
            ParseErrorKind::DuplicateOpt => f.write_str("more than one OPT record"),
            ParseErrorKind::MisplacedOpt => f.write_str("misplaced OPT record"),
            ParseErrorKind::BadOptions => f.write_str("malformed EDNS options"),
        }
    }
}

impl std::error::Error for ParseError {}

impl Query {
    /// Reads a query. Allocates nothing; never panics.
    ///
    /// Accepts exactly one question. Answer and authority records (which a query
    /// should not have) are skipped; in the additional section a single OPT record
    /// is read and any other record (TSIG, cookies' carriers) is skipped. Trailing
    /// octets after the counted records are ignored. For opcodes other than QUERY
    /// only the header and question are read: the answer is NOTIMP anyway.
    ///
    /// # Errors
    ///
    /// A [`ParseError`]; see [`ParseError::should_respond`].
    pub fn parse(msg: &[u8]) -> Result<Query, ParseError> {
        let header = Header::parse(msg).ok_or(ParseError::new(None, ParseErrorKind::ShortHeader))?;
        let err = |kind| ParseError::new(Some(header), kind);
        if header.response {
            return Err(err(ParseErrorKind::NotAQuery));
        }
        let count = |i: usize| u16::from_be_bytes([msg[4 + 2 * i], msg[5 + 2 * i]]);
        let (qdcount, ancount, nscount, arcount) = (count(0), count(1), count(2), count(3));
        if qdcount != 1 {
            return Err(err(ParseErrorKind::QuestionCount(qdcount)));
        }
        let (name, mut pos) = read_name(msg, HEADER_LEN).map_err(err)?;
        let fixed = msg.get(pos..pos + 4).ok_or(err(ParseErrorKind::Truncated))?;
        let qtype = RecordType(u16::from_be_bytes([fixed[0], fixed[1]]));
        let qclass = Class(u16::from_be_bytes([fixed[2], fixed[3]]));
        pos += 4;
        let mut query = Query { header, name, qtype, qclass, edns: None };
        if header.opcode != Opcode::QUERY.0 {
            return Ok(query);
        }
        for _ in 0..u32::from(ancount) + u32::from(nscount) {
            let rr = read_rr_header(msg, pos).map_err(err)?;
            if rr.rtype == RecordType::OPT {
                return Err(err(ParseErrorKind::MisplacedOpt));
            }
            pos = rr.end;
        }
        for _ in 0..arcount {
            let rr = read_rr_header(msg, pos).map_err(err)?;
            if rr.rtype == RecordType::OPT {
                if query.edns.is_some() {
                    return Err(err(ParseErrorKind::DuplicateOpt));
                }
                if !rr.root_owner {
                    return Err(err(ParseErrorKind::MisplacedOpt));
                }
                // Options: code (2), length (2), data; they must tile the RDATA.
                let mut opt = rr.rdata_start;
                while opt < rr.end {
                    let len = msg.get(opt + 2..opt + 4).ok_or(err(ParseErrorKind::BadOptions))?;
                    opt += 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
                }
                if opt != rr.end {
                    return Err(err(ParseErrorKind::BadOptions));
                }
                query.edns = Some(Edns {
                    udp_payload_size: rr.class,
                    version: (rr.ttl >> 16) as u8,
                    dnssec_ok: rr.ttl & 0x8000 != 0,
                });
            }
            pos = rr.end;
        }
        Ok(query)
    }

    /// The largest UDP response this client accepts: 512 without EDNS, else its
    /// advertised payload size but at least 512 (RFC 6891 §6.2.5).
    pub fn max_udp_response_len(&self) -> usize {
        match self.edns {
            None => MIN_UDP_PAYLOAD,
            Some(edns) => usize::from(edns.udp_payload_size).max(MIN_UDP_PAYLOAD),
        }
    }
}

/// The fixed part of a resource record, located in a message.
pub(crate) struct RrHeader {
    pub(crate) rtype: RecordType,
    pub(crate) class: u16,
    pub(crate) ttl: u32,
    pub(crate) root_owner: bool,
    pub(crate) rdata_start: usize,
    /// One past the end of the RDATA.
    pub(crate) end: usize,
}

/// Reads the owner and fixed fields of the record at `pos` and checks that its
/// RDATA is inside the message.
pub(crate) fn read_rr_header(msg: &[u8], pos: usize) -> Result<RrHeader, ParseErrorKind> {
    let root_owner = msg.get(pos) == Some(&0);
    let pos = skip_name(msg, pos)?;
    let f = msg.get(pos..pos + 10).ok_or(ParseErrorKind::Truncated)?;
    let rdlen = usize::from(u16::from_be_bytes([f[8], f[9]]));
    let rdata_start = pos + 10;
    let end = rdata_start + rdlen;
    if end > msg.len() {
        return Err(ParseErrorKind::Truncated);
    }
    Ok(RrHeader {
        rtype: RecordType(u16::from_be_bytes([f[0], f[1]])),
        class: u16::from_be_bytes([f[2], f[3]]),
        ttl: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
        root_owner,
        rdata_start,
        end,
    })
}

/// Skips a possibly compressed name without decompressing it, returning the
/// position after it. Checks the label types; pointer targets are not followed.
pub(crate) fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, ParseErrorKind> {
    loop {
        let b = *msg.get(pos).ok_or(ParseErrorKind::Truncated)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Ok(pos + 1),
            0x00 => pos += 1 + usize::from(b),
            0xc0 => {
                msg.get(pos + 1).ok_or(ParseErrorKind::Truncated)?;
                return Ok(pos + 2);
            }
            _ => return Err(ParseErrorKind::BadLabelType),
        }
    }
}

/// Reads a possibly compressed name at `pos`: the name and the position after it
/// in the message (after the first pointer, if any).
///
/// A pointer must point before itself and past the header, so a chain of pointers
/// always moves backwards; a loop through labels makes the name grow, and stops at
/// 255 octets. At most 128 pointers are followed in any case.
pub(crate) fn read_name(msg: &[u8], mut pos: usize) -> Result<(NameBuf, usize), ParseErrorKind> {
    let mut out = [0u8; MAX_NAME_LEN];
    let mut len = 0usize;
    let mut end = None;
    let mut hops = 0;
    loop {
        let b = *msg.get(pos).ok_or(ParseErrorKind::Truncated)?;
        match b & 0xc0 {
            0x00 => {
                let label_len = usize::from(b);
                if label_len == 0 {
                    // The root label; `len + 1 <= 255` holds from the check below.
                    out[len] = 0;
                    len += 1;
                    let next = end.unwrap_or(pos + 1);
                    return Ok((NameBuf::from_checked_parts(len, out), next));
                }
                debug_assert!(label_len <= MAX_LABEL_LEN);
                // This label plus the root label still to come must fit.
                if len + 1 + label_len + 1 > MAX_NAME_LEN {
                    return Err(ParseErrorKind::NameTooLong);
                }
                let label = msg.get(pos + 1..pos + 1 + label_len).ok_or(ParseErrorKind::Truncated)?;
                out[len] = b;
                out[len + 1..len + 1 + label_len].copy_from_slice(label);
                len += 1 + label_len;
                pos += 1 + label_len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(ParseErrorKind::Truncated)?;
                let target = (usize::from(b & 0x3f) << 8) | usize::from(low);
                if target >= pos || target < HEADER_LEN {
                    return Err(ParseErrorKind::BadPointer);
                }
                hops += 1;
                if hops > 128 {
                    return Err(ParseErrorKind::BadPointer);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(ParseErrorKind::BadLabelType),
        }
    }
}
