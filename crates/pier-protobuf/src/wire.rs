//! The protobuf wire format: just enough to read and write the messages Kubernetes uses
//! (<https://protobuf.dev/programming-guides/encoding/>).

use crate::error::{ProtobufError, WireType};

/// Reads one message's bytes. Errors name `path`, the message being read.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    path: &'a str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], path: &'a str) -> Self {
        Reader { buf, path }
    }

    fn truncated(&self) -> ProtobufError {
        ProtobufError::Truncated { path: self.path.to_string() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or_else(|| self.truncated())?;
            self.buf = rest;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::InvalidVarint { path: self.path.to_string() })
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    pub(crate) fn key(&mut self) -> Result<Option<(u32, WireType)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let wire_type = (key & 7) as u8;
        // Groups (3, 4) are proto2 relics no Kubernetes message uses.
        let valid_type = matches!(wire_type, 0 | 1 | 2 | 5);
        match u32::try_from(field) {
            Ok(number) if number != 0 && valid_type => Ok(Some((number, WireType(wire_type)))),
            _ => Err(ProtobufError::InvalidKey { path: self.path.to_string(), field, wire_type }),
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        if len > self.buf.len() {
            return Err(self.truncated());
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(value)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtobufError> {
        if self.buf.len() < N {
            return Err(self.truncated());
        }
        let (value, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(value);
        Ok(out)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, ProtobufError> {
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    /// Skips a field this crate does not know, as protobuf decoders do with unknown fields.
    pub(crate) fn skip(&mut self, wire_type: WireType) -> Result<(), ProtobufError> {
        match wire_type {
            WireType::VARINT => self.varint().map(drop),
            WireType::FIXED64 => self.fixed::<8>().map(drop),
            WireType::LEN => self.bytes().map(drop),
            _ => self.fixed::<4>().map(drop),
        }
    }
}

/// Appends protobuf fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: WireType) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type.0));
    }

    pub(crate) fn varint_field(&mut self, field: u32, value: u64) {
        self.key(field, WireType::VARINT);
        self.varint(value);
    }

    pub(crate) fn fixed64_field(&mut self, field: u32, value: u64) {
        self.key(field, WireType::FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn bytes_field(&mut self, field: u32, value: &[u8]) {
        self.key(field, WireType::LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_rejects_overlong() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::default();
            w.varint(value);
            assert_eq!(Reader::new(&w.buf, "x").varint(), Ok(value));
        }
        let overlong = [0xffu8; 11];
        assert!(matches!(Reader::new(&overlong, "x").varint(), Err(ProtobufError::InvalidVarint { .. })));
        assert!(matches!(Reader::new(&[0x80], "x").varint(), Err(ProtobufError::Truncated { .. })));
    }
}
