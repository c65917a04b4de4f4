//! Label selector matching on the typed `metav1.LabelSelector`, shared by every
//! controller that selects pods or ReplicaSets (upstream's `LabelSelectorAsSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// An operator validation would have refused; callers decide whether that selects
/// nothing (ReplicaSets) or is a spec error to report (Deployments).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid label selector operator")]
pub struct UnknownOperator(pub String);

/// Whether a selector has neither matchLabels nor matchExpressions.
pub fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Whether `labels` satisfy every requirement of `sel` (an empty selector matches all).
pub fn matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, UnknownOperator> {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if !sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return Ok(false);
    }
    for req in sel.match_expressions.iter().flatten() {
        let actual = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        let ok = match req.operator.as_str() {
            "In" => actual.is_some_and(|a| values.contains(a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            other => return Err(UnknownOperator(other.to_string())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
