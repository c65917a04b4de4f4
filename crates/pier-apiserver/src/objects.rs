//! The generic object registry: every resource's create, read, update, delete, list and
//! watch on top of the store, with upstream's metadata rules (uid, generateName,
//! resourceVersion, generation, finalizers, graceful deletion) and the status
//! subresource split. Kind-specific rules come from [`crate::admission`].

use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use pier_api::ResourceDef;
use pier_store::{KeyValue, RangeOptions, Store};
use serde_json::{json, Value};

use crate::admission::Admission;
use crate::meta;
use crate::status::{success_status, ApiError, ApiResult};
use crate::watch_lines::Watched;

/// How many times a patch or an unconditional update is retried when a concurrent
/// writer wins the compare-and-swap.
const MAX_RETRIES: usize = 16;

/// The store key of an object: `/registry/<group|core>/<plural>/[<namespace>/]<name>`.
pub fn key(res: &ResourceDef, namespace: Option<&str>, name: &str) -> String {
    format!("{}{}", prefix(res, namespace), name)
}

/// The store prefix of a collection, ending in `/`.
pub fn prefix(res: &ResourceDef, namespace: Option<&str>) -> String {
    let group = if res.group.is_empty() { "core" } else { res.group };
    match namespace {
        Some(ns) if res.is_namespaced() => format!("/registry/{group}/{}/{ns}/", res.plural),
        _ => format!("/registry/{group}/{}/", res.plural),
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status`.
    Main,
    /// The `status` subresource: only `status`.
    Status,
    /// Namespace `finalize`: only `spec.finalizers`.
    Finalize,
    /// A pod's `binding`: the handler built the whole object from the current one.
    Binding,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// The server's own writes (bootstrap objects): defaulted but not validated, since
    /// they may hold what users may not write (the API server's loopback address).
    pub trusted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The result of a delete request.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; the value is the `Status` (or object) to return.
    Gone(Value),
    /// Deletion started (finalizers or a grace period); the object as it is now.
    Pending(Value),
}

/// A list filter and page request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<pier_selector::LabelSelector>,
    pub field_selector: Option<pier_selector::FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// Read at exactly this revision (`resourceVersionMatch=Exact`).
    pub exact_revision: Option<i64>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// One change seen by a watch.
#[derive(Debug, Clone)]
pub enum Change {
    Added(Watched),
    Modified(Watched),
    Deleted(Watched),
}

impl Change {
    /// The watch event type.
    pub fn word(&self) -> &'static str {
        match self {
            Change::Added(_) => "ADDED",
            Change::Modified(_) => "MODIFIED",
            Change::Deleted(_) => "DELETED",
        }
    }

    /// The object the event carries.
    pub fn into_watched(self) -> Watched {
        match self {
            Change::Added(w) | Change::Modified(w) | Change::Deleted(w) => w,
        }
    }
}

pub struct Objects {
    store: Arc<dyn Store>,
    admission: Admission,
    /// Whether each known namespace is terminating, kept from a store watch so a
    /// create need not read the namespace from the store (a miss still reads it).
    namespaces: Arc<std::sync::RwLock<std::collections::HashMap<String, bool>>>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>, admission: Admission) -> Self {
        Objects { store, admission, namespaces: Arc::default() }
    }

    /// Starts keeping the namespace cache from a watch of the namespaces. Until it has
    /// an entry, or if it ever lags, creates read the namespace from the store, as
    /// upstream's lifecycle admission falls back to a live read on a cache miss.
    pub async fn start_namespace_cache(&self) -> ApiResult<tokio::task::JoinHandle<()>> {
        let ns_res = pier_api::registry::find("", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
        let listed = self.list(ns_res, None, &ListOptions::default()).await?;
        {
            let mut cache =
                self.namespaces.write().map_err(|_| ApiError::internal("namespace cache poisoned"))?;
            for ns in &listed.items {
                if let Some(name) = meta::name(ns) {
                    cache.insert(name.to_string(), meta::is_deleting(ns));
                }
            }
        }
        let mut events = self.store.watch(&prefix(ns_res, None), listed.revision).await?;
        let cache = self.namespaces.clone();
        Ok(tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(mut cache) = cache.write() else { return };
                match event {
                    Ok(pier_store::Event::Put { kv, .. }) => match Self::decode(&kv) {
                        Ok(ns) => {
                            if let Some(name) = meta::name(&ns) {
                                cache.insert(name.to_string(), meta::is_deleting(&ns));
                            }
                        }
                        Err(_) => cache.clear(),
                    },
                    Ok(pier_store::Event::Delete { prev, .. }) => {
                        let name = prev.key.rsplit('/').next().unwrap_or_default();
                        cache.remove(name);
                    }
                    // A broken watch: forget everything so every create reads the store.
                    Err(_) => {
                        cache.clear();
                        return;
                    }
                }
            }
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// A stored object, with its `resourceVersion` set from the store's revision.
    pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Value> {
        let mut obj: Value = serde_json::from_slice(kv.value.as_ref())
            .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
        meta::set_resource_version(&mut obj, kv.mod_revision);
        Ok(obj)
    }

    fn encode(obj: &Value) -> ApiResult<Vec<u8>> {
        let mut stored = obj.clone();
        // The revision is the store's, never part of the stored bytes.
        meta::metadata_mut(&mut stored).shift_remove("resourceVersion");
        serde_json::to_vec(&stored).map_err(|e| ApiError::internal(format!("encoding: {e}")))
    }

    pub async fn get(&self, res: &'static ResourceDef, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        match self.store.get(&key(res, ns, name)).await? {
            Some(kv) => Self::decode(&kv),
            None => Err(ApiError::not_found(res, name)),
        }
    }

    async fn get_kv(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<KeyValue>> {
        Ok(self.store.get(&key(res, ns, name)).await?)
    }

    pub async fn current_revision(&self) -> ApiResult<i64> {
        Ok(self.store.current_revision().await?)
    }

    pub async fn list(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let prefix = prefix(res, ns);
        let (mut start_after, mut revision) = (None, opts.exact_revision);
        if let Some(token) = &opts.continue_token {
            let (rv, start) = decode_continue(token)?;
            start_after = Some(start);
            revision = Some(rv);
        }
        let filtered = opts.label_selector.is_some() || opts.field_selector.is_some();
        let mut items = Vec::new();
        let mut result_revision;
        let mut more;
        let mut last_key: Option<String>;
        // With a selector a page may filter down to nothing; keep reading until the page
        // is full or the collection ends, as upstream does.
        loop {
            let page = self
                .store
                .range(
                    &prefix,
                    RangeOptions { start_after: start_after.clone(), limit: opts.limit, revision },
                )
                .await
                .map_err(|e| match e {
                    pier_store::Error::Compacted { .. } => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. \
                         You can start a new list without the continue parameter, or use the continue token \
                         in this response to retrieve the remainder of the results.",
                    ),
                    other => other.into(),
                })?;
            result_revision = page.revision;
            revision = Some(page.revision);
            more = page.more;
            last_key = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                let obj = Self::decode(kv)?;
                if !filtered || matches(&obj, opts) {
                    items.push(obj);
                }
            }
            let full = opts.limit.is_some_and(|l| items.len() >= l);
            if !more || full || !filtered {
                break;
            }
            start_after = last_key.clone();
        }
        let continue_token = match (more, last_key) {
            (true, Some(k)) => Some(encode_continue(result_revision, &k)),
            _ => None,
        };
        Ok(ListResult { items, revision: result_revision, continue_token, remaining: None })
    }

    /// Creates an object. `obj` has its namespace already checked against the URL.
    pub async fn create(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if let Some(rv) = meta::resource_version(&obj) {
            if !rv.is_empty() {
                return Err(ApiError::bad_request(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
        }
        if res.is_namespaced() {
            let ns_name =
                ns.ok_or_else(|| ApiError::bad_request("the namespace of the object is missing"))?;
            self.check_namespace_open(res, ns_name, meta::name(&obj).unwrap_or("")).await?;
        }
        let generated = meta::name(&obj).is_none() && meta::meta_str(&obj, "generateName").is_some();
        prepare_new_metadata(res, ns, &mut obj);
        drop_empty_metadata(&mut obj);
        let allocation = self.admission.admit_create(res, &mut obj, opts.trusted)?;
        reset_pod_status(res, &mut obj);
        let mut attempt = 0;
        loop {
            let name = meta::name(&obj).unwrap_or_default().to_string();
            if opts.dry_run {
                allocation.rollback();
                return Ok(obj);
            }
            let bytes = Self::encode(&obj)?;
            match self.store.create(&key(res, ns, &name), bytes.into()).await {
                Ok(kv) => {
                    allocation.commit();
                    meta::set_resource_version(&mut obj, kv.mod_revision);
                    return Ok(obj);
                }
                Err(pier_store::Error::AlreadyExists { .. }) if generated && attempt < 7 => {
                    // Upstream retries a generated name that happens to collide.
                    attempt += 1;
                    let base = meta::meta_str(&obj, "generateName").unwrap_or_default().to_string();
                    meta::metadata_mut(&mut obj)
                        .insert("name".into(), json!(format!("{base}{}", meta::generate_name_suffix())));
                }
                Err(pier_store::Error::AlreadyExists { .. }) => {
                    allocation.rollback();
                    return Err(ApiError::already_exists(res, &name));
                }
                Err(e) => {
                    allocation.rollback();
                    return Err(e.into());
                }
            }
        }
    }

    async fn check_namespace_open(&self, res: &'static ResourceDef, ns: &str, name: &str) -> ApiResult<()> {
        let ns_res = pier_api::registry::find("", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
        let cached = self.namespaces.read().ok().and_then(|c| c.get(ns).copied());
        let deleting = match cached {
            Some(deleting) => Some(deleting),
            None => match self.get_kv(ns_res, None, ns).await? {
                None => None,
                Some(kv) => Some(meta::is_deleting(&Self::decode(&kv)?)),
            },
        };
        match deleting {
            None => Err(ApiError::not_found(ns_res, ns)),
            Some(deleting) => {
                if deleting {
                    let mut e = ApiError::forbidden(format!(
                        "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        crate::status::qualified(res)
                    ));
                    e.details = Some(
                        json!({"name": name, "kind": res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
                    );
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// Updates an object through `change`, which maps the current object (None when it
    /// does not exist) to the desired one. Retries on write races unless the desired
    /// object pins a resourceVersion, which must then match (409 otherwise).
    pub async fn update<F>(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        mut change: F,
    ) -> ApiResult<(Value, bool)>
    where
        F: FnMut(Option<&Value>) -> ApiResult<Value>,
    {
        for _ in 0..MAX_RETRIES {
            let current_kv = self.get_kv(res, ns, name).await?;
            let current = current_kv.as_ref().map(Self::decode).transpose()?;
            let mut desired = change(current.as_ref())?;
            check_identity(res, ns, name, &mut desired)?;
            let Some(current_kv) = current_kv else {
                if !allows_create_on_update(res) || part != Part::Main {
                    return Err(ApiError::not_found(res, name));
                }
                meta::metadata_mut(&mut desired).shift_remove("resourceVersion");
                let created = self.create(res, ns, desired, opts).await?;
                return Ok((created, true));
            };
            let current = current.unwrap_or(Value::Null);
            if let Some(rv) = meta::resource_version(&desired) {
                if rv != current_kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(res, name));
                }
            }
            let mut next = merge_part(res, part, &current, desired);
            preserve_system_metadata(&current, &mut next);
            drop_empty_metadata(&mut next);
            let allocation = self.admission.admit_update(res, &current, &mut next, opts.trusted)?;
            bump_generation(res, &current, &mut next);
            meta::set_resource_version(&mut next, current_kv.mod_revision);
            if next == current {
                allocation.rollback();
                return Ok((current, false));
            }
            if opts.dry_run {
                allocation.rollback();
                return Ok((next, false));
            }
            // The last finalizer removed from an object being deleted: it goes now.
            if meta::is_deleting(&next)
                && meta::finalizers(&next).is_empty()
                && !waits_for_node(res, &next)
                && !namespace_pending(res, &next)
            {
                allocation.rollback();
                match self.store.delete(&key(res, ns, name), Some(current_kv.mod_revision)).await {
                    Ok(_) => {
                        self.admission.release(res, &next);
                        return Ok((next, false));
                    }
                    Err(pier_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let bytes = Self::encode(&next)?;
            match self.store.update(&key(res, ns, name), bytes.into(), current_kv.mod_revision).await {
                Ok(kv) => {
                    allocation.commit();
                    meta::set_resource_version(&mut next, kv.mod_revision);
                    return Ok((next, false));
                }
                Err(pier_store::Error::Conflict { .. }) | Err(pier_store::Error::NotFound { .. }) => {
                    allocation.rollback();
                    continue;
                }
                Err(e) => {
                    allocation.rollback();
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::conflict(res, name))
    }

    pub async fn delete(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.get_kv(res, ns, name).await? else {
                return Err(ApiError::not_found(res, name));
            };
            let current = Self::decode(&kv)?;
            if let Some(uid) = &opts.precondition_uid {
                if meta::uid(&current) != Some(uid.as_str()) {
                    return Err(ApiError::conflict_message(
                        res,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta::uid(&current).unwrap_or("")
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict_message(res, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    )));
                }
            }
            let mut next = current.clone();
            let mut finalizers = meta::finalizers(&next);
            match opts.propagation_policy.as_deref() {
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into())
                }
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let grace = self.grace_period(res, &current, opts);
            let pending = !finalizers.is_empty() || grace > 0 || namespace_pending(res, &current);
            if pending {
                if !meta::is_deleting(&next) || !finalizers.is_empty() {
                    let m = meta::metadata_mut(&mut next);
                    if !m.contains_key("deletionTimestamp") {
                        let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                        m.insert(
                            "deletionTimestamp".into(),
                            json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                        );
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    } else if grace
                        < m.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX)
                    {
                        // A shorter grace period may be asked for while terminating.
                        let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                        m.insert(
                            "deletionTimestamp".into(),
                            json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                        );
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                    if !finalizers.is_empty() {
                        m.insert("finalizers".into(), json!(finalizers));
                    }
                }
                if res.plural == "namespaces" {
                    next["status"]["phase"] = json!("Terminating");
                }
                if next == current {
                    return Ok(Deleted::Pending(current));
                }
                if opts.dry_run {
                    return Ok(Deleted::Pending(next));
                }
                let bytes = Self::encode(&next)?;
                match self.store.update(&kv.key, bytes.into(), kv.mod_revision).await {
                    Ok(new_kv) => {
                        meta::set_resource_version(&mut next, new_kv.mod_revision);
                        return Ok(Deleted::Pending(next));
                    }
                    Err(pier_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(current));
            }
            match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    self.admission.release(res, &current);
                    let uid = meta::uid(&current).unwrap_or_default().to_string();
                    return Ok(Deleted::Gone(if returns_deleted_object(res) {
                        current
                    } else {
                        success_status(res, name, &uid)
                    }));
                }
                Err(pier_store::Error::Conflict { .. }) | Err(pier_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(res, name))
    }

    /// Upstream's graceful deletion applies to pods bound to a node: the node stops the
    /// containers and then deletes the pod with a zero grace period.
    fn grace_period(&self, res: &ResourceDef, obj: &Value, opts: &DeleteOptions) -> i64 {
        if res.plural != "pods" || !res.group.is_empty() {
            return 0;
        }
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        if !bound || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        opts.grace_period_seconds
            .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
            .unwrap_or(30)
            .max(0)
    }

    /// A stream of changes after `after_revision` under the collection, already
    /// filtered by the selectors (an object leaving the selection is `Deleted`, one
    /// entering it `Added`, as upstream's watch cache reports them).
    pub async fn watch(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        after_revision: i64,
        opts: ListOptions,
    ) -> ApiResult<BoxStream<'static, ApiResult<(i64, Change)>>> {
        let stream = self.store.watch(&prefix(res, ns), after_revision).await.map_err(|e| match e {
            pier_store::Error::Compacted { compacted_revision, .. } => {
                ApiError::gone(format!("too old resource version: {after_revision} ({compacted_revision})"))
            }
            other => other.into(),
        })?;
        let opts = Arc::new(opts);
        let mapped = stream.filter_map(move |event| {
            let opts = opts.clone();
            async move {
                let event = match event {
                    Ok(e) => e,
                    Err(pier_store::Error::Compacted { compacted_revision, .. }) => {
                        return Some(Err(ApiError::gone(format!(
                            "too old resource version: {after_revision} ({compacted_revision})"
                        ))))
                    }
                    Err(e) => return Some(Err(e.into())),
                };
                translate(event, &opts).transpose()
            }
        });
        Ok(mapped.boxed())
    }
}

fn translate(event: pier_store::Event, opts: &ListOptions) -> ApiResult<Option<(i64, Change)>> {
    let selective = opts.label_selector.is_some() || opts.field_selector.is_some();
    match event {
        // Nothing to match: the stored bytes go on undecoded (see `watch_lines`).
        pier_store::Event::Put { kv, prev } if !selective => {
            let rev = kv.mod_revision;
            let change = if prev.is_some() { Change::Modified } else { Change::Added };
            Ok(Some((rev, change(Watched::Stored(kv)))))
        }
        pier_store::Event::Delete { mut prev, revision } if !selective => {
            prev.mod_revision = revision;
            Ok(Some((revision, Change::Deleted(Watched::Stored(prev)))))
        }
        pier_store::Event::Put { kv, prev } => {
            let obj = Objects::decode(&kv)?;
            let now = matches(&obj, opts);
            let before = match &prev {
                Some(p) => Some(matches(&Objects::decode(p)?, opts)),
                None => None,
            };
            let obj = Watched::Decoded(obj);
            let change = match (before, now) {
                (None, true) | (Some(false), true) => Change::Added(obj),
                (Some(true), true) => Change::Modified(obj),
                (Some(true), false) => {
                    // Left the selection: report the new state as a deletion.
                    Change::Deleted(obj)
                }
                _ => return Ok(None),
            };
            Ok(Some((kv.mod_revision, change)))
        }
        pier_store::Event::Delete { prev, revision } => {
            let mut obj = Objects::decode(&prev)?;
            if !matches(&obj, opts) {
                return Ok(None);
            }
            meta::set_resource_version(&mut obj, revision);
            Ok(Some((revision, Change::Deleted(Watched::Decoded(obj)))))
        }
    }
}

/// Whether an object passes the list's label and field selectors.
pub fn matches(obj: &Value, opts: &ListOptions) -> bool {
    if let Some(sel) = &opts.label_selector {
        let empty = serde_json::Map::new();
        if !sel.matches(meta::labels(obj).unwrap_or(&empty)) {
            return false;
        }
    }
    if let Some(sel) = &opts.field_selector {
        if !sel.matches(|field| meta::field_string(obj, field)) {
            return false;
        }
    }
    true
}

fn encode_continue(revision: i64, last_key: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

/// Fills the metadata upstream sets on every new object.
fn prepare_new_metadata(res: &ResourceDef, ns: Option<&str>, obj: &mut Value) {
    let generated = meta::name(obj).is_none();
    let m = meta::metadata_mut(obj);
    if generated {
        if let Some(base) = m.get("generateName").and_then(Value::as_str).map(str::to_string) {
            m.insert("name".into(), json!(format!("{base}{}", meta::generate_name_suffix())));
        }
    }
    match ns {
        Some(ns) if res.is_namespaced() => {
            m.insert("namespace".into(), json!(ns));
        }
        _ => {
            m.shift_remove("namespace");
        }
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    m.shift_remove("deletionTimestamp");
    m.shift_remove("deletionGracePeriodSeconds");
    m.shift_remove("selfLink");
    if uses_generation(res) {
        m.insert("generation".into(), json!(1));
    } else {
        m.shift_remove("generation");
    }
}

/// Kinds whose `metadata.generation` counts spec changes.
fn uses_generation(res: &ResourceDef) -> bool {
    matches!(
        (res.group, res.plural),
        ("apps", _) | ("", "replicationcontrollers") | ("", "pods") | ("networking.k8s.io", _)
    )
}

fn bump_generation(res: &ResourceDef, old: &Value, new: &mut Value) {
    if !uses_generation(res) {
        return;
    }
    let old_gen = meta::metadata(old).and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(1);
    let changed = old.get("spec") != new.get("spec") || (meta::is_deleting(new) && !meta::is_deleting(old));
    let generation = if changed { old_gen + 1 } else { old_gen };
    meta::metadata_mut(new).insert("generation".into(), json!(generation));
}

/// The name and namespace in a body must agree with the URL.
fn check_identity(res: &ResourceDef, ns: Option<&str>, name: &str, obj: &mut Value) -> ApiResult<()> {
    match meta::name(obj) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        None => {
            meta::metadata_mut(obj).insert("name".into(), json!(name));
        }
        _ => {}
    }
    if res.is_namespaced() {
        match (meta::namespace(obj), ns) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            (None, Some(b)) => {
                meta::metadata_mut(obj).insert("namespace".into(), json!(b));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Combines the current object and a write to one part of it.
fn merge_part(res: &ResourceDef, part: Part, current: &Value, desired: Value) -> Value {
    let has_status = res.has_subresource("status");
    match part {
        Part::Main => {
            let mut next = desired;
            if has_status {
                // Writes to the main resource cannot change status, as upstream.
                match current.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.shift_remove("status");
                        }
                    }
                }
            }
            next
        }
        Part::Status => {
            let mut next = current.clone();
            match desired.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(o) = next.as_object_mut() {
                        o.shift_remove("status");
                    }
                }
            }
            if let Some(rv) = meta::resource_version(&desired) {
                meta::metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv));
            } else {
                meta::metadata_mut(&mut next).shift_remove("resourceVersion");
            }
            // The handler's record of who wrote this status (its `managedFields`).
            if let Some(managed) = desired.pointer("/metadata/managedFields") {
                meta::metadata_mut(&mut next).insert("managedFields".into(), managed.clone());
            }
            next
        }
        Part::Finalize => {
            let mut next = current.clone();
            let finalizers = desired.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            next["spec"]["finalizers"] = finalizers;
            next
        }
        Part::Binding => desired,
    }
}

/// Metadata the client may not change: uid, creation and deletion timestamps.
fn preserve_system_metadata(current: &Value, next: &mut Value) {
    let Some(old) = meta::metadata(current).cloned() else { return };
    let m = meta::metadata_mut(next);
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
    {
        match old.get(field) {
            Some(v) => {
                m.insert(field.into(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
    m.shift_remove("selfLink");
}

/// A new pod's status is upstream's `PrepareForCreate`: whatever the client sent is
/// replaced by `phase: Pending` and the pod's QoS class (`kubectl get pods` shows
/// `Pending` until a node reports otherwise).
fn reset_pod_status(res: &ResourceDef, obj: &mut Value) {
    if !res.group.is_empty() || res.plural != "pods" {
        return;
    }
    let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
    obj["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// Upstream's `GetPodQOS`: BestEffort without any cpu/memory request or limit;
/// Guaranteed when every container limits both and requests equal limits; else
/// Burstable. (Quantities are compared as written.)
fn qos_class(spec: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    let set = |v: Option<&Value>, r: &str| {
        v.and_then(|m| m.get(r)).filter(|q| !matches!(q.as_str(), Some("0") | Some(""))).cloned()
    };
    let (mut any, mut guaranteed) = (false, true);
    for c in containers {
        let requests = c.pointer("/resources/requests");
        let limits = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let (req, lim) = (set(requests, r), set(limits, r));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if req != lim => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Empty `labels`, `annotations`, `finalizers` and `ownerReferences` are dropped, as
/// upstream's typed objects (`omitempty`) drop them: removing the last owner or
/// finalizer leaves no `[]` behind.
fn drop_empty_metadata(obj: &mut Value) {
    let m = meta::metadata_mut(obj);
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match m.get(field) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(field);
        }
    }
}

/// A bound pod being deleted stays until its node has stopped it.
fn waits_for_node(res: &ResourceDef, obj: &Value) -> bool {
    res.group.is_empty()
        && res.plural == "pods"
        && meta::metadata(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

/// A namespace goes only once its `spec.finalizers` are empty too.
fn namespace_pending(res: &ResourceDef, obj: &Value) -> bool {
    res.plural == "namespaces"
        && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

/// Kinds upstream lets `PUT` create (used by controllers that write blindly).
fn allows_create_on_update(res: &ResourceDef) -> bool {
    matches!(res.plural, "endpoints" | "events" | "leases" | "endpointslices")
}

/// Pods come back as the object on delete; other kinds as a `Status`.
fn returns_deleted_object(res: &ResourceDef) -> bool {
    res.group.is_empty() && matches!(res.plural, "pods" | "namespaces" | "services")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let svc = pier_api::registry::find("", "services").expect("services");
        assert_eq!(key(svc, Some("default"), "kubia"), "/registry/core/services/default/kubia");
        assert_eq!(prefix(svc, None), "/registry/core/services/");
        let ns = pier_api::registry::find("", "namespaces").expect("namespaces");
        assert_eq!(key(ns, Some("ignored"), "default"), "/registry/core/namespaces/default");
        let dep = pier_api::registry::find("apps", "deployments").expect("deployments");
        assert_eq!(prefix(dep, Some("web")), "/registry/apps/deployments/web/");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/core/pods/default/a");
        assert_eq!(decode_continue(&t).expect("decodes"), (42, "/registry/core/pods/default/a".to_string()));
        assert!(decode_continue("not-a-token!").is_err());
    }

    #[test]
    fn new_pods_are_pending_with_their_qos_class() {
        let pods = pier_api::registry::find("", "pods").expect("pods");
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
        reset_pod_status(pods, &mut pod);
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
        let limited = json!({"cpu": "1", "memory": "1Gi"});
        let spec = json!({"containers": [{"resources": {"limits": limited, "requests": limited}}]});
        assert_eq!(qos_class(&spec), "Guaranteed");
        let spec = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&spec), "Burstable");
    }

    #[test]
    fn empty_metadata_collections_are_dropped() {
        let mut obj = json!({"metadata": {"name": "a", "labels": {}, "annotations": {"k": "v"}, "finalizers": [], "ownerReferences": null}});
        drop_empty_metadata(&mut obj);
        assert_eq!(obj, json!({"metadata": {"name": "a", "annotations": {"k": "v"}}}));
    }

    #[test]
    fn main_writes_keep_status_and_status_writes_keep_spec() {
        let svc = pier_api::registry::find("", "services").expect("services");
        let current = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"s": 1}});
        let main = merge_part(
            svc,
            Part::Main,
            &current,
            json!({"metadata": {"name": "a"}, "spec": {"x": 2}, "status": {"s": 9}}),
        );
        assert_eq!(main["status"], json!({"s": 1}));
        assert_eq!(main["spec"], json!({"x": 2}));
        let status = merge_part(
            svc,
            Part::Status,
            &current,
            json!({"metadata": {"name": "a"}, "spec": {"x": 3}, "status": {"s": 2}}),
        );
        assert_eq!(status["spec"], json!({"x": 1}));
        assert_eq!(status["status"], json!({"s": 2}));
    }
}
