//! OpenAPI v3 documents as kube-apiserver serves them under `/openapi/v3`.
//!
//! `GET /openapi/v3` answers [`openapi_v3_index`]: one entry per document, keyed by the
//! API path it describes (`api/v1`, `apis/apps/v1`, plus `api`, `apis` and `apis/<group>`),
//! each pointing at `/openapi/v3/<key>?hash=<hash>`. `GET /openapi/v3/<key>` answers the
//! document ([`openapi_v3_document_at`]). Upstream's handler (kube-openapi `handler3`)
//! serves a request whose `hash` matches with `Cache-Control: public, immutable`, an
//! `Expires` a year ahead, `Vary: Accept` and `Etag: "<hash>"`; a stale `hash`
//! gets a 301 to the current URL; no `hash` gets the document uncached.
//!
//! What kubectl reads from a group-version document:
//!
//! * `--validate=strict|warn` (cli-runtime `queryParamVerifierV3.HasSupport`): the first
//!   path whose `patch` operation has `x-kubernetes-group-version-kind` equal (as a
//!   single object) to the object's GVK; support means that operation lists a parameter
//!   named `fieldValidation`. Every patch operation of a kind therefore carries it.
//! * `kubectl apply` (`Patcher.gvkSupportsPatchOpenAPIV3` and
//!   `buildStrategicMergePatchFromOpenAPIV3`): a `patch` operation with the GVK whose
//!   `requestBody.content` has `application/strategic-merge-patch+json`, then the
//!   component schema whose `x-kubernetes-group-version-kind` *list* holds the GVK,
//!   walked through `properties`, `items`, `allOf[0]` and `$ref`, with the
//!   `x-kubernetes-patch-*` extensions on the properties.
//! * `kubectl explain` (template `plaintext.tmpl`): the GVK of the first of the list or
//!   item paths (cluster-scoped, then `namespaces/{namespace}`) with any operation, then
//!   the component whose GVK list contains it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pier_api::registry::{group_versions, resources_of, ResourceDef};
use serde_json::{json, Map, Value};

use crate::registry::{gvk, schema_registry, REF_PREFIX};
use crate::registry::{API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSIONS};
use crate::registry::{DELETE_OPTIONS, PATCH, SCALE, STATUS, WATCH_EVENT};

/// One published document: its index key, its content and its content hash.
#[derive(Debug)]
pub struct OpenApiDocument {
    /// The key in the index, e.g. `api/v1` or `apis/apps/v1`.
    pub key: String,
    pub document: Value,
    /// `document` serialized: the body of `GET /openapi/v3/<key>`.
    pub json: String,
    /// A hash of `json`, stable across runs of the same build: the `hash` query
    /// parameter of the document's URL, and its `Etag`.
    pub hash: String,
}

/// The `Content-Type` to answer `GET /openapi/v2` with. kubectl asks for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's MIME parser
/// rejects the `@` in a response's type, so upstream answers with this spelling.
pub const OPENAPI_V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The body for `GET /openapi/v2`: a gnostic `openapi_v2.Document` (protobuf) with
/// `swagger: "2.0"`, an `info`, and no paths or definitions.
///
/// kubectl 1.27 and 1.28 download OpenAPI v2 before every `create`/`apply`/`replace`
/// with validation on (the default), and fail with `the server could not find the
/// requested resource` on a 404; every version downloads it to validate a `kind: List`
/// manifest client-side (the v3 verifier declines `v1/List`). With no definitions,
/// that client-side validation finds no schema and accepts the items, which the server
/// then validates. Anything kubectl *does* with a schema comes from OpenAPI v3.
pub fn openapi_v2_minimal_protobuf() -> &'static [u8] {
    // Field 1 (swagger) = "2.0"; field 2 (info) = {1 (title) = "Kubernetes",
    // 2 (version) = "unversioned"}. All wire type 2 (length-delimited).
    const DOC: &[u8] = b"\x0a\x032.0\x12\x19\x0a\x0aKubernetes\x12\x0bunversioned";
    DOC
}

/// The index key of a group-version's document: `api/v1`, `apis/apps/v1`.
pub fn group_version_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The body of `GET /openapi/v3`, hashes being the documents' content hashes.
pub fn openapi_v3_index() -> Value {
    openapi_v3_index_with(|_, hash| hash.to_string())
}

/// The body of `GET /openapi/v3`, with `hash(key, content_hash)` as each document's
/// `hash` parameter (e.g. to mix in something that changes when the server restarts).
pub fn openapi_v3_index_with(hash: impl Fn(&str, &str) -> String) -> Value {
    let paths: Map<String, Value> = documents()
        .values()
        .map(|d| {
            let url = format!("/openapi/v3/{}?hash={}", d.key, hash(&d.key, &d.hash));
            (d.key.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The document of a group-version (`""`/`"v1"` for the core group), if Pier serves it.
pub fn openapi_v3_document(group: &str, version: &str) -> Option<Value> {
    openapi_v3_document_at(&group_version_key(group, version)).map(|d| d.document.clone())
}

/// The document with this index key (`api`, `api/v1`, `apis`, `apis/apps`,
/// `apis/apps/v1`), built once and shared.
pub fn openapi_v3_document_at(key: &str) -> Option<&'static OpenApiDocument> {
    documents().get(key.trim_matches('/'))
}

/// Every document, by key.
pub fn openapi_v3_documents() -> impl Iterator<Item = &'static OpenApiDocument> {
    documents().values()
}

fn documents() -> &'static BTreeMap<String, OpenApiDocument> {
    static DOCUMENTS: OnceLock<BTreeMap<String, OpenApiDocument>> = OnceLock::new();
    DOCUMENTS.get_or_init(build_documents)
}

fn build_documents() -> BTreeMap<String, OpenApiDocument> {
    let mut docs = BTreeMap::new();
    let mut add = |key: String, document: Value| {
        let json = document.to_string();
        let hash = content_hash(json.as_bytes());
        docs.insert(key.clone(), OpenApiDocument { key, document, json, hash });
    };
    add("api".into(), root_document("/api/", "getCoreAPIVersions", "core", API_VERSIONS));
    add("apis".into(), root_document("/apis/", "getAPIVersions", "apis", API_GROUP_LIST));
    for (group, version) in group_versions() {
        if !group.is_empty() {
            let camel = group_camel(group);
            let path = format!("/apis/{group}/");
            let op = format!("get{camel}APIGroup");
            add(format!("apis/{group}"), root_document(&path, &op, &tag_group(group), API_GROUP));
        }
        add(group_version_key(group, version), group_version_document(group, version));
    }
    docs
}

/// A hex digest of `bytes`: two FNV-1a 64-bit hashes with different bases. Only for
/// cache busting, where upstream uses SHA-512; nothing trusts it.
fn content_hash(bytes: &[u8]) -> String {
    let fnv = |mut h: u64| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    format!("{:016X}{:016X}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

fn envelope(paths: Map<String, Value>, roots: &[&str]) -> Value {
    let registry = schema_registry();
    let schemas: Map<String, Value> = registry
        .closure(roots.iter().copied())
        .into_iter()
        .filter_map(|name| registry.get(&name).map(|d| (name, d.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey"
                }
            }
        },
        "security": [{ "BearerToken": [] }]
    })
}

/// The documents of `/api/`, `/apis/` and `/apis/<group>/`: one `get` each.
fn root_document(path: &str, operation_id: &str, tag: &str, schema: &str) -> Value {
    let get = json!({
        "description": "get available API versions",
        "operationId": operation_id,
        "responses": { "200": ok(schema, OBJECT_TYPES), "401": unauthorized() },
        "tags": [tag]
    });
    let mut paths = Map::new();
    paths.insert(path.to_string(), json!({ "get": get }));
    envelope(paths, &[schema])
}

fn group_version_document(group: &str, version: &str) -> Value {
    let prefix =
        if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    let names = OpNames::new(group, version);
    let mut paths: BTreeMap<String, Value> = BTreeMap::new();
    paths.insert(
        format!("{prefix}/"),
        json!({ "get": {
            "description": "get available resources",
            "operationId": format!("get{}APIResources", names.group_version),
            "responses": { "200": ok(API_RESOURCE_LIST, OBJECT_TYPES), "401": unauthorized() },
            "tags": [names.tag]
        }}),
    );
    let mut roots = vec![API_RESOURCE_LIST, STATUS, DELETE_OPTIONS, PATCH, WATCH_EVENT];
    let list_names: Vec<String> =
        resources_of(group, version).map(|r| format!("{}List", r.schema_name)).collect();
    for (r, list) in resources_of(group, version).zip(&list_names) {
        resource_paths(&mut paths, &prefix, &names, r, list);
        roots.push(r.schema_name);
        roots.push(list);
        if r.has_subresource("scale") {
            roots.push(SCALE);
        }
    }
    envelope(paths.into_iter().collect(), &roots)
}

/// The pieces of operation ids and tags for one group-version.
struct OpNames {
    /// `CoreV1`, `AppsV1`, `NetworkingV1`.
    group_version: String,
    /// `core_v1`, `networking_v1`.
    tag: String,
}

impl OpNames {
    fn new(group: &str, version: &str) -> OpNames {
        let camel = if group.is_empty() { "Core".to_string() } else { group_camel(group) };
        let tag_group = if group.is_empty() { "core".to_string() } else { tag_group(group) };
        OpNames {
            group_version: format!("{camel}{}", capitalize(version)),
            tag: format!("{tag_group}_{version}"),
        }
    }
}

/// `networking.k8s.io` -> `Networking`, `rbac.authorization.k8s.io` -> `RbacAuthorization`.
fn group_camel(group: &str) -> String {
    group.trim_end_matches(".k8s.io").split('.').map(capitalize).collect()
}

/// `rbac.authorization.k8s.io` -> `rbacAuthorization`, as upstream's tags spell groups.
fn tag_group(group: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => camel,
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

const OBJECT_TYPES: &[&str] =
    &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
const LIST_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn content(schema: &str, types: &[&str]) -> Value {
    let map: Map<String, Value> =
        types.iter().map(|t| (t.to_string(), json!({ "schema": schema_ref(schema) }))).collect();
    Value::Object(map)
}

fn ok(schema: &str, types: &[&str]) -> Value {
    json!({ "content": content(schema, types), "description": "OK" })
}

fn created(schema: &str) -> Value {
    json!({ "content": content(schema, OBJECT_TYPES), "description": "Created" })
}

fn accepted(schema: &str) -> Value {
    json!({ "content": content(schema, OBJECT_TYPES), "description": "Accepted" })
}

fn unauthorized() -> Value {
    json!({ "description": "Unauthorized" })
}

fn param(location: &str, name: &str, description: &str, ty: &str) -> Value {
    let mut p = json!({
        "description": description,
        "in": location,
        "name": name,
        "schema": { "type": ty, "uniqueItems": true }
    });
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    param("query", name, description, ty)
}

fn pretty() -> Value {
    query("pretty", "If 'true', the output is pretty printed.", "string")
}

fn write_params(with_force: bool) -> Vec<Value> {
    let mut params = vec![
        query("dryRun", "When present, modifications are not persisted. Valid value: All.", "string"),
        query("fieldManager", "The name of the actor making the change.", "string"),
        query(
            "fieldValidation",
            "How the server treats unknown and duplicate fields: Ignore, Warn or Strict.",
            "string",
        ),
    ];
    if with_force {
        params.push(query("force", "Force an apply request, taking over conflicting fields.", "boolean"));
    }
    params
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "Request BOOKMARK watch events.", "boolean"),
        query("continue", "The continue token of the previous page of a paged list.", "string"),
        query("fieldSelector", "Select objects by their fields.", "string"),
        query("labelSelector", "Select objects by their labels.", "string"),
        query("limit", "The most objects to return in one page.", "integer"),
        query("resourceVersion", "The resource version the result must be at least as new as.", "string"),
        query("resourceVersionMatch", "How resourceVersion applies: Exact or NotOlderThan.", "string"),
        query("sendInitialEvents", "Begin a watch with the current objects as ADDED events.", "boolean"),
        query("timeoutSeconds", "A timeout for the list or watch call.", "integer"),
        query("watch", "Watch for changes instead of listing.", "boolean"),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query("dryRun", "When present, modifications are not persisted. Valid value: All.", "string"),
        query("gracePeriodSeconds", "Seconds before the object is deleted.", "integer"),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "Delete objects that cannot be read from storage.",
            "boolean",
        ),
        query("orphanDependents", "Deprecated: use propagationPolicy.", "boolean"),
        query(
            "propagationPolicy",
            "Garbage collection of dependents: Orphan, Background or Foreground.",
            "string",
        ),
    ]
}

/// One operation of one path.
struct Op<'a> {
    verb: &'static str,
    action: &'static str,
    operation_id: String,
    description: String,
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: Value,
    tag: &'a str,
    gvk: &'a Value,
}

impl Op<'_> {
    fn into_value(self) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), json!(self.description));
        op.insert("operationId".into(), json!(self.operation_id));
        if !self.parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(self.parameters));
        }
        if let Some(body) = self.request_body {
            op.insert("requestBody".into(), body);
        }
        op.insert("responses".into(), self.responses);
        op.insert("tags".into(), json!([self.tag]));
        op.insert("x-kubernetes-action".into(), json!(self.action));
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        Value::Object(op)
    }
}

fn path_item(path_params: Vec<Value>, ops: Vec<Op<'_>>) -> Value {
    let mut item: BTreeMap<String, Value> = BTreeMap::new();
    for op in ops {
        item.insert(op.verb.to_string(), op.into_value());
    }
    item.insert("parameters".into(), Value::Array(path_params));
    Value::Object(item.into_iter().collect())
}

fn body(schema: &str, required: bool) -> Value {
    json!({ "content": content(schema, &["*/*"]), "required": required })
}

/// The paths upstream publishes for one resource: collection, item, `status` and
/// `scale`, the all-namespaces list, and the (deprecated) watch paths.
fn resource_paths(
    paths: &mut BTreeMap<String, Value>,
    prefix: &str,
    names: &OpNames,
    r: &ResourceDef,
    list_schema: &str,
) {
    let kind_gvk = gvk(r.group, r.version, r.kind);
    let scale_gvk = gvk("autoscaling", "v1", "Scale");
    let gv = &names.group_version;
    let tag = names.tag.as_str();
    let (scope, ns_path) =
        if r.is_namespaced() { ("Namespaced", "/namespaces/{namespace}") } else { ("", "") };
    let kind = r.kind;
    let schema = r.schema_name;
    let name_param = param("path", "name", &format!("name of the {kind}"), "string");
    let ns_param =
        param("path", "namespace", "object name and auth scope, such as for teams and projects", "string");
    let collection_params = || {
        let mut p = Vec::new();
        if r.is_namespaced() {
            p.push(ns_param.clone());
        }
        p.push(pretty());
        p
    };
    let item_params = || {
        let mut p = vec![name_param.clone()];
        if r.is_namespaced() {
            p.push(ns_param.clone());
        }
        p.push(pretty());
        p
    };
    let op = |verb, action, id: String, description: String| Op {
        verb,
        action,
        operation_id: id,
        description,
        parameters: Vec::new(),
        request_body: None,
        responses: json!({}),
        tag,
        gvk: &kind_gvk,
    };

    // Collection: list, create, deletecollection.
    let collection = format!("{prefix}{ns_path}/{}", r.plural);
    let mut ops = vec![
        Op {
            parameters: list_params(),
            responses: json!({ "200": ok(list_schema, LIST_TYPES), "401": unauthorized() }),
            ..op(
                "get",
                "list",
                format!("list{gv}{scope}{kind}"),
                format!("list or watch objects of kind {kind}"),
            )
        },
        Op {
            parameters: write_params(false),
            request_body: Some(body(schema, true)),
            responses: json!({
                "200": ok(schema, OBJECT_TYPES), "201": created(schema), "202": accepted(schema),
                "401": unauthorized()
            }),
            ..op("post", "post", format!("create{gv}{scope}{kind}"), format!("create a {kind}"))
        },
    ];
    if r.verbs().contains(&"deletecollection") {
        let mut parameters = delete_params();
        parameters.extend(list_params());
        ops.push(Op {
            parameters,
            request_body: Some(body(DELETE_OPTIONS, false)),
            responses: json!({ "200": ok(STATUS, OBJECT_TYPES), "401": unauthorized() }),
            ..op(
                "delete",
                "deletecollection",
                format!("delete{gv}Collection{scope}{kind}"),
                format!("delete collection of {kind}"),
            )
        });
    }
    paths.insert(collection.clone(), path_item(collection_params(), ops));

    // Item: read, replace, patch, delete.
    let item = format!("{collection}/{{name}}");
    let ops = vec![
        Op {
            responses: json!({ "200": ok(schema, OBJECT_TYPES), "401": unauthorized() }),
            ..op("get", "get", format!("read{gv}{scope}{kind}"), format!("read the specified {kind}"))
        },
        Op {
            parameters: write_params(false),
            request_body: Some(body(schema, true)),
            responses: json!({ "200": ok(schema, OBJECT_TYPES), "201": created(schema), "401": unauthorized() }),
            ..op("put", "put", format!("replace{gv}{scope}{kind}"), format!("replace the specified {kind}"))
        },
        patch_op(
            op(
                "patch",
                "patch",
                format!("patch{gv}{scope}{kind}"),
                format!("partially update the specified {kind}"),
            ),
            schema,
        ),
        Op {
            parameters: delete_params(),
            request_body: Some(body(DELETE_OPTIONS, false)),
            responses: json!({
                "200": ok(STATUS, OBJECT_TYPES), "202": accepted(STATUS), "401": unauthorized()
            }),
            ..op("delete", "delete", format!("delete{gv}{scope}{kind}"), format!("delete a {kind}"))
        },
    ];
    paths.insert(item.clone(), path_item(item_params(), ops));

    // Subresources.
    if r.has_subresource("status") {
        let ops = vec![
            Op {
                responses: json!({ "200": ok(schema, OBJECT_TYPES), "401": unauthorized() }),
                ..op(
                    "get",
                    "get",
                    format!("read{gv}{scope}{kind}Status"),
                    format!("read status of the specified {kind}"),
                )
            },
            Op {
                parameters: write_params(false),
                request_body: Some(body(schema, true)),
                responses: json!({ "200": ok(schema, OBJECT_TYPES), "201": created(schema), "401": unauthorized() }),
                ..op(
                    "put",
                    "put",
                    format!("replace{gv}{scope}{kind}Status"),
                    format!("replace status of the specified {kind}"),
                )
            },
            patch_op(
                op(
                    "patch",
                    "patch",
                    format!("patch{gv}{scope}{kind}Status"),
                    format!("partially update status of the specified {kind}"),
                ),
                schema,
            ),
        ];
        paths.insert(format!("{item}/status"), path_item(item_params(), ops));
    }
    if r.has_subresource("scale") {
        let scale_op = |verb, action, id: String, description: String| Op {
            gvk: &scale_gvk,
            ..op(verb, action, id, description)
        };
        let ops = vec![
            Op {
                responses: json!({ "200": ok(SCALE, OBJECT_TYPES), "401": unauthorized() }),
                ..scale_op(
                    "get",
                    "get",
                    format!("read{gv}{scope}{kind}Scale"),
                    format!("read scale of the specified {kind}"),
                )
            },
            Op {
                parameters: write_params(false),
                request_body: Some(body(SCALE, true)),
                responses: json!({ "200": ok(SCALE, OBJECT_TYPES), "201": created(SCALE), "401": unauthorized() }),
                ..scale_op(
                    "put",
                    "put",
                    format!("replace{gv}{scope}{kind}Scale"),
                    format!("replace scale of the specified {kind}"),
                )
            },
            patch_op(
                scale_op(
                    "patch",
                    "patch",
                    format!("patch{gv}{scope}{kind}Scale"),
                    format!("partially update scale of the specified {kind}"),
                ),
                SCALE,
            ),
        ];
        paths.insert(format!("{item}/scale"), path_item(item_params(), ops));
    }

    // Lists across namespaces, and the watch paths.
    let watch_response = json!({ "200": ok(WATCH_EVENT, LIST_TYPES), "401": unauthorized() });
    if r.is_namespaced() {
        let ops = vec![Op {
            parameters: list_params(),
            responses: json!({ "200": ok(list_schema, LIST_TYPES), "401": unauthorized() }),
            ..op(
                "get",
                "list",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
            )
        }];
        paths.insert(format!("{prefix}/{}", r.plural), path_item(vec![pretty()], ops));
        let ops = vec![Op {
            parameters: list_params(),
            responses: watch_response.clone(),
            ..op(
                "get",
                "watchlist",
                format!("watch{gv}{kind}ListForAllNamespaces"),
                format!("watch individual changes to a list of {kind}"),
            )
        }];
        paths.insert(format!("{prefix}/watch/{}", r.plural), path_item(vec![pretty()], ops));
    }
    let ops = vec![Op {
        parameters: list_params(),
        responses: watch_response.clone(),
        ..op(
            "get",
            "watchlist",
            format!("watch{gv}{scope}{kind}List"),
            format!("watch individual changes to a list of {kind}"),
        )
    }];
    paths.insert(format!("{prefix}/watch{ns_path}/{}", r.plural), path_item(collection_params(), ops));
    let ops = vec![Op {
        parameters: list_params(),
        responses: watch_response,
        ..op(
            "get",
            "watch",
            format!("watch{gv}{scope}{kind}"),
            format!("watch changes to an object of kind {kind}"),
        )
    }];
    paths.insert(format!("{prefix}/watch{ns_path}/{}/{{name}}", r.plural), path_item(item_params(), ops));
}

fn patch_op<'a>(op: Op<'a>, schema: &str) -> Op<'a> {
    Op {
        parameters: write_params(true),
        request_body: Some(json!({ "content": content(PATCH, PATCH_TYPES), "required": true })),
        responses: json!({ "200": ok(schema, OBJECT_TYPES), "201": created(schema), "401": unauthorized() }),
        ..op
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::collect_refs;
    use pier_api::registry::RESOURCES;

    #[test]
    fn index_lists_every_group_version_and_group() {
        let index = openapi_v3_index();
        let paths = index["paths"].as_object().expect("paths");
        for (group, version) in group_versions() {
            let key = group_version_key(group, version);
            let url = paths[&key]["serverRelativeURL"].as_str().expect("url");
            let doc = openapi_v3_document_at(&key).expect("document");
            assert_eq!(url, format!("/openapi/v3/{key}?hash={}", doc.hash));
            if !group.is_empty() {
                assert!(paths.contains_key(&format!("apis/{group}")), "{group}");
            }
        }
        assert!(paths.contains_key("api") && paths.contains_key("apis"));
        assert!(openapi_v3_document("apps", "v1").is_some());
        assert!(openapi_v3_document("apps", "v2").is_none());
        let salted = openapi_v3_index_with(|key, hash| format!("{key}-{hash}"));
        assert!(salted["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .is_some_and(|u| u.contains("api/v1-")));
    }

    #[test]
    fn minimal_v2_document_is_well_formed_protobuf() {
        let doc = openapi_v2_minimal_protobuf();
        // Walk the length-delimited fields: each must end inside the buffer.
        let mut i = 0;
        while i < doc.len() {
            assert_eq!(doc[i] & 7, 2, "wire type at {i}");
            let len = usize::from(doc[i + 1]);
            i += 2 + len;
        }
        assert_eq!(i, doc.len());
        assert_eq!(usize::from(doc[6]), doc.len() - 7, "info length");
    }

    #[test]
    fn hashes_are_stable_and_distinct() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
        let core = openapi_v3_document_at("api/v1").expect("core");
        assert_eq!(core.hash, content_hash(core.document.to_string().as_bytes()));
    }

    /// What cli-runtime's `supportsQueryParamV3` and kubectl apply's
    /// `gvkSupportsPatchOpenAPIV3` look for: every patch operation of a kind carries the
    /// GVK as one object, the `fieldValidation` parameter inline, and a
    /// strategic-merge-patch request body.
    #[test]
    fn every_patch_operation_supports_field_validation() {
        for r in RESOURCES {
            let doc = openapi_v3_document(r.group, r.version).expect("document");
            let want = gvk(r.group, r.version, r.kind);
            let patches: Vec<&Value> = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .filter_map(|p| p.get("patch"))
                .filter(|op| op["x-kubernetes-group-version-kind"] == want)
                .collect();
            assert!(!patches.is_empty(), "{} has no patch operation", r.kind);
            for op in patches {
                let params = op["parameters"].as_array().expect("parameters");
                assert!(params.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
                assert!(op["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
            }
        }
    }

    #[test]
    fn every_resource_has_its_paths() {
        for r in RESOURCES {
            let doc = openapi_v3_document(r.group, r.version).expect("document");
            let prefix = if r.group.is_empty() {
                "/api/v1".to_string()
            } else {
                format!("/apis/{}/{}", r.group, r.version)
            };
            let ns = if r.is_namespaced() { "/namespaces/{namespace}" } else { "" };
            let mut want = vec![
                format!("{prefix}{ns}/{}", r.plural),
                format!("{prefix}{ns}/{}/{{name}}", r.plural),
                format!("{prefix}/watch{ns}/{}", r.plural),
                format!("{prefix}/watch{ns}/{}/{{name}}", r.plural),
            ];
            if r.is_namespaced() {
                want.push(format!("{prefix}/{}", r.plural));
            }
            for sub in r.subresources {
                want.push(format!("{prefix}{ns}/{}/{{name}}/{sub}", r.plural));
            }
            for path in want {
                let item = &doc["paths"][&path];
                assert!(item.is_object(), "{path} missing");
                assert!(item["get"]["x-kubernetes-group-version-kind"].is_object(), "{path}");
            }
            let item = &doc["paths"][&format!("{prefix}{ns}/{}/{{name}}", r.plural)];
            for verb in ["get", "put", "patch", "delete"] {
                assert!(item.get(verb).is_some(), "{path} {verb}", path = r.plural);
            }
        }
    }

    /// kubectl explain and apply find a kind's component by the GVK list on it.
    #[test]
    fn components_carry_the_gvk_of_each_kind() {
        for r in RESOURCES {
            let doc = openapi_v3_document(r.group, r.version).expect("document");
            let def = &doc["components"]["schemas"][r.schema_name];
            let list = def["x-kubernetes-group-version-kind"].as_array().expect("gvk list");
            assert!(list.contains(&gvk(r.group, r.version, r.kind)), "{}", r.schema_name);
        }
    }

    #[test]
    fn every_reference_resolves_inside_its_document() {
        for doc in openapi_v3_documents() {
            let schemas = doc.document["components"]["schemas"].as_object().expect("schemas");
            collect_refs(&doc.document, &mut |name| {
                assert!(schemas.contains_key(name), "{}: {name} unresolved", doc.key);
            });
            // Only OpenAPI v3 references: none of JSON Schema's `$defs` or v2's `#/definitions`.
            assert!(
                !doc.json.contains("\"#/definitions/") && !doc.json.contains("\"#/$defs/"),
                "{}",
                doc.key
            );
        }
    }

    #[test]
    fn operation_ids_follow_upstream() {
        let doc = openapi_v3_document("", "v1").expect("core");
        let p = &doc["paths"];
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/services"]["get"]["operationId"],
            "listCoreV1NamespacedService"
        );
        assert_eq!(
            p["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]["operationId"],
            "patchCoreV1NamespacedService"
        );
        assert_eq!(p["/api/v1/services"]["get"]["operationId"], "listCoreV1ServiceForAllNamespaces");
        assert_eq!(
            p["/api/v1/namespaces/{name}/status"]["put"]["operationId"],
            "replaceCoreV1NamespaceStatus"
        );
        let net = openapi_v3_document("networking.k8s.io", "v1").expect("networking");
        let ing = &net["paths"]["/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses"]["post"];
        assert_eq!(ing["operationId"], "createNetworkingV1NamespacedIngress");
        assert_eq!(ing["tags"], json!(["networking_v1"]));
        let apps = openapi_v3_document("apps", "v1").expect("apps");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"], gvk("autoscaling", "v1", "Scale"));
    }
}
