//! JSON patch (RFC 6902) as the API server applies it, i.e. with the semantics and
//! messages of `gopkg.in/evanphx/json-patch.v4`, which differ from the RFC in places:
//!
//! - `replace` of a missing object member adds it (the RFC requires it to exist);
//! - negative array indexes count from the end (`-1` is the last element);
//! - `test` of a missing member succeeds when the expected value is `null` or absent;
//! - an operation without `value` uses `null`.
//!
//! JSON pointers are RFC 6901: segments split on `/`, `~1` decodes to `/` and `~0` to `~`;
//! `-` as the last segment of an `add` appends to an array.

use serde_json::{Map, Value};

use crate::error::{IndexError, JsonType, MemberProblem, PatchError, Step};

/// Applies a JSON patch (an array of operations) to `target`, atomically: on error nothing
/// is applied and `target` is untouched (it is only read).
///
/// # Errors
///
/// - [`PatchError::JsonPatchNotAList`], [`PatchError::JsonPatchOperationNotAnObject`]:
///   the patch is malformed (the API server answers 400);
/// - every other variant: an operation does not apply, e.g.
///   [`PatchError::MissingPath`], [`PatchError::TestFailed`] (422).
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops: &[Value] = match ops {
        Value::Array(items) => items,
        // Upstream decodes `null` into an empty patch.
        Value::Null => &[],
        other => return Err(PatchError::JsonPatchNotAList { found: JsonType::of(other) }),
    };
    // Decode every operation before applying any, as upstream does.
    let mut decoded = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        match op {
            Value::Object(m) => decoded.push(m),
            other => {
                return Err(PatchError::JsonPatchOperationNotAnObject { index, found: JsonType::of(other) })
            }
        }
    }
    if !matches!(target, Value::Object(_) | Value::Array(_)) {
        return Err(PatchError::JsonPatchTargetNotContainer { found: JsonType::of(target) });
    }
    let mut doc = target.clone();
    for op in decoded {
        apply(&mut doc, op)?;
    }
    Ok(doc)
}

fn member(op: &Map<String, Value>, name: &str, step: Step) -> Result<String, PatchError> {
    match op.get(name) {
        None | Some(Value::Null) => {
            Err(PatchError::OperationMember { step, problem: MemberProblem::Missing })
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => {
            Err(PatchError::OperationMember { step, problem: MemberProblem::NotAString(JsonType::of(other)) })
        }
    }
}

fn apply(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
    let value = op.get("value").cloned().unwrap_or(Value::Null);
    match kind {
        "add" => {
            let path = member(op, "path", Step::Add)?;
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::Add, &path))?;
            add(parent, &key, value).map_err(|cause| index(Step::Add, &path, cause))
        }
        "remove" => {
            let path = member(op, "path", Step::Remove)?;
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::Remove, &path))?;
            remove(parent, &key).map_err(|cause| index(Step::Remove, &path, cause))
        }
        "replace" => {
            let path = member(op, "path", Step::Replace)?;
            if path.is_empty() {
                if !matches!(value, Value::Object(_) | Value::Array(_)) {
                    return Err(PatchError::ReplaceRootNotContainer);
                }
                *doc = value;
                return Ok(());
            }
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::Replace, &path))?;
            if get(parent, &key).is_err() {
                return Err(PatchError::ReplaceMissingKey { path });
            }
            set(parent, &key, value).map_err(|cause| index(Step::Replace, &path, cause))
        }
        "move" => {
            let from = member(op, "from", Step::MoveFrom)?;
            let (parent, key) = find_parent(doc, &from).ok_or_else(|| missing(Step::MoveFrom, &from))?;
            // Upstream reports the last segment, not the whole path, for this side.
            let moved = get(parent, &key).map_err(|cause| index(Step::MoveFrom, &key, cause))?;
            remove(parent, &key).map_err(|cause| index(Step::MoveFrom, &key, cause))?;
            let path = member(op, "path", Step::MoveTo)?;
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::MoveTo, &path))?;
            add(parent, &key, moved.unwrap_or(Value::Null)).map_err(|cause| index(Step::MoveTo, &path, cause))
        }
        "test" => {
            let path = member(op, "path", Step::Test)?;
            let expected = op.get("value").filter(|v| !v.is_null());
            if path.is_empty() {
                return if expected == Some(&*doc) { Ok(()) } else { Err(PatchError::TestFailed { path }) };
            }
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::Test, &path))?;
            let actual = get(parent, &key).map_err(|cause| index(Step::Test, &path, cause))?;
            // A missing member and a `null` one are the same to upstream.
            if actual.as_ref() == expected {
                Ok(())
            } else {
                Err(PatchError::TestFailed { path })
            }
        }
        "copy" => {
            let from = member(op, "from", Step::CopyFrom)?;
            let (parent, key) = find_parent(doc, &from).ok_or_else(|| missing(Step::CopyFrom, &from))?;
            let copied = get(parent, &key).map_err(|cause| index(Step::CopyFrom, &from, cause))?;
            let path = member(op, "path", Step::CopyTo)?;
            let (parent, key) = find_parent(doc, &path).ok_or_else(|| missing(Step::CopyTo, &path))?;
            add(parent, &key, copied.unwrap_or(Value::Null))
                .map_err(|cause| index(Step::CopyTo, &path, cause))
        }
        other => Err(PatchError::UnknownOperation { op: other.to_string() }),
    }
}

fn missing(step: Step, path: &str) -> PatchError {
    PatchError::MissingPath { step, path: path.to_string() }
}

fn index(step: Step, path: &str, cause: IndexError) -> PatchError {
    PatchError::Index { step, path: path.to_string(), cause }
}

/// RFC 6901 unescaping of one segment.
fn decode_segment(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// The object or array holding the last segment of `path`, and that segment decoded.
///
/// As upstream, the text before the first `/` is ignored, and a `null` or scalar on the way
/// means the path is missing. `None` for the empty path (the whole document).
fn find_parent<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let segments: Vec<&str> = path.split('/').collect();
    let (last, middle) = segments.split_last()?;
    if segments.len() < 2 {
        return None;
    }
    let mut cur = doc;
    for seg in &middle[1..] {
        let seg = decode_segment(seg);
        cur = match cur {
            Value::Object(m) => m.get_mut(&seg)?,
            Value::Array(items) => {
                let i = resolve_index(&seg, items.len(), false).ok()?;
                items.get_mut(i)?
            }
            _ => return None,
        };
        if !matches!(cur, Value::Object(_) | Value::Array(_)) {
            return None;
        }
    }
    Some((cur, decode_segment(last)))
}

/// Go's `strconv.Atoi`, with its failure as upstream reports it.
fn atoi(key: &str, in_add: bool) -> Result<i64, IndexError> {
    key.parse::<i64>().map_err(|e| IndexError::NotAnIndex {
        key: key.to_string(),
        out_of_range: matches!(
            e.kind(),
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
        ),
        in_add,
    })
}

/// An index into an array of `len` elements for get/set/remove: negative counts from the
/// end; it must be in bounds.
fn resolve_index(key: &str, len: usize, in_add: bool) -> Result<usize, IndexError> {
    let raw = atoi(key, in_add)?;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let idx = if raw < 0 {
        if raw < -len {
            return Err(IndexError::InvalidIndex { index: raw });
        }
        raw + len
    } else {
        raw
    };
    if idx >= len {
        return Err(IndexError::InvalidIndex { index: idx });
    }
    usize::try_from(idx).map_err(|_| IndexError::InvalidIndex { index: idx })
}

/// The member or element, `None` when an object lacks it or it is `null` (upstream cannot
/// tell the two apart).
fn get(parent: &Value, key: &str) -> Result<Option<Value>, IndexError> {
    match parent {
        Value::Object(m) => Ok(m.get(key).filter(|v| !v.is_null()).cloned()),
        Value::Array(items) => {
            let i = resolve_index(key, items.len(), false)?;
            Ok(items.get(i).filter(|v| !v.is_null()).cloned())
        }
        _ => Ok(None),
    }
}

fn set(parent: &mut Value, key: &str, value: Value) -> Result<(), IndexError> {
    match parent {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = resolve_index(key, items.len(), false)?;
            if let Some(slot) = items.get_mut(i) {
                *slot = value;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn add(parent: &mut Value, key: &str, value: Value) -> Result<(), IndexError> {
    match parent {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
                return Ok(());
            }
            // Upstream words a bad index differently in every insertion (move and copy too).
            let raw = atoi(key, true)?;
            // Inserting may address one past the end.
            let size = i64::try_from(items.len()).unwrap_or(i64::MAX) + 1;
            if raw >= size {
                return Err(IndexError::InvalidIndex { index: raw });
            }
            let idx = if raw < 0 {
                if raw < -size {
                    return Err(IndexError::InvalidIndex { index: raw });
                }
                raw + size
            } else {
                raw
            };
            let idx = usize::try_from(idx).map_err(|_| IndexError::InvalidIndex { index: idx })?;
            items.insert(idx, value);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn remove(parent: &mut Value, key: &str) -> Result<(), IndexError> {
    match parent {
        Value::Object(m) => match m.shift_remove(key) {
            Some(_) => Ok(()),
            None => Err(IndexError::NonexistentKey { key: key.to_string() }),
        },
        Value::Array(items) => {
            let i = resolve_index(key, items.len(), false)?;
            items.remove(i);
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
