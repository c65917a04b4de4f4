//! `$(VAR)` expansion with the kubelet's rules (upstream `third_party/forked/golang/expansion`).
//!
//! `$(NAME)` is replaced by the variable's value when it is defined and left as written when it is not;
//! `$$` is an escaped `$`; every other `$` is kept as is. Nothing is ever an error.

/// Expands `$(NAME)` references in `input`, asking `lookup` for each name.
pub fn expand<F>(input: &str, lookup: F) -> String
where
    F: Fn(&str) -> Option<String>,
{
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match read_reference(rest) {
                Read::Variable(name, advance) => {
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        // Undefined references stay verbatim so the user sees what did not resolve.
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    advance
                }
                Read::Literal(text, advance) => {
                    out.push_str(text);
                    advance
                }
                Read::Dollar(c) => {
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint..]);
    out
}

enum Read<'a> {
    /// `(NAME)`: a reference, and how many bytes it took.
    Variable(&'a str, usize),
    /// Text copied as is (an escaped `$`, or an unterminated `$(`), and how many bytes it took.
    Literal(&'a str, usize),
    /// A `$` followed by some other character, both kept.
    Dollar(char),
}

/// Reads what follows a `$` (never empty: the caller checked that a byte follows).
fn read_reference(rest: &str) -> Read<'_> {
    let Some(first) = rest.chars().next() else {
        return Read::Literal("", 0);
    };
    match first {
        '$' => Read::Literal("$", 1),
        '(' => match rest[1..].find(')') {
            Some(close) => Read::Variable(&rest[1..1 + close], close + 2),
            // Only the `(` is consumed, so a later complete `$(X)` still expands.
            None => Read::Literal("$(", 1),
        },
        other => Read::Dollar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    /// The cases of upstream's expansion test table (public behaviour), with our own harness.
    #[test]
    fn upstream_cases() {
        let lookup = with(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("___$(VAR_B)___", "___B___"),
            ("___$(VAR_C)", "___C"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_C)_______$(", "C_______$("),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("--$($($($($--", "--$($($($($--"),
            ("$($($($($--foo$(", "$($($($($--foo$("),
            ("foo0--$($($($(", "foo0--$($($($("),
            ("$(foo$$var)", "$(foo$$var)"),
            ("\n", "\n"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &lookup), want, "input {input:?}");
        }
    }

    #[test]
    fn multibyte_after_dollar_is_kept_whole() {
        assert_eq!(expand("x$é$(A)", with(&[("A", "1")])), "x$é1");
    }
}
