//! Field-level validation errors, rendered exactly as upstream's
//! `k8s.io/apimachinery/pkg/util/validation/field` renders them, so kubectl users see
//! the messages they know (`spec.ports[1].name: Required value`).

use std::fmt;

use serde_json::Value;

/// A path to a field inside an object, such as `spec.ports[1].name`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of a top-level field.
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    /// The path of `name` inside this field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{}", self.0, name))
        }
    }

    /// The path of element `index` of this list field.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{}]", self.0, index))
    }

    /// The path of entry `key` of this map field.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{}]", self.0, key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of field error upstream knows, with its wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// The phrase upstream prints for this kind of error.
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::TypeInvalid => "Invalid value",
        }
    }

    /// The `reason` of a `StatusCause` for this kind of error.
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Whether upstream omits the offending value from the message.
    fn omits_value(self) -> bool {
        matches!(
            self,
            ErrorType::Required
                | ErrorType::Forbidden
                | ErrorType::TooLong
                | ErrorType::Internal
                | ErrorType::TooMany
        )
    }
}

/// One invalid field: what is wrong, where, with which value, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: FieldPath,
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    fn make(kind: ErrorType, field: &FieldPath, value: Option<Value>, detail: &str) -> Self {
        FieldError { kind, field: field.clone(), value, detail: detail.to_string() }
    }

    pub fn required(field: &FieldPath, detail: &str) -> Self {
        Self::make(ErrorType::Required, field, None, detail)
    }

    pub fn invalid(field: &FieldPath, value: impl Into<Value>, detail: &str) -> Self {
        Self::make(ErrorType::Invalid, field, Some(value.into()), detail)
    }

    pub fn duplicate(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::make(ErrorType::Duplicate, field, Some(value.into()), "")
    }

    pub fn forbidden(field: &FieldPath, detail: &str) -> Self {
        Self::make(ErrorType::Forbidden, field, None, detail)
    }

    pub fn not_found(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::make(ErrorType::NotFound, field, Some(value.into()), "")
    }

    pub fn too_long(field: &FieldPath, max: usize) -> Self {
        let detail = format!("may not be more than {max} bytes");
        Self::make(ErrorType::TooLong, field, None, &detail)
    }

    /// An unsupported value; `supported` lists the values that are, as upstream prints them.
    pub fn not_supported(field: &FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail =
            if list.is_empty() { String::new() } else { format!("supported values: {}", list.join(", ")) };
        Self::make(ErrorType::NotSupported, field, Some(value.into()), &detail)
    }

    /// The message without the field path: what a `StatusCause` carries.
    pub fn body(&self) -> String {
        let mut s = self.kind.phrase().to_string();
        if !self.kind.omits_value() {
            if let Some(v) = &self.value {
                s.push_str(": ");
                s.push_str(&render_value(v));
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Upstream prints strings quoted (Go's `%q`), numbers and booleans bare, and
/// anything else as Go would format it; JSON is the closest stable form for the rest.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(render_value).collect();
            format!("[]string{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// Joins several errors the way upstream's aggregate does: one bare, many in brackets.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_omits_value() {
        let p = FieldPath::new("spec").child("ports").index(1).child("name");
        assert_eq!(FieldError::required(&p, "").to_string(), "spec.ports[1].name: Required value");
    }

    #[test]
    fn invalid_quotes_strings_and_appends_detail() {
        let p = FieldPath::new("metadata").child("name");
        let e = FieldError::invalid(&p, "Kubia", "a lowercase RFC 1123 label");
        assert_eq!(e.to_string(), "metadata.name: Invalid value: \"Kubia\": a lowercase RFC 1123 label");
    }

    #[test]
    fn not_supported_lists_values() {
        let p = FieldPath::new("spec").child("type");
        let e = FieldError::not_supported(&p, "Foo", &["ClusterIP", "NodePort"]);
        assert_eq!(
            e.to_string(),
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
    }

    #[test]
    fn aggregate_brackets_many() {
        let a = FieldError::required(&FieldPath::new("a"), "");
        let b = FieldError::required(&FieldPath::new("b"), "");
        assert_eq!(aggregate_message(std::slice::from_ref(&a)), "a: Required value");
        assert_eq!(aggregate_message(&[a, b]), "[a: Required value, b: Required value]");
    }
}
