//! Label selectors: the `?labelSelector=` string syntax, `metav1.LabelSelector` objects
//! and plain equality maps, after upstream's `k8s.io/apimachinery/pkg/labels`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde_json::Value;

use crate::validation::{fmt_aggregate, go_quote, label_key_errors, label_value_errors, InvalidField};

mod parser;
#[cfg(test)]
mod tests;

// ===== Labels =====

/// A set of labels a selector can be matched against.
///
/// Implemented for `BTreeMap<String, String>`, `HashMap<String, String>`, a JSON object
/// (`serde_json::Map`, e.g. an object's `metadata.labels`) and a JSON [`Value`] (anything
/// other than an object has no labels). Non-string JSON values are not labels.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_object().and_then(|m| m.label(key))
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

// ===== Operator =====

/// How a [`Requirement`] relates a label to its values (upstream's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label exists and has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key=v`.
    Equals,
    /// `key==v` (same meaning as `=`, kept to print the selector back as written).
    DoubleEquals,
    /// `key!=v`: the label is absent or has another value.
    NotEquals,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>n`: the label is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label is an integer less than `n`.
    LessThan,
}

impl Operator {
    /// Upstream's name of the operator (`in`, `notin`, `=`, `==`, `!=`, `exists`, `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== Errors =====

/// What the label selector parser expected where it found something else. Each renders
/// upstream's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expected {
    /// At the start of a requirement.
    RequirementStart,
    /// After a `,` between requirements.
    IdentifierAfterComma,
    /// After a complete requirement.
    CommaOrEnd,
    /// A key or a single value.
    Identifier,
    /// A binary operator after a key.
    Operator,
    /// The `(` opening a value set.
    OpenParen,
    /// The `)` closing a value set.
    CloseParen,
    /// The first item of a value set.
    ValueSetStart,
    /// After a value inside a value set.
    CommaOrCloseParen,
    /// Inside a value set, after a comma.
    CommaOrIdentifier,
}

impl Expected {
    fn render(self, found: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match self {
            Expected::RequirementStart => "!, identifier, or 'end of string'",
            Expected::IdentifierAfterComma => "identifier after ','",
            Expected::CommaOrEnd => "',' or 'end of string'",
            Expected::Identifier => "identifier",
            Expected::Operator => "in, notin, =, ==, !=, gt, lt",
            // Upstream writes this one without the comma.
            Expected::OpenParen => return write!(f, "found '{found}' expected: '('"),
            Expected::CloseParen => "')'",
            Expected::ValueSetStart => "',', ')' or identifier",
            Expected::CommaOrCloseParen => "',' or ')'",
            Expected::CommaOrIdentifier => "',', or identifier",
        };
        write!(f, "found '{found}', expected: {expected}")
    }
}

/// Why a label selector could not be built.
///
/// The `Display` text is upstream's (the API server returns it in a 400 `BadRequest`),
/// e.g. `unable to parse requirement: found 'x' expected: '('`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelSelectorError {
    /// The selector string is malformed.
    UnexpectedToken {
        /// The token found (empty at the end of the string).
        found: String,
        /// What would have been accepted there.
        expected: Expected,
        /// Whether the error arose inside a requirement (upstream then prefixes
        /// `unable to parse requirement: `).
        in_requirement: bool,
    },
    /// A key or value is not a valid label key or value, or the values do not suit the
    /// operator.
    Invalid {
        /// Each problem, as upstream's field errors.
        errors: Vec<InvalidField>,
        /// As for [`LabelSelectorError::UnexpectedToken`].
        in_requirement: bool,
    },
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    UnknownOperator {
        /// The operator as given.
        operator: String,
    },
    /// A JSON selector has the wrong shape (upstream would fail to decode it).
    Malformed {
        /// Where, e.g. `matchExpressions[0].values`.
        field: String,
        /// What was expected there, e.g. `an array of strings`.
        expected: &'static str,
    },
}

impl fmt::Display for LabelSelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIX: &str = "unable to parse requirement: ";
        match self {
            LabelSelectorError::UnexpectedToken { found, expected, in_requirement } => {
                if *in_requirement {
                    f.write_str(PREFIX)?;
                }
                expected.render(found, f)
            }
            LabelSelectorError::Invalid { errors, in_requirement } => {
                if *in_requirement {
                    f.write_str(PREFIX)?;
                }
                fmt_aggregate(errors, f)
            }
            LabelSelectorError::UnknownOperator { operator } => {
                write!(f, "{} is not a valid label selector operator", go_quote(operator))
            }
            LabelSelectorError::Malformed { field, expected } => {
                write!(f, "invalid label selector: {field} must be {expected}")
            }
        }
    }
}

impl std::error::Error for LabelSelectorError {}

// ===== Requirement =====

/// One condition of a selector: a key, an operator and (for binary operators) values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// The JSON rendering upstream uses for a list of values in a field error (`null` when
/// empty, since upstream passes a nil slice there).
fn json_list(values: &[String]) -> String {
    if values.is_empty() {
        "null".to_string()
    } else {
        serde_json::to_string(values).unwrap_or_default()
    }
}

impl Requirement {
    /// Builds a requirement, checking it as upstream's `NewRequirement` does: a valid key,
    /// valid values, a non-empty set for `in`/`notin`, one value for `=`/`==`/`!=`, none
    /// for `exists`/`!`, one integer for `gt`/`lt`.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::Invalid`] listing every problem.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, LabelSelectorError> {
        let key = key.into();
        let errors = requirement_errors(&key, operator, &values);
        if errors.is_empty() {
            Ok(Requirement { key, operator, values })
        } else {
            Err(LabelSelectorError::Invalid { errors, in_requirement: false })
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (the parser sorts and deduplicates them, as upstream).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement. Note that `notin` and `!=` match when the
    /// label is absent.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotIn | Operator::NotEquals => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Upstream compares as signed 64-bit integers and matches nothing when
                // either side does not parse.
                let (Some(Ok(have)), [want]) = (value.map(str::parse::<i64>), &self.values[..]) else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

fn requirement_errors(key: &str, operator: Operator, values: &[String]) -> Vec<InvalidField> {
    let mut errors = Vec::new();
    let key_errors = label_key_errors(key);
    if !key_errors.is_empty() {
        errors.push(InvalidField {
            field: "key".to_string(),
            value: go_quote(key),
            detail: key_errors.join("; "),
        });
    }
    let invalid_values = |detail: &str| InvalidField {
        field: "values".to_string(),
        value: json_list(values),
        detail: detail.to_string(),
    };
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            errors.push(invalid_values("for 'in', 'notin' operators, values set can't be empty"));
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errors.push(invalid_values("exact-match compatibility requires one single value"));
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            errors.push(invalid_values("values set must be empty for exists and does not exist"));
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errors.push(invalid_values("for 'Gt', 'Lt' operators, exactly one value is required"));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errors.push(InvalidField {
                        field: format!("values[{i}]"),
                        value: go_quote(v),
                        detail: "for 'Gt', 'Lt' operators, the value must be an integer".to_string(),
                    });
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let value_errors = label_value_errors(v);
        if !value_errors.is_empty() {
            errors.push(InvalidField {
                field: format!("values[{i}][{key}]"),
                value: go_quote(v),
                detail: value_errors.join("; "),
            });
        }
    }
    errors
}

impl fmt::Display for Requirement {
    /// Upstream's canonical form: `!k`, `k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k>1`, `k<1`; several values are printed sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

// ===== LabelSelector =====

/// A label selector: requirements that must all hold (AND), kept sorted by key.
///
/// An empty selector matches everything; [`LabelSelector::nothing`] matches nothing.
///
/// A Service (or ReplicationController) whose `spec.selector` is empty selects **no** pods,
/// although the selector built from that empty map matches everything: that rule belongs to
/// the caller, which should check [`LabelSelector::is_empty`] first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every set of labels (the empty string).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no set of labels (upstream's `labels.Nothing()`, what a
    /// missing `metav1.LabelSelector` means). It prints as the empty string.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string syntax of `?labelSelector=` (upstream's `labels.Parse`):
    /// requirements separated by `,`, each `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k`, `k>n` or `k<n`. Whitespace around tokens is ignored;
    /// the empty string selects everything.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError`] with upstream's message for a malformed selector or an
    /// invalid key or value.
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        let mut requirements = parser::parse(selector)?;
        // Stable, so requirements on the same key keep their written order as upstream's
        // (insertion-sorted, for selectors of realistic size) do.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Builds a selector from requirements (sorted by key here).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// The selector `k1=v1,k2=v2,...` for an equality map such as a Service's or a
    /// ReplicationController's `spec.selector`. Like upstream's `SelectorFromSet`, it does
    /// not validate keys or values. An empty map gives a selector that matches everything
    /// (see the type's docs for Services).
    pub fn from_set<'a, I>(set: I) -> Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        Self::from_requirements(
            set.into_iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        )
    }

    /// [`LabelSelector::from_set`] for a JSON object of strings; `null` is the empty map.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::Malformed`] if `set` is not an object of strings.
    pub fn from_set_json(set: &Value) -> Result<Self, LabelSelectorError> {
        let map = string_map(set, "selector")?;
        Ok(Self::from_set(&map))
    }

    /// Converts a `metav1.LabelSelector` (`{"matchLabels": {...}, "matchExpressions":
    /// [{"key", "operator", "values"}]}`) as upstream's `LabelSelectorAsSelector`: `null`
    /// selects nothing, an empty selector selects everything.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::UnknownOperator`] for an operator other than `In`, `NotIn`,
    /// `Exists`, `DoesNotExist`; [`LabelSelectorError::Invalid`] for invalid keys and values
    /// or values that do not suit the operator; [`LabelSelectorError::Malformed`] if the
    /// JSON does not have the shape of a `LabelSelector`.
    pub fn from_label_selector_json(selector: &Value) -> Result<Self, LabelSelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            _ => {
                return Err(malformed("selector", "an object"));
            }
        };
        let match_labels = string_map(obj.get("matchLabels").unwrap_or(&Value::Null), "matchLabels")?;
        let expressions = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(items)) => &items[..],
            Some(_) => return Err(malformed("matchExpressions", "an array")),
        };
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (k, v) in &match_labels {
            requirements.push(Requirement::new(k.clone(), Operator::Equals, vec![v.clone()])?);
        }
        for (i, expr) in expressions.iter().enumerate() {
            let at = |f: &str| format!("matchExpressions[{i}].{f}");
            let Some(expr) = expr.as_object() else {
                return Err(malformed(&format!("matchExpressions[{i}]"), "an object"));
            };
            let key = match expr.get("key") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s,
                Some(_) => return Err(malformed(&at("key"), "a string")),
            };
            let operator = match expr.get("operator") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s,
                Some(_) => return Err(malformed(&at("operator"), "a string")),
            };
            let operator = match operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(LabelSelectorError::UnknownOperator { operator: other.to_string() }),
            };
            let values = match expr.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| malformed(&at("values"), "an array of strings"))?,
                Some(_) => return Err(malformed(&at("values"), "an array of strings")),
            };
            requirements.push(Requirement::new(key, operator, values)?);
        }
        if requirements.is_empty() {
            return Ok(Self::everything());
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`LabelSelector::matches`] against an object's `metadata.labels` (absent labels are
    /// the empty set).
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.pointer("/metadata/labels").unwrap_or(&Value::Null))
    }

    /// Whether the selector has no requirements, i.e. selects everything (upstream's
    /// `Empty()`; false for [`LabelSelector::nothing`]).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is [`LabelSelector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value label `key` must have for the selector to match, if a requirement pins it
    /// to one value (`k=v`, `k==v`, `k in (v)`); upstream's `RequiresExactMatch`.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, &r.values[..]) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

fn malformed(field: &str, expected: &'static str) -> LabelSelectorError {
    LabelSelectorError::Malformed { field: field.to_string(), expected }
}

fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, LabelSelectorError> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(malformed(&format!("{field}.{k}"), "a string")),
            })
            .collect(),
        _ => Err(malformed(field, "an object of strings")),
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form, requirements sorted by key and joined with `,`; the empty
    /// string for [`LabelSelector::everything`] and [`LabelSelector::nothing`].
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

impl FromStr for LabelSelector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
