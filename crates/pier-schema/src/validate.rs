//! Field validation as the API server's strict JSON decoder reports it.
//!
//! Upstream decodes request bodies into Go structs with `sigs.k8s.io/json`
//! (`UnmarshalStrict`). Two kinds of problems come out of that, with different fates:
//!
//! * **Type mismatches** (`port: "eighty"`) fail decoding whatever `fieldValidation`
//!   says. Go's decoder keeps going after one but reports only the first, as
//!   `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of
//!   type int32` (the field path joins Go field names with `.`, without list indices or
//!   map keys; the struct is the innermost one). The server answers 400 BadRequest with
//!   `Service in version "v1" cannot be handled as a Service: <that>`.
//! * **Unknown fields** (`spec.portz`) are strict errors: with `fieldValidation=Strict`
//!   the server answers 400 with `... cannot be handled as a Service: strict decoding
//!   error: unknown field "spec.portz", unknown field "spec.ports[0].nme"` (each as
//!   `unknown field "<path>"`, joined by `", "`, in document order, deduplicated, at
//!   most 100); with `Warn` each becomes a `Warning` header; with `Ignore` they are
//!   dropped. They are reported only when decoding otherwise succeeded.
//!
//! [`unknown_fields`] and [`type_errors`] compute the two lists;
//! [`strict_decoding_error`] and [`decode_error_message`] format them.

use serde_json::{Map, Value};

use crate::registry::{schema_registry, SchemaRegistry, REF_PREFIX};

/// Upstream stops collecting strict errors after this many.
const MAX_STRICT_ERRORS: usize = 100;

/// The paths of the fields of `obj` that the schema of `schema_name` does not know,
/// formatted as upstream's strict decoder does: `spec.portz`, `spec.ports[0].nme`,
/// `metadata.labelz`.
///
/// Maps (`labels`, `data`), `IntOrString`, `Quantity`, `RawExtension` and schemas with
/// `x-kubernetes-preserve-unknown-fields` accept anything below them. An unknown
/// `schema_name` yields no paths.
pub fn unknown_fields(schema_name: &str, obj: &Value) -> Vec<String> {
    let registry = schema_registry();
    let mut out = Vec::new();
    if let Some(schema) = registry.get(schema_name) {
        let mut path = String::new();
        walk_unknown(registry, schema, obj, &mut path, &mut out);
    }
    out
}

fn walk_unknown(
    registry: &SchemaRegistry,
    schema: &Value,
    value: &Value,
    path: &mut String,
    out: &mut Vec<String>,
) {
    let Some(schema) = registry.resolve(schema) else { return };
    if is_opaque(schema) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let values = schema.get("additionalProperties").filter(|v| v.is_object());
            for (key, v) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match (props.and_then(|p| p.get(key)), values) {
                    (Some(sub), _) | (None, Some(sub)) => walk_unknown(registry, sub, v, path, out),
                    (None, None) if props.is_some() => {
                        if out.len() < MAX_STRICT_ERRORS && !out.contains(path) {
                            out.push(path.clone());
                        }
                    }
                    // A map of anything (`additionalProperties: true`) or a type error,
                    // which `type_errors` reports.
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_unknown(registry, item_schema, v, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Schemas below which anything goes: upstream decodes these with their own
/// `UnmarshalJSON` or into `interface{}`.
fn is_opaque(schema: &Value) -> bool {
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") || flag("x-kubernetes-preserve-unknown-fields") {
        return true;
    }
    // `RawExtension`, `FieldsV1` and similar: an object with no declared shape.
    schema.get("properties").is_none()
        && schema.get("additionalProperties").is_none()
        && schema.get("items").is_none()
        && matches!(schema.get("type").and_then(Value::as_str), Some("object") | None)
}

/// `strict decoding error: unknown field "a", unknown field "b"`, upstream's text for
/// the paths [`unknown_fields`] returns.
pub fn strict_decoding_error(paths: &[String]) -> String {
    let parts: Vec<String> = paths.iter().map(|p| unknown_field_warning(p)).collect();
    format!("strict decoding error: {}", parts.join(", "))
}

/// `unknown field "spec.portz"`: one unknown field, as upstream words it (also the text
/// of each `Warning` header under `fieldValidation=Warn`).
pub fn unknown_field_warning(path: &str) -> String {
    format!("unknown field {}", go_quote(path))
}

/// The message of the 400 BadRequest a decoding failure gets:
/// `Service in version "v1" cannot be handled as a Service: <cause>`.
pub fn decode_error_message(kind: &str, version: &str, cause: &str) -> String {
    format!("{kind} in version {} cannot be handled as a {kind}: {cause}", go_quote(version))
}

/// Go's `%q` for the strings that occur here (field names and paths).
fn go_quote(s: &str) -> String {
    // serde_json's escaping matches Go's for printable text, which is all a field
    // path or version holds in practice.
    Value::String(s.to_string()).to_string()
}

/// The decoding failures of `obj` against the schema of `schema_name`, in document
/// order, each worded as upstream's JSON decoder words it, e.g.
/// `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of
/// type int32`.
///
/// Upstream reports only the first; the rest are here for callers that want them. An
/// unknown `schema_name` yields none.
pub fn type_errors(schema_name: &str, obj: &Value) -> Vec<String> {
    let registry = schema_registry();
    let mut out = Vec::new();
    if let Some(schema) = registry.get(schema_name) {
        let mut ctx = TypeContext { registry, out: &mut out, fields: Vec::new() };
        let root = short_name(schema_name);
        ctx.check(schema, obj, root, None);
    }
    out
}

struct TypeContext<'a> {
    registry: &'static SchemaRegistry,
    out: &'a mut Vec<String>,
    /// Go field names from the root, as Go's decoder stacks them.
    fields: Vec<String>,
}

impl TypeContext<'_> {
    /// Checks `value` against `schema`. `owner` is the innermost Go struct around this
    /// position; `field` is `(definition, property)` when this position is a struct
    /// field (for the Go types of named string types, see [`go_type_override`]).
    fn check(&mut self, schema: &Value, value: &Value, owner: &str, field: Option<(&str, &str)>) {
        if value.is_null() {
            // Go leaves the zero value for null, without an error.
            return;
        }
        let definition = ref_name(schema);
        let Some(resolved) = self.registry.resolve(schema) else { return };
        if let Some(def) = definition {
            if def == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
                return self.check_quantity(value);
            }
        }
        if resolved.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
            // IntOrString: a string, or else whatever decodes into its int32.
            if !value.is_string() {
                self.check_integer(value, "int32", owner);
            }
            return;
        }
        if resolved.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let go_type = || {
            field
                .and_then(|(d, p)| go_type_override(d, p))
                .map(str::to_string)
                .unwrap_or_else(|| go_type(self.registry, schema))
        };
        match resolved.get("type").and_then(Value::as_str) {
            Some("string") => {
                if !value.is_string() {
                    let t = go_type();
                    self.mismatch(value, &t, owner);
                }
            }
            Some("integer") => {
                let t = go_type();
                self.check_integer(value, &t, owner);
            }
            Some("number") => {
                if !value.is_number() {
                    let t = go_type();
                    self.mismatch(value, &t, owner);
                }
            }
            Some("boolean") => {
                if !value.is_boolean() {
                    let t = go_type();
                    self.mismatch(value, &t, owner);
                }
            }
            Some("array") => match value {
                Value::Array(items) => {
                    if let Some(item_schema) = resolved.get("items") {
                        for item in items {
                            self.check(item_schema, item, owner, None);
                        }
                    }
                }
                _ => {
                    let t = go_type();
                    self.mismatch(value, &t, owner);
                }
            },
            Some("object") | None => match value {
                Value::Object(fields) => self.check_object(definition, resolved, fields, owner),
                _ if is_opaque(resolved) => {}
                _ => {
                    let t = go_type();
                    self.mismatch(value, &t, owner);
                }
            },
            Some(_) => {}
        }
    }

    fn check_object(
        &mut self,
        definition: Option<&str>,
        schema: &Value,
        fields: &Map<String, Value>,
        owner: &str,
    ) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            // A struct: its fields are named after it in errors below.
            let owner = definition.map(short_name).unwrap_or(owner);
            for (key, v) in fields {
                let Some(sub) = props.get(key) else { continue };
                self.fields.push(key.clone());
                self.check(sub, v, owner, definition.map(|d| (d, key.as_str())));
                self.fields.pop();
            }
        } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            // A map: Go's decoder does not add map keys to the error's field path.
            for v in fields.values() {
                self.check(values, v, owner, None);
            }
        }
    }

    fn check_integer(&mut self, value: &Value, go_type: &str, owner: &str) {
        let Value::Number(n) = value else {
            return self.mismatch(value, go_type, owner);
        };
        let fits = match (n.as_i64(), go_type) {
            (Some(i), "int32") => i32::try_from(i).is_ok(),
            (Some(_), _) => true,
            (None, _) => false,
        };
        if !fits {
            self.push(&format!("number {n}"), go_type, owner);
        }
    }

    fn check_quantity(&mut self, value: &Value) {
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        if let Err(message) = parse_quantity(&text) {
            // `Quantity.UnmarshalJSON` returns its own error, without field context.
            self.out.push(message.to_string());
        }
    }

    fn mismatch(&mut self, value: &Value, go_type: &str, owner: &str) {
        let what = match value {
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => return,
        };
        self.push(what, go_type, owner);
    }

    fn push(&mut self, what: &str, go_type: &str, owner: &str) {
        let message = if self.fields.is_empty() {
            format!("json: cannot unmarshal {what} into Go value of type {go_type}")
        } else {
            format!(
                "json: cannot unmarshal {what} into Go struct field {owner}.{} of type {go_type}",
                self.fields.join(".")
            )
        };
        self.out.push(message);
    }
}

/// `ServicePort` for `io.k8s.api.core.v1.ServicePort`.
fn short_name(definition: &str) -> &str {
    definition.rsplit('.').next().unwrap_or(definition)
}

fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(REF_PREFIX);
    }
    match schema.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => ref_name(&all[0]),
        _ => None,
    }
}

/// The Go type Go's decoder names for a schema: `int32`, `v1.ServiceSpec`,
/// `[]v1.ServicePort`, `map[string]string`, `[]uint8` for base64 bytes.
fn go_type(registry: &SchemaRegistry, schema: &Value) -> String {
    if let Some(def) = ref_name(schema) {
        // `io.k8s.api.core.v1.ServiceSpec` lives in Go package `v1`.
        let mut parts = def.rsplit('.');
        let name = parts.next().unwrap_or(def);
        return match parts.next() {
            Some(pkg) => format!("{pkg}.{name}"),
            None => name.to_string(),
        };
    }
    let Some(resolved) = registry.resolve(schema) else { return "interface {}".into() };
    let format = resolved.get("format").and_then(Value::as_str);
    match (resolved.get("type").and_then(Value::as_str), format) {
        (Some("string"), Some("byte")) => "[]uint8".into(),
        (Some("string"), _) => "string".into(),
        (Some("integer"), Some("int32")) => "int32".into(),
        (Some("integer"), _) => "int64".into(),
        (Some("number"), _) => "float64".into(),
        (Some("boolean"), _) => "bool".into(),
        (Some("array"), _) => match resolved.get("items") {
            Some(items) => format!("[]{}", go_type(registry, items)),
            None => "[]interface {}".into(),
        },
        _ => match resolved.get("additionalProperties").filter(|v| v.is_object()) {
            Some(values) => format!("map[string]{}", go_type(registry, values)),
            None => "map[string]interface {}".into(),
        },
    }
}

/// Fields whose Go type is a named type the schema cannot tell (`type Protocol string`),
/// for the ones users commonly get wrong.
fn go_type_override(definition: &str, property: &str) -> Option<&'static str> {
    Some(match (short_name(definition), property) {
        ("ServicePort" | "ContainerPort" | "EndpointPort", "protocol") => "v1.Protocol",
        ("ServiceSpec", "type") => "v1.ServiceType",
        ("ServiceSpec", "sessionAffinity") => "v1.ServiceAffinity",
        ("ServiceSpec", "externalTrafficPolicy") => "v1.ServiceExternalTrafficPolicy",
        ("ServiceSpec", "internalTrafficPolicy") => "v1.ServiceInternalTrafficPolicy",
        ("ServiceSpec", "ipFamilyPolicy") => "v1.IPFamilyPolicy",
        ("ServiceSpec", "ipFamilies") => "[]v1.IPFamily",
        ("Container", "imagePullPolicy") => "v1.PullPolicy",
        ("Container", "terminationMessagePolicy") => "v1.TerminationMessagePolicy",
        ("PodSpec", "restartPolicy") => "v1.RestartPolicy",
        ("PodSpec", "dnsPolicy") => "v1.DNSPolicy",
        ("ResourceRequirements", "limits" | "requests") => "v1.ResourceList",
        ("DeploymentStrategy", "type") => "v1.DeploymentStrategyType",
        ("ObjectMeta" | "OwnerReference", "uid") => "types.UID",
        ("Secret", "type") => "v1.SecretType",
        _ => return None,
    })
}

/// Upstream's `ParseQuantity` failures, worded as `resource.ErrFormatWrong` and
/// `resource.ErrSuffix`.
fn parse_quantity(s: &str) -> Result<(), &'static str> {
    const FORMAT: &str =
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    const SUFFIX: &str = "unable to parse quantity's suffix";
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_len = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    if number.is_empty() || !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(FORMAT);
    }
    // The regular expression's suffix part: letters from the set, then a signed integer.
    let letters_len = suffix.find(|c: char| !"eEinumkKMGTP".contains(c)).unwrap_or(suffix.len());
    let (letters, exponent) = suffix.split_at(letters_len);
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FORMAT);
    }
    let valid = match letters {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" => {
            exponent.is_empty()
        }
        // `E` alone is exa; followed by digits it is an exponent, like `e`.
        "E" => true,
        "e" => !digits.is_empty(),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(SUFFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SVC: &str = "io.k8s.api.core.v1.Service";
    const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";

    #[test]
    fn unknown_field_paths_match_upstream() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                SVC,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                "spec": {"ports": [{"port": 80}]}}),
                vec![],
            ),
            (SVC, json!({"spec": {"portz": []}}), vec!["spec.portz"]),
            (
                SVC,
                json!({"spec": {"ports": [{"port": 80}, {"port": 81, "nme": "x"}]}}),
                vec!["spec.ports[1].nme"],
            ),
            (
                SVC,
                json!({"metadata": {"labelz": {"a": "b"}, "labels": {"any.key/x": "y"}}}),
                vec!["metadata.labelz"],
            ),
            (
                SVC,
                json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}],
                "selector": {"app": "kubia"}}, "statuz": 1}),
                vec!["statuz"],
            ),
            (
                SVC,
                json!({"spec": {"portz": 1, "clusterIp": "1.2.3.4"}}),
                vec!["spec.portz", "spec.clusterIp"],
            ),
            (
                DEPLOY,
                json!({"spec": {"template": {"metadata": {"containers": []},
                "spec": {"initContainers": [{"name": "a", "volumeMounts": [{}, {}, {"hostPath": 1}]}],
                "containers": [{"name": "b", "resources": {"limits": {"cpu": "1"}}}]}}}}),
                vec![
                    "spec.template.metadata.containers",
                    "spec.template.spec.initContainers[0].volumeMounts[2].hostPath",
                ],
            ),
            (
                "io.k8s.api.core.v1.ConfigMap",
                json!({"data": {"k": "v"}, "binaryData": {"b": "AA=="}}),
                vec![],
            ),
            (
                "io.k8s.api.core.v1.Pod",
                json!({"metadata": {"managedFields": [{"fieldsV1":
                {"f:spec": {"f:x": {}}}}]}}),
                vec![],
            ),
        ];
        for (kind, obj, want) in cases {
            assert_eq!(unknown_fields(kind, &obj), want, "{obj}");
        }
    }

    #[test]
    fn unknown_fields_are_deduplicated_and_capped() {
        let ports: Vec<Value> = (0..150).map(|i| json!({"port": i, "x": 1})).collect();
        let paths = unknown_fields(SVC, &json!({"spec": {"ports": ports}}));
        assert_eq!(paths.len(), 100);
    }

    #[test]
    fn strict_error_text() {
        let paths = vec!["spec.portz".to_string(), "spec.ports[0].nme".to_string()];
        assert_eq!(
            decode_error_message("Service", "v1", &strict_decoding_error(&paths)),
            "Service in version \"v1\" cannot be handled as a Service: strict decoding error: \
             unknown field \"spec.portz\", unknown field \"spec.ports[0].nme\""
        );
    }

    #[test]
    fn type_errors_match_upstream() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (SVC, json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}), vec![]),
            (SVC, json!({"spec": {"ports": [{"port": "eighty"}]}}),
                vec!["json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"]),
            (SVC, json!({"spec": {"ports": [{"port": 80, "nodePort": 1.5}]}}),
                vec!["json: cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.nodePort of type int32"]),
            (SVC, json!({"spec": {"ports": {"port": 80}}}),
                vec!["json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort"]),
            (SVC, json!({"spec": "x"}),
                vec!["json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec"]),
            (SVC, json!({"metadata": {"labels": {"a": 1}}}),
                vec!["json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"]),
            (SVC, json!({"metadata": {"labels": []}}),
                vec!["json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"]),
            (SVC, json!({"spec": {"ports": [{"port": 80, "targetPort": true}]}}),
                vec!["json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32"]),
            (SVC, json!({"spec": {"ports": [{"port": 80, "protocol": 6}]}}),
                vec!["json: cannot unmarshal number into Go struct field ServicePort.spec.ports.protocol of type v1.Protocol"]),
            (SVC, json!({"spec": {"publishNotReadyAddresses": "yes"}}),
                vec!["json: cannot unmarshal string into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool"]),
            (DEPLOY, json!({"spec": {"replicas": "3", "template": {"spec": {"containers":
                [{"name": "a", "resources": {"limits": {"cpu": "1Gm"}}}]}}}}),
                vec!["json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
                     "unable to parse quantity's suffix"]),
            ("io.k8s.api.core.v1.Secret", json!({"data": {"k": 1}}),
                vec!["json: cannot unmarshal number into Go struct field Secret.data of type []uint8"]),
            (SVC, json!({"spec": null, "metadata": {"labels": null}}), vec![]),
        ];
        for (kind, obj, want) in cases {
            assert_eq!(type_errors(kind, &obj), want, "{obj}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "2e3", "0.5", "+1k", "1E-2"] {
            assert_eq!(parse_quantity(ok), Ok(()), "{ok}");
        }
        for bad in ["", "abc", "1..2", "true", "1Gx"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
