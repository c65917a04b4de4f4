//! The wire schema: for every message reachable from a decodable kind, its fields' numbers, JSON
//! names, types and presence rules.
//!
//! The table in `generated.rs` is produced by `gen/generate.py` from two sources joined on
//! (message, field number): k8s-pb's prost code (numbers, protobuf types, message types) and the
//! upstream Go types (JSON names, `omitempty`, pointers, `json:",inline"` embedding, declaration
//! order). It is checked in so that builds need neither source.

// Kept exactly as the generator writes it, so regenerating shows only real changes.
#[rustfmt::skip]
mod generated;

pub(crate) use generated::MESSAGES;
use generated::ROOTS;

/// A kind that can arrive as the top-level object of a request body.
pub(crate) struct Root {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Index into [`MESSAGES`].
    pub message: u16,
}

/// One protobuf message type.
pub(crate) struct Message {
    /// Upstream's OpenAPI-style name, e.g. `io.k8s.api.core.v1.Pod`.
    pub name: &'static str,
    pub special: Special,
    /// In Go declaration order, which is the key order of Go's encoding/json.
    pub fields: &'static [Field],
}

/// Messages whose JSON form is not an object of their fields: upstream gives them a custom
/// `MarshalJSON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `metav1.Time`: RFC 3339 to the second; the zero time (an empty message) is `null`.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with six fractional digits; zero is `null`.
    MicroTime,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `runtime.RawExtension`, `metav1.FieldsV1`: field 1 holds raw JSON.
    RawJson,
}

pub(crate) struct Field {
    pub tag: u32,
    /// Empty for [`Kind::Inline`] fields.
    pub json: &'static str,
    pub ty: Ty,
    pub kind: Kind,
}

/// A field's value type. Maps are `map<string, V>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int32,
    Int64,
    // No reachable message has a double field today, but k8s-pb has some elsewhere.
    #[allow(dead_code, reason = "the generator emits it when a double field becomes reachable")]
    Double,
    String,
    /// JSON: base64.
    Bytes,
    Message(u16),
    MapString,
    MapBytes,
    MapMessage(u16),
}

/// How a field's presence maps to JSON; this is what protobuf alone cannot say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Go value field tagged `omitempty`: Go's protobuf marshaller writes it even when zero, and
    /// its JSON omits it then, so a zero value is dropped.
    OmitEmpty,
    /// Go value field without `omitempty`: always in the JSON, zero included.
    Always,
    /// Go pointer: written only when set, so a present zero (`replicas: 0`) is meaningful.
    Pointer,
    /// Go slice; maps use the field's own kind.
    Repeated,
    /// Embedded struct with `json:",inline"`: its fields belong to the parent object in JSON but
    /// sit in a nested message on the wire.
    Inline,
}

pub(crate) fn message(index: u16) -> &'static Message {
    // Indices come from the generated table itself, so they are always in range.
    &MESSAGES[usize::from(index)]
}

/// The message for a top-level object. `DeleteOptions` is accepted under any apiVersion because
/// client-go encodes it with the group version of the client that sends it.
pub(crate) fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    ROOTS
        .iter()
        .find(|r| r.kind == kind && (r.api_version == api_version || kind == "DeleteOptions"))
        .map(|r| message(r.message))
}

/// The kinds [`crate::decode`] understands, as (apiVersion, kind).
pub fn supported_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROOTS.iter().map(|r| (r.api_version, r.kind))
}

/// Upstream's definition name for a top-level kind, e.g. `io.k8s.api.apps.v1.Deployment`, as in
/// the OpenAPI documents; `None` for kinds [`crate::decode`] does not know.
pub fn schema_name(api_version: &str, kind: &str) -> Option<&'static str> {
    root(api_version, kind).map(|m| m.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let in_range = |i: u16| usize::from(i) < MESSAGES.len();
        for root in ROOTS {
            assert!(in_range(root.message), "{}", root.kind);
        }
        for message in MESSAGES {
            let mut tags: Vec<u32> = message.fields.iter().map(|f| f.tag).collect();
            tags.sort_unstable();
            tags.dedup();
            assert_eq!(tags.len(), message.fields.len(), "duplicate tag in {}", message.name);
            for field in message.fields {
                if let Ty::Message(i) | Ty::MapMessage(i) = field.ty {
                    assert!(in_range(i), "{}.{}", message.name, field.json);
                }
                // Inline fields have no name of their own and must embed an object.
                assert_eq!(field.kind == Kind::Inline, field.json.is_empty(), "{}", message.name);
                if field.kind == Kind::Inline {
                    assert!(matches!(field.ty, Ty::Message(i) if message_is_plain(i)), "{}", message.name);
                }
            }
        }
    }

    fn message_is_plain(index: u16) -> bool {
        super::message(index).special == Special::None
    }

    #[test]
    fn json_names_keep_upstream_acronyms() {
        let find = |name: &str| MESSAGES.iter().find(|m| m.name == name).expect(name);
        let has = |m: &Message, json: &str| m.fields.iter().any(|f| f.json == json);
        let status = find("io.k8s.api.core.v1.PodStatus");
        assert!(has(status, "podIPs") && has(status, "hostIP"));
        let spec = find("io.k8s.api.core.v1.ServiceSpec");
        assert!(has(spec, "clusterIPs") && has(spec, "externalIPs") && has(spec, "loadBalancerIP"));
        assert!(has(find("io.k8s.api.core.v1.PodSpec"), "setHostnameAsFQDN"));
        assert_eq!(schema_name("apps/v1", "Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(schema_name("v1", "PodDNSConfig"), None);
        assert!(MESSAGES.iter().any(|m| m.name == "io.k8s.api.core.v1.PodDNSConfig"));
    }
}
