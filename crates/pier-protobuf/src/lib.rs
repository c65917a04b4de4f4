//! Kubernetes protobuf request bodies, decoded into the JSON the API server works with.
//!
//! Since client-go v0.32 (kubectl 1.32), typed clients send built-in objects as
//! `application/vnd.kubernetes.protobuf`: the magic prefix `k8s\0`, then a `runtime.Unknown`
//! message whose `typeMeta` names the kind and whose `raw` field holds the object's own message.
//! [`decode`] turns such a body into a [`DecodedObject`] whose `object` is exactly the JSON the
//! client would have sent as `application/json`: JSON field names, Go's `omitempty` rules,
//! quantities and int-or-strings in their JSON forms, RFC 3339 times, base64 bytes.
//!
//! Decoding is driven by a generated table of every message reachable from the supported kinds
//! ([`supported_kinds`]); see `gen/generate.py` for how it is made. [`encode`] is the inverse,
//! for tests and tools.
//!
//! ```
//! let body = pier_protobuf::encode(&serde_json::json!({
//!     "apiVersion": "v1",
//!     "kind": "ConfigMap",
//!     "metadata": {"name": "settings"},
//!     "data": {"mode": "fast"},
//! }))?;
//! let decoded = pier_protobuf::decode(&body)?;
//! assert_eq!(decoded.kind, "ConfigMap");
//! assert_eq!(decoded.object["data"]["mode"], "fast");
//! # Ok::<(), pier_protobuf::ProtobufError>(())
//! ```

mod decode;
mod encode;
mod error;
mod schema;
mod wire;

pub use decode::{decode, DecodedObject, MAGIC};
pub use encode::encode;
pub use error::{ProtobufError, WireType};
pub use schema::{schema_name, supported_kinds};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
