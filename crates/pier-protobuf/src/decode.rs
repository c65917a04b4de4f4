//! Protobuf → JSON, driven by the schema table.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::error::{ProtobufError, WireType};
use crate::schema::{self, Field, Kind, Message, Special, Ty};
use crate::wire::Reader;

/// The prefix of every Kubernetes protobuf body (apimachinery's `runtime/serializer/protobuf`).
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Deeper than any Kubernetes type; guards the stack against hostile input.
const MAX_DEPTH: usize = 64;

/// An object decoded from a protobuf request body.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedObject {
    /// From the envelope's typeMeta, e.g. `apps/v1`.
    pub api_version: String,
    /// From the envelope's typeMeta, e.g. `Deployment`.
    pub kind: String,
    /// The JSON a client would have sent for the same object, `kind` and `apiVersion` included.
    pub object: Value,
}

/// The `runtime.Unknown` envelope that follows the magic prefix.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

/// Decodes a `application/vnd.kubernetes.protobuf` request body into the JSON object the same
/// request would have carried as `application/json`.
///
/// # Errors
///
/// A [`ProtobufError`] when the body lacks the magic prefix, is not well-formed protobuf, holds
/// a kind this crate has no schema for, or holds values JSON cannot carry. Never panics.
pub fn decode(content: &[u8]) -> Result<DecodedObject, ProtobufError> {
    let body = content.strip_prefix(MAGIC).ok_or(ProtobufError::MissingMagic)?;
    let envelope = read_envelope(body)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(envelope.content_encoding));
    }
    if envelope.kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let message = schema::root(&envelope.api_version, &envelope.kind).ok_or_else(|| {
        ProtobufError::UnknownKind { api_version: envelope.api_version.clone(), kind: envelope.kind.clone() }
    })?;
    // Go's TypeMeta puts kind before apiVersion.
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(envelope.kind.clone()));
    object.insert("apiVersion".into(), Value::String(envelope.api_version.clone()));
    decode_fields(envelope.raw, message, &envelope.kind, 0, &mut object)?;
    Ok(DecodedObject {
        api_version: envelope.api_version,
        kind: envelope.kind,
        object: Value::Object(object),
    })
}

fn read_envelope(body: &[u8]) -> Result<Envelope<'_>, ProtobufError> {
    let mut envelope = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
    };
    let mut r = Reader::new(body, "Unknown");
    while let Some((tag, wire_type)) = r.key()? {
        match tag {
            1 => {
                expect(wire_type, WireType::LEN, "Unknown.typeMeta")?;
                let mut tm = Reader::new(r.bytes()?, "Unknown.typeMeta");
                while let Some((tag, wire_type)) = tm.key()? {
                    match tag {
                        1 => {
                            envelope.api_version = string(&mut tm, wire_type, "Unknown.typeMeta.apiVersion")?
                        }
                        2 => envelope.kind = string(&mut tm, wire_type, "Unknown.typeMeta.kind")?,
                        _ => tm.skip(wire_type)?,
                    }
                }
            }
            2 => {
                expect(wire_type, WireType::LEN, "Unknown.raw")?;
                envelope.raw = r.bytes()?;
            }
            3 => envelope.content_encoding = string(&mut r, wire_type, "Unknown.contentEncoding")?,
            // contentType (4) names the raw bytes' media type; client-go leaves it empty.
            _ => r.skip(wire_type)?,
        }
    }
    Ok(envelope)
}

fn expect(found: WireType, expected: WireType, path: &str) -> Result<(), ProtobufError> {
    if found == expected {
        Ok(())
    } else {
        Err(ProtobufError::WrongWireType { path: path.to_string(), expected, found })
    }
}

fn string(r: &mut Reader<'_>, wire_type: WireType, path: &str) -> Result<String, ProtobufError> {
    expect(wire_type, WireType::LEN, path)?;
    utf8(r.bytes()?, path)
}

fn utf8(bytes: &[u8], path: &str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 { path: path.to_string() })
}

/// What has been read for one field of a message.
enum Slot<'a> {
    Empty,
    /// A scalar and whether it is its type's zero value.
    Scalar(Value, bool),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// A singular message's bytes; protobuf merges repeated occurrences, which for the wire
    /// format means concatenating them.
    Message(Vec<&'a [u8]>),
}

/// Decodes `bytes` as `message` and appends its JSON fields to `out` in Go declaration order.
fn decode_fields(
    bytes: &[u8],
    message: &Message,
    path: &str,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep { path: path.to_string(), limit: MAX_DEPTH });
    }
    let mut slots: Vec<Slot<'_>> = message.fields.iter().map(|_| Slot::Empty).collect();
    let mut r = Reader::new(bytes, path);
    while let Some((tag, wire_type)) = r.key()? {
        let Some(i) = message.fields.iter().position(|f| f.tag == tag) else {
            r.skip(wire_type)?;
            continue;
        };
        let field = &message.fields[i];
        let field_path = child(path, field);
        read_field(&mut r, wire_type, field, &mut slots[i], &field_path, depth)?;
    }
    for (field, slot) in message.fields.iter().zip(slots) {
        let field_path = child(path, field);
        match slot {
            Slot::Empty => {}
            Slot::Scalar(value, is_zero) => {
                if !(is_zero && field.kind == Kind::OmitEmpty) {
                    out.insert(field.json.to_string(), value);
                }
            }
            Slot::List(values) => {
                out.insert(field.json.to_string(), Value::Array(values));
            }
            Slot::Map(entries) => {
                // Go's encoding/json writes map keys sorted, as the BTreeMap iterates.
                out.insert(field.json.to_string(), Value::Object(entries.into_iter().collect()));
            }
            Slot::Message(chunks) => {
                let bytes = chunks.concat();
                let Ty::Message(index) = field.ty else { continue };
                let nested = schema::message(index);
                if field.kind == Kind::Inline {
                    decode_fields(&bytes, nested, path, depth + 1, out)?;
                } else {
                    let value = decode_message(&bytes, nested, &field_path, depth + 1)?;
                    out.insert(field.json.to_string(), value);
                }
            }
        }
    }
    Ok(())
}

fn child(path: &str, field: &Field) -> String {
    if field.json.is_empty() {
        path.to_string()
    } else {
        format!("{path}.{}", field.json)
    }
}

fn read_field<'a>(
    r: &mut Reader<'a>,
    wire_type: WireType,
    field: &Field,
    slot: &mut Slot<'a>,
    path: &str,
    depth: usize,
) -> Result<(), ProtobufError> {
    match field.ty {
        Ty::Message(index) if field.kind == Kind::Repeated => {
            expect(wire_type, WireType::LEN, path)?;
            let bytes = r.bytes()?;
            let item_path = format!("{path}[{}]", list_len(slot));
            let value = decode_message(bytes, schema::message(index), &item_path, depth + 1)?;
            list_push(slot, value);
        }
        Ty::Message(_) => {
            expect(wire_type, WireType::LEN, path)?;
            let bytes = r.bytes()?;
            match slot {
                Slot::Message(chunks) => chunks.push(bytes),
                _ => *slot = Slot::Message(vec![bytes]),
            }
        }
        Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) => {
            expect(wire_type, WireType::LEN, path)?;
            let (key, value) = map_entry(r.bytes()?, field.ty, path, depth)?;
            match slot {
                Slot::Map(entries) => {
                    entries.insert(key, value);
                }
                _ => *slot = Slot::Map(BTreeMap::from([(key, value)])),
            }
        }
        scalar if field.kind == Kind::Repeated => {
            // proto2 repeated scalars are unpacked on the wire, but decoders must accept the
            // packed form too.
            if wire_type == WireType::LEN && scalar != Ty::String && scalar != Ty::Bytes {
                let packed = r.bytes()?;
                let mut inner = Reader::new(packed, path);
                while !inner.is_empty() {
                    let (value, _) = read_scalar(&mut inner, scalar_wire_type(scalar), scalar, path)?;
                    list_push(slot, value);
                }
            } else {
                let (value, _) = read_scalar(r, wire_type, scalar, path)?;
                list_push(slot, value);
            }
        }
        scalar => {
            let (value, is_zero) = read_scalar(r, wire_type, scalar, path)?;
            *slot = Slot::Scalar(value, is_zero);
        }
    }
    Ok(())
}

fn list_len(slot: &Slot<'_>) -> usize {
    match slot {
        Slot::List(values) => values.len(),
        _ => 0,
    }
}

fn list_push(slot: &mut Slot<'_>, value: Value) {
    match slot {
        Slot::List(values) => values.push(value),
        _ => *slot = Slot::List(vec![value]),
    }
}

fn scalar_wire_type(ty: Ty) -> WireType {
    match ty {
        Ty::Bool | Ty::Int32 | Ty::Int64 => WireType::VARINT,
        Ty::Double => WireType::FIXED64,
        _ => WireType::LEN,
    }
}

/// Reads a scalar of type `ty` and says whether it is the zero value.
fn read_scalar(
    r: &mut Reader<'_>,
    wire_type: WireType,
    ty: Ty,
    path: &str,
) -> Result<(Value, bool), ProtobufError> {
    expect(wire_type, scalar_wire_type(ty), path)?;
    Ok(match ty {
        Ty::Bool => {
            let v = r.varint()? != 0;
            (Value::Bool(v), !v)
        }
        // int32 travels as a sign-extended 64-bit varint; truncation recovers it.
        Ty::Int32 => {
            let v = r.varint()? as i64 as i32;
            (Value::from(v), v == 0)
        }
        Ty::Int64 => {
            let v = r.varint()? as i64;
            (Value::from(v), v == 0)
        }
        Ty::Double => {
            let v = f64::from_bits(r.fixed64()?);
            let n =
                Number::from_f64(v).ok_or_else(|| ProtobufError::InvalidNumber { path: path.to_string() })?;
            (Value::Number(n), v == 0.0)
        }
        Ty::Bytes => {
            let v = r.bytes()?;
            (Value::String(BASE64.encode(v)), v.is_empty())
        }
        _ => {
            let v = utf8(r.bytes()?, path)?;
            let is_zero = v.is_empty();
            (Value::String(v), is_zero)
        }
    })
}

/// A `map<string, V>` entry: a message with the key in field 1 and the value in field 2.
fn map_entry(bytes: &[u8], ty: Ty, path: &str, depth: usize) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut r = Reader::new(bytes, path);
    while let Some((tag, wire_type)) = r.key()? {
        match tag {
            1 => key = string(&mut r, wire_type, path)?,
            2 => {
                let entry_path = format!("{path}[{key:?}]");
                value = Some(match ty {
                    Ty::MapMessage(index) => {
                        expect(wire_type, WireType::LEN, &entry_path)?;
                        decode_message(r.bytes()?, schema::message(index), &entry_path, depth + 1)?
                    }
                    Ty::MapBytes => read_scalar(&mut r, wire_type, Ty::Bytes, &entry_path)?.0,
                    _ => read_scalar(&mut r, wire_type, Ty::String, &entry_path)?.0,
                });
            }
            _ => r.skip(wire_type)?,
        }
    }
    // An absent value is the type's default, as protobuf's map semantics say.
    let value = match (value, ty) {
        (Some(value), _) => value,
        (None, Ty::MapMessage(index)) => decode_message(&[], schema::message(index), path, depth + 1)?,
        (None, _) => Value::String(String::new()),
    };
    Ok((key, value))
}

/// Decodes a message as a JSON value: an object, or a special type's own form.
fn decode_message(bytes: &[u8], message: &Message, path: &str, depth: usize) -> Result<Value, ProtobufError> {
    match message.special {
        Special::None => {
            let mut out = Map::new();
            decode_fields(bytes, message, path, depth, &mut out)?;
            Ok(Value::Object(out))
        }
        Special::Time | Special::MicroTime => decode_time(bytes, message.special, path),
        Special::Quantity => {
            let s = special_string(bytes, 1, path)?;
            // The zero Quantity marshals as "0".
            Ok(Value::String(s.unwrap_or_else(|| "0".into())))
        }
        Special::IntOrString => decode_int_or_string(bytes, path),
        Special::RawJson => {
            let mut raw: &[u8] = &[];
            let mut r = Reader::new(bytes, path);
            while let Some((tag, wire_type)) = r.key()? {
                if tag == 1 {
                    expect(wire_type, WireType::LEN, path)?;
                    raw = r.bytes()?;
                } else {
                    r.skip(wire_type)?;
                }
            }
            if raw.is_empty() {
                // An empty RawExtension marshals as null.
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw)
                .map_err(|_| ProtobufError::InvalidEmbeddedJson { path: path.to_string() })
        }
    }
}

/// Field `tag` of a message whose only interesting field is a string.
fn special_string(bytes: &[u8], tag: u32, path: &str) -> Result<Option<String>, ProtobufError> {
    let mut out = None;
    let mut r = Reader::new(bytes, path);
    while let Some((t, wire_type)) = r.key()? {
        if t == tag {
            out = Some(string(&mut r, wire_type, path)?);
        } else {
            r.skip(wire_type)?;
        }
    }
    Ok(out)
}

fn decode_int_or_string(bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
    let (mut kind, mut int_val, mut str_val) = (0i64, 0i32, String::new());
    let mut r = Reader::new(bytes, path);
    while let Some((tag, wire_type)) = r.key()? {
        match tag {
            1 => {
                expect(wire_type, WireType::VARINT, path)?;
                kind = r.varint()? as i64;
            }
            2 => {
                expect(wire_type, WireType::VARINT, path)?;
                int_val = r.varint()? as i64 as i32;
            }
            3 => str_val = string(&mut r, wire_type, path)?,
            _ => r.skip(wire_type)?,
        }
    }
    // intstr.Type: 0 is Int, 1 is String.
    Ok(if kind == 1 { Value::String(str_val) } else { Value::from(int_val) })
}

fn decode_time(bytes: &[u8], special: Special, path: &str) -> Result<Value, ProtobufError> {
    if bytes.is_empty() {
        // Upstream writes the zero time as an empty message, and its JSON is null.
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut r = Reader::new(bytes, path);
    while let Some((tag, wire_type)) = r.key()? {
        match tag {
            1 => {
                expect(wire_type, WireType::VARINT, path)?;
                seconds = r.varint()? as i64;
            }
            2 => {
                expect(wire_type, WireType::VARINT, path)?;
                nanos = i64::from(r.varint()? as i64 as i32);
            }
            _ => r.skip(wire_type)?,
        }
    }
    let invalid = || ProtobufError::InvalidTimestamp { path: path.to_string(), seconds, nanos };
    let nanos_u32 = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000).ok_or_else(invalid)?;
    let time = chrono::DateTime::from_timestamp(seconds, nanos_u32).ok_or_else(invalid)?;
    // Go cannot marshal years outside 0..=9999 either.
    if !(0..=9999).contains(&chrono::Datelike::year(&time)) {
        return Err(invalid());
    }
    let text = if special == Special::MicroTime {
        time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    Ok(Value::String(text))
}
