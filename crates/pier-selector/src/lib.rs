//! Label and field selectors as the Kubernetes API server understands them, with
//! upstream's syntax, semantics and error texts (`k8s.io/apimachinery` `pkg/labels` and
//! `pkg/fields`).
//!
//! - [`LabelSelector`]: parsed from `?labelSelector=` ([`LabelSelector::parse`]), from a
//!   `metav1.LabelSelector` object ([`LabelSelector::from_label_selector_json`]) or from an
//!   equality map such as a Service's `spec.selector` ([`LabelSelector::from_set_json`]);
//!   matched against any [`Labels`] (a `BTreeMap`, a `HashMap` or JSON `metadata.labels`)
//!   and printed back in canonical form. Errors are [`LabelSelectorError`].
//! - [`FieldSelector`]: parsed from `?fieldSelector=` ([`FieldSelector::parse`]), checked
//!   against the fields a resource supports ([`FieldSelector::check_supported`]) and
//!   matched through a field getter. Errors are [`FieldSelectorError`].
//!
//! The crate is pure: no I/O.
//!
//! ```
//! use std::collections::BTreeMap;
//! use pier_selector::{FieldSelector, LabelSelector};
//!
//! let sel = LabelSelector::parse("tier in (web, api), app=kubia, !canary").unwrap();
//! assert_eq!(sel.to_string(), "app=kubia,!canary,tier in (api,web)");
//! let labels = BTreeMap::from([("app".to_string(), "kubia".to_string()),
//!                              ("tier".to_string(), "web".to_string())]);
//! assert!(sel.matches(&labels));
//!
//! let err = LabelSelector::parse("a in x").unwrap_err();
//! assert_eq!(err.to_string(), "unable to parse requirement: found 'x' expected: '('");
//!
//! let fields = FieldSelector::parse("metadata.name=foo,status.phase!=Running").unwrap();
//! assert!(fields.matches(|f| (f == "metadata.name").then(|| "foo".to_string())));
//! assert_eq!(
//!     fields.check_supported(|f| f == "metadata.name").unwrap_err().to_string(),
//!     "field label not supported: status.phase",
//! );
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Tests state their expectations with `unwrap`; library code must not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod field;
mod label;
mod validation;

pub use field::{
    escape_value, unescape_value, FieldOperator, FieldRequirement, FieldSelector, FieldSelectorError,
};
pub use label::{Expected, LabelSelector, LabelSelectorError, Labels, Operator, Requirement};
pub use validation::InvalidField;
