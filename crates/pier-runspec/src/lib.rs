//! What a container runs: the image table, argv and environment built from a pod spec as the kubelet
//! and a container runtime build them.
//!
//! - [`container_env`] builds a container's environment exactly as upstream's kubelet does (service
//!   variables, `env`, `envFrom`, the downward API, `$(VAR)` expansion), with upstream's error messages;
//!   [`referenced_objects`] lists the ConfigMaps and Secrets to fetch first.
//! - [`ImageTable`] says what an image runs, since Pier runs host programs instead of pulling images.
//! - [`process_for`] combines both into the argv, working directory and environment to exec.
//!
//! Nothing here does I/O except [`ImageTable::load`], which reads the table file.
//!
//! ```
//! use k8s_openapi::api::core::v1::{Container, Pod};
//! use pier_runspec::{container_env, process_for, ImageTable, PodFacts, PodObjects};
//!
//! let pod = Pod::default();
//! let container = Container { name: "c".into(), image: Some("luksa/kubia:v2".into()), ..Default::default() };
//! let objects = PodObjects::default();
//! let facts = PodFacts {
//!     node_name: "pier",
//!     host_ips: &[],
//!     pod_ips: &[],
//!     services: &[],
//!     allocatable: &Default::default(),
//!     objects: &objects,
//! };
//! let env = container_env(&pod, &container, &facts).unwrap();
//! let table = ImageTable::builtin("/var/lib/pier".as_ref(), "/usr/bin/pier".as_ref());
//! let process = process_for(&container, &env, &table).unwrap();
//! assert_eq!(process.argv, ["/usr/bin/pier", "app", "kubia", "--version", "v2"]);
//! ```

// Tests may unwrap: a panic there is a failed assertion.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod env;
mod expand;
mod fieldref;
mod process;
mod quantity;
mod reference;
mod services;
mod table;

#[cfg(test)]
mod tests;

pub use env::{
    container_env, referenced_objects, EnvError, Environment, ObjectSource, PodFacts, PodObjects, References,
};
pub use expand::expand;
pub use process::{process_for, ImageError, Process};
pub use quantity::{Amount, InvalidQuantity};
pub use reference::{Pattern, Reference};
pub use services::service_env;
pub use table::{ImageConfig, ImageTable, TableError, DEFAULT_PATH, PIER_TOKEN, TABLE_FILE};
