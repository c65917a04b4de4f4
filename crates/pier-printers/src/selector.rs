//! Label and label-selector text, as `labels.FormatLabels` and
//! `metav1.LabelSelectorAsSelector(..).String()` write them.

use serde_json::Value;

use crate::json::{arr_at, object, str_at, string_map};

/// A label map as `k1=v1,k2=v2` in key order, or `<none>` when empty.
pub(crate) fn format_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return "<none>".to_string();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Why a label selector could not be turned into a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidSelector;

/// The text of a `metav1.LabelSelector` (`app=kubia,tier in (a,b),!legacy`): requirements in
/// key order, `""` for a missing or empty selector.
///
/// Only the checks that decide between a selector and an error are made (operator names and
/// how many values each takes); keys and values are not validated as label syntax.
pub(crate) fn label_selector_string(selector: &Value) -> Result<String, InvalidSelector> {
    if object(selector, &[]).is_none() {
        return Ok(String::new());
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in string_map(selector, &["matchLabels"]) {
        reqs.push((k.to_string(), format!("{k}={v}")));
    }
    for expr in arr_at(selector, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        let mut values: Vec<&str> = arr_at(expr, &["values"]).iter().filter_map(Value::as_str).collect();
        // Upstream sorts the values it prints, without touching the object.
        values.sort_unstable();
        let text = match str_at(expr, &["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(InvalidSelector);
                }
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted_and_empty_is_none() {
        assert_eq!(format_labels(&[]), "<none>");
        assert_eq!(format_labels(&[("app", "kubia"), ("tier", "web")]), "app=kubia,tier=web");
    }

    #[test]
    fn selectors_print_requirements_in_key_order() {
        let cases = [
            (json!(null), Ok(String::new())),
            (json!({}), Ok(String::new())),
            (json!({"matchLabels": {"app": "kubia"}}), Ok("app=kubia".to_string())),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "a", "operator": "Exists"},
                    {"key": "tier", "operator": "NotIn", "values": ["db"]}
                ]}),
                Ok("a,env in (dev,prod),!legacy,tier notin (db),z=1".to_string()),
            ),
            (json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}), Err(InvalidSelector)),
            (json!({"matchExpressions": [{"key": "a", "operator": "In"}]}), Err(InvalidSelector)),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                Err(InvalidSelector),
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(label_selector_string(&sel), want, "selector {sel}");
        }
    }
}
