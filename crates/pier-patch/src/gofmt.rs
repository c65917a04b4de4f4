//! How upstream's Go code prints JSON values in error messages (`%v`, `%s`, the names of
//! `reflect` types), so that Pier's messages read the same.

use serde_json::{Map, Value};

/// The Go type a decoded JSON value has in upstream (`encoding/json` into `interface{}`,
/// with the API server's integer preservation).
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The Go type name of a map, as upstream names the type it expected.
pub(crate) const GO_MAP: &str = "map[string]interface {}";
/// The Go type name of a list.
pub(crate) const GO_LIST: &str = "[]interface {}";

/// Go's `%v` of a float64 (`%g` with the shortest precision): the shortest digits, in
/// exponent form when the decimal exponent is below -4 or at least 6.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e0", "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        // Rust's `Display` is the shortest round-trip decimal without an exponent.
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn fmt_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !(n.is_i64() || n.is_u64()) => go_float(f),
        _ => n.to_string(),
    }
}

/// Go's `%v` of a decoded JSON value: `map[k:v ...]` with sorted keys, `[a b]`, `<nil>`.
#[cfg(test)]
pub(crate) fn go_v(v: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, v);
    out
}

/// Go's `%v` of a JSON object.
pub(crate) fn go_v_map(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, m, write_v);
    out
}

/// Go's `%v` of a list of values.
pub(crate) fn go_v_list(items: &[Value]) -> String {
    let mut out = String::new();
    write_list(&mut out, items, write_v);
    out
}

fn write_v(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&fmt_number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => write_list(out, items, write_v),
        Value::Object(m) => write_map(out, m, write_v),
    }
}

/// Go's `%s` of a decoded JSON value: strings as they are, other scalars flagged as Go
/// does (`%!s(int64=5)`).
pub(crate) fn go_s(v: &Value) -> String {
    let mut out = String::new();
    write_s(&mut out, v);
    out
}

fn write_s(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("%!s(<nil>)"),
        Value::Bool(b) => out.push_str(&format!("%!s(bool={b})")),
        Value::Number(n) => out.push_str(&format!("%!s({}={})", go_type(v), fmt_number(n))),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => write_list(out, items, write_s),
        Value::Object(m) => write_map(out, m, write_s),
    }
}

fn write_list(out: &mut String, items: &[Value], each: fn(&mut String, &Value)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        each(out, item);
    }
    out.push(']');
}

fn write_map(out: &mut String, m: &Map<String, Value>, each: fn(&mut String, &Value)) {
    // Go's fmt prints map keys sorted.
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    out.push_str("map[");
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        if let Some(v) = m.get(k) {
            each(out, v);
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (json!(null), "<nil>"),
            (json!(80), "80"),
            (json!(-3), "-3"),
            (json!(1.5), "1.5"),
            (json!(1e21), "1e+21"),
            (json!(0.00001), "1e-05"),
            (json!(1234567.5), "1.2345675e+06"),
            (json!(123456.5), "123456.5"),
            (json!("x"), "x"),
            (json!([1, "a", [true]]), "[1 a [true]]"),
            (
                json!({"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}),
                "map[image:nginx name:web ports:[map[containerPort:80]]]",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(go_v(&v), want, "{v}");
        }
        assert_eq!(go_s(&json!("merge")), "merge");
        assert_eq!(go_s(&json!(5)), "%!s(int64=5)");
        assert_eq!(go_s(&json!(null)), "%!s(<nil>)");
        assert_eq!(go_type(&json!({})), GO_MAP);
        assert_eq!(go_type(&json!([])), GO_LIST);
    }
}
