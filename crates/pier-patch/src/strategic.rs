//! Strategic merge patch, as upstream's `strategicpatch.StrategicMergePatch` applies it on
//! the server (`k8s.io/apimachinery/pkg/util/strategicpatch`), including the directives
//! `kubectl apply`, `edit` and `patch` send:
//!
//! - `$patch: replace | delete` in a map (and `replace`, `delete` of one element, in a
//!   list merged by key);
//! - `$setElementOrder/<list>`: the order of a merged list;
//! - `$deleteFromPrimitiveList/<list>`: values to drop from a merged list of scalars;
//! - `$retainKeys`: keys to keep in a map (applied wherever it appears, as upstream does;
//!   kubectl only sends it where the schema says `retainKeys`).
//!
//! Without `$setElementOrder`, upstream puts the patch's elements in the patch's order and
//! slots the original's other elements around them by their original order, so that new
//! elements of a merged list come **first** (e.g. patching `finalizers: [b]` onto `[a]`
//! gives `[b, a]`). This module does the same.

use serde_json::{Map, Value};

use crate::error::PatchError;
use crate::gofmt::{go_type, GO_LIST, GO_MAP};
use crate::schema::{ListStrategy, PatchSchema};

type Obj = Map<String, Value>;
type Result<T, E = PatchError> = std::result::Result<T, E>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
/// Upstream's name for the element type of a list of objects (a Go struct).
const STRUCT: &str = "struct";

/// Applies a strategic merge patch to `original`, guided by `schema` (the root of the
/// object's type). Maps merge recursively and `null` deletes a key; lists follow the
/// schema's [`ListStrategy`] (replace when the schema says nothing); see the module docs
/// for the directives. `original` and `patch` are only read.
///
/// The result is what upstream's API server stores, except that directive keys left in
/// places upstream copies verbatim (new list elements, replaced lists) are removed here;
/// upstream loses them when it decodes the result into its Go types. `null`s inside new
/// elements are kept.
///
/// # Errors
///
/// [`PatchError`] with upstream's message; [`PatchError::status_code`] says how the API
/// server answers (400 for malformed directives, 500 for e.g. a missing merge key).
pub fn strategic_merge_patch<S: PatchSchema>(original: &Value, patch: &Value, schema: &S) -> Result<Value> {
    let patch = match patch {
        Value::Object(m) => m.clone(),
        // Go decodes `null` into an empty map.
        Value::Null => Obj::new(),
        other => return Err(PatchError::PatchNotAnObject { found: crate::error::JsonType::of(other) }),
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Obj::new(),
        _ => return Err(PatchError::BadJsonDoc),
    };
    let mut merged = Value::Object(merge_map(original, patch, Some(schema))?);
    strip_directives(&mut merged);
    Ok(merged)
}

// ===== kinds =====

/// The Go type a value decodes to; upstream merges two values only when these agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    String,
    List,
    Map,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Int,
        Value::Number(_) => Kind::Float,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::List,
        Value::Object(_) => Kind::Map,
    }
}

/// The schema of a map's member: a field of a struct, or the value type of a map.
fn member_schema<S: PatchSchema>(schema: Option<&S>, key: &str) -> Option<S> {
    schema.and_then(|s| s.field(key).or_else(|| s.elements()))
}

/// The merge key of the list at `schema` ("" when it has none).
fn merge_key_of<S: PatchSchema>(schema: Option<&S>) -> String {
    match schema.map(PatchSchema::list_strategy) {
        Some(ListStrategy::MergeByKey { key }) => key,
        _ => String::new(),
    }
}

// ===== maps =====

fn merge_map<S: PatchSchema>(mut original: Obj, mut patch: Obj, schema: Option<&S>) -> Result<Obj> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                // The rest of the patch is taken as is, without merging.
                patch.shift_remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Obj::new()),
            _ => Err(PatchError::UnknownPatchType {
                directive: Box::new(directive.clone()),
                map: patch.clone(),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    // Lists named by `$setElementOrder/...` are merged and ordered first, and leave the
    // patch.
    merge_ordered_lists(&mut original, &mut patch, schema)?;

    for (patch_key, patch_value) in patch {
        let mut key = patch_key;
        let mut is_delete_list = false;
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let list_key = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?;
            is_delete_list = true;
            if !list_key.is_empty() {
                key = list_key;
            }
        }

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let same_kind = original.get(&key).map(|v| kind(v) == kind(&patch_value));
        if same_kind != Some(true) {
            // Absent, or of another type: the patch value replaces it. A deletion list
            // for a list that is not there deletes nothing.
            if !is_delete_list {
                insert_cleaned(&mut original, key, patch_value);
            }
            continue;
        }

        let current = original.get_mut(&key).map(std::mem::take);
        let merged = match (current, patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let child = member_schema(schema, &key);
                Some(Value::Object(merge_map(o, p, child.as_ref())?))
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let child = member_schema(schema, &key);
                Some(Value::Array(merge_list(o, p, child.as_ref(), is_delete_list)?))
            }
            (_, p) => remove_directives(p),
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// Stores a patch value where there is nothing to merge it with: without its `null`
/// members (they have nothing to delete) and without directives.
fn insert_cleaned(original: &mut Obj, key: String, mut value: Value) {
    discard_nulls(&mut value);
    match remove_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.shift_remove(&key);
        }
    }
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Drops every map holding `$patch` (and the member or element holding that map);
/// `None` when `v` itself is such a map.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter().filter_map(|(k, v)| remove_directives(v).map(|v| (k, v))).collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// Removes directive keys that upstream leaves in its raw result (its typed decoding drops
/// them afterwards).
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| {
                !(k == DIRECTIVE
                    || k == RETAIN_KEYS
                    || k.starts_with(SET_ELEMENT_ORDER)
                    || k.starts_with(DELETE_FROM_PRIMITIVE_LIST))
            });
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// `$retainKeys`: every key the patch sets must be listed, and keys of the original not
/// listed are dropped.
fn apply_retain_keys(original: &mut Obj, patch: &mut Obj) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// The list key of a `$setElementOrder/<key>` or `$deleteFromPrimitiveList/<key>` key.
fn extract_key(s: &str, prefix: &str) -> Result<String> {
    match s.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_string()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => Err(PatchError::BadPatchFormatForPrimitiveList),
        _ => Err(PatchError::BadPatchFormatForSetElementOrderList),
    }
}

fn as_list(v: Option<&Value>) -> Result<Option<Vec<Value>>> {
    match v {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(PatchError::BadArgType { expected: GO_LIST, actual: go_type(other) }),
    }
}

/// Processes each `$setElementOrder/<key>`: merges `<key>` of the patch into the original
/// (if both have it) and orders the result by the directive's list, then the original's
/// order for elements the directive does not name.
fn merge_ordered_lists<S: PatchSchema>(
    original: &mut Obj,
    patch: &mut Obj,
    schema: Option<&S>,
) -> Result<()> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(PatchError::BadArgType { expected: GO_LIST, actual: go_type(&order) });
        };
        let list_key = extract_key(&key, SET_ELEMENT_ORDER)?;
        let original_list = as_list(original.get(&list_key))?;
        let patch_list = as_list(patch.get(&list_key))?;
        let list_schema = member_schema(schema, &list_key);
        let merge_key = merge_key_of(list_schema.as_ref());

        validate_patch_with_order(patch_list.as_deref().unwrap_or(&[]), &order, &merge_key)?;

        let merged = match (original_list.clone(), patch_list.clone()) {
            (Some(o), None) => o,
            (None, Some(p)) => p.into_iter().filter_map(remove_directives).collect(),
            (Some(o), Some(p)) => merge_list(o, p, list_schema.as_ref(), false)?,
            (None, None) => continue,
        };

        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_scalars(merged, &order)
        } else {
            partition_maps(merged, &order, &merge_key)?
        };
        let original_list = original_list.unwrap_or_default();
        let element_kind = list_element_kind(&[&original_list, patch_list.as_deref().unwrap_or(&[])])?;
        let ordered = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &original_list,
            &merge_key,
            element_kind,
        )?;
        original.insert(list_key.clone(), Value::Array(ordered));
        patch.shift_remove(&list_key);
    }
    Ok(())
}

/// The patch list's elements (deletions and directives aside) must appear in the
/// `$setElementOrder` list in the same relative order.
fn validate_patch_with_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let kept =
        if merge_key.is_empty() { patch_list.to_vec() } else { split_deletions(patch_list.to_vec())?.0 };
    let (mut p, mut s) = (0, 0);
    while p < kept.len() && s < order.len() {
        if kept[p].as_object().is_some_and(|m| m.contains_key(DIRECTIVE)) {
            p += 1;
            continue;
        }
        if merge_key_value_equal(&kept[p], &order[s], merge_key)? {
            p += 1;
        }
        s += 1;
    }
    if p < kept.len() && s >= order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch_list: patch_list.to_vec(),
            order: order.to_vec(),
        });
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let key_of = |v: &Value| -> Result<Value> {
        let m = v.as_object().ok_or(PatchError::BadArgType { expected: GO_MAP, actual: go_type(v) })?;
        m.get(merge_key)
            .cloned()
            .ok_or_else(|| PatchError::NoMergeKey { map: m.clone(), key: merge_key.to_string() })
    };
    let l = key_of(left)?;
    let r = key_of(right)?;
    Ok(l == r)
}

// ===== lists =====

/// Merges a patch list into an original list, as the list's strategy says. Deletion lists
/// (`$deleteFromPrimitiveList`) are merged whatever the strategy.
fn merge_list<S: PatchSchema>(
    original: Vec<Value>,
    patch: Vec<Value>,
    list_schema: Option<&S>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    let strategy = list_schema.map(PatchSchema::list_strategy).unwrap_or(ListStrategy::Replace);
    if strategy == ListStrategy::Replace && !is_delete_list {
        return Ok(patch);
    }
    let merge_key = match strategy {
        ListStrategy::MergeByKey { key } => key,
        _ => String::new(),
    };
    let elements = list_schema.and_then(PatchSchema::elements);
    merge_slice(original, patch, elements.as_ref(), &merge_key, is_delete_list)
}

fn merge_slice<S: PatchSchema>(
    original: Vec<Value>,
    patch: Vec<Value>,
    elements: Option<&S>,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let element_kind = list_element_kind(&[&original, &patch])?;

    let (merged, original, patch) = if element_kind != Kind::Map {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        // A set: no duplicates. The order is settled below.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        (merged, original, patch)
    } else {
        if merge_key.is_empty() {
            return Err(PatchError::NoMergeKeyForList { name: STRUCT.to_string() });
        }
        let (original, patch) = apply_element_directives(original, patch, merge_key)?;
        let merged = merge_elements(original.clone(), &patch, merge_key, elements)?;
        (merged, original, patch)
    };

    let (patch_items, server_only) = if merge_key.is_empty() {
        partition_scalars(merged, &patch)
    } else {
        partition_maps(merged, &patch, merge_key)?
    };
    normalize_element_order(patch_items, server_only, &patch, &original, merge_key, element_kind)
}

/// The common kind of the elements of `lists`.
fn list_element_kind(lists: &[&[Value]]) -> Result<Kind> {
    let mut prev: Option<Kind> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = kind(v);
        match prev {
            None if k == Kind::List => return Err(PatchError::NoListOfLists),
            None => prev = Some(k),
            Some(p) if p != k => {
                return Err(PatchError::MixedListElements {
                    lists: lists.iter().map(|l| l.to_vec()).collect(),
                })
            }
            Some(_) => {}
        }
    }
    prev.ok_or(PatchError::EmptyLists)
}

/// Handles patch elements carrying `$patch`: `delete` removes the original's elements with
/// that key, `replace` makes the patch's other elements the whole list. Returns the
/// original and the patch without those elements.
fn apply_element_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Some(directive) = v.as_object().and_then(|m| m.get(DIRECTIVE)) else {
            plain.push(v);
            continue;
        };
        let map = v.as_object().cloned().unwrap_or_default();
        match directive.as_str() {
            Some("delete") => {
                let Some(key_value) = map.get(merge_key) else {
                    return Err(PatchError::NoMergeKey { map, key: merge_key.to_string() });
                };
                ensure_maps(&original)?;
                original.retain(|e| e.get(merge_key) != Some(key_value));
            }
            // Keep going: the other directive elements are dropped as well.
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergingListsNotSupported),
            _ => return Err(PatchError::UnknownPatchType { directive: Box::new(directive.clone()), map }),
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn ensure_maps(list: &[Value]) -> Result<()> {
    match list.iter().position(|v| !v.is_object()) {
        Some(index) => Err(PatchError::NotAMap { index }),
        None => Ok(()),
    }
}

/// The position of the element of `list` whose `merge_key` is `value`.
fn find_by_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>> {
    for (index, v) in list.iter().enumerate() {
        let Some(m) = v.as_object() else {
            return Err(PatchError::NotAMap { index });
        };
        if m.get(merge_key) == Some(value) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Merges each patch element into the original element with the same key, or appends it.
fn merge_elements<S: PatchSchema>(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    elements: Option<&S>,
) -> Result<Vec<Value>> {
    for v in patch {
        let map = v.as_object().cloned().unwrap_or_default();
        let Some(key_value) = map.get(merge_key) else {
            return Err(PatchError::NoMergeKey { map, key: merge_key.to_string() });
        };
        match find_by_key(&original, merge_key, key_value)? {
            Some(i) => {
                let current = match std::mem::take(&mut original[i]) {
                    Value::Object(m) => m,
                    _ => Obj::new(),
                };
                original[i] = Value::Object(merge_map(current, map, elements)?);
            }
            None => original.push(v.clone()),
        }
    }
    Ok(original)
}

/// Splits `merged` into the elements `by` has and the others, keeping their order.
fn partition_scalars(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

fn partition_maps(merged: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_by = Vec::with_capacity(merged.len());
    let mut others = Vec::with_capacity(merged.len());
    for v in merged {
        let Some(m) = v.as_object() else {
            return Err(PatchError::BadArgType { expected: GO_MAP, actual: go_type(&v) });
        };
        let Some(key_value) = m.get(merge_key) else {
            return Err(PatchError::NoMergeKey { map: m.clone(), key: merge_key.to_string() });
        };
        if find_by_key(by, merge_key, key_value)?.is_some() {
            in_by.push(v);
        } else {
            others.push(v);
        }
    }
    Ok((in_by, others))
}

/// Orders the patch's elements by `patch_order` and the others by `server_order`, then
/// interleaves them (upstream's `normalizeElementOrder`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    element_kind: Kind,
) -> Result<Vec<Value>> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, element_kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, element_kind)?;
    Ok(merge_sorted(server_only, patch_items, server_order, merge_key, element_kind))
}

/// The value that identifies an element: its merge key for maps, itself otherwise.
fn identity<'a>(v: &'a Value, merge_key: &str, element_kind: Kind) -> Option<&'a Value> {
    if element_kind == Kind::Map {
        v.as_object().and_then(|m| m.get(merge_key))
    } else {
        Some(v)
    }
}

fn position_in(list: &[Value], v: &Value, merge_key: &str, element_kind: Kind) -> Option<usize> {
    let id = identity(v, merge_key, element_kind);
    list.iter().position(|x| identity(x, merge_key, element_kind) == id)
}

/// Splits off the elements marked `$patch: delete`.
fn split_deletions(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut kept = Vec::with_capacity(list.len());
    let mut deleted = Vec::new();
    for v in list {
        let Some(m) = v.as_object() else {
            return Err(PatchError::BadArgType { expected: GO_MAP, actual: go_type(&v) });
        };
        if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            deleted.push(v);
        } else {
            kept.push(v);
        }
    }
    Ok((kept, deleted))
}

/// Stable sort of `items` by position in `order`; deletion markers go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    element_kind: Kind,
) -> Result<Vec<Value>> {
    let (mut items, deleted) = if element_kind == Kind::Map {
        for v in items.iter().chain(order) {
            let Some(m) = v.as_object() else {
                return Err(PatchError::BadArgType { expected: GO_MAP, actual: go_type(v) });
            };
            if !m.contains_key(merge_key) {
                return Err(PatchError::NoMergeKey { map: m.clone(), key: merge_key.to_string() });
            }
        }
        split_deletions(items)?
    } else {
        (items, Vec::new())
    };
    // Upstream's comparator is not a strict order when an element is missing from `order`
    // (which its callers avoid); such elements go last here.
    items.sort_by_key(|v| position_in(order, v, merge_key, element_kind).unwrap_or(usize::MAX));
    items.extend(deleted);
    Ok(items)
}

/// Inserts each of `left` (the original's other elements) into `right` (the patch's): from
/// the last insertion point, before the first element of `right` that comes after it in
/// `server_order`; elements of `right` unknown to `server_order` are passed first.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    element_kind: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position_in(server_order, l, merge_key, element_kind),
                    position_in(server_order, r, merge_key, element_kind),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests;
