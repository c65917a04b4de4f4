//! Go-compatible renderings of values that appear inside upstream's messages.
//!
//! Users grep events for the exact strings the kubelet (a Go program) prints, so the few Go formatting
//! rules that leak into those strings are reproduced here: `%q` quoting, `time.Duration`'s `%v`, and
//! the wording of `net` errors.

use std::io;
use std::time::Duration;

/// Go's `%q` for a string: double-quoted with Go escapes.
pub(crate) use pier_api::gofmt::quote;

/// Go's `%v` for a `time.Duration`, e.g. `1s`, `1m30s`, `1.5s`, `500ms`.
pub(crate) fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        // Sub-second durations use the largest unit that keeps the integer part non-zero.
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = decimal(s * 1_000_000_000 + frac, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// `value / scale` with the fraction's trailing zeros trimmed, as Go prints durations.
fn decimal(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// The text Go's `syscall.Errno` prints for an OS error: the C library's message, lower-cased.
///
/// Rust's `io::Error` renders the same C message as `Connection refused (os error 111)`.
pub(crate) fn errno(err: &io::Error) -> String {
    if err.raw_os_error().is_none() {
        return err.to_string();
    }
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's `net.OpError` text for a failed TCP dial: `dial tcp 10.0.0.1:80: connect: connection refused`.
pub(crate) fn dial_error(addr: &str, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::TimedOut {
        return format!("dial tcp {addr}: i/o timeout");
    }
    format!("dial tcp {addr}: connect: {}", errno(err))
}

/// Go's `net.JoinHostPort`: brackets IPv6 literals.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        assert_eq!(duration(Duration::from_secs(1)), "1s");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(quote("sh -c \"x\"\n"), r#""sh -c \"x\"\n""#);
    }

    #[test]
    fn errno_is_lowercased_without_code() {
        let err = io::Error::from_raw_os_error(111);
        assert_eq!(errno(&err), "connection refused");
        assert_eq!(dial_error("10.0.0.1:80", &err), "dial tcp 10.0.0.1:80: connect: connection refused");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
