//! JSON merge patch (RFC 7386).

use serde_json::{Map, Value};

/// Applies a JSON merge patch (RFC 7386) to `target`: an object patch merges member by
/// member, recursively, `null` deleting a member; any other patch replaces the target.
///
/// The API server (through `evanphx/json-patch.v4`) rejects a patch body that is neither an
/// object nor an array with 400 `Invalid JSON Patch`; that check belongs to the caller.
pub fn json_merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            result.shift_remove(key);
        } else {
            let merged = json_merge_patch(result.get(key).unwrap_or(&Value::Null), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The examples of RFC 7386, appendix A, and a Kubernetes-shaped case.
    #[test]
    fn rfc7386_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
            // Nulls inside arrays are values, not deletions.
            (json!({}), json!({"a": [null]}), json!({"a": [null]})),
            (
                json!({"metadata": {"labels": {"app": "kubia", "tier": "web"}}, "spec": {"replicas": 3}}),
                json!({"metadata": {"labels": {"tier": null, "rel": "beta"}}, "spec": {"replicas": 5}}),
                json!({"metadata": {"labels": {"app": "kubia", "rel": "beta"}}, "spec": {"replicas": 5}}),
            ),
        ];
        for (target, patch, want) in cases {
            let got = json_merge_patch(&target, &patch);
            assert_eq!(got, want, "target {target} patch {patch}");
        }
    }
}
