//! Building netfilter netlink messages: a 16-byte `nlmsghdr` in host byte order, a
//! 4-byte `nfgenmsg` (family, version 0, resource id), then attributes, each a
//! 4-byte header (length, type) and a payload padded to 4 bytes.

/// Marks an attribute whose payload is more attributes.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;

/// A message under construction: nested attributes are opened with [`Msg::begin`] and
/// closed with [`Msg::end`], which writes their length.
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A message of `kind` for address family `family`, resource id 0.
    pub(crate) fn new(kind: u16, flags: u16, seq: u32, family: u8) -> Self {
        Self::with_res_id(kind, flags, seq, family, 0)
    }

    /// As [`Msg::new`] with a resource id (big-endian on the wire): batch
    /// delimiters name the subsystem there.
    pub(crate) fn with_res_id(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills ours in
        buf.extend_from_slice(&[family, 0]); // nfgenmsg: family, version 0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    pub(crate) fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, kind: u16, value: &str) {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.attr(kind, &payload);
    }

    /// A big-endian 32-bit attribute, as nf_tables wants its numbers.
    pub(crate) fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub(crate) fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(crate) fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}
