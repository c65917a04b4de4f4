//! The errors of this crate: what goes wrong reading `managedFields`, and why an apply
//! is refused.

use crate::conflict::Conflicts;

/// A `FieldsV1` value or a `managedFields` list that cannot be read.
///
/// Writes that are not applies recover by starting from no managed fields (upstream
/// does the same); an apply reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldsError {
    /// A level of a `FieldsV1` tree, or a managedFields entry, is not a JSON object.
    #[error("expected an object in managed fields")]
    NotAnObject,
    /// `metadata.managedFields` is not a list.
    #[error("managed fields must be a list")]
    NotAList,
    /// A key without one of the `f:`, `k:`, `v:`, `i:` prefixes.
    #[error("unknown path element key {0:?}")]
    BadKey(String),
    /// A `k:`, `v:` or `i:` key whose payload does not parse.
    #[error("invalid path element value in {0:?}")]
    BadKeyValue(String),
    /// An entry whose `operation` is neither `Apply` nor `Update`.
    #[error("invalid managed fields operation {0:?}")]
    BadOperation(String),
    /// An entry whose `fieldsType` is not `FieldsV1`.
    #[error("invalid managed fields type {0:?}: only FieldsV1 is supported")]
    BadFieldsType(String),
}

/// Why an apply request was refused. Each variant maps to one HTTP status: conflicts to
/// 409, everything else to 400 or 422 (see the variants).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Other managers own fields the apply would change (409 Conflict); retry with
    /// `force` to take them over.
    #[error(transparent)]
    Conflicts(Conflicts),
    /// The applied configuration carries `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// The applied configuration is not an object (400).
    #[error("the applied configuration is not an object")]
    NotAnObject,
    /// An item of an associative list lacks one of its key fields and the schema gives
    /// no default (422).
    #[error("{list}: associative list with keys has an element that omits key field {key:?} (and doesn't have default value)")]
    MissingKeyField { list: String, key: String },
    /// Two items of an associative list in the applied configuration share a key (422).
    #[error("{list}: duplicate entries for key {key}")]
    DuplicateEntry { list: String, key: String },
    /// The object's `managedFields` cannot be read (500: the stored object is broken).
    // Not a `#[source]`: the message already carries the cause.
    #[error("failed to decode managed fields: {0}")]
    ManagedFields(FieldsError),
}
