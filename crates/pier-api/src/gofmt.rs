//! Go formatting that leaks into upstream's messages: users and tools match the exact
//! strings upstream's Go programs print, so Pier renders values the same way.

use std::fmt::Write as _;

/// Go's `%q` (`strconv.Quote`) for the strings Kubernetes quotes in messages: double
/// quotes, backslash escapes for quotes, backslashes and control characters.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(quote("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\x01\"");
        assert_eq!(quote("tab\there\nnew"), "\"tab\\there\\nnew\"");
        assert_eq!(quote("héllo"), "\"héllo\"");
    }
}
