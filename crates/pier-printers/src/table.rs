//! Whole `meta.k8s.io/v1` Table documents, as the API server returns them for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::cells::{row_cells, row_conditions};
use crate::columns::column_definitions;

/// The group-version of the Table kind and of the PartialObjectMetadata in its rows.
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// What each row carries besides its cells: the `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object (`"object": null`).
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default, and what
    /// kubectl asks for: it reads namespaces and labels from it).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// An `includeObject` value upstream does not know; the API answers 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized includeObject value: {0:?}")]
pub struct UnknownIncludeObject(pub String);

impl IncludeObject {
    /// Parses the `includeObject` query parameter; empty means the default, `Metadata`.
    pub fn parse(value: &str) -> Result<Self, UnknownIncludeObject> {
        match value {
            "None" => Ok(IncludeObject::None),
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            other => Err(UnknownIncludeObject(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IncludeObject::None => "None",
            IncludeObject::Metadata => "Metadata",
            IncludeObject::Object => "Object",
        }
    }
}

/// The Table for a list (or a single object, as a one-element slice) of `group`/`kind`
/// objects: every column, one row per object in the given order.
///
/// `list_meta` becomes the Table's `metadata` as given (`resourceVersion`, `continue`,
/// `remainingItemCount` of the list; for a single object upstream uses the object's
/// `resourceVersion`). `null` is written as `{}`.
pub fn table(
    group: &str,
    kind: &str,
    objs: &[&Value],
    now: DateTime<Utc>,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    build(group, kind, objs, now, include_object, list_meta, true)
}

/// The Table carried by one watch event for `obj`.
///
/// Upstream sends column definitions only with the first event of a watch and
/// `"columnDefinitions": null` afterwards (the watch turns `NoHeaders` on once it has
/// encoded one object), so pass `first_event` accordingly. The Table's metadata holds the
/// object's `resourceVersion`.
pub fn watch_table(
    group: &str,
    kind: &str,
    obj: &Value,
    now: DateTime<Utc>,
    include_object: IncludeObject,
    first_event: bool,
) -> Value {
    let mut meta = Map::new();
    if let Some(rv) = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        meta.insert("resourceVersion".to_string(), json!(rv));
    }
    build(group, kind, &[obj], now, include_object, Value::Object(meta), first_event)
}

fn build(
    group: &str,
    kind: &str,
    objs: &[&Value],
    now: DateTime<Utc>,
    include_object: IncludeObject,
    list_meta: Value,
    headers: bool,
) -> Value {
    let columns = if headers { json!(column_definitions(group, kind)) } else { Value::Null };
    let rows: Vec<Value> = objs.iter().map(|obj| table_row(group, kind, obj, now, include_object)).collect();
    let metadata = if list_meta.is_null() { json!({}) } else { list_meta };
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One `TableRow`: `cells`, `conditions` when there are any, and `object` as
/// `include_object` asks.
pub fn table_row(
    group: &str,
    kind: &str,
    obj: &Value,
    now: DateTime<Utc>,
    include_object: IncludeObject,
) -> Value {
    let mut row = Map::new();
    row.insert("cells".to_string(), Value::Array(row_cells(group, kind, obj, now)));
    let conditions = row_conditions(group, kind, obj);
    if !conditions.is_empty() {
        row.insert("conditions".to_string(), Value::Array(conditions));
    }
    let object = match include_object {
        // Upstream's empty RawExtension encodes as null; the key is kept.
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(obj),
        IncludeObject::Object => full_object(group, kind, obj),
    };
    row.insert("object".to_string(), object);
    Value::Object(row)
}

/// The object's metadata wrapped as `meta.k8s.io/v1` `PartialObjectMetadata`.
pub fn partial_object_metadata(obj: &Value) -> Value {
    let mut metadata = obj.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    // Go encodes an unset metav1.Time inside ObjectMeta as null rather than omitting it.
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
    })
}

/// The object itself, with `apiVersion` and `kind` filled in from the registry when the
/// stored form lacks them (upstream always encodes them).
fn full_object(group: &str, kind: &str, obj: &Value) -> Value {
    let mut full = obj.clone();
    if let (Some(map), Some(def)) = (full.as_object_mut(), pier_api::registry::find_kind(group, kind)) {
        map.entry("apiVersion").or_insert_with(|| json!(def.api_version()));
        map.entry("kind").or_insert_with(|| json!(def.kind));
    }
    full
}
