//! Object metadata (apimachinery `ValidateObjectMeta` / `ValidateObjectMetaUpdate`):
//! names per kind, namespace, labels, annotations, finalizers, and the fields an update
//! may not change.

use pier_api::{FieldError, FieldPath};
use serde_json::Value;

use crate::names;
use crate::util::{get, int_at, str_at, string_map};

/// How a kind's names are checked; `prefix` is true for `generateName`, where a trailing
/// dash is allowed because a random suffix follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Subdomain,
    /// RFC 1123 label: Namespace.
    Label,
    /// RFC 1035 label: Service.
    Dns1035,
}

impl NameRule {
    /// The messages for `name` under this rule.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        // Upstream's maskTrailingDash: a prefix may end in '-'.
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => names::dns1123_subdomain(name),
            NameRule::Label => names::dns1123_label(name),
            NameRule::Dns1035 => names::dns1035_label(name),
        }
    }
}

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// ValidateObjectMeta for an object about to be created.
pub fn object_meta(obj: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    let generate_name = str_at(obj, "metadata.generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(&path.child("generateName"), generate_name, &msg));
        }
    }
    let name = str_at(obj, "metadata.name");
    if name.is_empty() {
        // The API server generates the name from generateName before storing.
        if generate_name.is_empty() {
            errs.push(FieldError::required(&path.child("name"), "name or generateName is required"));
        }
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, &msg));
        }
    }
    let ns = str_at(obj, "metadata.namespace");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in names::dns1123_label(ns) {
                errs.push(FieldError::invalid(&path.child("namespace"), ns, &msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(&path.child("namespace"), "not allowed on this type"));
    }
    if let Some(g) = int_at(obj, "metadata.generation") {
        if g < 0 {
            errs.push(FieldError::invalid(&path.child("generation"), g, IS_NEGATIVE));
        }
    }
    errs.extend(common(obj, &path));
    errs
}

/// `must be greater than or equal to 0`.
pub const IS_NEGATIVE: &str = "must be greater than or equal to 0";
/// `field is immutable`.
pub const IMMUTABLE: &str = "field is immutable";

/// The checks shared by create and update: labels, annotations, finalizers.
fn common(obj: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = labels(get(obj, "metadata.labels"), &path.child("labels"));
    errs.extend(annotations(get(obj, "metadata.annotations"), &path.child("annotations")));
    let fpath = path.child("finalizers");
    let finalizers: Vec<&str> =
        crate::util::arr_at(obj, "metadata.finalizers").iter().filter_map(Value::as_str).collect();
    for (i, f) in finalizers.iter().enumerate() {
        for msg in names::qualified_name(f) {
            errs.push(FieldError::invalid(&fpath, *f, &msg));
        }
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            errs.push(FieldError::invalid(
                &fpath.index(i),
                *f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            &fpath,
            Value::from(finalizers.iter().map(|s| Value::from(*s)).collect::<Vec<_>>()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// ValidateLabels: keys are qualified names, values label values; errors sit on the map.
pub fn labels(map: Option<&Value>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in string_map(map) {
        for msg in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, k, &msg));
        }
        match v {
            Some(v) => {
                for msg in names::label_value(v) {
                    errs.push(FieldError::invalid(path, v, &msg));
                }
            }
            None => errs.push(FieldError::invalid(&path.key(k), Value::Null, "must be a string")),
        }
    }
    errs
}

/// ValidateAnnotations: keys are qualified names (case-insensitively), total size bounded.
pub fn annotations(map: Option<&Value>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in string_map(map) {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, &msg));
        }
        total += k.len() + v.map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// ValidateObjectMetaUpdate: identity fields may not change; labels and annotations of
/// the new object must be valid.
pub fn object_meta_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    let old_gen = int_at(old, "metadata.generation").unwrap_or(0);
    let new_gen = int_at(new, "metadata.generation").unwrap_or(old_gen);
    if new_gen < old_gen {
        errs.push(FieldError::invalid(&path.child("generation"), new_gen, "must not be decremented"));
    }
    for field in ["name", "namespace"] {
        let (o, n) = (str_at(old, &format!("metadata.{field}")), str_at(new, &format!("metadata.{field}")));
        if o != n {
            errs.push(FieldError::invalid(&path.child(field), n, IMMUTABLE));
        }
    }
    // The API server carries uid and creationTimestamp over when the client omits them,
    // so only a different non-empty value is a change.
    for field in ["uid", "creationTimestamp"] {
        let (o, n) = (str_at(old, &format!("metadata.{field}")), str_at(new, &format!("metadata.{field}")));
        if !n.is_empty() && o != n {
            errs.push(FieldError::invalid(&path.child(field), n, IMMUTABLE));
        }
    }
    errs.extend(common(new, &path));
    errs
}
