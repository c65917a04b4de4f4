//! Reading an upstream server's answer, to copy its records into our response
//! (an ExternalName target resolved upstream, or an autopath candidate).

use super::message::{read_name, read_rr_header, skip_name, Header, ParseErrorKind};
use super::name::NameBuf;
use super::{Class, RecordType, HEADER_LEN};

/// An upstream answer that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("read upstream dns answer: {0:?}")]
pub struct UpstreamError(pub ParseErrorKind);

/// An upstream response, checked as far as its header and question.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamResponse<'a> {
    msg: &'a [u8],
    header: Header,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
    answers_start: usize,
}

impl<'a> UpstreamResponse<'a> {
    /// Reads the header and skips the question section.
    ///
    /// # Errors
    ///
    /// If the header is short or a question runs past the end.
    pub fn parse(msg: &'a [u8]) -> Result<UpstreamResponse<'a>, UpstreamError> {
        let header = Header::parse(msg).ok_or(UpstreamError(ParseErrorKind::ShortHeader))?;
        if !header.response {
            return Err(UpstreamError(ParseErrorKind::NotAQuery));
        }
        let count = |i: usize| u16::from_be_bytes([msg[4 + 2 * i], msg[5 + 2 * i]]);
        let (qdcount, ancount, nscount, arcount) = (count(0), count(1), count(2), count(3));
        let mut pos = HEADER_LEN;
        for _ in 0..qdcount {
            pos = skip_name(msg, pos).map_err(UpstreamError)? + 4;
            if pos > msg.len() {
                return Err(UpstreamError(ParseErrorKind::Truncated));
            }
        }
        Ok(UpstreamResponse { msg, header, qdcount, ancount, nscount, arcount, answers_start: pos })
    }

    /// The question, when there is exactly one (what a forwarder checks its reply
    /// against, with the id).
    pub fn question(&self) -> Option<(NameBuf, RecordType, Class)> {
        if self.qdcount != 1 {
            return None;
        }
        let (name, pos) = read_name(self.msg, HEADER_LEN).ok()?;
        let fixed = self.msg.get(pos..pos + 4)?;
        Some((
            name,
            RecordType(u16::from_be_bytes([fixed[0], fixed[1]])),
            Class(u16::from_be_bytes([fixed[2], fixed[3]])),
        ))
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The records of the answer section, in order.
    pub fn answers(&self) -> UpstreamRecords<'a> {
        UpstreamRecords { msg: self.msg, pos: self.answers_start, left: self.ancount }
    }

    /// The records of the authority section (the SOA of a negative answer, RFC
    /// 2308 §3). Finding them reads past the answer section; a malformed record
    /// there yields one error.
    pub fn authority(&self) -> UpstreamRecords<'a> {
        self.section(u32::from(self.ancount), self.nscount)
    }

    /// The records of the additional section, the OPT record included (callers
    /// skip [`RecordType::OPT`]).
    pub fn additional(&self) -> UpstreamRecords<'a> {
        self.section(u32::from(self.ancount) + u32::from(self.nscount), self.arcount)
    }

    /// The `count` records after the first `skip` records.
    fn section(&self, skip: u32, count: u16) -> UpstreamRecords<'a> {
        let mut pos = self.answers_start;
        for _ in 0..skip {
            match read_rr_header(self.msg, pos) {
                Ok(rr) => pos = rr.end,
                // Reading at the end fails with `Truncated`: one error, then nothing.
                Err(_) => return UpstreamRecords { msg: self.msg, pos: self.msg.len(), left: count.min(1) },
            }
        }
        UpstreamRecords { msg: self.msg, pos, left: count }
    }
}

/// The answer records of an [`UpstreamResponse`]; stops at the first malformed
/// record (yielding its error).
pub struct UpstreamRecords<'a> {
    msg: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for UpstreamRecords<'a> {
    type Item = Result<UpstreamRecord<'a>, UpstreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = read_record(self.msg, self.pos);
        match &record {
            Ok((_, end)) => self.pos = *end,
            Err(_) => self.left = 0,
        }
        Some(record.map(|(r, _)| r).map_err(UpstreamError))
    }
}

/// One record from an upstream answer, its names decompressed.
#[derive(Debug, Clone)]
pub struct UpstreamRecord<'a> {
    /// The owner name.
    pub name: NameBuf,
    /// The type.
    pub rtype: RecordType,
    /// The class.
    pub class: Class,
    /// The TTL.
    pub ttl: u32,
    /// The RDATA.
    pub data: RecordData<'a>,
}

/// RDATA of an upstream record. Types that may carry compressed names (RFC 3597
/// §4) are decoded so the names can be written again; all others are opaque.
// Names are inline (256 octets each) so reading an upstream answer allocates
// nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RecordData<'a> {
    /// Opaque RDATA, copied as is.
    Raw(&'a [u8]),
    /// One name: NS, CNAME, PTR, DNAME, and the obsolete MD, MF, MB, MG, MR.
    Name(NameBuf),
    /// MX.
    Mx {
        /// PREFERENCE.
        preference: u16,
        /// EXCHANGE.
        exchange: NameBuf,
    },
    /// SRV (some servers compress its target although RFC 2782 says not to).
    Srv {
        /// PRIORITY.
        priority: u16,
        /// WEIGHT.
        weight: u16,
        /// PORT.
        port: u16,
        /// TARGET.
        target: NameBuf,
    },
    /// SOA.
    Soa {
        /// MNAME.
        mname: NameBuf,
        /// RNAME.
        rname: NameBuf,
        /// SERIAL, REFRESH, RETRY, EXPIRE and MINIMUM as on the wire.
        fixed: [u8; 20],
    },
}

fn read_record(msg: &[u8], pos: usize) -> Result<(UpstreamRecord<'_>, usize), ParseErrorKind> {
    let (name, _) = read_name(msg, pos)?;
    let rr = read_rr_header(msg, pos)?;
    let (start, end) = (rr.rdata_start, rr.end);
    let rdata = &msg[start..end];
    // A name inside RDATA must end inside it.
    let name_at = |at: usize| -> Result<(NameBuf, usize), ParseErrorKind> {
        let (name, next) = read_name(msg, at)?;
        if next > end {
            return Err(ParseErrorKind::Truncated);
        }
        Ok((name, next))
    };
    let u16_at = |at: usize| -> Result<u16, ParseErrorKind> {
        let b = msg.get(at..at + 2).filter(|_| at + 2 <= end).ok_or(ParseErrorKind::Truncated)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    };
    let data = match rr.rtype.0 {
        2..=5 | 7..=9 | 12 | 39 => RecordData::Name(name_at(start)?.0),
        15 => RecordData::Mx { preference: u16_at(start)?, exchange: name_at(start + 2)?.0 },
        33 => RecordData::Srv {
            priority: u16_at(start)?,
            weight: u16_at(start + 2)?,
            port: u16_at(start + 4)?,
            target: name_at(start + 6)?.0,
        },
        6 => {
            let (mname, next) = name_at(start)?;
            let (rname, next) = name_at(next)?;
            let fixed: [u8; 20] = msg
                .get(next..next + 20)
                .filter(|_| next + 20 == end)
                .and_then(|b| b.try_into().ok())
                .ok_or(ParseErrorKind::Truncated)?;
            RecordData::Soa { mname, rname, fixed }
        }
        _ => RecordData::Raw(rdata),
    };
    Ok((UpstreamRecord { name, rtype: rr.rtype, class: Class(rr.class), ttl: rr.ttl, data }, end))
}
