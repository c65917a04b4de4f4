//! SPDY/3 header block (de)compression: one zlib context per direction for the whole session,
//! primed with the SPDY dictionary, each block ending on a sync flush.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::dictionary;
use super::SpdyError;

/// Upper bound on one decompressed header block, so a tiny frame cannot inflate without limit.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Compresses outgoing header blocks.
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    /// A fresh compression context with the dictionary installed.
    pub fn new() -> Result<Self, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary()).map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(HeaderCompressor { z })
    }

    /// Compresses `block` and sync-flushes so the peer can decode it without later input.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = (self.z.total_in() - start_in) as usize;
            // A sync flush is complete once all input is taken and zlib left spare room.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses incoming header blocks.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        HeaderDecompressor { z: Decompress::new(true) }
    }
}

impl HeaderDecompressor {
    /// Inflates one compressed header block (continuing the session's stream).
    pub fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            match self.z.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Compression("header stream ended unexpectedly".into()))
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Compression(format!("setting dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Malformed("header block too large".into()));
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_one_context_across_blocks() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::default();
        for i in 0..50 {
            let block = format!("block {i} streamtype data port 8080 requestid {i}").repeat(i + 1);
            let packed = c.compress(block.as_bytes()).unwrap();
            assert_eq!(d.decompress(&packed).unwrap(), block.as_bytes());
        }
    }

    #[test]
    fn decompresses_block_from_independent_zlib() {
        // Produced by CPython's zlib (zlib.compressobj(zdict=<SPDY/3 dictionary>)), compressing the
        // header block {"streamtype": "error"} and then {"streamtype": "data", "port": "80"}, each
        // followed by Z_SYNC_FLUSH.
        let first = hex(include_str!("testdata/zlib_block1.hex"));
        let second = hex(include_str!("testdata/zlib_block2.hex"));
        let mut d = HeaderDecompressor::default();
        let mut want = Vec::new();
        want.extend_from_slice(&1u32.to_be_bytes());
        push(&mut want, "streamtype");
        push(&mut want, "error");
        assert_eq!(d.decompress(&first).unwrap(), want);
        let mut want = Vec::new();
        want.extend_from_slice(&2u32.to_be_bytes());
        push(&mut want, "streamtype");
        push(&mut want, "data");
        push(&mut want, "port");
        push(&mut want, "80");
        assert_eq!(d.decompress(&second).unwrap(), want);
    }

    #[test]
    fn rejects_garbage() {
        let mut d = HeaderDecompressor::default();
        assert!(d.decompress(b"\x00\x01garbage").is_err());
    }

    fn push(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn hex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
