//! SPDY/3.1 frame encoding and decoding.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::compress::{HeaderCompressor, HeaderDecompressor};
use super::SpdyError;

/// FIN flag on DATA, SYN_STREAM, SYN_REPLY and HEADERS frames.
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL flag on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status: PROTOCOL_ERROR.
pub const RST_PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: INVALID_STREAM.
pub const RST_INVALID_STREAM: u32 = 2;
/// RST_STREAM status: REFUSED_STREAM.
pub const RST_REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: CANCEL.
pub const RST_CANCEL: u32 = 5;

/// SETTINGS id of SETTINGS_INITIAL_WINDOW_SIZE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

const VERSION: u16 = 3;
const MAX_LENGTH: usize = (1 << 24) - 1;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Header names (lower case) and values; a name may repeat.
pub type Headers = Vec<(String, String)>;

/// First value of header `name` (names compare case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream { stream_id: u32, associated_id: u32, priority: u8, flags: u8, headers: Headers },
    /// Accepts a stream opened by the peer.
    SynReply { stream_id: u32, flags: u8, headers: Headers },
    /// Aborts a stream.
    RstStream { stream_id: u32, status: u32 },
    /// Session settings: (flags, id, value) entries.
    Settings { flags: u8, entries: Vec<(u8, u32, u32)> },
    /// Liveness check, echoed by the receiver when it did not originate it.
    Ping { id: u32 },
    /// The sender will accept no new streams.
    GoAway { last_good_stream_id: u32, status: u32 },
    /// Extra headers for a stream.
    Headers { stream_id: u32, flags: u8, headers: Headers },
    /// Grants the peer more send window on a stream (0 = session).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream payload.
    Data { stream_id: u32, flags: u8, data: Bytes },
    /// A control frame type this implementation ignores (header blocks in it are not touched).
    Unknown { kind: u16 },
}

/// Encodes a header block (uncompressed form): count, then length-prefixed names and values.
pub fn encode_header_block(headers: &Headers) -> Vec<u8> {
    // Repeated names are joined with NUL, as SPDY requires each name once per block.
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        match merged.iter_mut().find(|(mk, _)| *mk == k) {
            Some((_, mv)) => {
                mv.push('\0');
                mv.push_str(v);
            }
            None => merged.push((k, v.clone())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (k, v) in &merged {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes an uncompressed header block; NUL-separated values become repeated entries.
pub fn decode_header_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let mut cur = Cursor { buf: block, pos: 0 };
    let count = cur.u32()? as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = cur.string()?;
        let value = cur.string()?;
        if name.is_empty() {
            return Err(SpdyError::Malformed("empty header name".into()));
        }
        for part in value.split('\0') {
            headers.push((name.to_ascii_lowercase(), part.to_string()));
        }
    }
    Ok(headers)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SpdyError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| SpdyError::Malformed("truncated header block".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, SpdyError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, SpdyError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| SpdyError::Malformed("header is not UTF-8".into()))
    }
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_LENGTH {
        return Err(SpdyError::Malformed("frame too large".into()));
    }
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Ok(())
}

fn id31(id: u32) -> [u8; 4] {
    (id & 0x7fff_ffff).to_be_bytes()
}

/// Appends the wire form of `frame` to `out`, compressing header blocks with `comp`.
pub fn encode(frame: &Frame, comp: &mut HeaderCompressor, out: &mut Vec<u8>) -> Result<(), SpdyError> {
    match frame {
        Frame::SynStream { stream_id, associated_id, priority, flags, headers } => {
            let mut p = Vec::new();
            p.extend_from_slice(&id31(*stream_id));
            p.extend_from_slice(&id31(*associated_id));
            p.push((priority & 0x7) << 5);
            p.push(0);
            p.extend_from_slice(&comp.compress(&encode_header_block(headers))?);
            control(out, TYPE_SYN_STREAM, *flags, &p)
        }
        Frame::SynReply { stream_id, flags, headers } | Frame::Headers { stream_id, flags, headers } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) { TYPE_SYN_REPLY } else { TYPE_HEADERS };
            let mut p = id31(*stream_id).to_vec();
            p.extend_from_slice(&comp.compress(&encode_header_block(headers))?);
            control(out, kind, *flags, &p)
        }
        Frame::RstStream { stream_id, status } => {
            let mut p = id31(*stream_id).to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(out, TYPE_RST_STREAM, 0, &p)
        }
        Frame::Settings { flags, entries } => {
            let mut p = (entries.len() as u32).to_be_bytes().to_vec();
            for (f, id, value) in entries {
                p.push(*f);
                p.extend_from_slice(&id.to_be_bytes()[1..]);
                p.extend_from_slice(&value.to_be_bytes());
            }
            control(out, TYPE_SETTINGS, *flags, &p)
        }
        Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
        Frame::GoAway { last_good_stream_id, status } => {
            let mut p = id31(*last_good_stream_id).to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(out, TYPE_GOAWAY, 0, &p)
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut p = id31(*stream_id).to_vec();
            p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
            control(out, TYPE_WINDOW_UPDATE, 0, &p)
        }
        Frame::Data { stream_id, flags, data } => {
            if data.len() > MAX_LENGTH {
                return Err(SpdyError::Malformed("data frame too large".into()));
            }
            out.extend_from_slice(&id31(*stream_id));
            out.push(*flags);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            Ok(())
        }
        Frame::Unknown { kind } => {
            Err(SpdyError::Malformed(format!("cannot encode unknown frame type {kind}")))
        }
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    decomp: &mut HeaderDecompressor,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(SpdyError::Malformed("connection closed inside a frame header".into()));
        }
        got += n;
    }
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    decode(head, payload, decomp).map(Some)
}

/// Decodes a frame from its 8-byte header and payload.
pub fn decode(head: [u8; 8], payload: Vec<u8>, decomp: &mut HeaderDecompressor) -> Result<Frame, SpdyError> {
    let flags = head[4];
    if head[0] & 0x80 == 0 {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        return Ok(Frame::Data { stream_id, flags, data: Bytes::from(payload) });
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(SpdyError::UnsupportedVersion(version));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let mut cur = Cursor { buf: &payload, pos: 0 };
    let frame = match kind {
        TYPE_SYN_STREAM => {
            let stream_id = cur.u32()? & 0x7fff_ffff;
            let associated_id = cur.u32()? & 0x7fff_ffff;
            let prio = cur.take(2)?;
            let priority = prio[0] >> 5;
            let headers = decode_header_block(&decomp.decompress(&payload[cur.pos..])?)?;
            Frame::SynStream { stream_id, associated_id, priority, flags, headers }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let stream_id = cur.u32()? & 0x7fff_ffff;
            let headers = decode_header_block(&decomp.decompress(&payload[cur.pos..])?)?;
            if kind == TYPE_SYN_REPLY {
                Frame::SynReply { stream_id, flags, headers }
            } else {
                Frame::Headers { stream_id, flags, headers }
            }
        }
        TYPE_RST_STREAM => Frame::RstStream { stream_id: cur.u32()? & 0x7fff_ffff, status: cur.u32()? },
        TYPE_SETTINGS => {
            let n = cur.u32()? as usize;
            let mut entries = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                let raw = cur.u32()?;
                entries.push(((raw >> 24) as u8, raw & 0x00ff_ffff, cur.u32()?));
            }
            Frame::Settings { flags, entries }
        }
        TYPE_PING => Frame::Ping { id: cur.u32()? },
        TYPE_GOAWAY => {
            let last_good_stream_id = cur.u32()? & 0x7fff_ffff;
            // SPDY/2 peers omitted the status; tolerate its absence.
            let status = if payload.len() >= 8 { cur.u32()? } else { 0 };
            Frame::GoAway { last_good_stream_id, status }
        }
        TYPE_WINDOW_UPDATE => {
            Frame::WindowUpdate { stream_id: cur.u32()? & 0x7fff_ffff, delta: cur.u32()? & 0x7fff_ffff }
        }
        other => Frame::Unknown { kind: other },
    };
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(frames: Vec<Frame>) {
        let mut comp = HeaderCompressor::new().unwrap();
        let mut wire = Vec::new();
        for f in &frames {
            encode(f, &mut comp, &mut wire).unwrap();
        }
        let mut decomp = HeaderDecompressor::default();
        let mut r = &wire[..];
        for f in frames {
            assert_eq!(read_frame(&mut r, &mut decomp).await.unwrap(), Some(f));
        }
        assert_eq!(read_frame(&mut r, &mut decomp).await.unwrap(), None);
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn all_frame_types_round_trip() {
        round_trip(vec![
            Frame::SynStream {
                stream_id: 1,
                associated_id: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "error"), ("port", "80")]),
            },
            Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] },
            Frame::Headers { stream_id: 3, flags: FLAG_FIN, headers: h(&[("a", "1"), ("a", "2")]) },
            Frame::RstStream { stream_id: 5, status: RST_CANCEL },
            Frame::Settings { flags: 0, entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 65536)] },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 9, status: 0 },
            Frame::WindowUpdate { stream_id: 1, delta: 4096 },
            Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::Data { stream_id: 3, flags: 0, data: Bytes::new() },
        ])
        .await;
    }

    #[test]
    fn control_and_data_headers_have_spec_layout() {
        let mut comp = HeaderCompressor::new().unwrap();
        let mut wire = Vec::new();
        encode(&Frame::Ping { id: 0x01020304 }, &mut comp, &mut wire).unwrap();
        assert_eq!(wire, [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4]);
        wire.clear();
        let data = Frame::Data { stream_id: 5, flags: FLAG_FIN, data: Bytes::from_static(b"ab") };
        encode(&data, &mut comp, &mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 0x01, 0, 0, 2, b'a', b'b']);
        wire.clear();
        encode(&Frame::WindowUpdate { stream_id: 3, delta: 0x10000 }, &mut comp, &mut wire).unwrap();
        assert_eq!(wire, [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 3, 0, 1, 0, 0]);
    }

    #[test]
    fn header_block_layout_and_multi_values() {
        let block = encode_header_block(&h(&[("StreamType", "data"), ("x", "1"), ("x", "2")]));
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, 10];
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(b"data");
        want.extend_from_slice(&[0, 0, 0, 1, b'x', 0, 0, 0, 3, b'1', 0, b'2']);
        assert_eq!(block, want);
        let back = decode_header_block(&block).unwrap();
        assert_eq!(back, h(&[("streamtype", "data"), ("x", "1"), ("x", "2")]));
        assert!(decode_header_block(&block[..block.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn decodes_syn_stream_compressed_by_independent_zlib() {
        let block = include_str!("testdata/zlib_block1.hex").trim();
        let block: Vec<u8> =
            (0..block.len()).step_by(2).map(|i| u8::from_str_radix(&block[i..i + 2], 16).unwrap()).collect();
        let mut wire = vec![0x80, 3, 0, 1, 0];
        wire.extend_from_slice(&((10 + block.len()) as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(&block);
        let mut decomp = HeaderDecompressor::default();
        let frame = read_frame(&mut &wire[..], &mut decomp).await.unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::SynStream {
                stream_id: 1,
                associated_id: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error")])
            }
        );
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let mut decomp = HeaderDecompressor::default();
        let wire = [0x80u8, 3, 0, 6, 0, 0, 0, 4, 1];
        assert!(read_frame(&mut &wire[..], &mut decomp).await.is_err());
    }
}
