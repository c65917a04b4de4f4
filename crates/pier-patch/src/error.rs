//! [`PatchError`]: every way applying a patch fails, with upstream's message and the HTTP
//! status the API server answers with.

use std::fmt;

use serde_json::{Map, Value};

use crate::gofmt::{go_s, go_v_list, go_v_map};

/// The JSON type of a value, named as Go's `encoding/json` names it in decode errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    /// The type of `v`.
    pub fn of(v: &Value) -> Self {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Bool,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonType::Null => "null",
            JsonType::Bool => "bool",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        })
    }
}

/// A JSON patch operation, or the part of a `move`/`copy` that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `replace`.
    Replace,
    /// The `from` side of `move`.
    MoveFrom,
    /// The `path` side of `move`.
    MoveTo,
    /// `test`.
    Test,
    /// The `from` side of `copy`.
    CopyFrom,
    /// The `path` side of `copy`.
    CopyTo,
}

/// Why an operation's `path` or `from` member could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberProblem {
    /// Absent or `null`.
    Missing,
    /// Not a string.
    NotAString(JsonType),
}

/// Why an object member or array element could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// `remove` (or `move`) of a member the object does not have.
    NonexistentKey {
        /// The member name.
        key: String,
    },
    /// An array index out of bounds (negative indexes count from the end, as upstream
    /// allows).
    InvalidIndex {
        /// The index, as upstream reports it.
        index: i64,
    },
    /// An array index that is not an integer.
    NotAnIndex {
        /// The path segment.
        key: String,
        /// It is an integer too large for 64 bits.
        out_of_range: bool,
        /// Upstream words it differently for `add`.
        in_add: bool,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::NonexistentKey { key } => {
                write!(f, "Unable to remove nonexistent key: {key}: missing value")
            }
            IndexError::InvalidIndex { index } => {
                write!(f, "Unable to access invalid index: {index}: invalid index referenced")
            }
            IndexError::NotAnIndex { key, out_of_range, in_add } => {
                if *in_add {
                    write!(f, "value was not a proper array index: '{key}': ")?;
                }
                let why = if *out_of_range { "value out of range" } else { "invalid syntax" };
                write!(f, "strconv.Atoi: parsing {key:?}: {why}")
            }
        }
    }
}

/// Why a patch could not be applied. Nothing is applied when this is returned.
///
/// `Display` is the message upstream's API server sends to kubectl (upstream's words,
/// capitals and all); [`PatchError::status_code`] is the HTTP status it sends with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    // ----- JSON patch (RFC 6902), decoding: 400 -----
    /// The JSON patch is not an array of operations.
    #[error("json: cannot unmarshal {found} into Go value of type jsonpatch.Patch")]
    JsonPatchNotAList {
        /// What it is instead.
        found: JsonType,
    },
    /// An element of the JSON patch is not an object.
    #[error("json: cannot unmarshal {found} into Go value of type jsonpatch.Operation")]
    JsonPatchOperationNotAnObject {
        /// Its position in the patch.
        index: usize,
        /// What it is instead.
        found: JsonType,
    },

    // ----- JSON patch, applying: 422 -----
    /// The document to patch is not an object or array.
    #[error("json: cannot unmarshal {found} into Go value of type jsonpatch.partialDoc")]
    JsonPatchTargetNotContainer {
        /// What it is instead.
        found: JsonType,
    },
    /// `op` is missing or not one of the six operations.
    #[error("Unexpected kind: {op}")]
    UnknownOperation {
        /// The `op` given (`unknown` when absent or not a string).
        op: String,
    },
    /// An operation's `path` (or `from`) member is absent or not a string.
    #[error("{}", member_message(*.step, *.problem))]
    OperationMember {
        /// The operation (the side tells `path` from `from` for `move` and `copy`).
        step: Step,
        /// What is wrong with it.
        problem: MemberProblem,
    },
    /// The parent of the path does not exist (or is not an object or array).
    #[error("{}", missing_path_message(*.step, .path))]
    MissingPath {
        /// The operation and side.
        step: Step,
        /// The path as given.
        path: String,
    },
    /// `replace` of an array element that does not exist.
    #[error("replace operation does not apply: doc is missing key: {path}: missing value")]
    ReplaceMissingKey {
        /// The path as given.
        path: String,
    },
    /// The last segment of the path could not be used on its parent.
    #[error("{}", index_message(*.step, .path, .cause))]
    Index {
        /// The operation and side.
        step: Step,
        /// The path as upstream reports it (for the `from` of `move`, the last segment).
        path: String,
        /// Why.
        cause: IndexError,
    },
    /// `test` found a different value.
    #[error("testing value {path} failed: test failed")]
    TestFailed {
        /// The path tested.
        path: String,
    },
    /// `replace` of the whole document with something other than an object or array.
    // Upstream wraps a nil error here, which Go prints as `%!w(<nil>)`.
    #[error("replace operation value must be object or array: %!w(<nil>)")]
    ReplaceRootNotContainer,

    // ----- Strategic merge patch -----
    /// The original document is not a JSON object (400).
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// The patch is not a JSON object (400).
    #[error("json: cannot unmarshal {found} into Go value of type map[string]interface {{}}")]
    PatchNotAnObject {
        /// What it is instead.
        found: JsonType,
    },
    /// A list's elements are lists (422).
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A `$deleteFromPrimitiveList` key is malformed (400).
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// A `$retainKeys` directive is not a list, or the patch sets a key it does not list
    /// (400).
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A `$setElementOrder` key is malformed, or disagrees with its list (400).
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// An element of a list merged by key lacks the key (500, as upstream).
    #[error("map: {} does not contain declared merge key: {key}", go_v_map(.map))]
    NoMergeKey {
        /// The element.
        map: Map<String, Value>,
        /// The merge key.
        key: String,
    },
    /// A value has the wrong type for where it is, e.g. a `$setElementOrder` that is not a
    /// list (500).
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The Go type expected.
        expected: &'static str,
        /// The Go type found.
        actual: &'static str,
    },
    /// `$patch` with a value other than `replace`/`delete` (or `merge` in a list) (500).
    #[error("unknown patch type: {} in map: {}", go_s(.directive), go_v_map(.map))]
    UnknownPatchType {
        /// The directive's value (boxed to keep the error small).
        directive: Box<Value>,
        /// The map holding it.
        map: Map<String, Value>,
    },
    /// `{"$patch": "merge"}` in a list (500).
    #[error("merging lists cannot yet be specified in the patch")]
    MergingListsNotSupported,
    /// A list of objects is to be merged but the schema gives no merge key (500).
    #[error("cannot merge lists without merge key for {name}")]
    NoMergeKeyForList {
        /// Upstream's name of the element type (`struct`).
        name: String,
    },
    /// The elements of a merged list do not all have the same type (500).
    #[error("list element types are not identical: {}", lists_message(.lists))]
    MixedListElements {
        /// The lists merged.
        lists: Vec<Vec<Value>>,
    },
    /// A list to order is empty on both sides (500).
    #[error("no elements in any of the given slices")]
    EmptyLists,
    /// The patch list's order contradicts its `$setElementOrder` list (500).
    #[error("The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n", go_v_list(.patch_list), go_v_list(.order))]
    SetElementOrderMismatch {
        /// The patch list.
        patch_list: Vec<Value>,
        /// The `$setElementOrder` list.
        order: Vec<Value>,
    },
    /// An element of a list merged by key is not an object (500).
    #[error("value for key {index} is not a map")]
    NotAMap {
        /// Its position.
        index: usize,
    },
}

impl PatchError {
    /// The HTTP status upstream's API server answers with: 400 for malformed patches, 422
    /// for JSON patches that do not apply (and lists of lists), 500 for the strategic merge
    /// errors upstream does not classify.
    pub fn status_code(&self) -> u16 {
        use PatchError::*;
        match self {
            JsonPatchNotAList { .. } | JsonPatchOperationNotAnObject { .. } => 400,
            JsonPatchTargetNotContainer { .. }
            | UnknownOperation { .. }
            | OperationMember { .. }
            | MissingPath { .. }
            | ReplaceMissingKey { .. }
            | Index { .. }
            | TestFailed { .. }
            | ReplaceRootNotContainer => 422,
            BadJsonDoc
            | PatchNotAnObject { .. }
            | BadPatchFormatForPrimitiveList
            | BadPatchFormatForRetainKeys
            | BadPatchFormatForSetElementOrderList => 400,
            NoListOfLists => 422,
            NoMergeKey { .. }
            | BadArgType { .. }
            | UnknownPatchType { .. }
            | MergingListsNotSupported
            | NoMergeKeyForList { .. }
            | MixedListElements { .. }
            | EmptyLists
            | SetElementOrderMismatch { .. }
            | NotAMap { .. } => 500,
        }
    }
}

fn op_name(step: Step) -> &'static str {
    match step {
        Step::Add => "add",
        Step::Remove => "remove",
        Step::Replace => "replace",
        Step::MoveFrom | Step::MoveTo => "move",
        Step::Test => "test",
        Step::CopyFrom | Step::CopyTo => "copy",
    }
}

fn member_message(step: Step, problem: MemberProblem) -> String {
    let from = matches!(step, Step::MoveFrom | Step::CopyFrom);
    let member = if from { "from" } else { "path" };
    let head = format!("{} operation failed to decode {member}: ", op_name(step));
    // Upstream drops the cause for add, remove and copy's path.
    if matches!(step, Step::Add | Step::Remove | Step::CopyTo) {
        return head + "missing value";
    }
    let cause = match problem {
        MemberProblem::Missing if from => "operation, missing from field: missing value".to_string(),
        MemberProblem::Missing => "operation missing path field: missing value".to_string(),
        MemberProblem::NotAString(t) => {
            format!("json: cannot unmarshal {t} into Go value of type string")
        }
    };
    head + &cause
}

fn missing_path_message(step: Step, path: &str) -> String {
    let op = op_name(step);
    match step {
        Step::Add | Step::Remove => {
            format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        Step::Replace => {
            format!("replace operation does not apply: doc is missing path: {path}: missing value")
        }
        Step::MoveFrom | Step::CopyFrom => {
            format!("{op} operation does not apply: doc is missing from path: {path}: missing value")
        }
        Step::MoveTo | Step::CopyTo => {
            format!("{op} operation does not apply: doc is missing destination path: {path}: missing value")
        }
        Step::Test => {
            format!("test operation does not apply: is missing path: {path}: missing value")
        }
    }
}

fn index_message(step: Step, path: &str, cause: &IndexError) -> String {
    match step {
        Step::Add => format!("error in add for path: '{path}': {cause}"),
        // Upstream says "remove" for replace too.
        Step::Remove | Step::Replace => format!("error in remove for path: '{path}': {cause}"),
        Step::MoveFrom | Step::MoveTo => format!("error in move for path: '{path}': {cause}"),
        Step::Test => format!("error in test for path: '{path}': {cause}"),
        Step::CopyFrom => format!("error in copy for from: '{path}': {cause}"),
        Step::CopyTo => format!("error while adding value during copy: {cause}"),
    }
}

fn lists_message(lists: &[Vec<Value>]) -> String {
    let lists: Vec<Value> = lists.iter().cloned().map(Value::Array).collect();
    go_v_list(&lists)
}
