//! API errors and their wire form: every failure the server returns is a `meta/v1`
//! `Status` with upstream's code, reason and message, built here and nowhere else.

use pier_api::field::{aggregate_message, FieldError};
use pier_api::ResourceDef;
use serde_json::{json, Value};

/// A failed API request, carrying everything its `Status` response needs.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// `services` or `deployments.apps`: how upstream names a resource in messages.
pub fn qualified(res: &ResourceDef) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

fn name_details(res: &ResourceDef, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found(res: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{} {name:?} not found", qualified(res)));
        e.details = Some(name_details(res, name));
        e
    }

    /// A path that names no resource: kubectl turns this into
    /// "the server doesn't have a resource type".
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed(verb: &str, what: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("{verb} is not supported on {what}"))
    }

    pub fn already_exists(res: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(res)));
        e.details = Some(name_details(res, name));
        e
    }

    pub fn conflict(res: &ResourceDef, name: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
             please apply your changes to the latest version and try again",
            qualified(res)
        );
        let mut e = Self::new(409, "Conflict", msg);
        e.details = Some(name_details(res, name));
        e
    }

    pub fn conflict_message(res: &ResourceDef, name: &str, why: &str) -> Self {
        let msg = format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(res));
        let mut e = Self::new(409, "Conflict", msg);
        e.details = Some(name_details(res, name));
        e
    }

    /// 422 naming every bad field, as upstream's `NewInvalid`.
    pub fn invalid(res: &ResourceDef, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_kind(res.kind, res.group, name, errors)
    }

    /// [`ApiError::invalid`] for a kind that is not a stored resource (`Binding`).
    pub fn invalid_kind(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.cause_reason(), "message": e.body(), "field": e.field.as_str()}))
            .collect();
        let msg = format!("{kind} {name:?} is invalid: {}", aggregate_message(errors));
        let mut details = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError { code: 422, reason: "Invalid", message: msg, details: Some(details) }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"))
    }

    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object sent to the client.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<pier_store::Error> for ApiError {
    fn from(e: pier_store::Error) -> Self {
        ApiError::internal(format!("storage: {e}"))
    }
}

/// The `Status` of a successful delete of an object that is gone at once.
pub fn success_status(res: &ResourceDef, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": res.plural, "uid": uid});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_api::field::FieldPath;

    #[test]
    fn not_found_names_qualified_resource() {
        let dep = pier_api::registry::find("apps", "deployments").expect("deployments");
        let e = ApiError::not_found(dep, "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.to_status()["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_causes() {
        let svc = pier_api::registry::find("", "services").expect("services");
        let f = FieldPath::new("spec").child("ports").index(1).child("name");
        let e = ApiError::invalid(svc, "kubia", &[FieldError::required(&f, "")]);
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "Service \"kubia\" is invalid: spec.ports[1].name: Required value");
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["field"], "spec.ports[1].name");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}
