//! Patches as the Kubernetes API server applies them: JSON merge patch (RFC 7386),
//! JSON patch (RFC 6902) and strategic merge patch.

mod schema;

pub use schema::{ListStrategy, PatchSchema};
