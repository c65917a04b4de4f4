//! Paths to fields, in the two spellings upstream uses: the `FieldsV1` keys stored in
//! `managedFields` (`f:spec`, `k:{"port":80,"protocol":"TCP"}`, `v:"a"`, `i:0`) and the
//! dotted form conflict messages print (`.spec.ports[port=80,protocol="TCP"]`).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::FieldsError;

/// One step of a [`Path`], held in its `FieldsV1` spelling so that it orders and
/// compares as upstream's serialized sets do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathElement(String);

impl PathElement {
    /// The field `name` of an object (`f:name`).
    pub fn field(name: &str) -> Self {
        PathElement(format!("f:{name}"))
    }

    /// The item of an associative list identified by these key fields
    /// (`k:{"port":80,"protocol":"TCP"}`); keys are written sorted, as upstream does.
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut sorted: Vec<(&str, &Value)> = fields.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut map = Map::new();
        for (k, v) in sorted {
            map.insert(k.to_string(), v.clone());
        }
        PathElement(format!("k:{}", Value::Object(map)))
    }

    /// The item of a set-like list equal to `value` (`v:"a"`).
    pub fn value(value: &Value) -> Self {
        PathElement(format!("v:{value}"))
    }

    /// The item at `index` of a list (`i:0`); upstream never produces these for the
    /// built-in kinds, but accepts them in `managedFields`.
    pub fn index(index: usize) -> Self {
        PathElement(format!("i:{index}"))
    }

    /// Parses a `FieldsV1` key.
    ///
    /// # Errors
    ///
    /// [`FieldsError::BadKey`] for an unknown prefix, [`FieldsError::BadKeyValue`] for a
    /// `k:`/`v:`/`i:` whose payload is not what it should be.
    pub fn parse(key: &str) -> Result<Self, FieldsError> {
        let bad_value = || FieldsError::BadKeyValue(key.to_string());
        match key.split_at_checked(2) {
            Some(("f:", _)) => {}
            Some(("k:", rest)) => {
                if !serde_json::from_str::<Value>(rest).map_err(|_| bad_value())?.is_object() {
                    return Err(bad_value());
                }
            }
            Some(("v:", rest)) => {
                serde_json::from_str::<Value>(rest).map_err(|_| bad_value())?;
            }
            Some(("i:", rest)) => {
                rest.parse::<usize>().map_err(|_| bad_value())?;
            }
            _ => return Err(FieldsError::BadKey(key.to_string())),
        }
        Ok(PathElement(key.to_string()))
    }

    /// The `FieldsV1` spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The field name, for an `f:` element.
    pub fn as_field(&self) -> Option<&str> {
        self.0.strip_prefix("f:")
    }
}

impl fmt::Display for PathElement {
    /// The dotted spelling of conflict messages: `.name`, `[k1=v1,k2="v"]`, `[=v]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, rest) = self.0.split_at_checked(2).unwrap_or(("", &self.0));
        match prefix {
            "f:" => write!(f, ".{rest}"),
            "k:" => {
                let parsed: Option<Map<String, Value>> = serde_json::from_str(rest).ok();
                let Some(fields) = parsed else { return write!(f, "[{rest}]") };
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            "v:" => write!(f, "[={rest}]"),
            "i:" => write!(f, "[{rest}]"),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// A path from an object's root to one of its fields or list items.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// The root.
    pub fn root() -> Self {
        Path(Vec::new())
    }

    /// A path of plain field names, e.g. `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Self {
        Path(names.iter().map(|n| PathElement::field(n)).collect())
    }

    /// This path extended by `element`.
    pub fn child(&self, element: PathElement) -> Self {
        let mut steps = self.0.clone();
        steps.push(element);
        Path(steps)
    }

    /// The steps.
    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_print_as_upstream() {
        let pe = PathElement::key([("protocol", &json!("TCP")), ("port", &json!(80))]);
        assert_eq!(pe.as_str(), r#"k:{"port":80,"protocol":"TCP"}"#);
        let path = Path::fields(&["spec", "ports"]).child(pe).child(PathElement::field("targetPort"));
        assert_eq!(path.to_string(), r#".spec.ports[port=80,protocol="TCP"].targetPort"#);
        assert_eq!(PathElement::value(&json!("a")).to_string(), r#"[="a"]"#);
        assert_eq!(PathElement::index(3).to_string(), "[3]");
    }

    #[test]
    fn parse_accepts_every_prefix_and_rejects_junk() {
        for ok in ["f:spec", r#"k:{"name":"a"}"#, r#"v:"x""#, "v:5", "i:2", "."] {
            if ok == "." {
                assert!(PathElement::parse(ok).is_err());
                continue;
            }
            assert_eq!(PathElement::parse(ok).expect(ok).as_str(), ok);
        }
        assert!(matches!(PathElement::parse("x:spec"), Err(FieldsError::BadKey(_))));
        assert!(matches!(PathElement::parse("k:[1]"), Err(FieldsError::BadKeyValue(_))));
        assert!(matches!(PathElement::parse("i:-1"), Err(FieldsError::BadKeyValue(_))));
    }
}
