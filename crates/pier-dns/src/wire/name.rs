//! Domain names in wire form (RFC 1035 §3.1): a sequence of length-prefixed labels
//! ending with the empty root label, at most 255 octets, labels at most 63 octets.
//!
//! Every name here is uncompressed and valid by construction. Case is kept as
//! received (a response echoes the question exactly); comparisons ignore ASCII case
//! (RFC 4343). Length octets are at most 63, below `b'A'`, so lowercasing or
//! comparing a whole wire name byte by byte never touches them.

use std::fmt;
use std::hash::{Hash, Hasher};

/// The longest name in wire form, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a name could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name would be longer than 255 octets in wire form.
    #[error("name longer than 255 octets")]
    TooLong,
    /// A label would be longer than 63 octets.
    #[error("label longer than 63 octets")]
    LabelTooLong,
    /// An empty label inside a presentation-form name (`a..b`).
    #[error("empty label")]
    EmptyLabel,
    /// A `\` escape in presentation form that is not `\X` or `\DDD` (0-255).
    #[error("invalid escape")]
    BadEscape,
}

/// A borrowed name in wire form. Cheap to copy; see the module docs.
#[derive(Clone, Copy)]
pub struct NameRef<'a> {
    wire: &'a [u8],
}

impl<'a> NameRef<'a> {
    /// The root name, `.`.
    pub const ROOT: NameRef<'static> = NameRef { wire: &[0] };

    /// Checks `wire` and borrows it as a name: labels of 1-63 octets ending with
    /// the root label, 255 octets at most, nothing after the root label.
    pub fn from_wire(wire: &'a [u8]) -> Result<NameRef<'a>, NameError> {
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let mut pos = 0;
        loop {
            let Some(&len) = wire.get(pos) else { return Err(NameError::EmptyLabel) };
            let len = usize::from(len);
            if len == 0 {
                return if pos + 1 == wire.len() { Ok(NameRef { wire }) } else { Err(NameError::TooLong) };
            }
            if len > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
            pos += 1 + len;
        }
    }

    /// Borrows bytes the crate built as a valid name, without checking them
    /// again (checked in debug builds). Readers of a `NameRef` never index past
    /// its end, so a bad one could only print oddly, not panic.
    pub(crate) fn trusted(wire: &'a [u8]) -> NameRef<'a> {
        debug_assert!(NameRef::from_wire(wire).is_ok(), "invalid name {wire:02x?}");
        NameRef { wire }
    }

    /// The name in wire form, root label included.
    pub fn as_wire(self) -> &'a [u8] {
        self.wire
    }

    /// The labels from left to right, without the root label.
    pub fn labels(self) -> Labels<'a> {
        Labels { wire: self.wire, pos: 0 }
    }

    /// How many labels the name has, the root label not counted.
    pub fn label_count(self) -> usize {
        self.labels().count()
    }

    /// Whether this is the root name.
    pub fn is_root(self) -> bool {
        self.wire.len() <= 1
    }

    /// Compares two names ignoring ASCII case.
    pub fn eq_ignore_case(self, other: NameRef<'_>) -> bool {
        self.wire.eq_ignore_ascii_case(other.wire)
    }

    /// Whether `self` is `zone` or a name below it, ignoring case.
    pub fn is_subdomain_of(self, zone: NameRef<'_>) -> bool {
        self.strip_suffix(zone).is_some()
    }

    /// The labels in front of `suffix` in wire form (no root label), if `self` is
    /// `suffix` or below it; empty when the names are equal. Ignores case.
    pub fn strip_suffix(self, suffix: NameRef<'_>) -> Option<&'a [u8]> {
        let cut = self.wire.len().checked_sub(suffix.wire.len())?;
        if !self.wire[cut..].eq_ignore_ascii_case(suffix.wire) {
            return None;
        }
        // The suffix must start on a label boundary of self.
        let mut pos = 0;
        while pos < cut {
            pos += 1 + usize::from(self.wire[pos]);
        }
        (pos == cut).then(|| &self.wire[..cut])
    }

    /// An owned copy.
    pub fn to_name(self) -> Name {
        Name { wire: self.wire.into() }
    }

    /// An inline copy.
    pub fn to_buf(self) -> NameBuf {
        let mut buf = NameBuf::root();
        buf.buf[..self.wire.len()].copy_from_slice(self.wire);
        buf.len = self.wire.len() as u8;
        buf
    }
}

impl PartialEq for NameRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.eq_ignore_case(*other)
    }
}

impl Eq for NameRef<'_> {}

impl Hash for NameRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.wire {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for NameRef<'_> {
    /// Presentation form with a trailing dot; `.`, `\`, `"`, `;`, `(`, `)`, `@`, `$`
    /// and space are escaped with `\`, other bytes outside printable ASCII as
    /// `\DDD` (RFC 1035 §5.1).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &b in label {
                match b {
                    b'.' | b'\\' | b'"' | b';' | b'(' | b')' | b'@' | b'$' | b' ' => {
                        write!(f, "\\{}", b as char)?
                    }
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The labels of a name, left to right; see [`NameRef::labels`].
#[derive(Clone)]
pub struct Labels<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.wire.get(self.pos)?);
        if len == 0 {
            return None;
        }
        let label = self.wire.get(self.pos + 1..self.pos + 1 + len)?;
        self.pos += 1 + len;
        Some(label)
    }
}

/// A name stored inline (256 bytes, no allocation): what a parsed question holds,
/// and what names built per query (autopath candidates) are made in.
#[derive(Clone, Copy)]
pub struct NameBuf {
    len: u8,
    buf: [u8; MAX_NAME_LEN],
}

impl NameBuf {
    /// The root name, `.`.
    pub fn root() -> NameBuf {
        NameBuf { len: 1, buf: [0; MAX_NAME_LEN] }
    }

    /// Parses presentation form (`www.example.com`, with or without the final
    /// dot; `\.` and `\DDD` escapes). `""` and `"."` are the root.
    pub fn from_ascii(text: &str) -> Result<NameBuf, NameError> {
        let mut out = NameBuf::root();
        let text = text.as_bytes();
        if text == b"." || text.is_empty() {
            return Ok(out);
        }
        let mut label = [0u8; MAX_LABEL_LEN];
        let mut label_len = 0usize;
        let mut i = 0;
        let mut ended_with_dot = false;
        while i < text.len() {
            let b = text[i];
            ended_with_dot = false;
            let byte = match b {
                b'.' => {
                    if label_len == 0 {
                        return Err(NameError::EmptyLabel);
                    }
                    out.push_label(&label[..label_len])?;
                    label_len = 0;
                    i += 1;
                    ended_with_dot = true;
                    continue;
                }
                b'\\' => {
                    let next = *text.get(i + 1).ok_or(NameError::BadEscape)?;
                    if next.is_ascii_digit() {
                        let digits = text.get(i + 1..i + 4).ok_or(NameError::BadEscape)?;
                        if !digits.iter().all(u8::is_ascii_digit) {
                            return Err(NameError::BadEscape);
                        }
                        let value = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                        i += 4;
                        u8::try_from(value).map_err(|_| NameError::BadEscape)?
                    } else {
                        i += 2;
                        next
                    }
                }
                _ => {
                    i += 1;
                    b
                }
            };
            if label_len == MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
            label[label_len] = byte;
            label_len += 1;
        }
        if !ended_with_dot {
            out.push_label(&label[..label_len])?;
        }
        Ok(out)
    }

    /// Appends a label in front of the root label (`a.` + `b` = `a.b.`).
    pub fn push_label(&mut self, label: &[u8]) -> Result<(), NameError> {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        let len = usize::from(self.len);
        let new_len = len + 1 + label.len();
        if new_len > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        // Overwrite the root label, then put it back at the end.
        let at = len - 1;
        self.buf[at] = label.len() as u8;
        self.buf[at + 1..at + 1 + label.len()].copy_from_slice(label);
        self.buf[new_len - 1] = 0;
        self.len = new_len as u8;
        Ok(())
    }

    /// Appends the labels of `suffix` (`a.` + `b.c.` = `a.b.c.`).
    pub fn push_name(&mut self, suffix: NameRef<'_>) -> Result<(), NameError> {
        self.push_labels_wire(suffix.as_wire())
    }

    /// Appends labels given in wire form, with or without a root label.
    pub(crate) fn push_labels_wire(&mut self, labels: &[u8]) -> Result<(), NameError> {
        let labels = labels.strip_suffix(&[0]).unwrap_or(labels);
        let len = usize::from(self.len);
        let new_len = len + labels.len();
        if new_len > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        self.buf[len - 1..len - 1 + labels.len()].copy_from_slice(labels);
        self.buf[new_len - 1] = 0;
        self.len = new_len as u8;
        Ok(())
    }

    /// A name from labels in wire form (no root label) followed by `suffix`.
    pub(crate) fn concat(prefix: &[u8], suffix: NameRef<'_>) -> Result<NameBuf, NameError> {
        let mut out = NameBuf::root();
        out.push_labels_wire(prefix)?;
        out.push_name(suffix)?;
        Ok(out)
    }

    /// Borrows the name.
    pub fn as_name(&self) -> NameRef<'_> {
        NameRef { wire: &self.buf[..usize::from(self.len)] }
    }

    /// The name in wire form.
    pub fn as_wire(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Lowercases the name in place (ASCII only, RFC 4343).
    pub fn make_lowercase(&mut self) {
        self.buf[..usize::from(self.len)].make_ascii_lowercase();
    }

    /// Builds from wire bytes the reader already checked. Used by the message
    /// reader, which validates as it copies.
    pub(crate) fn from_checked_parts(len: usize, buf: [u8; MAX_NAME_LEN]) -> NameBuf {
        NameBuf { len: len as u8, buf }
    }
}

impl PartialEq for NameBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_name() == other.as_name()
    }
}

impl Eq for NameBuf {}

impl fmt::Display for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_name().fmt(f)
    }
}

impl fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_name().fmt(f)
    }
}

/// An owned name on the heap, sized to fit: what the index stores (service and
/// endpoint names, CNAME and PTR targets). Compares and hashes ignoring case.
#[derive(Clone)]
pub struct Name {
    wire: Box<[u8]>,
}

impl Name {
    /// Parses presentation form; see [`NameBuf::from_ascii`].
    pub fn from_ascii(text: &str) -> Result<Name, NameError> {
        Ok(NameBuf::from_ascii(text)?.as_name().to_name())
    }

    /// Borrows the name.
    pub fn as_name(&self) -> NameRef<'_> {
        NameRef { wire: &self.wire }
    }

    /// The name in wire form.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_name() == other.as_name()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_name().hash(state)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_name().fmt(f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_name().fmt(f)
    }
}
