//! Field selectors (`?fieldSelector=metadata.name=foo,status.phase!=Running`), after
//! upstream's `k8s.io/apimachinery/pkg/fields`.

use std::fmt;
use std::str::FromStr;

/// How a [`FieldRequirement`] compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One term of a field selector: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field label, e.g. `metadata.name`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether the field's value (`None` compares as the empty string, as upstream)
    /// satisfies the term.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// Why a field selector could not be parsed or is not supported. `Display` is upstream's
/// text (the API server returns it in a 400 `BadRequest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A `\` in a value is not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscapeSequence {
        /// The offending sequence (`\x`, or `\` at the end).
        sequence: String,
    },
    /// A value holds an unescaped `,` or `=`. Upstream prints the character's code point.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.character))]
    UnescapedCharacter {
        /// The character.
        character: char,
    },
    /// The selector uses a field the resource does not support.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The field label.
        field: String,
    },
}

/// A field selector: terms that must all hold (AND), kept in upstream's order (the terms
/// sorted as strings). The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything (the empty string).
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses `f1=v1,f2!=v2,...` as upstream's `fields.ParseSelector`: terms are split on
    /// unescaped `,`, each at its first `!=`, `==` or `=`; in values `\\`, `\,` and `\=`
    /// stand for `\`, `,` and `=`. Field names are not checked here: see
    /// [`FieldSelector::check_supported`]. Whitespace is significant, as upstream.
    ///
    /// # Errors
    ///
    /// [`FieldSelectorError`] with upstream's message.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            let value = unescape_value(raw)?;
            // Upstream's (identity) transform turns a term with neither field nor value
            // into "everything", i.e. drops it.
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector of `field=value` terms (upstream's `SelectorFromSet`), in the given order.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        FieldSelector {
            requirements: pairs
                .into_iter()
                .map(|(k, v)| FieldRequirement {
                    field: k.into(),
                    operator: FieldOperator::Equals,
                    value: v.into(),
                })
                .collect(),
        }
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector has no terms (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The field labels used, in term order (a field may repeat).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Checks every field label against what the resource supports.
    ///
    /// # Errors
    ///
    /// [`FieldSelectorError::UnsupportedField`] (`field label not supported: x`) for the
    /// first unsupported field.
    pub fn check_supported(&self, is_supported: impl Fn(&str) -> bool) -> Result<(), FieldSelectorError> {
        match self.fields().find(|f| !is_supported(f)) {
            Some(field) => Err(FieldSelectorError::UnsupportedField { field: field.to_string() }),
            None => Ok(()),
        }
    }

    /// Whether an object matches: `get` returns a field's value, `None` when absent (it
    /// then compares as the empty string, as upstream).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// The value `field` must equal for the selector to match, if a `field=value` term pins
    /// it (upstream's `RequiresExactMatch`), e.g. to look up `metadata.name` directly.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form: terms joined with `,`, values escaped, `==` written as `=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a value (upstream's `EscapeValue`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`] (upstream's `UnescapeValue`).
///
/// # Errors
///
/// [`FieldSelectorError::InvalidEscapeSequence`] or
/// [`FieldSelectorError::UnescapedCharacter`].
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscapeSequence { sequence: format!("\\{c}") });
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter { character: c }),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscapeSequence { sequence: "\\".to_string() });
    }
    Ok(out)
}

/// Splits on `,` not preceded by an escaping `\`.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first position where `!=`, `==` or `=` starts (tried in that
/// order at each position).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in
            [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)]
        {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
