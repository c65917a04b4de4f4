//! DNS messages in wire form (RFC 1035 §4, EDNS0 from RFC 6891), written by hand
//! for the server's hot path: [`Query::parse`] reads a query into a fixed-size
//! value without allocating, and [`MessageWriter`] encodes a response into a
//! caller-owned `Vec<u8>` that is reused from query to query, with name
//! compression and truncation to the client's limit.
//!
//! Also here, for the forwarder: [`encode_query`], [`set_id`] to rewrite the id of
//! an upstream answer, and [`UpstreamResponse`] to read the records of an upstream
//! answer so they can be copied into one of our responses.
//!
//! Nothing here panics on any input: every read is bounds-checked, and a malformed
//! query is a [`ParseError`] that says whether and how to answer it.

mod message;
mod name;
mod upstream;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

pub use message::{Edns, Header, ParseError, ParseErrorKind, Query};
pub use name::{Labels, Name, NameBuf, NameError, NameRef, MAX_LABEL_LEN, MAX_NAME_LEN};
pub use upstream::{RecordData, UpstreamError, UpstreamRecord, UpstreamRecords, UpstreamResponse};
pub use writer::{encode_query, set_id, EdnsResponse, MessageWriter, Owner, Section, Written};

/// The largest message over UDP without EDNS (RFC 1035 §4.2.1), and the least a
/// client advertising EDNS is assumed to accept (RFC 6891 §6.2.5).
pub const MIN_UDP_PAYLOAD: usize = 512;
/// The largest message over TCP (its length prefix is 16 bits): what TCP callers
/// pass as the limit.
pub const MAX_TCP_MESSAGE: usize = 65_535;
/// The UDP payload size this server advertises in its OPT records: 1232 octets,
/// the DNS Flag Day 2020 recommendation, which avoids IP fragmentation.
pub const DEFAULT_EDNS_PAYLOAD: u16 = 1232;
/// The size of the OPT record this server writes (root name, no options).
pub const OPT_RECORD_LEN: usize = 11;
/// The length of the fixed message header.
pub const HEADER_LEN: usize = 12;

/// A record type (RR TYPE or QTYPE), with the ones this crate uses named.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u16);

impl RecordType {
    /// An IPv4 address (RFC 1035).
    pub const A: RecordType = RecordType(1);
    /// An authoritative name server (RFC 1035).
    pub const NS: RecordType = RecordType(2);
    /// An alias (RFC 1035).
    pub const CNAME: RecordType = RecordType(5);
    /// The start of a zone of authority (RFC 1035).
    pub const SOA: RecordType = RecordType(6);
    /// A domain name pointer (RFC 1035).
    pub const PTR: RecordType = RecordType(12);
    /// Mail exchange (RFC 1035).
    pub const MX: RecordType = RecordType(15);
    /// Text strings (RFC 1035).
    pub const TXT: RecordType = RecordType(16);
    /// An IPv6 address (RFC 3596).
    pub const AAAA: RecordType = RecordType(28);
    /// A service location (RFC 2782).
    pub const SRV: RecordType = RecordType(33);
    /// The EDNS0 pseudo-record (RFC 6891).
    pub const OPT: RecordType = RecordType(41);
    /// Incremental zone transfer (RFC 1995).
    pub const IXFR: RecordType = RecordType(251);
    /// Full zone transfer (RFC 5936).
    pub const AXFR: RecordType = RecordType(252);
    /// Any type (RFC 1035 `*`; RFC 8482).
    pub const ANY: RecordType = RecordType(255);
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            RecordType::A => "A",
            RecordType::NS => "NS",
            RecordType::CNAME => "CNAME",
            RecordType::SOA => "SOA",
            RecordType::PTR => "PTR",
            RecordType::MX => "MX",
            RecordType::TXT => "TXT",
            RecordType::AAAA => "AAAA",
            RecordType::SRV => "SRV",
            RecordType::OPT => "OPT",
            RecordType::IXFR => "IXFR",
            RecordType::AXFR => "AXFR",
            RecordType::ANY => "ANY",
            RecordType(other) => return write!(f, "TYPE{other}"),
        };
        f.write_str(name)
    }
}

/// A record class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class(pub u16);

impl Class {
    /// The Internet.
    pub const IN: Class = Class(1);
    /// Chaos (`version.bind` and friends).
    pub const CH: Class = Class(3);
    /// Any class (QCLASS only).
    pub const ANY: Class = Class(255);
}

/// The kind of a message (header OPCODE, 4 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    /// A standard query, the only kind this server answers.
    pub const QUERY: Opcode = Opcode(0);
    /// A zone change notification (RFC 1996).
    pub const NOTIFY: Opcode = Opcode(4);
    /// A dynamic update (RFC 2136).
    pub const UPDATE: Opcode = Opcode(5);
}

/// A response code, with EDNS's extended codes (12 bits: the low 4 in the header,
/// the high 8 in the OPT record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// The query was malformed.
    pub const FORMERR: Rcode = Rcode(1);
    /// The server could not answer (here: not yet synced with the API server).
    pub const SERVFAIL: Rcode = Rcode(2);
    /// The name does not exist.
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// The kind of query is not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// The server will not answer this query (zone transfers).
    pub const REFUSED: Rcode = Rcode(5);
    /// The client's EDNS version is not supported (RFC 6891 §6.1.3).
    pub const BADVERS: Rcode = Rcode(16);

    /// The 4 bits that go in the header.
    pub fn low_bits(self) -> u8 {
        (self.0 & 0x0f) as u8
    }

    /// The 8 bits that go in the OPT record's TTL field.
    pub fn high_bits(self) -> u8 {
        ((self.0 >> 4) & 0xff) as u8
    }
}
