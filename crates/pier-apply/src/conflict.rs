//! Apply conflicts and upstream's wording of them.

use std::collections::BTreeMap;
use std::fmt;

use crate::path::Path;

/// A field another manager owns and the apply would set to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// The manager as messages name it: `"kubectl-client-side-apply" using v1`.
    pub description: String,
    /// The contested field.
    pub path: Path,
}

impl Conflict {
    /// The `message` of this conflict's `StatusCause`: `conflict with "mgr" using v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.description)
    }
}

/// Every conflict of one apply, in the order upstream reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The conflicts.
    pub fn iter(&self) -> impl Iterator<Item = &Conflict> {
        self.0.iter()
    }
}

impl fmt::Display for Conflicts {
    /// `Apply failed with 1 conflict: conflict with "m" using v1: .spec.x`, or for several,
    /// one `conflicts with "m":` block per manager (sorted) listing `- <path>` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.description, only.path
            );
        }
        let mut by_manager: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
        for c in &self.0 {
            by_manager.entry(&c.description).or_default().push(&c.path);
        }
        let mut lines = Vec::new();
        for (manager, paths) in by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        write!(f, "Apply failed with {} conflicts: {}", self.0.len(), lines.join("\n"))
    }
}

impl std::error::Error for Conflicts {}
