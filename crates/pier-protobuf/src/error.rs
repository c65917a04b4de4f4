//! The one error type of the crate.

use std::fmt;

/// Why a protobuf body could not be decoded, or a JSON object encoded.
///
/// Every variant is the client's fault: an API server answers `400 Bad Request` with the
/// `Display` text as the `Status` message, except [`ProtobufError::UnknownKind`], which upstream
/// also reports as a bad request ("no kind ... is registered"). Paths name the offending field
/// the way the JSON would, e.g. `Deployment.spec.template.spec.containers[0].ports`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtobufError {
    // Upstream's wording: the prefix is printed as Go prints a byte slice.
    #[error("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")]
    MissingMagic,
    #[error("protobuf envelope has no kind in its typeMeta")]
    MissingKind,
    #[error("protobuf envelope has content encoding {0:?}; only unencoded objects are supported")]
    UnsupportedContentEncoding(String),
    #[error("no kind {kind:?} is registered for version {api_version:?} in protobuf decoding")]
    UnknownKind { api_version: String, kind: String },
    #[error("truncated protobuf message at {path}")]
    Truncated { path: String },
    #[error("invalid varint at {path}")]
    InvalidVarint { path: String },
    #[error("invalid protobuf field key at {path}: field number {field}, wire type {wire_type}")]
    InvalidKey { path: String, field: u64, wire_type: u8 },
    #[error("wrong wire type for {path}: expected {expected}, found {found}")]
    WrongWireType { path: String, expected: WireType, found: WireType },
    #[error("invalid UTF-8 in string at {path}")]
    InvalidUtf8 { path: String },
    #[error("timestamp at {path} is out of range: {seconds}s {nanos}ns")]
    InvalidTimestamp { path: String, seconds: i64, nanos: i64 },
    #[error("number at {path} is not finite")]
    InvalidNumber { path: String },
    #[error("{path} does not hold valid JSON")]
    InvalidEmbeddedJson { path: String },
    #[error("protobuf message nested deeper than {limit} levels at {path}")]
    TooDeep { path: String, limit: usize },
    #[error("cannot encode object without string apiVersion and kind")]
    EncodeMissingTypeMeta,
    #[error("cannot encode {path}: expected {expected}")]
    EncodeType { path: String, expected: &'static str },
}

/// A protobuf wire type, shown with its name in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireType(pub u8);

impl WireType {
    pub(crate) const VARINT: WireType = WireType(0);
    pub(crate) const FIXED64: WireType = WireType(1);
    pub(crate) const LEN: WireType = WireType(2);
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => "varint",
            1 => "fixed64",
            2 => "length-delimited",
            3 => "start-group",
            4 => "end-group",
            5 => "fixed32",
            _ => "invalid",
        };
        write!(f, "{} ({name})", self.0)
    }
}
