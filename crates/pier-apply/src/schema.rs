//! What apply needs to know about each position of an object: [`ApplySchema`], and its
//! implementation over [`pier_schema::SchemaCursor`].

use pier_patch::{ListStrategy, PatchSchema};
use pier_schema::{SchemaCursor, SchemaShape};
use serde_json::Value;

/// How the items of a list are told apart (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, replaced whole.
    Atomic,
    /// Scalars, each its own item (`v:` elements).
    Set,
    /// Objects identified by these key fields (`k:` elements).
    Map(Vec<String>),
}

/// The kind of value at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A scalar: always one value.
    Scalar,
    /// An object with named fields; `atomic` when it is replaced whole
    /// (`x-kubernetes-map-type: atomic`).
    Struct { atomic: bool },
    /// An object whose keys are data (labels); `atomic` as for structs.
    Map { atomic: bool },
    /// A list.
    List(ListType),
    /// Unknown: deduced from the value (objects are granular maps, lists atomic), as
    /// upstream does for fields without a schema.
    Untyped,
}

/// A position in a kind's schema.
///
/// Implementations are cheap cursors; `None` from [`field`](Self::field) or
/// [`elements`](Self::elements) means "not in the schema", and the value there is then
/// handled as [`Shape::Untyped`].
pub trait ApplySchema: Copy {
    /// The schema of the struct field `name`.
    fn field(&self, name: &str) -> Option<Self>;
    /// The schema of a list's items or of a map's values.
    fn elements(&self) -> Option<Self>;
    /// What this position holds.
    fn shape(&self) -> Shape;
    /// The default of the struct field `name`, used for list keys that items omit.
    fn default_of(&self, name: &str) -> Option<Value>;
}

impl ApplySchema for SchemaCursor {
    fn field(&self, name: &str) -> Option<Self> {
        PatchSchema::field(self, name)
    }

    fn elements(&self) -> Option<Self> {
        PatchSchema::elements(self)
    }

    fn shape(&self) -> Shape {
        let atomic = self.map_type() == Some("atomic");
        match SchemaCursor::shape(self) {
            SchemaShape::Struct => Shape::Struct { atomic },
            SchemaShape::Map => Shape::Map { atomic },
            SchemaShape::Scalar => Shape::Scalar,
            SchemaShape::Untyped => Shape::Untyped,
            SchemaShape::List => Shape::List(list_type(self)),
        }
    }

    fn default_of(&self, name: &str) -> Option<Value> {
        self.field_default(name).cloned()
    }
}

/// The list type as upstream's OpenAPI-to-apply-schema conversion decides it: the
/// `x-kubernetes-list-type` when published, else a `merge` patch strategy makes a map
/// keyed by the patch merge key (or a set without one), else atomic.
fn list_type(cursor: &SchemaCursor) -> ListType {
    match cursor.list_type() {
        Some("atomic") => return ListType::Atomic,
        Some("set") => return ListType::Set,
        Some("map") => return ListType::Map(cursor.list_map_keys().into_iter().map(String::from).collect()),
        _ => {}
    }
    match cursor.list_strategy() {
        ListStrategy::MergeByKey { key } => ListType::Map(vec![key]),
        ListStrategy::MergePrimitives => ListType::Set,
        _ => ListType::Atomic,
    }
}
