//! Walks over objects guided by an [`ApplySchema`]: the field set of a value, the
//! comparison of two values, the merge of an applied configuration into a live object,
//! and the removal of a set of fields. These follow upstream's structured-merge-diff
//! (`ToFieldSet`, `Compare`, `Merge`, `RemoveItems`).

use serde_json::{Map, Value};

use crate::error::ApplyError;
use crate::path::{Path, PathElement};
use crate::schema::{ApplySchema, ListType, Shape};
use crate::set::FieldSet;

/// How a value is walked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    /// One value: scalars, atomic maps and lists, and values that do not fit their
    /// schema.
    Leaf,
    /// An object walked key by key.
    Fields,
    /// A list walked item by item.
    Items(ListType),
}

fn classify<S: ApplySchema>(schema: Option<S>, value: &Value) -> Class {
    let shape = schema.map(|s| s.shape()).unwrap_or(Shape::Untyped);
    match (shape, value) {
        (
            Shape::Struct { atomic: false } | Shape::Map { atomic: false } | Shape::Untyped,
            Value::Object(_),
        ) => Class::Fields,
        (Shape::List(ListType::Atomic), _) => Class::Leaf,
        (Shape::List(lt), Value::Array(_)) => Class::Items(lt),
        _ => Class::Leaf,
    }
}

/// The schema of key `key` of an object, and whether it is a named struct field
/// (rather than a map entry).
fn child<S: ApplySchema>(schema: Option<S>, key: &str) -> (Option<S>, bool) {
    let Some(s) = schema else { return (None, false) };
    if matches!(s.shape(), Shape::Struct { .. }) {
        if let Some(f) = s.field(key) {
            return (Some(f), true);
        }
    }
    (s.elements(), false)
}

/// Why an item has no path element.
enum KeyError {
    NotAnObject,
    Missing(String),
}

/// The path element of one item of a list of type `lt` whose schema is `schema`.
fn item_element<S: ApplySchema>(
    schema: Option<S>,
    lt: &ListType,
    item: &Value,
) -> Result<PathElement, KeyError> {
    match lt {
        ListType::Set | ListType::Atomic => Ok(PathElement::value(item)),
        ListType::Map(keys) => {
            let Value::Object(fields) = item else { return Err(KeyError::NotAnObject) };
            let items = schema.and_then(|s| s.elements());
            let mut key = Vec::with_capacity(keys.len());
            for k in keys {
                let v = match fields.get(k).filter(|v| !v.is_null()) {
                    Some(v) => v.clone(),
                    None => {
                        items.and_then(|s| s.default_of(k)).ok_or_else(|| KeyError::Missing(k.clone()))?
                    }
                };
                key.push((k.as_str(), v));
            }
            Ok(PathElement::key(key.iter().map(|(k, v)| (*k, v))))
        }
    }
}

/// The items of a list with their path elements, first of duplicates winning; `None`
/// when some item cannot be keyed (the list is then handled as one value).
fn itemize<'a, S: ApplySchema>(
    schema: Option<S>,
    lt: &ListType,
    items: &'a [Value],
) -> Option<Vec<(PathElement, &'a Value)>> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(items.len());
    for item in items {
        let pe = item_element(schema, lt, item).ok()?;
        if !out.iter().any(|(e, _)| *e == pe) {
            out.push((pe, item));
        }
    }
    Some(out)
}

/// The fields an applied configuration sets, as upstream's `ToFieldSet`: leaves and
/// atomic values, list items, and map entries that are data (labels) or empty.
///
/// # Errors
///
/// [`ApplyError::MissingKeyField`] and [`ApplyError::DuplicateEntry`] for associative
/// lists whose items cannot be told apart.
pub(crate) fn to_field_set<S: ApplySchema>(
    schema: Option<S>,
    value: &Value,
    path: &Path,
    set: &mut FieldSet,
) -> Result<(), ApplyError> {
    match (classify(schema, value), value) {
        (Class::Fields, Value::Object(map)) => {
            for (k, v) in map {
                let (cs, is_field) = child(schema, k);
                let p = path.child(PathElement::field(k));
                to_field_set(cs, v, &p, set)?;
                let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
                if empty || !is_field {
                    set.insert(&p);
                }
            }
        }
        (Class::Items(lt), Value::Array(items)) => {
            let elements = schema.and_then(|s| s.elements());
            let mut seen: Vec<PathElement> = Vec::with_capacity(items.len());
            for item in items {
                let pe = item_element(schema, &lt, item).map_err(|e| match e {
                    KeyError::NotAnObject => ApplyError::MissingKeyField {
                        list: path.to_string(),
                        key: match &lt {
                            ListType::Map(keys) => keys.join(","),
                            _ => String::new(),
                        },
                    },
                    KeyError::Missing(key) => ApplyError::MissingKeyField { list: path.to_string(), key },
                })?;
                if seen.contains(&pe) {
                    return Err(ApplyError::DuplicateEntry { list: path.to_string(), key: pe.to_string() });
                }
                let p = path.child(pe.clone());
                to_field_set(elements, item, &p, set)?;
                set.insert(&p);
                seen.push(pe);
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

/// What changed from one value to another, as upstream's `Compare`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares `lhs` (before) and `rhs` (after) at `path`. Objects and lists that appear
/// or disappear count themselves too (that is where `.` entries come from).
pub(crate) fn compare<S: ApplySchema>(
    schema: Option<S>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &Path,
    out: &mut Comparison,
) {
    let lc = lhs.map(|v| classify(schema, v));
    let rc = rhs.map(|v| classify(schema, v));
    let class = match (&lc, &rc) {
        (Some(l), Some(r)) if std::mem::discriminant(l) != std::mem::discriminant(r) => Class::Leaf,
        (_, Some(r)) => r.clone(),
        (Some(l), None) => l.clone(),
        (None, None) => return,
    };
    let walked = match class {
        Class::Leaf => false,
        Class::Fields => compare_fields(schema, lhs, rhs, path, out),
        Class::Items(lt) => compare_items(schema, &lt, lhs, rhs, path, out),
    };
    if !walked {
        match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(a), Some(b)) if a != b => out.modified.insert(path),
            _ => {}
        }
        return;
    }
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// Compares two objects key by key; `false` when both are empty (then they are leaves,
/// which keeps `{}` apart from absent).
fn compare_fields<S: ApplySchema>(
    schema: Option<S>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &Path,
    out: &mut Comparison,
) -> bool {
    let empty = Map::new();
    let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
    let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
    if l.is_empty() && r.is_empty() {
        return false;
    }
    let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
    for k in keys {
        let (cs, _) = child(schema, k);
        compare(cs, l.get(k), r.get(k), &path.child(PathElement::field(k)), out);
    }
    true
}

fn compare_items<S: ApplySchema>(
    schema: Option<S>,
    lt: &ListType,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &Path,
    out: &mut Comparison,
) -> bool {
    let none: Vec<Value> = Vec::new();
    let l = lhs.and_then(Value::as_array).unwrap_or(&none);
    let r = rhs.and_then(Value::as_array).unwrap_or(&none);
    if l.is_empty() && r.is_empty() {
        return false;
    }
    let (Some(li), Some(ri)) = (itemize(schema, lt, l), itemize(schema, lt, r)) else { return false };
    let elements = schema.and_then(|s| s.elements());
    let find = |items: &[(PathElement, &'_ Value)], pe: &PathElement| -> Option<Value> {
        items.iter().find(|(e, _)| e == pe).map(|(_, v)| (*v).clone())
    };
    let all = li
        .iter()
        .map(|(e, _)| e)
        .chain(ri.iter().map(|(e, _)| e).filter(|e| !li.iter().any(|(x, _)| x == *e)));
    for pe in all {
        let (a, b) = (find(&li, pe), find(&ri, pe));
        compare(elements, a.as_ref(), b.as_ref(), &path.child(pe.clone()), out);
    }
    true
}

/// Merges an applied configuration into a live value: objects key by key, associative
/// lists item by item (new items appended), everything else replaced. A `null` in the
/// configuration removes the field.
pub(crate) fn merge<S: ApplySchema>(schema: Option<S>, live: &Value, config: &Value) -> Value {
    match (classify(schema, config), live, config) {
        (Class::Fields, Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let (cs, _) = child(schema, k);
                let merged = match out.get(k) {
                    Some(lv) => merge(cs, lv, cv),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Class::Items(lt), Value::Array(l), Value::Array(c)) => {
            let Some(live_items) = itemize(schema, &lt, l) else { return config.clone() };
            let mut keys: Vec<PathElement> = live_items.iter().map(|(e, _)| e.clone()).collect();
            let mut out: Vec<Value> = live_items.iter().map(|(_, v)| (*v).clone()).collect();
            let elements = schema.and_then(|s| s.elements());
            for item in c {
                let Ok(pe) = item_element(schema, &lt, item) else {
                    out.push(item.clone());
                    continue;
                };
                match keys.iter().position(|e| *e == pe) {
                    Some(i) => out[i] = merge(elements, &out[i], item),
                    None => {
                        out.push(item.clone());
                        keys.push(pe);
                    }
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes every member of `set` from `value` (map keys, list items, whole atomic
/// values), descending for the paths below.
pub(crate) fn remove<S: ApplySchema>(schema: Option<S>, value: &mut Value, set: &FieldSet) {
    match value {
        Value::Object(map) => {
            for (e, sub) in set.children() {
                let Some(name) = e.as_field() else { continue };
                let (cs, _) = child(schema, name);
                if let Some(v) = map.get_mut(name) {
                    remove(cs, v, sub);
                }
            }
            for e in set.members() {
                if let Some(name) = e.as_field() {
                    map.remove(name);
                }
            }
        }
        Value::Array(_) => {
            let Class::Items(lt) = classify(schema, value) else { return };
            let Value::Array(items) = value else { return };
            let elements = schema.and_then(|s| s.elements());
            // Keyed before anything changes: removing fields below an item must not
            // change which item it is.
            let keys: Vec<Option<PathElement>> =
                items.iter().map(|it| item_element(schema, &lt, it).ok()).collect();
            let key_fields: &[String] = match &lt {
                ListType::Map(k) => k,
                _ => &[],
            };
            for (e, sub) in set.children() {
                if let Some(i) = keys.iter().position(|k| k.as_ref() == Some(e)) {
                    // An item that stays keeps its key fields.
                    let sub =
                        sub.retain_top(|f| !f.as_field().is_some_and(|n| key_fields.iter().any(|k| k == n)));
                    remove(elements, &mut items[i], &sub);
                }
            }
            let members: Vec<&PathElement> = set.members().collect();
            let mut keys = keys.into_iter();
            items.retain(|_| keys.next().flatten().is_none_or(|e| !members.contains(&&e)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Option<pier_schema::SchemaCursor> {
        pier_schema::patch_schema("io.k8s.api.core.v1.Service")
    }

    fn set_of(v: &Value) -> Value {
        let mut set = FieldSet::new();
        to_field_set(svc(), v, &Path::root(), &mut set).expect("field set");
        set.to_fields_v1()
    }

    #[test]
    fn field_sets_follow_list_and_map_types() {
        let config = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], "clusterIPs": ["10.0.0.1"]}
        });
        assert_eq!(
            set_of(&config),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:clusterIPs": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {}
                }
            })
        );
    }

    #[test]
    fn field_set_errors_name_the_list() {
        let mut set = FieldSet::new();
        let dup = json!({"spec": {"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]}});
        let err = to_field_set(svc(), &dup, &Path::root(), &mut set).expect_err("duplicate");
        assert_eq!(err.to_string(), r#".spec.ports: duplicate entries for key [port=80,protocol="TCP"]"#);
        let missing = json!({"spec": {"ports": [{"targetPort": 80}]}});
        let err = to_field_set(svc(), &missing, &Path::root(), &mut set).expect_err("missing key");
        assert!(matches!(err, ApplyError::MissingKeyField { ref key, .. } if key == "port"), "{err}");
    }

    #[test]
    fn compare_marks_new_objects_and_lists() {
        let before = json!({"spec": {"type": "ClusterIP"}});
        let after = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let mut c = Comparison::default();
        compare(svc(), Some(&before), Some(&after), &Path::root(), &mut c);
        assert_eq!(c.modified.to_fields_v1(), json!({"f:spec": {"f:type": {}}}));
        assert_eq!(
            c.added.to_fields_v1(),
            json!({
                "f:metadata": {".": {}, "f:labels": {".": {}, "f:a": {}}},
                "f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}}}}
            })
        );
        assert!(c.removed.is_empty());
        let mut back = Comparison::default();
        compare(svc(), Some(&after), Some(&before), &Path::root(), &mut back);
        assert_eq!(back.removed.paths().len(), c.added.paths().len());
    }

    #[test]
    fn merge_follows_list_and_map_types() {
        let cases = [
            // map list: merged by key, defaults included in the key
            (
                json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30001}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
                json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30001}, {"port": 443}]}}),
            ),
            // atomic map: replaced whole
            (
                json!({"spec": {"selector": {"app": "a", "tier": "b"}}}),
                json!({"spec": {"selector": {"app": "c"}}}),
                json!({"spec": {"selector": {"app": "c"}}}),
            ),
            // granular map: merged; null removes
            (
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"c": "3", "b": null}}}),
                json!({"metadata": {"labels": {"a": "1", "c": "3"}}}),
            ),
            // atomic list: replaced whole
            (
                json!({"spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}}),
                json!({"spec": {"externalIPs": ["3.3.3.3"]}}),
                json!({"spec": {"externalIPs": ["3.3.3.3"]}}),
            ),
            // set: union
            (
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
        ];
        for (live, config, want) in cases {
            assert_eq!(merge(svc(), &live, &config), want, "{config}");
        }
    }

    #[test]
    fn remove_takes_out_members_and_items() {
        let mut v = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "x"}, {"port": 81, "protocol": "TCP"}]}});
        let set = FieldSet::from_fields_v1(&json!({
            "f:metadata": {"f:labels": {"f:b": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":81,\"protocol\":\"TCP\"}": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:name": {}}}}
        }))
        .expect("set");
        remove(svc(), &mut v, &set);
        assert_eq!(
            v,
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
        );
    }
}
