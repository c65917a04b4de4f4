//! Tolerant accessors over `serde_json::Value`.
//!
//! Objects reach the printers as stored, so any optional field may be absent, `null` or
//! (for a broken object) of the wrong type. Every accessor answers the Go zero value in
//! those cases, which is what upstream's typed printers see for an unset field.

use chrono::{DateTime, Utc};
use serde_json::Value;

static NULL: Value = Value::Null;

/// The value at `path`, or `null`.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return &NULL,
        }
    }
    cur
}

/// The object at `path`, if there is one: Go's non-nil pointer to a struct.
pub(crate) fn object<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let found = get(v, path);
    found.is_object().then_some(found)
}

/// The string at `path`, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).as_str().unwrap_or("")
}

/// The integer at `path`, or 0. Floats with an integral value are accepted because
/// some clients write `3.0`.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    int_of(get(v, path)).unwrap_or(0)
}

/// The integer at `path` if it is set.
pub(crate) fn opt_int_at(v: &Value, path: &[&str]) -> Option<i64> {
    int_of(get(v, path))
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

/// The boolean at `path`, or `false`.
pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    get(v, path).as_bool().unwrap_or(false)
}

/// The array at `path`, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The number of entries of the map at `path`, or 0.
pub(crate) fn map_len(v: &Value, path: &[&str]) -> usize {
    get(v, path).as_object().map_or(0, |m| m.len())
}

/// The string map at `path` as sorted `(key, value)` pairs; non-string values are skipped.
pub(crate) fn string_map<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = get(v, path)
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))).collect())
        .unwrap_or_default();
    pairs.sort_unstable();
    pairs
}

/// The timestamp at `path`: `None` when unset, unparseable, or Go's zero time (which
/// upstream's `IsZero` treats as unset).
pub(crate) fn time_at(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let s = get(v, path).as_str()?;
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    // 0001-01-01T00:00:00Z, the serialised zero `metav1.Time`.
    (t.timestamp() != GO_ZERO_TIME_UNIX).then_some(t)
}

const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_answer_zero_values_for_missing_or_mistyped_fields() {
        let v = json!({"a": {"b": "x", "n": 3, "f": 2.0, "arr": [1], "m": {"k": "v", "z": 1}}});
        assert_eq!(str_at(&v, &["a", "b"]), "x");
        assert_eq!(str_at(&v, &["a", "n"]), "");
        assert_eq!(str_at(&v, &["nope", "b"]), "");
        assert_eq!(int_at(&v, &["a", "n"]), 3);
        assert_eq!(int_at(&v, &["a", "f"]), 2);
        assert_eq!(int_at(&v, &["a", "b"]), 0);
        assert_eq!(arr_at(&v, &["a", "arr"]).len(), 1);
        assert!(arr_at(&v, &["a", "b"]).is_empty());
        assert_eq!(map_len(&v, &["a", "m"]), 2);
        assert_eq!(string_map(&v, &["a", "m"]), vec![("k", "v")]);
        assert!(object(&v, &["a"]).is_some());
        assert!(object(&v, &["a", "b"]).is_none());
    }

    #[test]
    fn zero_and_bad_timestamps_are_unset() {
        let v = json!({"z": "0001-01-01T00:00:00Z", "bad": "yesterday", "ok": "2024-01-02T03:04:05Z"});
        assert_eq!(time_at(&v, &["z"]), None);
        assert_eq!(time_at(&v, &["bad"]), None);
        assert!(time_at(&v, &["ok"]).is_some());
    }
}
