//! The shared model of Pier's Kubernetes API: which resources exist ([`registry`]) and
//! how invalid input is reported ([`field`]) and which names are valid ([`names`]), in
//! upstream's words.
//!
//! This crate does no I/O; the API server, the admission logic and every client-side
//! component build on it.

pub mod field;
pub mod gofmt;
pub mod names;
pub mod registry;

pub use field::{ErrorType, FieldError, FieldPath};
pub use registry::{ResourceDef, Scope};
