//! JSON → protobuf, the inverse of [`crate::decode`], for tests and tools.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::decode::MAGIC;
use crate::error::ProtobufError;
use crate::schema::{self, Kind, Message, Special, Ty};
use crate::wire::Writer;

/// Encodes a JSON object (with `apiVersion` and `kind`) as a Kubernetes protobuf body: the magic
/// prefix and a `runtime.Unknown` envelope, as client-go sends it.
///
/// Fields the schema does not know are dropped, as a Go client's typed struct would drop them.
/// Zero values are written only when present in the JSON, so `decode(encode(v))` is `v` for
/// objects without zero-valued `omitempty` fields.
///
/// # Errors
///
/// [`ProtobufError::EncodeMissingTypeMeta`], [`ProtobufError::UnknownKind`], or
/// [`ProtobufError::EncodeType`] when a value has the wrong JSON type for its field.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind), Some(fields)) = (api_version, kind, object.as_object()) else {
        return Err(ProtobufError::EncodeMissingTypeMeta);
    };
    let message = schema::root(api_version, kind).ok_or_else(|| ProtobufError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let raw = encode_fields(fields, message, kind)?;

    let mut type_meta = Writer::default();
    type_meta.bytes_field(1, api_version.as_bytes());
    type_meta.bytes_field(2, kind.as_bytes());
    let mut unknown = Writer { buf: MAGIC.to_vec() };
    unknown.bytes_field(1, &type_meta.buf);
    unknown.bytes_field(2, &raw);
    // client-go writes the empty contentEncoding and contentType too.
    unknown.bytes_field(3, b"");
    unknown.bytes_field(4, b"");
    Ok(unknown.buf)
}

fn mismatch(path: &str, expected: &'static str) -> ProtobufError {
    ProtobufError::EncodeType { path: path.to_string(), expected }
}

fn encode_fields(
    object: &Map<String, Value>,
    message: &Message,
    path: &str,
) -> Result<Vec<u8>, ProtobufError> {
    let mut w = Writer::default();
    for field in message.fields {
        if field.kind == Kind::Inline {
            let Ty::Message(index) = field.ty else { continue };
            let nested = encode_fields(object, schema::message(index), path)?;
            w.bytes_field(field.tag, &nested);
            continue;
        }
        let Some(value) = object.get(field.json) else { continue };
        let path = format!("{path}.{}", field.json);
        if value.is_null() {
            // A null time or raw extension in a value field is the zero value, which upstream
            // writes as an empty message; elsewhere null means unset.
            if let Ty::Message(index) = field.ty {
                let special = schema::message(index).special;
                if field.kind != Kind::Pointer && matches!(special, Special::Time | Special::MicroTime) {
                    w.bytes_field(field.tag, b"");
                }
            }
            continue;
        }
        match field.ty {
            Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
                let entries = value.as_object().ok_or_else(|| mismatch(&path, "an object"))?;
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort();
                for key in keys {
                    let entry_path = format!("{path}[{key:?}]");
                    let value_ty = match field.ty {
                        Ty::MapMessage(index) => Ty::Message(index),
                        Ty::MapBytes => Ty::Bytes,
                        _ => Ty::String,
                    };
                    let mut entry = Writer::default();
                    entry.bytes_field(1, key.as_bytes());
                    encode_value(&mut entry, 2, &entries[key.as_str()], value_ty, &entry_path)?;
                    w.bytes_field(field.tag, &entry.buf);
                }
            }
            ty if field.kind == Kind::Repeated => {
                let items = value.as_array().ok_or_else(|| mismatch(&path, "an array"))?;
                for (i, item) in items.iter().enumerate() {
                    encode_value(&mut w, field.tag, item, ty, &format!("{path}[{i}]"))?;
                }
            }
            ty => encode_value(&mut w, field.tag, value, ty, &path)?,
        }
    }
    Ok(w.buf)
}

fn encode_value(w: &mut Writer, tag: u32, value: &Value, ty: Ty, path: &str) -> Result<(), ProtobufError> {
    match ty {
        Ty::Bool => {
            w.varint_field(tag, u64::from(value.as_bool().ok_or_else(|| mismatch(path, "a boolean"))?))
        }
        Ty::Int32 => {
            let v = value.as_i64().and_then(|v| i32::try_from(v).ok());
            // Negative int32s are sign-extended to 64 bits on the wire.
            w.varint_field(tag, i64::from(v.ok_or_else(|| mismatch(path, "a 32-bit integer"))?) as u64);
        }
        Ty::Int64 => w.varint_field(tag, value.as_i64().ok_or_else(|| mismatch(path, "an integer"))? as u64),
        Ty::Double => {
            w.fixed64_field(tag, value.as_f64().ok_or_else(|| mismatch(path, "a number"))?.to_bits())
        }
        Ty::String => {
            w.bytes_field(tag, value.as_str().ok_or_else(|| mismatch(path, "a string"))?.as_bytes())
        }
        Ty::Bytes => {
            let text = value.as_str().ok_or_else(|| mismatch(path, "a base64 string"))?;
            let bytes = BASE64.decode(text).map_err(|_| mismatch(path, "a base64 string"))?;
            w.bytes_field(tag, &bytes);
        }
        Ty::Message(index) => {
            let bytes = encode_message(value, schema::message(index), path)?;
            w.bytes_field(tag, &bytes);
        }
        // Maps are expanded into entries by the caller.
        Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => return Err(mismatch(path, "a map value")),
    }
    Ok(())
}

fn encode_message(value: &Value, message: &Message, path: &str) -> Result<Vec<u8>, ProtobufError> {
    let mut w = Writer::default();
    match message.special {
        Special::None => {
            let object = value.as_object().ok_or_else(|| mismatch(path, "an object"))?;
            return encode_fields(object, message, path);
        }
        Special::Time | Special::MicroTime => {
            if !value.is_null() {
                let text = value.as_str().ok_or_else(|| mismatch(path, "an RFC 3339 time"))?;
                let time = chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|_| mismatch(path, "an RFC 3339 time"))?;
                w.varint_field(1, time.timestamp() as u64);
                w.varint_field(2, u64::from(time.timestamp_subsec_nanos()));
            }
        }
        Special::Quantity => {
            // The JSON API accepts numbers for quantities too.
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(mismatch(path, "a quantity")),
            };
            w.bytes_field(1, text.as_bytes());
        }
        Special::IntOrString => match value {
            Value::String(s) => {
                w.varint_field(1, 1);
                w.varint_field(2, 0);
                w.bytes_field(3, s.as_bytes());
            }
            _ => {
                let v = value.as_i64().and_then(|v| i32::try_from(v).ok());
                let v = v.ok_or_else(|| mismatch(path, "an integer or string"))?;
                w.varint_field(1, 0);
                w.varint_field(2, i64::from(v) as u64);
                w.bytes_field(3, b"");
            }
        },
        Special::RawJson => {
            if !value.is_null() {
                let raw = serde_json::to_vec(value).map_err(|_| mismatch(path, "JSON"))?;
                w.bytes_field(1, &raw);
            }
        }
    }
    Ok(w.buf)
}
