//! Writing messages: [`MessageWriter`] with name compression and truncation.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::message::Header;
use super::name::NameRef;
use super::upstream::{RecordData, UpstreamRecord};
use super::{Class, RecordType, HEADER_LEN, OPT_RECORD_LEN};

/// How many earlier label positions the compressor remembers. The question's
/// labels come first, so every in-zone name finds its suffix even when a large
/// answer fills the table.
const COMPRESSION_SLOTS: usize = 64;
/// Compression pointers hold 14 bits.
const MAX_POINTER: usize = 0x3fff;

/// The section records are being written to. Sections only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// The answer section.
    Answer,
    /// The authority section.
    Authority,
    /// The additional section.
    Additional,
}

/// The owner name of a record being written.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The question's name, exactly as the client sent it: written as a pointer
    /// to the question (2 octets).
    Question,
    /// Any other name, compressed against earlier names.
    Name(NameRef<'a>),
}

/// The OPT record of a response (RFC 6891 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsResponse {
    /// The UDP payload size this server accepts.
    pub udp_payload_size: u16,
    /// The high 8 bits of the response code (1 for BADVERS).
    pub extended_rcode: u8,
    /// The EDNS version this server speaks: 0.
    pub version: u8,
    /// DO, copied from the query (RFC 3225 §3).
    pub dnssec_ok: bool,
}

/// What [`MessageWriter::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The message's length (what was appended to the buffer).
    pub len: usize,
    /// The answer did not fit: TC is set and the answer, authority and additional
    /// sections (but the OPT record) were dropped.
    pub truncated: bool,
    /// The additional records (glue) did not fit and were dropped; TC is not set
    /// for that (RFC 2181 §9).
    pub dropped_additional: bool,
}

/// Writes one message into a `Vec<u8>` supplied by the caller, appending from its
/// current length (a TCP caller may have pushed a 2-octet length placeholder).
///
/// Write the question, then records section by section, then
/// [`finish`](Self::finish) with the size limit. Names are compressed against the question
/// and earlier names. Writing never fails; the limit is applied at the end, so a
/// response is built once and cut if it is too large.
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    header: Header,
    counts: [u16; 4],
    section: Section,
    /// Where the answer, authority and additional sections start (relative to
    /// `start`); set when the first record of a later section is written.
    answer_start: usize,
    additional_start: Option<usize>,
    names: [u16; COMPRESSION_SLOTS],
    names_len: usize,
    edns: Option<EdnsResponse>,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message with `header` (counts are filled in by `finish`).
    pub fn new(buf: &'b mut Vec<u8>, header: Header) -> MessageWriter<'b> {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        MessageWriter {
            buf,
            start,
            header,
            counts: [0; 4],
            section: Section::Answer,
            answer_start: HEADER_LEN,
            additional_start: None,
            names: [0; COMPRESSION_SLOTS],
            names_len: 0,
            edns: None,
        }
    }

    /// The header, to change flags or the rcode before `finish`.
    pub fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }

    /// Adds an OPT record at the end of the message.
    pub fn set_edns(&mut self, edns: Option<EdnsResponse>) {
        self.edns = edns;
    }

    /// Writes a question. Its name is written in full (never compressed) and is
    /// what [`Owner::Question`] points at: write exactly one question, first.
    pub fn question(&mut self, name: NameRef<'_>, qtype: RecordType, qclass: Class) {
        self.write_name(name, false);
        self.put_u16(qtype.0);
        self.put_u16(qclass.0);
        self.counts[0] += 1;
        self.answer_start = self.pos();
    }

    /// Moves on to `section`; records written after this go there.
    pub fn set_section(&mut self, section: Section) {
        debug_assert!(section >= self.section, "sections only move forward");
        if section == Section::Additional && self.additional_start.is_none() {
            self.additional_start = Some(self.pos());
        }
        self.section = section;
    }

    /// Writes an `A` record.
    pub fn a(&mut self, owner: Owner<'_>, ttl: u32, addr: Ipv4Addr) {
        let rd = self.rr_start(owner, RecordType::A, Class::IN, ttl);
        self.buf.extend_from_slice(&addr.octets());
        self.rr_end(rd);
    }

    /// Writes an `AAAA` record.
    pub fn aaaa(&mut self, owner: Owner<'_>, ttl: u32, addr: Ipv6Addr) {
        let rd = self.rr_start(owner, RecordType::AAAA, Class::IN, ttl);
        self.buf.extend_from_slice(&addr.octets());
        self.rr_end(rd);
    }

    /// Writes a `CNAME` record (the target is compressed).
    pub fn cname(&mut self, owner: Owner<'_>, ttl: u32, target: NameRef<'_>) {
        self.name_rr(owner, RecordType::CNAME, ttl, target);
    }

    /// Writes a `PTR` record (the target is compressed).
    pub fn ptr(&mut self, owner: Owner<'_>, ttl: u32, target: NameRef<'_>) {
        self.name_rr(owner, RecordType::PTR, ttl, target);
    }

    /// Writes an `NS` record (the target is compressed).
    pub fn ns(&mut self, owner: Owner<'_>, ttl: u32, target: NameRef<'_>) {
        self.name_rr(owner, RecordType::NS, ttl, target);
    }

    /// Writes an `SRV` record. The target is not compressed (RFC 2782).
    pub fn srv(
        &mut self,
        owner: Owner<'_>,
        ttl: u32,
        priority: u16,
        weight: u16,
        port: u16,
        target: NameRef<'_>,
    ) {
        let rd = self.rr_start(owner, RecordType::SRV, Class::IN, ttl);
        self.put_u16(priority);
        self.put_u16(weight);
        self.put_u16(port);
        self.write_name(target, false);
        self.rr_end(rd);
    }

    /// Writes a `TXT` record of one or more character-strings (each at most 255
    /// octets; longer ones are cut).
    pub fn txt(&mut self, owner: Owner<'_>, ttl: u32, strings: &[&[u8]]) {
        let rd = self.rr_start(owner, RecordType::TXT, Class::IN, ttl);
        for s in strings {
            let s = &s[..s.len().min(255)];
            self.buf.push(s.len() as u8);
            self.buf.extend_from_slice(s);
        }
        self.rr_end(rd);
    }

    /// Writes an `SOA` record (names compressed).
    #[allow(clippy::too_many_arguments)]
    pub fn soa(
        &mut self,
        owner: Owner<'_>,
        ttl: u32,
        mname: NameRef<'_>,
        rname: NameRef<'_>,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    ) {
        let rd = self.rr_start(owner, RecordType::SOA, Class::IN, ttl);
        self.write_name(mname, true);
        self.write_name(rname, true);
        for v in [serial, refresh, retry, expire, minimum] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self.rr_end(rd);
    }

    /// Copies a record read from an upstream answer ([`super::UpstreamResponse`]),
    /// with its names decompressed and, where RFC 3597 §4 allows, compressed again
    /// against this message.
    pub fn upstream_record(&mut self, record: &UpstreamRecord<'_>, ttl: u32) {
        let rd = self.rr_start(Owner::Name(record.name.as_name()), record.rtype, record.class, ttl);
        match &record.data {
            RecordData::Raw(bytes) => self.buf.extend_from_slice(bytes),
            RecordData::Name(name) => self.write_name(name.as_name(), true),
            RecordData::Mx { preference, exchange } => {
                self.put_u16(*preference);
                self.write_name(exchange.as_name(), true);
            }
            RecordData::Srv { priority, weight, port, target } => {
                self.put_u16(*priority);
                self.put_u16(*weight);
                self.put_u16(*port);
                self.write_name(target.as_name(), false);
            }
            RecordData::Soa { mname, rname, fixed } => {
                self.write_name(mname.as_name(), true);
                self.write_name(rname.as_name(), true);
                self.buf.extend_from_slice(fixed);
            }
        }
        self.rr_end(rd);
    }

    /// How long the message is so far.
    pub fn size(&self) -> usize {
        self.pos()
    }

    /// Whether any record (not the question) has been written.
    pub fn has_records(&self) -> bool {
        self.counts[1..].iter().any(|c| *c > 0)
    }

    /// Finishes the message within `max_len` octets (see [`super::Query::
    /// max_udp_response_len`]; TCP callers pass [`super::MAX_TCP_MESSAGE`]).
    ///
    /// If the message with its OPT record is too long, the additional records are
    /// dropped first; if it is still too long, every record is dropped and TC set,
    /// keeping the header, the question and the OPT record (RFC 1035 §4.2.1, RFC
    /// 2181 §9).
    pub fn finish(mut self, max_len: usize) -> Written {
        let opt_len = if self.edns.is_some() { OPT_RECORD_LEN } else { 0 };
        let mut written = Written { len: 0, truncated: false, dropped_additional: false };
        if self.pos() + opt_len > max_len {
            let before_additional = self.additional_start.unwrap_or(self.pos());
            if self.counts[3] > 0 && before_additional + opt_len <= max_len {
                self.buf.truncate(self.start + before_additional);
                self.counts[3] = 0;
                written.dropped_additional = true;
            } else {
                self.buf.truncate(self.start + self.answer_start);
                self.counts[1] = 0;
                self.counts[2] = 0;
                self.counts[3] = 0;
                self.header.truncated = true;
                written.truncated = true;
            }
        }
        if let Some(edns) = self.edns {
            self.buf.push(0);
            self.put_u16(RecordType::OPT.0);
            self.put_u16(edns.udp_payload_size);
            let ttl = (u32::from(edns.extended_rcode) << 24)
                | (u32::from(edns.version) << 16)
                | if edns.dnssec_ok { 0x8000 } else { 0 };
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.put_u16(0);
            self.counts[3] += 1;
        }
        let s = self.start;
        self.buf[s..s + 2].copy_from_slice(&self.header.id.to_be_bytes());
        self.buf[s + 2..s + 4].copy_from_slice(&self.header.flag_bytes());
        for (i, count) in self.counts.iter().enumerate() {
            self.buf[s + 4 + 2 * i..s + 6 + 2 * i].copy_from_slice(&count.to_be_bytes());
        }
        written.len = self.pos();
        written
    }

    fn pos(&self) -> usize {
        self.buf.len() - self.start
    }

    fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn name_rr(&mut self, owner: Owner<'_>, rtype: RecordType, ttl: u32, target: NameRef<'_>) {
        let rd = self.rr_start(owner, rtype, Class::IN, ttl);
        self.write_name(target, true);
        self.rr_end(rd);
    }

    /// Writes owner, type, class, TTL and a placeholder RDLENGTH; returns where
    /// the RDATA starts.
    fn rr_start(&mut self, owner: Owner<'_>, rtype: RecordType, class: Class, ttl: u32) -> usize {
        match owner {
            Owner::Question => self.put_u16(0xc000 | HEADER_LEN as u16),
            Owner::Name(name) => self.write_name(name, true),
        }
        self.put_u16(rtype.0);
        self.put_u16(class.0);
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.put_u16(0);
        let idx = match self.section {
            Section::Answer => 1,
            Section::Authority => 2,
            Section::Additional => 3,
        };
        self.counts[idx] = self.counts[idx].saturating_add(1);
        self.buf.len()
    }

    fn rr_end(&mut self, rdata_start: usize) {
        let len = (self.buf.len() - rdata_start) as u16;
        self.buf[rdata_start - 2..rdata_start].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes a name, pointing at the longest suffix already in the message when
    /// `compress` is set, and remembers where its new labels are so later names
    /// can point at them.
    fn write_name(&mut self, name: NameRef<'_>, compress: bool) {
        let wire = name.as_wire();
        let mut at = 0;
        loop {
            let len = usize::from(wire.get(at).copied().unwrap_or(0));
            if len == 0 {
                self.buf.push(0);
                return;
            }
            if compress {
                if let Some(target) = self.find_suffix(&wire[at..]) {
                    self.put_u16(0xc000 | target);
                    return;
                }
            }
            let pos = self.pos();
            if pos <= MAX_POINTER && self.names_len < COMPRESSION_SLOTS {
                self.names[self.names_len] = pos as u16;
                self.names_len += 1;
            }
            let end = (at + 1 + len).min(wire.len());
            self.buf.extend_from_slice(&wire[at..end]);
            at = end;
        }
    }

    /// An earlier position holding `suffix` (wire form, root label included),
    /// compared ignoring case.
    fn find_suffix(&self, suffix: &[u8]) -> Option<u16> {
        let msg = &self.buf[self.start..];
        self.names[..self.names_len].iter().copied().find(|&pos| names_equal(msg, usize::from(pos), suffix))
    }
}

/// Whether the (possibly compressed) name at `pos` in `msg` equals `wire`.
fn names_equal(msg: &[u8], mut pos: usize, wire: &[u8]) -> bool {
    let mut at = 0;
    // Pointers in our own output always point backwards; the bound is a guard.
    for _ in 0..256 {
        let Some(&b) = msg.get(pos) else { return false };
        if b & 0xc0 == 0xc0 {
            let Some(&low) = msg.get(pos + 1) else { return false };
            pos = (usize::from(b & 0x3f) << 8) | usize::from(low);
            continue;
        }
        let len = usize::from(b);
        if wire.get(at) != Some(&b) {
            return false;
        }
        if len == 0 {
            return true;
        }
        match (msg.get(pos + 1..pos + 1 + len), wire.get(at + 1..at + 1 + len)) {
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
        pos += 1 + len;
        at += 1 + len;
    }
    false
}

/// Encodes a query for `name` and `qtype` (class IN), for the forwarder: RD set,
/// and an OPT record advertising `edns_payload` when given. Appends to `buf`.
pub fn encode_query(
    buf: &mut Vec<u8>,
    id: u16,
    name: NameRef<'_>,
    qtype: RecordType,
    edns_payload: Option<u16>,
    dnssec_ok: bool,
) -> usize {
    let header = Header { id, recursion_desired: true, ..Header::default() };
    let mut w = MessageWriter::new(buf, header);
    w.question(name, qtype, Class::IN);
    w.set_edns(edns_payload.map(|size| EdnsResponse {
        udp_payload_size: size,
        extended_rcode: 0,
        version: 0,
        dnssec_ok,
    }));
    w.finish(usize::MAX).len
}

/// Rewrites the id of a message in place (an upstream answer, before it goes back
/// to the client under the client's id). Returns false if `msg` is shorter than
/// a header.
pub fn set_id(msg: &mut [u8], id: u16) -> bool {
    match msg.get_mut(..2) {
        Some(bytes) => {
            bytes.copy_from_slice(&id.to_be_bytes());
            true
        }
        None => false,
    }
}
