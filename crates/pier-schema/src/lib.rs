//! The schemas of Pier's API: what the OpenAPI documents publish, what strict field
//! validation checks, and what strategic merge patch follows.
//!
//! * [`schema_registry`] — every definition reachable from the served kinds
//!   (`io.k8s.api.core.v1.ServicePort`...), generated once from k8s-openapi's schemars
//!   schemas, with the extensions upstream publishes and k8s-openapi drops
//!   (`x-kubernetes-patch-strategy`/`-patch-merge-key`, `x-kubernetes-list-type`/
//!   `-list-map-keys`, `x-kubernetes-map-type`, `x-kubernetes-group-version-kind`), and
//!   the `<Kind>List` definitions.
//! * [`openapi_v3_index`] and [`openapi_v3_document`] / [`openapi_v3_document_at`] —
//!   the bodies of `GET /openapi/v3` and `GET /openapi/v3/<path>`, shaped as
//!   kube-apiserver serves them, so that kubectl leaves `--validate=strict` to the server
//!   (it sends `fieldValidation=Strict`), computes `kubectl apply` patches from them, and
//!   renders `kubectl explain`. Each document has a stable content hash for `?hash=`.
//! * [`openapi_v2_minimal_protobuf`] — an empty `/openapi/v2` document, which kubectl
//!   1.27 and 1.28 fetch before any create/apply and every version fetches to validate
//!   `kind: List` manifests client-side.
//! * [`unknown_fields`] and [`type_errors`] — what the API server's strict decoder
//!   reports for a request body, worded as upstream words it.
//! * [`patch_schema`] — a [`SchemaCursor`] implementing [`pier_patch::PatchSchema`], which
//!   also reports what server-side apply needs: [`SchemaShape`], list and map types, list
//!   map keys and their defaults.
//!
//! Nothing here does I/O; the documents and the registry are built lazily, once.
//!
//! ```
//! use pier_schema::{unknown_fields, decode_error_message, strict_decoding_error};
//! let svc = serde_json::json!({"spec": {"portz": [], "ports": [{"port": 80, "nme": "x"}]}});
//! let paths = unknown_fields("io.k8s.api.core.v1.Service", &svc);
//! assert_eq!(paths, ["spec.portz", "spec.ports[0].nme"]);
//! assert_eq!(
//!     decode_error_message("Service", "v1", &strict_decoding_error(&paths)),
//!     "Service in version \"v1\" cannot be handled as a Service: strict decoding error: \
//!      unknown field \"spec.portz\", unknown field \"spec.ports[0].nme\"",
//! );
//! ```

mod extensions;
mod openapi;
mod patch;
mod registry;
mod validate;

pub use openapi::{
    group_version_key, openapi_v2_minimal_protobuf, openapi_v3_document, openapi_v3_document_at,
    openapi_v3_documents, openapi_v3_index, openapi_v3_index_with, OpenApiDocument,
    OPENAPI_V2_PROTOBUF_CONTENT_TYPE,
};
pub use patch::{patch_schema, SchemaCursor, SchemaShape};
pub use registry::{schema_registry, KnownKind, SchemaRegistry, KNOWN_KINDS, REF_PREFIX};
pub use validate::{
    decode_error_message, strict_decoding_error, type_errors, unknown_field_warning, unknown_fields,
};
