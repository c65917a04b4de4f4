//! `metadata.managedFields`: who manages which fields of an object.

use serde_json::{json, Map, Value};

use crate::error::FieldsError;
use crate::set::FieldSet;

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply: the manager's set is exactly what it last applied.
    Apply,
    /// Any other write (create, update, patch): the manager's set grows with what it
    /// changes.
    Update,
}

impl Operation {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The field manager, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    pub operation: Operation,
    /// The apiVersion the fields are expressed in, e.g. `v1` or `apps/v1`.
    pub api_version: String,
    /// When the manager last changed its fields (RFC 3339, seconds).
    pub time: Option<String>,
    /// `status` or `scale` for writes to a subresource.
    pub subresource: Option<String>,
    /// The fields the manager owns.
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether this entry belongs to the same manager identity as `other`: upstream
    /// keys entries by manager, operation and subresource (and apiVersion for updates).
    pub fn same_manager(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How conflict messages name the manager: `"kubectl-client-side-apply" using v1`
    /// for updaters, `"mgr"` for appliers (whose version is not part of their identity),
    /// with the subresource when there is one.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    fn from_json(value: &Value) -> Result<Self, FieldsError> {
        let Value::Object(m) = value else { return Err(FieldsError::NotAnObject) };
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(FieldsError::BadOperation(other.unwrap_or_default().to_string())),
        };
        match text("fieldsType").as_deref() {
            Some("FieldsV1") => {}
            other => return Err(FieldsError::BadFieldsType(other.unwrap_or_default().to_string())),
        }
        let fields = match m.get("fieldsV1") {
            Some(v) => FieldSet::from_fields_v1(v)?,
            None => FieldSet::new(),
        };
        Ok(ManagedFieldsEntry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }
}

/// The `managedFields` of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedFields {
    entries: Vec<ManagedFieldsEntry>,
}

impl ManagedFields {
    /// No managers.
    pub fn new() -> Self {
        ManagedFields::default()
    }

    /// The entries, in no particular order.
    pub fn entries(&self) -> &[ManagedFieldsEntry] {
        &self.entries
    }

    /// Reads `metadata.managedFields` of `object`; none when absent or `null`.
    ///
    /// # Errors
    ///
    /// [`FieldsError`] when the list or an entry is malformed.
    pub fn from_object(object: &Value) -> Result<Self, FieldsError> {
        match object.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => Ok(ManagedFields::new()),
            Some(v) => ManagedFields::decode(v),
        }
    }

    /// Reads a `managedFields` list.
    ///
    /// # Errors
    ///
    /// [`FieldsError`] when the list or an entry is malformed.
    pub fn decode(value: &Value) -> Result<Self, FieldsError> {
        let Value::Array(items) = value else { return Err(FieldsError::NotAList) };
        let entries = items.iter().map(ManagedFieldsEntry::from_json).collect::<Result<Vec<_>, _>>()?;
        Ok(ManagedFields { entries })
    }

    /// The `managedFields` list, sorted as upstream sorts it (operation, time, manager,
    /// apiVersion, subresource). Empty sets are left out.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&ManagedFieldsEntry> =
            self.entries.iter().filter(|e| !e.fields.is_empty()).collect();
        entries.sort_by(|a, b| {
            (a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
        });
        Value::Array(entries.into_iter().map(ManagedFieldsEntry::to_json).collect())
    }

    /// Stores the list in `object`'s metadata, or removes it when there are no managers.
    pub fn write_to(&self, object: &mut Value) {
        let encoded = self.encode();
        let Some(Value::Object(meta)) = object.get_mut("metadata") else { return };
        if encoded.as_array().is_some_and(Vec::is_empty) {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), encoded);
        }
    }

    pub(crate) fn entries_mut(&mut self) -> &mut Vec<ManagedFieldsEntry> {
        &mut self.entries
    }
}

impl From<Vec<ManagedFieldsEntry>> for ManagedFields {
    fn from(entries: Vec<ManagedFieldsEntry>) -> Self {
        ManagedFields { entries }
    }
}

/// The field manager upstream records for a request without `?fieldManager=`: the
/// User-Agent up to its first `/` (`kubectl/v1.33.0 (linux/amd64) ...` is `kubectl`).
pub fn manager_from_user_agent(user_agent: &str) -> &str {
    user_agent.split('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_sort() {
        let list = json!([
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1", "time": "2024-01-02T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:type": {}}}},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-03T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}},
            {"manager": "ctrl", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:x": {}}}, "subresource": "status"},
        ]);
        let mf = ManagedFields::decode(&list).expect("decodes");
        let out = mf.encode();
        let managers: Vec<&str> =
            out.as_array().into_iter().flatten().filter_map(|e| e["manager"].as_str()).collect();
        assert_eq!(managers, ["kubectl", "ctrl", "kubectl-edit"]);
        assert_eq!(ManagedFields::decode(&out).expect("again").encode(), out);
        assert_eq!(out[1]["subresource"], "status");
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert_eq!(ManagedFields::decode(&json!({})), Err(FieldsError::NotAList));
        let bad_op = json!([{"manager": "a", "operation": "Patch", "fieldsType": "FieldsV1"}]);
        assert!(matches!(ManagedFields::decode(&bad_op), Err(FieldsError::BadOperation(_))));
        let bad_type = json!([{"manager": "a", "operation": "Update", "fieldsType": "FieldsV2"}]);
        assert!(matches!(ManagedFields::decode(&bad_type), Err(FieldsError::BadFieldsType(_))));
    }

    #[test]
    fn describe_and_user_agents() {
        let e = ManagedFieldsEntry {
            manager: "kubectl-client-side-apply".into(),
            operation: Operation::Update,
            api_version: "v1".into(),
            time: None,
            subresource: None,
            fields: FieldSet::new(),
        };
        assert_eq!(e.describe(), r#""kubectl-client-side-apply" using v1"#);
        let a = ManagedFieldsEntry { operation: Operation::Apply, subresource: Some("status".into()), ..e };
        assert_eq!(a.describe(), r#""kubectl-client-side-apply" with subresource "status""#);
        assert_eq!(manager_from_user_agent("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"), "kubectl");
        assert_eq!(manager_from_user_agent("kube-controller-manager/v1.30"), "kube-controller-manager");
        assert_eq!(manager_from_user_agent(""), "");
    }
}
