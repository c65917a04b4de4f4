//! Label key and value checks (shared with admission through `pier_api::names`), and the `field.Error` rendering the API server shows.

use std::fmt;

/// The problems with a label key, empty when it is valid (upstream's `IsQualifiedName`).
pub(crate) fn label_key_errors(value: &str) -> Vec<String> {
    pier_api::names::qualified_name(value)
}

/// The problems with a label value, empty when it is valid.
pub(crate) fn label_value_errors(value: &str) -> Vec<String> {
    pier_api::names::label_value(value)
}

/// Go's `%q` for a string (`strconv.Quote`), which upstream uses for bad values.
pub(crate) use pier_api::gofmt::quote as go_quote;

/// One invalid field, rendered as upstream's `field.Error` of type `FieldValueInvalid`:
/// `<field>: Invalid value: <value>: <detail>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// The field path as upstream prints it, e.g. `key`, `values[0][app]`, or `<nil>`
    /// (upstream's rendering of a missing path, which the label parser uses for keys).
    pub field: String,
    /// The offending value, already rendered (a quoted string or a JSON list).
    pub value: String,
    /// What is wrong with it.
    pub detail: String,
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: Invalid value: {}: {}", self.field, self.value, self.detail)
    }
}

/// Several errors shown as upstream's aggregate: one alone, or `[a, b]` without duplicates.
pub(crate) fn fmt_aggregate(errors: &[InvalidField], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let s = e.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    if seen.len() == 1 {
        f.write_str(&seen[0])
    } else {
        write!(f, "[{}]", seen.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        assert!(label_key_errors("app").is_empty());
        assert!(label_key_errors("example.com/app-1.x_y").is_empty());
        assert!(label_key_errors("a").is_empty());
        assert_eq!(
            label_key_errors("-a"),
            vec!["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
        );
        assert_eq!(label_key_errors("/a"), vec!["prefix part must be non-empty"]);
        assert_eq!(label_key_errors("Foo.com/a"), vec!["prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]);
        assert_eq!(label_key_errors("a/b/c").len(), 1);
        assert!(label_key_errors("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(label_key_errors(&"a".repeat(64)), vec!["name part must be no more than 63 characters"]);
        assert_eq!(label_key_errors("a/").len(), 2);
    }

    #[test]
    fn label_values() {
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_3-x").is_empty());
        assert_eq!(label_value_errors("b$").len(), 1);
        assert_eq!(label_value_errors(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\x01\"");
    }
}
