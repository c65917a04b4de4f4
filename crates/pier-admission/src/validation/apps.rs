//! Workload controllers: ReplicationController (core), ReplicaSet and Deployment
//! (apps/v1), with upstream's selector/template rules and apps/v1's immutable selectors.

use pier_api::{FieldError, FieldPath};
use serde_json::{Map, Value};

use super::meta::{self, NameRule, IMMUTABLE, IS_NEGATIVE};
use super::pod;
use crate::names;
use crate::util::{get, int_at, str_at};

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

fn nonnegative(obj: &Value, field: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(n) = int_at(obj, field) {
        if n < 0 {
            errs.push(FieldError::invalid(&path.child(field), n, IS_NEGATIVE));
        }
    }
}

fn template_labels(spec: &Value) -> Option<&Map<String, Value>> {
    get(spec, "template.metadata.labels").and_then(Value::as_object)
}

/// The rules upstream adds for templates owned by a controller: labels match the
/// selector, pods restart Always, no activeDeadlineSeconds.
fn controller_template(spec: &Value, matches: bool, kind: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let tpath = path.child("template");
    let Some(tmpl) = get(spec, "template").filter(|v| !v.is_null()) else {
        errs.push(FieldError::required(&tpath, ""));
        return errs;
    };
    if !matches {
        let labels = get(tmpl, "metadata.labels").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid(&tpath.child("metadata").child("labels"), labels, SELECTOR_MISMATCH));
    }
    errs.extend(pod::template(tmpl, &tpath));
    let rp = str_at(tmpl, "spec.restartPolicy");
    if !rp.is_empty() && rp != "Always" {
        errs.push(FieldError::not_supported(&tpath.child("spec").child("restartPolicy"), rp, &["Always"]));
    }
    if get(tmpl, "spec.activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        let detail = format!("activeDeadlineSeconds in {kind} is not Supported");
        errs.push(FieldError::forbidden(&tpath.child("spec").child("activeDeadlineSeconds"), &detail));
    }
    errs
}

/// ValidateReplicationController.
pub fn replication_controller(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let path = FieldPath::new("spec");
    let spec = get(obj, "spec").unwrap_or(&Value::Null);
    nonnegative(spec, "minReadySeconds", &path, &mut errs);
    let selector = get(spec, "selector").and_then(Value::as_object);
    let empty = selector.is_none_or(Map::is_empty);
    if empty {
        errs.push(FieldError::required(&path.child("selector"), ""));
    } else {
        errs.extend(meta::labels(get(spec, "selector"), &path.child("selector")));
    }
    nonnegative(spec, "replicas", &path, &mut errs);
    let matches = selector.is_none_or(|s| crate::util::selector_matches(s, template_labels(spec)));
    errs.extend(controller_template(spec, matches, "ReplicationController", &path));
    errs
}

/// A metav1.LabelSelector: its own errors, and whether it matches `labels`.
fn label_selector(
    sel: &Value,
    path: &FieldPath,
    labels: Option<&Map<String, Value>>,
) -> (Vec<FieldError>, bool) {
    let mut errs = meta::labels(get(sel, "matchLabels"), &path.child("matchLabels"));
    let mut matches = get(sel, "matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|ml| crate::util::selector_matches(ml, labels));
    let epath = path.child("matchExpressions");
    for (i, expr) in crate::util::arr_at(sel, "matchExpressions").iter().enumerate() {
        let p = epath.index(i);
        let key = str_at(expr, "key");
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(&p.child("key"), key, &msg));
        }
        let values: Vec<&str> =
            crate::util::arr_at(expr, "values").iter().filter_map(Value::as_str).collect();
        let have = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let op = str_at(expr, "operator");
        let ok = match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
                let inside = have.is_some_and(|h| values.contains(&h));
                if op == "In" {
                    inside
                } else {
                    !inside
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
                (op == "Exists") == have.is_some()
            }
            _ => {
                errs.push(FieldError::invalid(&p.child("operator"), op, "not a valid selector operator"));
                false
            }
        };
        matches &= ok;
    }
    (errs, matches)
}

fn int_or_percent(v: Option<&Value>, path: &FieldPath) -> (Vec<FieldError>, Option<(i64, bool)>) {
    match v {
        Some(Value::String(s)) => {
            let digits =
                s.strip_suffix('%').filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(n) => {
                    let mut errs = Vec::new();
                    if n > 100 {
                        errs.push(FieldError::invalid(path, s.as_str(), "must not be greater than 100%"));
                    }
                    (errs, Some((n, true)))
                }
                None => {
                    let msg = names::regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    );
                    (vec![FieldError::invalid(path, s.as_str(), &msg)], None)
                }
            }
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                (vec![FieldError::invalid(path, n, IS_NEGATIVE)], None)
            } else {
                (Vec::new(), Some((n, false)))
            }
        }
        None | Some(Value::Null) => (Vec::new(), None),
        Some(other) => (
            vec![FieldError::invalid(path, other.clone(), "must be an integer or percentage (e.g '5%')")],
            None,
        ),
    }
}

/// ReplicaSet (`deployment = false`) and Deployment spec rules.
fn apps_spec(obj: &Value, deployment: bool) -> Vec<FieldError> {
    let kind = if deployment { "Deployment" } else { "ReplicaSet" };
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let path = FieldPath::new("spec");
    let spec = get(obj, "spec").unwrap_or(&Value::Null);
    nonnegative(spec, "replicas", &path, &mut errs);
    let mut matches = true;
    match get(spec, "selector").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required(&path.child("selector"), "")),
        Some(sel) => {
            let (sel_errs, m) = label_selector(sel, &path.child("selector"), template_labels(spec));
            errs.extend(sel_errs);
            let n = get(sel, "matchLabels").and_then(Value::as_object).map_or(0, Map::len)
                + crate::util::arr_at(sel, "matchExpressions").len();
            if n == 0 {
                errs.push(FieldError::invalid(
                    &path.child("selector"),
                    sel.clone(),
                    "empty selector is invalid for deployment",
                ));
            } else {
                matches = m;
            }
        }
    }
    errs.extend(controller_template(spec, matches, kind, &path));
    nonnegative(spec, "minReadySeconds", &path, &mut errs);
    if deployment {
        errs.extend(strategy(spec, &path.child("strategy")));
        nonnegative(spec, "revisionHistoryLimit", &path, &mut errs);
        if let Some(pds) = int_at(spec, "progressDeadlineSeconds") {
            nonnegative(spec, "progressDeadlineSeconds", &path, &mut errs);
            if pds <= int_at(spec, "minReadySeconds").unwrap_or(0) {
                errs.push(FieldError::invalid(
                    &path.child("progressDeadlineSeconds"),
                    pds,
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }
    errs
}

fn strategy(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = str_at(spec, "strategy.type");
    let ru = get(spec, "strategy.rollingUpdate").filter(|v| !v.is_null());
    match ty {
        "Recreate" => {
            if ru.is_some() {
                errs.push(FieldError::forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => errs.push(FieldError::required(
                &path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rpath = path.child("rollingUpdate");
                let (e1, unavailable) =
                    int_or_percent(get(ru, "maxUnavailable"), &rpath.child("maxUnavailable"));
                let (e2, surge) = int_or_percent(get(ru, "maxSurge"), &rpath.child("maxSurge"));
                errs.extend(e1);
                errs.extend(e2);
                if let (Some((0, _)), Some((0, _))) = (unavailable, surge) {
                    let v = get(ru, "maxUnavailable").cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        &rpath.child("maxUnavailable"),
                        v,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        },
        _ => errs.push(FieldError::not_supported(&path.child("type"), ty, &["Recreate", "RollingUpdate"])),
    }
    errs
}

/// ValidateReplicaSet.
pub fn replica_set(obj: &Value) -> Vec<FieldError> {
    apps_spec(obj, false)
}

/// ValidateDeployment.
pub fn deployment(obj: &Value) -> Vec<FieldError> {
    apps_spec(obj, true)
}

/// Updates: metadata rules, the new object's rules, and (apps/v1 only) an immutable
/// selector.
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let create_errs = match kind {
        "ReplicationController" => replication_controller(new),
        "ReplicaSet" => replica_set(new),
        _ => deployment(new),
    };
    if kind != "ReplicationController" {
        let (o, n) = (get(old, "spec.selector"), get(new, "spec.selector"));
        if o != n {
            let v = n.cloned().unwrap_or(Value::Null);
            errs.push(FieldError::invalid(&FieldPath::new("spec").child("selector"), v, IMMUTABLE));
        }
    }
    for e in create_errs {
        if !errs.contains(&e) {
            errs.push(e);
        }
    }
    errs
}
