//! The two operations: [`update`] records who changed what on an ordinary write, and
//! [`apply`] performs a server-side apply.

use serde_json::{Map, Value};

use crate::conflict::{Conflict, Conflicts};
use crate::error::ApplyError;
use crate::managed::{ManagedFields, ManagedFieldsEntry, Operation};
use crate::path::Path;
use crate::schema::{ApplySchema, Shape};
use crate::set::FieldSet;
use crate::typed::{compare, merge, remove, to_field_set, Comparison};

/// Which top-level fields a write may change; the server resets the others (a write to
/// the main resource cannot change `status`, a write to `status` only changes it), so
/// nobody comes to own them through this write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every field.
    All,
    /// Every field but these.
    Except(&'a [&'a str]),
    /// Only these.
    Only(&'a [&'a str]),
}

impl Scope<'_> {
    fn allows(&self, field: Option<&str>) -> bool {
        match (self, field) {
            (Scope::All, _) | (_, None) => true,
            (Scope::Except(names), Some(f)) => !names.contains(&f),
            (Scope::Only(names), Some(f)) => names.contains(&f),
        }
    }
}

/// Who writes, and when.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// The field manager (`?fieldManager=`, or derived from the User-Agent).
    pub manager: &'a str,
    /// The apiVersion of the request, e.g. `v1`.
    pub api_version: &'a str,
    /// `status` or `scale` for subresource writes.
    pub subresource: Option<&'a str>,
    /// Now, as RFC 3339 with seconds.
    pub time: &'a str,
    pub scope: Scope<'a>,
}

impl Write<'_> {
    fn entry(&self, operation: Operation, fields: FieldSet) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: self.manager.to_string(),
            operation,
            api_version: self.api_version.to_string(),
            time: Some(self.time.to_string()),
            subresource: self.subresource.map(str::to_string),
            fields,
        }
    }
}

/// The result of an apply: the object to store (without `managedFields`) and its
/// managers.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub object: Value,
    pub managed: ManagedFields,
}

/// Paths no manager ever owns, as upstream's field manager strips them: identity and
/// server-maintained metadata.
const STRIPPED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

fn owned_only(set: &FieldSet, scope: Scope) -> FieldSet {
    let stripped: FieldSet = STRIPPED.iter().map(|p| Path::fields(p)).collect();
    set.difference(&stripped).retain_top(|e| scope.allows(e.as_field()))
}

fn filter(cmp: Comparison, scope: Scope) -> Comparison {
    Comparison {
        added: owned_only(&cmp.added, scope),
        modified: owned_only(&cmp.modified, scope),
        removed: owned_only(&cmp.removed, scope),
    }
}

/// `value` without `metadata.managedFields`, which is never compared or merged.
fn without_managed(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(Value::Object(m)) = v.get_mut("metadata") {
        m.remove("managedFields");
    }
    v
}

/// The top-level fields of `value` that `scope` covers, `metadata` without
/// `managedFields`: what an update is compared on. Fields out of scope (a status
/// write's `spec`, a main write's `status`) would only be compared in full and then
/// filtered away, and each write compared two copies of the whole object.
fn in_scope(value: &Value, scope: Scope) -> Value {
    let Some(fields) = value.as_object() else { return without_managed(value) };
    let mut out = Map::new();
    for (k, v) in fields.iter().filter(|(k, _)| scope.allows(Some(k))) {
        let v = match (k.as_str(), v) {
            ("metadata", Value::Object(meta)) => Value::Object(
                meta.iter()
                    .filter(|(m, _)| *m != "managedFields")
                    .map(|(m, v)| (m.clone(), v.clone()))
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// What a write is compared against when the live object lacks top-level structs:
/// upstream compares Go values, in which top-level structs (`spec`, `status`) always
/// exist, so writing the first `status` does not make the writer own `.status` itself.
fn skeleton<S: ApplySchema>(schema: Option<S>, new: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let (Some(s), Some(fields)) = (schema, new.as_object()) {
        for (k, v) in fields.iter().filter(|(k, _)| scope.allows(Some(k))) {
            let is_struct = s.field(k).is_some_and(|f| matches!(f.shape(), Shape::Struct { atomic: false }));
            if k != "metadata" && is_struct && v.is_object() {
                out.insert(k.clone(), Value::Object(Map::new()));
            }
        }
    }
    Value::Object(out)
}

fn retain_nonempty(managed: &mut ManagedFields) {
    managed.entries_mut().retain(|e| !e.fields.is_empty());
}

/// Records an ordinary write (create, update, non-apply patch) of `new` over `live`
/// (`None` for a create) by `write.manager`: it comes to own what it added or changed,
/// other managers lose those fields, and removed fields leave every set.
///
/// A write that changes nothing leaves `managed` as it is (times included), so that
/// no-op writes stay no-ops.
pub fn update<S: ApplySchema>(
    schema: Option<S>,
    live: Option<&Value>,
    new: &Value,
    managed: &ManagedFields,
    write: &Write,
) -> ManagedFields {
    let mut before = skeleton(schema, new, write.scope);
    if let (Some(l), Value::Object(b)) = (live, &mut before) {
        if let Value::Object(fields) = in_scope(l, write.scope) {
            b.extend(fields);
        }
    }
    let after = in_scope(new, write.scope);
    let mut cmp = Comparison::default();
    compare(schema, Some(&before), Some(&after), &Path::root(), &mut cmp);
    let cmp = filter(cmp, write.scope);
    if cmp.is_same() {
        return managed.clone();
    }
    let changed = cmp.added.union(&cmp.modified);
    let me = write.entry(Operation::Update, changed.clone());
    let mut out = managed.clone();
    let mut found = false;
    for e in out.entries_mut() {
        if e.same_manager(&me) {
            found = true;
            e.fields = e.fields.difference(&cmp.removed).union(&changed);
            e.time = me.time.clone();
        } else {
            e.fields = e.fields.difference(&changed).difference(&cmp.removed);
        }
    }
    if !found {
        out.entries_mut().push(me);
    }
    retain_nonempty(&mut out);
    out
}

/// Server-side apply of `config` by `write.manager` over `live` (`None` when the object
/// does not exist yet).
///
/// The configuration is merged into the live object (associative lists by key, sets as
/// unions, atomic lists and maps replaced); fields this manager applied last time and no
/// longer applies are removed unless another manager owns them; the manager's set
/// becomes exactly what it applied.
///
/// # Errors
///
/// [`ApplyError::Conflicts`] when, without `force`, the apply would change a field that
/// another manager owns; with `force` those fields change hands instead. Other variants
/// for configurations that are not valid applies.
pub fn apply<S: ApplySchema>(
    schema: Option<S>,
    live: Option<&Value>,
    config: &Value,
    managed: &ManagedFields,
    write: &Write,
    force: bool,
) -> Result<Applied, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    if config.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::ManagedFieldsInConfig);
    }
    let live = live.map(without_managed).unwrap_or_else(|| Value::Object(Map::new()));
    let config = without_managed(config);
    let mut applied = FieldSet::new();
    to_field_set(schema, &config, &Path::root(), &mut applied)?;
    let applied = owned_only(&applied, write.scope);
    let me = write.entry(Operation::Apply, applied.clone());

    let mut merged = merge(schema, &live, &config);

    // Fields this manager stops applying go, unless someone (itself included, through
    // what it still applies) owns them or something below them.
    let last = managed.entries().iter().find(|e| e.same_manager(&me)).map(|e| e.fields.clone());
    if let Some(last) = last {
        let mut owned = applied.clone();
        for e in managed.entries().iter().filter(|e| !e.same_manager(&me)) {
            owned = owned.union(&e.fields);
        }
        let gone: FieldSet =
            last.difference(&applied).paths().into_iter().filter(|p| !owned.has_at_or_below(p)).collect();
        remove(schema, &mut merged, &gone);
    }

    let mut cmp = Comparison::default();
    compare(schema, Some(&live), Some(&merged), &Path::root(), &mut cmp);
    let cmp = filter(cmp, write.scope);
    let changed = cmp.added.union(&cmp.modified);

    let mut conflicts = Vec::new();
    for e in managed.entries().iter().filter(|e| !e.same_manager(&me)) {
        for path in e.fields.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: e.manager.clone(), description: e.describe(), path });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(Conflicts(conflicts)));
    }

    let mut out = managed.clone();
    let mut found = false;
    for e in out.entries_mut() {
        if e.same_manager(&me) {
            found = true;
            if e.fields != applied || !cmp.is_same() {
                e.time = me.time.clone();
            }
            e.fields = applied.clone();
            e.api_version = me.api_version.clone();
        } else {
            e.fields = e.fields.difference(&changed).difference(&cmp.removed);
        }
    }
    if !found {
        out.entries_mut().push(me);
    }
    retain_nonempty(&mut out);
    Ok(Applied { object: merged, managed: out })
}
