//! From HTTP requests to registry calls and back: body decoding, content negotiation
//! (JSON, Table, aggregated discovery), patches, subresources and watch streams.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use pier_api::field::FieldError;
use pier_api::ResourceDef;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::discovery;
use crate::meta;
use crate::objects::{DeleteOptions, Deleted, ListOptions, Objects, Part, WriteOptions};
use crate::request::{self, DiscoveryPath, Query, ResourceRequest, Target, Verb};
use crate::status::{ApiError, ApiResult};
use crate::watch_lines::LineCache;

pub type Body = BoxBody<Bytes, Infallible>;

/// Upstream's limit on request bodies (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Everything a request handler needs.
pub struct Api {
    pub objects: Objects,
    /// How clients reach this server, for `/api`'s `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// How `pods/exec`, `pods/log` and the like reach nodes.
    pub nodes: crate::node_proxy::NodeDialer,
    /// Watch lines shared by every watcher of a revision.
    pub watch_lines: Arc<LineCache>,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn respond_json(code: StatusCode, value: &Value) -> Response<Body> {
    respond_typed(code, value, "application/json")
}

fn respond_typed(code: StatusCode, value: &Value, content_type: &str) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond_json(code, &e.to_status())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

impl Api {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        tracing::trace!(method = %req.method(), uri = %req.uri(), agent = ?req.headers().get(header::USER_AGENT), "request");
        let query = Query::parse(req.uri().query());
        let target = request::route(req.method(), req.uri().path(), &query);
        if let Target::Resource(r) = &target {
            // These need the whole request: its body may become a stream, its connection an upgrade.
            if crate::node_proxy::is_node_subresource(r) {
                return crate::node_proxy::serve(&self, r, req).await;
            }
        }
        let (parts, body) = req.into_parts();
        let accept = header_str(&parts.headers, header::ACCEPT).to_string();
        let result = match target {
            Target::Version => Ok(respond_json(StatusCode::OK, &discovery::version())),
            Target::Health => {
                let mut r = Response::new(full("ok"));
                r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
                Ok(r)
            }
            Target::Discovery(path) => self.discovery(path, &accept),
            Target::OpenApiV3(path) => self.openapi_v3(path.as_deref(), &query),
            Target::OpenApiV2 => Ok(self.openapi_v2()),
            Target::NotFound => Err(ApiError::path_not_found()),
            Target::Resource(r) => {
                let body = match read_body(body).await {
                    Ok(b) => b,
                    Err(e) => return error_response(&e),
                };
                self.resource(r, &parts.method, &parts.headers, &query, body, &accept).await
            }
        };
        match result {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    }

    fn discovery(&self, path: DiscoveryPath, accept: &str) -> ApiResult<Response<Body>> {
        let aggregated = discovery::aggregated_version(accept);
        match (path, aggregated) {
            (DiscoveryPath::Api, Some(v)) => Ok(aggregated_response(discovery::aggregated(true, v), v)),
            (DiscoveryPath::Apis, Some(v)) => Ok(aggregated_response(discovery::aggregated(false, v), v)),
            (DiscoveryPath::Api, None) => {
                Ok(respond_json(StatusCode::OK, &discovery::api_versions(&self.server_address)))
            }
            (DiscoveryPath::Apis, None) => Ok(respond_json(StatusCode::OK, &discovery::api_group_list())),
            (DiscoveryPath::Group(g), _) => discovery::api_group(&g)
                .map(|v| respond_json(StatusCode::OK, &v))
                .ok_or_else(ApiError::path_not_found),
            (DiscoveryPath::GroupVersion(g, v), _) => discovery::api_resource_list(&g, &v)
                .map(|v| respond_json(StatusCode::OK, &v))
                .ok_or_else(ApiError::path_not_found),
        }
    }

    fn openapi_v3(&self, path: Option<&str>, query: &Query) -> ApiResult<Response<Body>> {
        let Some(key) = path else {
            return Ok(respond_json(StatusCode::OK, &pier_schema::openapi_v3_index()));
        };
        let doc = pier_schema::openapi_v3_document_at(key).ok_or_else(ApiError::path_not_found)?;
        match query.get("hash") {
            // A stale hash is redirected to the current document, as upstream does.
            Some(h) if h != doc.hash => {
                let mut resp = Response::new(full(Bytes::new()));
                *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
                if let Ok(v) = header::HeaderValue::from_str(&format!("/openapi/v3/{key}?hash={}", doc.hash))
                {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                Ok(resp)
            }
            hash => {
                let mut resp = Response::new(full(doc.json.clone()));
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                if hash.is_some() {
                    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, immutable"));
                    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{}\"", doc.hash)) {
                        h.insert(header::ETAG, v);
                    }
                }
                h.insert(header::VARY, header::HeaderValue::from_static("Accept"));
                Ok(resp)
            }
        }
    }

    /// kubectl 1.27 and 1.28 need `/openapi/v2` to answer before they create
    /// anything; every version uses it to validate `kind: List` files. A document
    /// without definitions satisfies both (validation itself happens server-side).
    fn openapi_v2(&self) -> Response<Body> {
        let mut resp = Response::new(full(Bytes::from_static(pier_schema::openapi_v2_minimal_protobuf())));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(pier_schema::OPENAPI_V2_PROTOBUF_CONTENT_TYPE),
        );
        resp
    }

    async fn resource(
        &self,
        r: ResourceRequest,
        method: &Method,
        headers: &HeaderMap,
        query: &Query,
        body: Bytes,
        accept: &str,
    ) -> ApiResult<Response<Body>> {
        let res = r.resource;
        let ns = if res.is_namespaced() { r.namespace.as_deref() } else { None };
        let sub = r.subresource.as_deref();
        if let Some(s) = sub {
            let known = res.has_subresource(s)
                || (res.plural == "namespaces" && s == "finalize")
                || is_pod_binding(res, s);
            if !known {
                return Err(ApiError::path_not_found());
            }
        }
        let content_type = header_str(headers, header::CONTENT_TYPE);
        // Upstream records a request without `?fieldManager=` under its User-Agent's
        // prefix (`kubectl`, `kube-controller-manager`); an apply must name one.
        let field_manager = match query.get("fieldManager") {
            Some(m) => m.to_string(),
            None => pier_apply::manager_from_user_agent(header_str(headers, header::USER_AGENT)).to_string(),
        };
        let write = WriteOptions {
            dry_run: query.get("dryRun") == Some("All"),
            field_manager: Some(field_manager),
            trusted: false,
        };
        let table = wants_table(accept);
        match (r.verb, sub) {
            (Verb::Get, None) => {
                let name = r.name.as_deref().unwrap_or_default();
                let obj = with_type(res, self.objects.get(res, ns, name).await?);
                if table {
                    return Ok(respond_json(StatusCode::OK, &self.table(res, &[obj], query, json!({}))?));
                }
                Ok(respond_json(StatusCode::OK, &obj))
            }
            (Verb::Create, Some("binding")) => {
                let name = r.name.as_deref().unwrap_or_default();
                let binding = decode_body(res, &body, content_type)?;
                self.bind(res, ns, name, &binding, &write).await
            }
            (_, Some("binding")) => Err(ApiError::method_not_allowed(method.as_str(), "pods/binding")),
            (Verb::Get, Some("scale")) => {
                let name = r.name.as_deref().unwrap_or_default();
                let obj = self.objects.get(res, ns, name).await?;
                Ok(respond_json(StatusCode::OK, &to_scale(&obj)))
            }
            (Verb::Get, Some(_)) => {
                let name = r.name.as_deref().unwrap_or_default();
                Ok(respond_json(StatusCode::OK, &with_type(res, self.objects.get(res, ns, name).await?)))
            }
            (Verb::List, None) => self.list(res, ns, query, table).await,
            (Verb::Watch, None) => self.watch(res, ns, query, table).await,
            (Verb::Create, None) => {
                let obj = decode_body(res, &body, content_type)?;
                let warnings = self.check_fields(res, &obj, query)?;
                let obj = check_type(res, obj)?;
                check_body_namespace(res, ns, &obj)?;
                let mut obj = obj;
                track_write(res, None, &mut obj, &write, Part::Main, None);
                let created = self.objects.create(res, ns, obj, &write).await?;
                Ok(with_warnings(respond_json(StatusCode::CREATED, &with_type(res, created)), &warnings))
            }
            (Verb::Update, sub) => {
                let name = r.name.as_deref().unwrap_or_default();
                let part = part_of(sub);
                if sub == Some("scale") {
                    let scale = decode_body(res, &body, content_type)?;
                    return self.write_scale(res, ns, name, &write, move |_| Ok(scale.clone())).await;
                }
                let obj = decode_body(res, &body, content_type)?;
                let warnings = self.check_fields(res, &obj, query)?;
                let obj = check_type(res, obj)?;
                let (updated, created) = self
                    .objects
                    .update(res, ns, name, part, &write, |current| {
                        let mut next = obj.clone();
                        track_write(res, current, &mut next, &write, part, sub);
                        Ok(next)
                    })
                    .await?;
                let code = if created { StatusCode::CREATED } else { StatusCode::OK };
                Ok(with_warnings(respond_json(code, &with_type(res, updated)), &warnings))
            }
            (Verb::Patch, sub) => {
                let name = r.name.as_deref().unwrap_or_default().to_string();
                self.patch(res, ns, &name, sub, content_type, &body, query, &write).await
            }
            (Verb::Delete, None) => {
                let name = r.name.as_deref().unwrap_or_default();
                let opts = delete_options(query, &body)?;
                match self.objects.delete(res, ns, name, &opts).await? {
                    Deleted::Gone(v) => Ok(respond_json(StatusCode::OK, &with_type_if_object(res, v))),
                    Deleted::Pending(v) => Ok(respond_json(StatusCode::OK, &with_type(res, v))),
                }
            }
            (Verb::DeleteCollection, None) => {
                let opts = delete_options(query, &body)?;
                let list_opts = list_options(res, query)?;
                let listed = self.objects.list(res, ns, &list_opts).await?;
                let mut items = Vec::new();
                for obj in listed.items {
                    let name = meta::name(&obj).unwrap_or_default().to_string();
                    let obj_ns = meta::namespace(&obj).map(str::to_string);
                    match self.objects.delete(res, obj_ns.as_deref(), &name, &opts).await {
                        Ok(Deleted::Gone(_)) | Ok(Deleted::Pending(_)) => items.push(with_type(res, obj)),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                let rev = self.objects.current_revision().await?;
                Ok(respond_json(StatusCode::OK, &list_body(res, items, rev, None)))
            }
            _ => Err(ApiError::method_not_allowed(method.as_str(), res.plural)),
        }
    }

    /// `POST pods/NAME/binding`: the scheduler's write, as upstream's `BindingREST`
    /// does it: set `spec.nodeName` once, copy the binding's annotations, mark the pod
    /// `PodScheduled`, and answer with a `Status`. It skips the generic update path
    /// (no managed fields, no update validation): the only change is the assignment.
    async fn bind(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
        write: &WriteOptions,
    ) -> ApiResult<Response<Body>> {
        let target = check_binding(name, binding)?;
        let annotations = binding.pointer("/metadata/annotations").and_then(Value::as_object).cloned();
        let write = WriteOptions { trusted: true, ..write.clone() };
        let now = meta::now_rfc3339();
        self.objects
            .update(res, ns, name, Part::Binding, &write, |current| {
                let Some(current) = current else {
                    return Err(ApiError::not_found(res, name));
                };
                let mut pod = current.clone();
                if meta::is_deleting(&pod) {
                    return Err(ApiError::conflict_message(
                        res,
                        name,
                        &format!("pod {name} is being deleted, cannot be assigned to a host"),
                    ));
                }
                if let Some(node) =
                    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
                {
                    return Err(ApiError::conflict_message(
                        res,
                        name,
                        &format!("pod {name} is already assigned to node \"{node}\""),
                    ));
                }
                pod["spec"]["nodeName"] = json!(target);
                if let Some(extra) = &annotations {
                    let m = meta::metadata_mut(&mut pod);
                    let slot = m.entry("annotations").or_insert_with(|| json!({}));
                    if let Some(existing) = slot.as_object_mut() {
                        for (k, v) in extra {
                            existing.insert(k.clone(), v.clone());
                        }
                    }
                }
                set_pod_scheduled(&mut pod, &now);
                Ok(pod)
            })
            .await?;
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        });
        Ok(respond_json(StatusCode::CREATED, &status))
    }

    /// Decoding problems as upstream reports them: a type error fails the request
    /// whatever `fieldValidation` says; unknown fields fail it under `Strict`
    /// (kubectl's default) and are warnings under `Warn`.
    fn check_fields(&self, res: &ResourceDef, obj: &Value, query: &Query) -> ApiResult<Vec<String>> {
        if let Some(first) = pier_schema::type_errors(res.schema_name, obj).into_iter().next() {
            return Err(ApiError::bad_request(pier_schema::decode_error_message(
                res.kind,
                res.version,
                &first,
            )));
        }
        let mode = query.get("fieldValidation").unwrap_or("Warn");
        if mode == "Ignore" {
            return Ok(Vec::new());
        }
        let unknown = pier_schema::unknown_fields(res.schema_name, obj);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if mode == "Strict" {
            let cause = pier_schema::strict_decoding_error(&unknown);
            return Err(ApiError::bad_request(pier_schema::decode_error_message(
                res.kind,
                res.version,
                &cause,
            )));
        }
        Ok(unknown.iter().map(|f| pier_schema::unknown_field_warning(f)).collect())
    }

    async fn list(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        query: &Query,
        table: bool,
    ) -> ApiResult<Response<Body>> {
        let opts = list_options(res, query)?;
        let result = self.objects.list(res, ns, &opts).await?;
        let mut list_meta = json!({"resourceVersion": result.revision.to_string()});
        if let Some(c) = &result.continue_token {
            list_meta["continue"] = json!(c);
        }
        if table {
            let items: Vec<Value> = result.items.into_iter().map(|o| with_type(res, o)).collect();
            return Ok(respond_json(StatusCode::OK, &self.table(res, &items, query, list_meta)?));
        }
        Ok(respond_json(
            StatusCode::OK,
            &list_body(res, result.items, result.revision, result.continue_token),
        ))
    }

    fn table(&self, res: &ResourceDef, items: &[Value], query: &Query, list_meta: Value) -> ApiResult<Value> {
        let include = include_object(query)?;
        let refs: Vec<&Value> = items.iter().collect();
        Ok(pier_printers::table(res.group, res.kind, &refs, chrono::Utc::now(), include, list_meta))
    }

    async fn watch(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        query: &Query,
        table: bool,
    ) -> ApiResult<Response<Body>> {
        let opts = list_options(res, query)?;
        let rv = query.get("resourceVersion");
        let send_initial = query.flag("sendInitialEvents");
        let bookmarks = query.flag("allowWatchBookmarks");
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_else(|| Duration::from_secs(1800 + rand::random::<u64>() % 1800));
        let mut initial = Vec::new();
        let start = match rv.and_then(|v| v.parse::<i64>().ok()).filter(|v| *v > 0) {
            Some(rev) if !send_initial => rev,
            _ => {
                // No revision (or "0"): synthetic ADDED events for the current state first.
                let listed = self
                    .objects
                    .list(res, ns, &ListOptions { limit: None, continue_token: None, ..opts.clone() })
                    .await?;
                initial = listed.items;
                listed.revision
            }
        };
        // A compacted start revision is reported in the stream, as upstream does, so
        // clients see `ERROR` with a 410 `Expired` Status and re-list.
        let mut stream = match self.objects.watch(res, ns, start, opts).await {
            Ok(s) => s,
            Err(e) if e.code == 410 => futures::stream::once(async move { Err(e) }).boxed(),
            Err(e) => return Err(e),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let group = res.group;
        let kind = res.kind;
        let include = include_object(query)?;
        let encode = move |kind_word: &str, obj: Value, first: &mut bool| -> Bytes {
            // Bookmarks are Tables too when the client asked for Tables; errors stay Status.
            let object = if table && kind_word != "ERROR" {
                let t = pier_printers::watch_table(group, kind, &obj, chrono::Utc::now(), include, *first);
                *first = false;
                t
            } else {
                obj
            };
            let mut line =
                serde_json::to_vec(&json!({"type": kind_word, "object": object})).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        let lines = Arc::clone(&self.watch_lines);
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut first = true;
            let mut last_rev = start;
            for obj in initial {
                if tx.send(encode("ADDED", with_type(res, obj), &mut first)).await.is_err() {
                    return;
                }
            }
            if send_initial {
                let mut mark = bookmark(res, last_rev);
                mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                if tx.send(encode("BOOKMARK", mark, &mut first)).await.is_err() {
                    return;
                }
            }
            let mut ticker = tokio::time::interval(Duration::from_secs(10));
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        if tx.send(encode("BOOKMARK", bookmark(res, last_rev), &mut first)).await.is_err() {
                            return;
                        }
                    }
                    event = stream.next() => {
                        let line = match event {
                            None => return,
                            Some(Err(e)) => {
                                let _ = tx.send(encode("ERROR", e.to_status(), &mut first)).await;
                                return;
                            }
                            Some(Ok((rev, change))) => {
                                last_rev = rev;
                                let word = change.word();
                                let watched = change.into_watched();
                                let line = if table {
                                    watched.into_value().map(|o| encode(word, with_type(res, o), &mut first))
                                } else {
                                    lines.get_or_encode(rev, word, || {
                                        let o = watched.into_value()?;
                                        Ok(encode(word, with_type(res, o), &mut true))
                                    })
                                };
                                match line {
                                    Ok(line) => line,
                                    Err(e) => {
                                        let _ = tx.send(encode("ERROR", e.to_status(), &mut first)).await;
                                        return;
                                    }
                                }
                            }
                        };
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let body = StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
        );
        let mut resp = Response::new(BodyExt::boxed(body));
        resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache, private"));
        Ok(resp)
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        body: &Bytes,
        query: &Query,
        write: &WriteOptions,
    ) -> ApiResult<Response<Body>> {
        let kind = PatchKind::from_content_type(content_type)?;
        check_patch_options(kind, query)?;
        let patch: Value = match kind {
            PatchKind::Apply => yaml_or_json(body)?,
            _ => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        };
        if sub == Some("scale") {
            return self
                .write_scale(res, ns, name, write, |scale| apply_patch(kind, res, scale, &patch))
                .await;
        }
        let part = part_of(sub);
        if kind == PatchKind::Apply {
            return self.server_side_apply(res, ns, name, sub, patch, query, write).await;
        }
        let mut warnings = Vec::new();
        let result = self
            .objects
            .update(res, ns, name, part, write, |current| {
                let current = match current {
                    Some(c) => with_type(res, c.clone()),
                    None => return Err(ApiError::not_found(res, name)),
                };
                let mut patched = apply_patch(kind, res, &current, &patch)?;
                warnings = self.check_fields(res, &patched, query)?;
                track_write(res, Some(&current), &mut patched, write, part, sub);
                Ok(patched)
            })
            .await;
        let (obj, created) = result?;
        let code = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok(with_warnings(respond_json(code, &with_type(res, obj)), &warnings))
    }

    /// Server-side apply (`application/apply-patch+yaml`): merges the configuration into
    /// the live object with [`pier_apply::apply`], creating the object when it does not
    /// exist; conflicts with other managers are 409s unless `force=true`.
    #[allow(clippy::too_many_arguments)]
    async fn server_side_apply(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        config: Value,
        query: &Query,
        write: &WriteOptions,
    ) -> ApiResult<Response<Body>> {
        let config = check_type(res, config)?;
        let part = part_of(sub);
        let force = query.flag("force");
        let schema = pier_schema::patch_schema(res.schema_name);
        let manager = write.field_manager.clone().unwrap_or_default();
        let api_version = res.api_version();
        let now = meta::now_rfc3339();
        let apply_write = pier_apply::Write {
            manager: &manager,
            api_version: &api_version,
            subresource: sub,
            time: &now,
            scope: write_scope(res, part),
        };
        // Between a create that found the object missing and one that found it
        // created meanwhile, a few rounds settle any race.
        for _ in 0..3 {
            let mut missing = false;
            let mut warnings = Vec::new();
            let result = self
                .objects
                .update(res, ns, name, part, write, |current| {
                    let Some(current) = current else {
                        missing = true;
                        return Err(ApiError::not_found(res, name));
                    };
                    let live = with_type(res, current.clone());
                    let managed = pier_apply::ManagedFields::from_object(&live)
                        .map_err(|e| apply_error(res, pier_apply::ApplyError::ManagedFields(e)))?;
                    let applied =
                        pier_apply::apply(schema, Some(&live), &config, &managed, &apply_write, force)
                            .map_err(|e| apply_error(res, e))?;
                    let mut next = applied.object;
                    warnings = self.check_fields(res, &next, query)?;
                    store_managed(current, &managed, &applied.managed, &mut next);
                    Ok(next)
                })
                .await;
            match result {
                Ok((obj, _)) => {
                    return Ok(with_warnings(respond_json(StatusCode::OK, &with_type(res, obj)), &warnings))
                }
                Err(e) if !(missing && part == Part::Main) => return Err(e),
                Err(_) => {}
            }
            // Server-side apply creates what is missing.
            let mut config = config.clone();
            match meta::name(&config) {
                Some(n) if n != name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )))
                }
                Some(_) => {}
                None => {
                    meta::metadata_mut(&mut config).insert("name".into(), json!(name));
                }
            }
            let applied = pier_apply::apply(
                schema,
                None,
                &config,
                &pier_apply::ManagedFields::new(),
                &apply_write,
                force,
            )
            .map_err(|e| apply_error(res, e))?;
            let mut obj = applied.object;
            meta::metadata_mut(&mut obj).shift_remove("resourceVersion");
            applied.managed.write_to(&mut obj);
            let warnings = self.check_fields(res, &obj, query)?;
            check_body_namespace(res, ns, &obj)?;
            match self.objects.create(res, ns, obj, write).await {
                Ok(created) => {
                    return Ok(with_warnings(
                        respond_json(StatusCode::CREATED, &with_type(res, created)),
                        &warnings,
                    ))
                }
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(res, name))
    }

    async fn write_scale<F>(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        write: &WriteOptions,
        mut change: F,
    ) -> ApiResult<Response<Body>>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let (obj, _) = self
            .objects
            .update(res, ns, name, Part::Main, write, |current| {
                let current = current.ok_or_else(|| ApiError::not_found(res, name))?;
                let scale = change(&to_scale(current))?;
                if let Some(rv) = meta::resource_version(&scale) {
                    if Some(rv) != meta::resource_version(current) {
                        return Err(ApiError::conflict(res, name));
                    }
                }
                let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    let f = pier_api::FieldPath::new("spec").child("replicas");
                    return Err(ApiError::invalid(
                        res,
                        name,
                        &[pier_api::FieldError::invalid(&f, replicas, "must be greater than or equal to 0")],
                    ));
                }
                let mut next = current.clone();
                next["spec"]["replicas"] = json!(replicas);
                track_write(res, Some(current), &mut next, write, Part::Main, Some("scale"));
                Ok(next)
            })
            .await?;
        Ok(respond_json(StatusCode::OK, &to_scale(&obj)))
    }
}

/// Adds `Warning` headers (RFC 7234 code 299), which kubectl prints as `Warning: ...`.
fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = header::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn aggregated_response(doc: Value, version: &str) -> Response<Body> {
    let ct = if version == "v2" { discovery::AGGREGATED_V2 } else { discovery::AGGREGATED_V2BETA1 };
    respond_typed(StatusCode::OK, &doc, ct)
}

fn include_object(query: &Query) -> ApiResult<pier_printers::IncludeObject> {
    match query.get("includeObject") {
        Some(v) => pier_printers::IncludeObject::parse(v).map_err(|e| ApiError::bad_request(e.to_string())),
        None => Ok(pier_printers::IncludeObject::default()),
    }
}

fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

fn part_of(sub: Option<&str>) -> Part {
    match sub {
        Some("status") => Part::Status,
        Some("finalize") => Part::Finalize,
        _ => Part::Main,
    }
}

async fn read_body(body: Incoming) -> ApiResult<Bytes> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ApiError::too_large(MAX_BODY_BYTES))
            } else {
                Err(ApiError::bad_request(format!("error reading request body: {e}")))
            }
        }
    }
}

fn yaml_or_json(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Decodes a request body by its media type.
/// Whether `sub` is the pods' `binding` subresource.
fn is_pod_binding(res: &ResourceDef, sub: &str) -> bool {
    res.group.is_empty() && res.plural == "pods" && sub == "binding"
}

/// The node a `Binding` names, after upstream's checks (`ValidatePodBinding` and the
/// name in the URL).
fn check_binding(name: &str, binding: &Value) -> ApiResult<String> {
    if let Some(n) = binding.pointer("/metadata/name").and_then(Value::as_str) {
        if n != name {
            return Err(ApiError::bad_request("name in URL does not match name in Binding object"));
        }
    }
    let kind = binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or("");
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
    let target = pier_api::field::FieldPath::new("target");
    let mut causes = Vec::new();
    if !kind.is_empty() && kind != "Node" {
        causes.push(FieldError::not_supported(&target.child("kind"), kind, &["Node", "<empty>"]));
    }
    if node.is_empty() {
        causes.push(FieldError::required(&target.child("name"), ""));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind("Binding", "", name, &causes));
    }
    Ok(node.to_string())
}

/// Sets the pod's `PodScheduled` condition to True (added, or changed in place with a
/// new transition time when it was not True), as upstream's binding does.
fn set_pod_scheduled(pod: &mut Value, now: &str) {
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    let status = &mut pod["status"];
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = &mut status["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else { return };
    match list.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled")) {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
        Some(c) => *c = condition,
        None => list.push(condition),
    }
}

fn decode_body(res: &ResourceDef, body: &[u8], content_type: &str) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let decoded: Result<Value, String> = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| format!("couldn't get version/kind; json parse error: {e}")),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml::from_slice(body).map_err(|e| format!("error converting YAML to JSON: yaml: {e}"))
        }
        "application/vnd.kubernetes.protobuf" => {
            pier_protobuf::decode(body).map(|d| d.object).map_err(|e| e.to_string())
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    let value = decoded.map_err(|e| unrecognized(res, &e, body))?;
    if !value.is_object() {
        return Err(unrecognized(res, "couldn't get version/kind; json parse error: not an object", body));
    }
    Ok(value)
}

/// Upstream's wrapper for a body that could not be decoded at all: the error and a
/// short summary of the data (text when it looks like JSON, hex otherwise).
fn unrecognized(res: &ResourceDef, err: &str, body: &[u8]) -> ApiError {
    const MAX: usize = 30;
    let summary = match body.first() {
        None => "<empty>".to_string(),
        Some(b'{') if body.len() > MAX => format!("{} ...", String::from_utf8_lossy(&body[..MAX])),
        Some(b'{') => String::from_utf8_lossy(body).into_owned(),
        Some(_) => {
            let hex: String = body.iter().take(MAX).map(|b| format!("{b:02x}")).collect();
            if body.len() > MAX {
                format!("{hex} ...")
            } else {
                hex
            }
        }
    };
    ApiError::bad_request(format!(
        "the object provided is unrecognized (must be of type {}): {err} ({summary})",
        res.kind
    ))
}

/// A body's `kind`/`apiVersion`, when given, must name this resource.
fn check_type(res: &ResourceDef, mut obj: Value) -> ApiResult<Value> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != res.kind) || (!api_version.is_empty() && api_version != res.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        ))
        .with_kind_mismatch(kind, res));
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    Ok(obj)
}

impl ApiError {
    fn with_kind_mismatch(self, kind: &str, res: &ResourceDef) -> Self {
        if !kind.is_empty() && kind != res.kind {
            return ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the kind in the data ({kind}) does not match the expected kind ({})",
                res.kind, res.version, res.kind, res.kind
            ));
        }
        self
    }
}

fn check_body_namespace(res: &ResourceDef, ns: Option<&str>, obj: &Value) -> ApiResult<()> {
    if !res.is_namespaced() {
        return Ok(());
    }
    match (meta::namespace(obj), ns) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (_, None) => {
            Err(ApiError::method_not_allowed("POST", &format!("{} without a namespace", res.plural)))
        }
        _ => Ok(()),
    }
}

/// Objects come back with their `kind` and `apiVersion` set.
fn with_type(res: &ResourceDef, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        // Keep apiVersion and kind first, as upstream's encoder writes them.
        let mut out = serde_json::Map::new();
        out.insert("kind".into(), json!(res.kind));
        out.insert("apiVersion".into(), json!(res.api_version()));
        for (k, v) in std::mem::take(map) {
            if k != "kind" && k != "apiVersion" {
                out.insert(k, v);
            }
        }
        *map = out;
    }
    obj
}

fn with_type_if_object(res: &ResourceDef, obj: Value) -> Value {
    if obj.get("kind").and_then(Value::as_str) == Some("Status") {
        obj
    } else {
        with_type(res, obj)
    }
}

fn bookmark(res: &ResourceDef, rev: i64) -> Value {
    json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string(), "creationTimestamp": null}})
}

fn list_body(res: &ResourceDef, items: Vec<Value>, rev: i64, continue_token: Option<String>) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut o| {
            // Upstream's list items carry no kind or apiVersion of their own.
            if let Some(m) = o.as_object_mut() {
                m.shift_remove("kind");
                m.shift_remove("apiVersion");
            }
            o
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": metadata, "items": items})
}

/// Field selectors each kind supports, beyond `metadata.name` and `metadata.namespace`.
fn supported_fields(res: &ResourceDef) -> &'static [&'static str] {
    match (res.group, res.plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") | ("events.k8s.io", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

fn list_options(res: &ResourceDef, query: &Query) -> ApiResult<ListOptions> {
    let label_selector = match query.get("labelSelector") {
        Some(s) => {
            Some(pier_selector::LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        None => None,
    };
    let field_selector = match query.get("fieldSelector") {
        Some(s) => {
            let sel =
                pier_selector::FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            sel.check_supported(|f| {
                f == "metadata.name" || f == "metadata.namespace" || supported_fields(res).contains(&f)
            })
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(sel)
        }
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l.parse::<usize>().ok().filter(|l| *l > 0),
        None => None,
    };
    let exact_revision = match (query.get("resourceVersionMatch"), query.get("resourceVersion")) {
        (Some("Exact"), Some(rv)) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
        _ => None,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: query.get("continue").map(str::to_string),
        exact_revision,
    })
}

fn delete_options(query: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions::default();
    if !body.is_empty() {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => pier_protobuf::decode(body)
                .map(|d| d.object)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?,
        };
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && opts.propagation_policy.is_none()
        {
            opts.propagation_policy = Some("Orphan".into());
        }
        opts.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        opts.precondition_resource_version =
            v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
        opts.dry_run =
            v.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "All"));
    }
    if let Some(g) = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = query.get("propagationPolicy") {
        opts.propagation_policy = Some(p.to_string());
    }
    if query.get("dryRun") == Some("All") {
        opts.dry_run = true;
    }
    Ok(opts)
}

/// The `autoscaling/v1` `Scale` view of an object with `spec.replicas`.
fn to_scale(obj: &Value) -> Value {
    let m = meta::metadata(obj).cloned().unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = m.get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    let selector = match obj.pointer("/spec/selector") {
        Some(Value::Object(sel))
            if sel.contains_key("matchLabels") || sel.contains_key("matchExpressions") =>
        {
            pier_selector::LabelSelector::from_label_selector_json(&Value::Object(sel.clone()))
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Some(Value::Object(sel)) => pier_selector::LabelSelector::from_set_json(&Value::Object(sel.clone()))
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    fn from_content_type(ct: &str) -> ApiResult<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Upstream's `PatchOptions` validation: an apply names its manager, and only an
/// apply may be forced.
fn check_patch_options(kind: PatchKind, query: &Query) -> ApiResult<()> {
    let invalid = |field: &str, reason: &str, body: &str| ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {body}"),
        details: Some(json!({
            "group": "meta.k8s.io",
            "kind": "PatchOptions",
            "causes": [{"reason": reason, "message": body, "field": field}],
        })),
    };
    match kind {
        PatchKind::Apply if query.get("fieldManager").is_none() => {
            Err(invalid("fieldManager", "FieldValueRequired", "Required value: is required for apply patch"))
        }
        PatchKind::Apply => Ok(()),
        _ if query.get("force").is_some() => Err(invalid(
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        )),
        _ => Ok(()),
    }
}

/// The top-level fields a write to `part` may change: the rest is reset by the registry
/// (see `objects::merge_part`), so nobody owns it through this write.
fn write_scope(res: &ResourceDef, part: Part) -> pier_apply::Scope<'static> {
    match part {
        Part::Status => pier_apply::Scope::Only(&["status"]),
        Part::Main if res.has_subresource("status") => pier_apply::Scope::Except(&["status"]),
        _ => pier_apply::Scope::All,
    }
}

/// The managers a write starts from: the live object's, unless the request brings its
/// own list. As upstream: an absent or empty list keeps the live one, `[{}]` clears it,
/// and a list that cannot be read is ignored (a write never fails over bookkeeping).
fn incoming_managed(live: Option<&pier_apply::ManagedFields>, desired: &Value) -> pier_apply::ManagedFields {
    let live = live.cloned().unwrap_or_default();
    match desired.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => live,
        Some(Value::Array(a)) if a.is_empty() => live,
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()) => {
            pier_apply::ManagedFields::new()
        }
        Some(v) => pier_apply::ManagedFields::decode(v).unwrap_or(live),
    }
}

/// Stores `after` in `next`; when nothing changed, the live list goes back byte for
/// byte, so that a write that changes nothing stays a no-op.
fn store_managed(
    current: &Value,
    before: &pier_apply::ManagedFields,
    after: &pier_apply::ManagedFields,
    next: &mut Value,
) {
    match current.pointer("/metadata/managedFields") {
        Some(raw) if after == before => {
            meta::metadata_mut(next).insert("managedFields".into(), raw.clone());
        }
        _ => after.write_to(next),
    }
}

/// Maintains `managedFields` on a create, update or non-apply patch: the writer (the
/// request's field manager) comes to own what it changed, as upstream's field manager
/// records an `Update` operation.
fn track_write(
    res: &ResourceDef,
    current: Option<&Value>,
    next: &mut Value,
    write: &WriteOptions,
    part: Part,
    subresource: Option<&str>,
) {
    if part == Part::Finalize {
        return;
    }
    let live = current.and_then(|c| pier_apply::ManagedFields::from_object(c).ok());
    let start = incoming_managed(live.as_ref(), next);
    let manager = write.field_manager.as_deref().unwrap_or_default();
    let api_version = res.api_version();
    let now = meta::now_rfc3339();
    let w = pier_apply::Write {
        manager,
        api_version: &api_version,
        subresource,
        time: &now,
        scope: write_scope(res, part),
    };
    let schema = pier_schema::patch_schema(res.schema_name);
    let after = pier_apply::update(schema, current, next, &start, &w);
    match current {
        Some(c) if live.as_ref() == Some(&after) => store_managed(c, &after, &after, next),
        _ => after.write_to(next),
    }
}

/// The HTTP form of a refused apply: conflicts are 409s whose causes name each field,
/// as upstream's `NewApplyConflict`.
fn apply_error(res: &ResourceDef, e: pier_apply::ApplyError) -> ApiError {
    use pier_apply::ApplyError as E;
    match e {
        E::Conflicts(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.path.to_string()})
                })
                .collect();
            ApiError {
                code: 409,
                reason: "Conflict",
                message: conflicts.to_string(),
                details: Some(json!({"causes": causes})),
            }
        }
        E::ManagedFieldsInConfig | E::NotAnObject => ApiError::bad_request(e.to_string()),
        E::ManagedFields(_) => ApiError::internal(e.to_string()),
        other => ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "failed to create typed patch object ({}/{}, Kind={}): {other}",
                res.group, res.version, res.kind
            ),
            details: None,
        },
    }
}

fn patch_error(e: pier_patch::PatchError) -> ApiError {
    match e.status_code() {
        422 => ApiError { code: 422, reason: "Invalid", message: e.to_string(), details: None },
        500 => ApiError::internal(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    }
}

fn apply_patch(kind: PatchKind, res: &ResourceDef, current: &Value, patch: &Value) -> ApiResult<Value> {
    let out = match kind {
        PatchKind::Merge => pier_patch::json_merge_patch(current, patch),
        PatchKind::Json => pier_patch::json_patch(current, patch).map_err(patch_error)?,
        // Applies go through `server_side_apply`; the strategic merge here only serves the
        // scale subresource, whose view has no managed fields of its own.
        PatchKind::Strategic | PatchKind::Apply => {
            let Some(schema) = pier_schema::patch_schema(res.schema_name) else {
                return Err(ApiError::internal(format!("no schema for {}", res.kind)));
            };
            pier_patch::strategic_merge_patch(current, patch, &schema).map_err(patch_error)?
        }
    };
    if !out.is_object() {
        return Err(ApiError::bad_request("the patch did not produce an object"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_only_when_asked_first() {
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn body_kind_must_match_resource() {
        let svc = pier_api::registry::find("", "services").expect("services");
        assert!(check_type(svc, json!({"kind": "Pod", "apiVersion": "v1"})).is_err());
        let ok = check_type(svc, json!({"metadata": {"name": "a"}})).expect("fills in type");
        assert_eq!(ok["kind"], "Service");
    }

    #[test]
    fn scale_view_of_rc() {
        let obj = json!({"metadata": {"name": "kubia", "namespace": "default"}, "spec": {"replicas": 3, "selector": {"app": "kubia"}}, "status": {"replicas": 2}});
        let s = to_scale(&obj);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["selector"], "app=kubia");
    }
}
