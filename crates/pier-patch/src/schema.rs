//! What strategic merge patch needs to know about the type at a position in an object.
//!
//! Upstream reads this from the Go struct tags (`patchStrategy`, `patchMergeKey`) or
//! from the OpenAPI extensions `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key`. Pier's `pier-schema` implements this trait from its
//! schemas; tests can implement it with a small table.

/// How a list field is patched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (the default, and `patchStrategy:"replace"`).
    Replace,
    /// Elements are objects merged by the value of `key` (`patchStrategy:"merge"`,
    /// `patchMergeKey:"<key>"`), e.g. containers by `name`, service ports by `port`.
    MergeByKey {
        /// The field that identifies an element.
        key: String,
    },
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a key),
    /// e.g. `finalizers`.
    MergePrimitives,
}

/// A cursor into the schema of an object being patched.
pub trait PatchSchema: Sized {
    /// The schema of field `name` of the object at this position, if known.
    fn field(&self, name: &str) -> Option<Self>;

    /// The schema of the elements of the list, or of the values of the map, at this position.
    fn elements(&self) -> Option<Self>;

    /// How the list at this position is patched.
    fn list_strategy(&self) -> ListStrategy;

    /// Whether this position carries `patchStrategy:"retainKeys"`: kubectl sends the
    /// `$retainKeys` directive only there. Applying a patch honours the directive wherever
    /// it appears, as upstream's server does, so `strategic_merge_patch` does not consult
    /// this; it is for code that builds patches.
    fn retain_keys(&self) -> bool {
        false
    }
}
