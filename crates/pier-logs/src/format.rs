//! One record of the CRI log format: `<timestamp> <stream> <tag> <content>\n`.
//!
//! The timestamp is RFC 3339 in UTC with nanoseconds. The tag is `F` (full: the content
//! is a whole line, its newline removed) or `P` (partial: the line continues in the next
//! record of the same stream); tags may carry more `:`-separated parts, which readers
//! ignore, as the kubelet does.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest content of one record; longer lines are split into `P` records of this
/// size (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// A container output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output (also everything a TTY container prints).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a time as the kubelet's `RFC3339NanoFixed`: UTC, always nine fractional
/// digits, `Z`. Used in the file and for the `timestamps` prefix.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// One parsed record. `content` ends with `\n` for a full record and not for a
/// partial one, so concatenating a stream's contents gives back its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the runtime read the line.
    pub time: DateTime<Utc>,
    /// The stream.
    pub stream: Stream,
    /// Whether the record is a `P` (partial) record.
    pub partial: bool,
    /// The content, with the newline back for a full record.
    pub content: std::borrow::Cow<'a, [u8]>,
}

/// Appends the file form of a record to `out`: header, `content` (which must not
/// contain a newline) and `\n`.
pub fn encode(out: &mut Vec<u8>, time: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Parses one line of the file (with or without its final `\n`). `None` for a line
/// that is not a CRI record; the kubelet skips those.
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tags = parts.next()?;
    let partial = tags.split(|&b| b == b':').next() == Some(b"P");
    let content = parts.next()?;
    let content = if partial {
        std::borrow::Cow::Borrowed(content)
    } else {
        let mut full = Vec::with_capacity(content.len() + 1);
        full.extend_from_slice(content);
        full.push(b'\n');
        std::borrow::Cow::Owned(full)
    };
    Some(Record { time, stream, partial, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = DateTime::parse_from_rfc3339("2016-10-06T00:17:09.669794202Z").expect("time").to_utc();
        let mut out = Vec::new();
        encode(&mut out, t, Stream::Stderr, false, b"log content 2");
        assert_eq!(out, b"2016-10-06T00:17:09.669794202Z stderr F log content 2\n");
        let r = parse(&out).expect("parse");
        assert_eq!((r.time, r.stream, r.partial), (t, Stream::Stderr, false));
        assert_eq!(&*r.content, b"log content 2\n");
    }

    #[test]
    fn fixed_nanos_and_lenient_parse() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.1+02:00").expect("time").to_utc();
        assert_eq!(format_time(t), "2024-01-02T01:04:05.100000000Z");
        let r = parse(b"2024-01-02T01:04:05Z stdout P:x a b").expect("parse");
        assert!(r.partial);
        assert_eq!(&*r.content, b"a b");
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"2024-01-02T01:04:05Z stdin F x").is_none());
    }
}
