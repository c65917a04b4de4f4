//! Admission for Pier's API server: upstream Kubernetes' defaulting, validation and
//! Service IP/port allocation, as pure functions over `serde_json::Value` objects.
//!
//! - [`apply_defaults`] fills in what upstream's `SetDefaults_*` functions and the
//!   defaulting admission plugins would (Pod `restartPolicy: Always`, Service
//!   `type: ClusterIP`, Deployment `strategy`, ...).
//! - [`validate_create`] and [`validate_update`] return every invalid field as a
//!   [`FieldError`](pier_api::FieldError), worded as upstream words it
//!   (`spec.ports[1].name: Required value`).
//! - [`ServiceAllocator`] hands out cluster IPs from the service CIDR and node ports
//!   from the NodePort range, transactionally ([`AllocationTx`]); [`nth_ip`] names the
//!   fixed addresses (`kubernetes` = 1st, `kube-dns` = 10th).
//!
//! The order the API server applies them in, as upstream's registry does:
//!
//! 1. `apply_defaults(group, kind, &mut obj)`;
//! 2. for Services: `allocator.allocate_on_create(&mut obj)` (or `allocate_on_update`,
//!    which also carries over allocated values the client omitted and drops fields the
//!    new type no longer uses);
//! 3. `validate_create` / `validate_update`; on errors, roll the transaction back;
//! 4. write to the store, then `tx.commit(&mut allocator)`, or `tx.rollback(..)` if the
//!    write failed. After a delete is stored, `allocator.release(&svc)`.
//!
//! ```
//! use pier_admission::{apply_defaults, validate_create, ServiceAllocator};
//! use serde_json::json;
//!
//! let mut alloc = ServiceAllocator::new("10.96.0.0/12", 30000..=32767).unwrap();
//! let mut svc = json!({
//!     "apiVersion": "v1", "kind": "Service",
//!     "metadata": {"name": "kubia", "namespace": "default"},
//!     "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}],
//!              "selector": {"app": "kubia"}}
//! });
//! apply_defaults("", "Service", &mut svc);
//! let tx = alloc.allocate_on_create(&mut svc).unwrap();
//! assert!(validate_create("", "Service", &svc).is_empty());
//! tx.commit(&mut alloc); // after the store write succeeded
//! assert!(svc["spec"]["ports"][0]["nodePort"].as_u64().is_some());
//! ```

#![forbid(unsafe_code)]

pub mod allocator;
mod defaults;
pub use pier_api::names;
mod util;
pub mod validation;

pub use allocator::{
    drop_type_dependent_fields, is_internal, nth_ip, patch_allocated_values, AllocationTx, CidrError,
    Ipv4Cidr, Pool, ServiceAllocator,
};
pub use defaults::{apply_defaults, image_tag};
pub use validation::{validate_create, validate_update};
