//! Small accessors over `serde_json::Value` objects. Input is untrusted JSON, so every
//! accessor tolerates a missing or mistyped field instead of panicking: validation
//! reports the problem, defaulting leaves it alone.

use serde_json::{Map, Value};

/// The value at a dotted path of object keys (`"spec.template.metadata"`).
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// The string at `path`, or `""` when it is absent or not a string: the Go zero value
/// upstream's typed structs would see.
pub fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, if it is one.
pub fn int_at(v: &Value, path: &str) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

/// The array at `path`, or an empty slice.
pub fn arr_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    get(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The object at `path`, if it is one.
pub fn obj_at<'a>(v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// Whether `path` holds something other than null.
pub fn present(v: &Value, path: &str) -> bool {
    get(v, path).is_some_and(|x| !x.is_null())
}

/// The object at `key` inside `v`, created (or replaced, if it is not an object) on demand.
/// Returns `None` only when `v` itself is not an object.
pub fn ensure_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let slot = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Sets `key` to `value` when it is absent or null (upstream's "if nil then default").
pub fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// Sets `key` to `value` when it is absent, null or the empty string (upstream's
/// `if x == ""` defaults on string fields).
pub fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// The string entries of a string map (labels, selectors, data keys); non-string values
/// are reported as `None` so callers can decide.
pub fn string_map(v: Option<&Value>) -> Vec<(&str, Option<&str>)> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .unwrap_or_default()
}

/// Whether a label set matches an equality selector (every selector pair present).
pub fn selector_matches(selector: &Map<String, Value>, labels: Option<&Map<String, Value>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}
