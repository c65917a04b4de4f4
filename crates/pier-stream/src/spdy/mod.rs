//! SPDY/3.1 as spoken by moby/spdystream (the library kubectl uses): framing, header compression
//! and a server-side session that hands out the streams the client opens.

pub mod compress;
pub mod dictionary;
pub mod frame;
pub mod session;

pub use frame::{header, Frame, Headers};
pub use session::{Session, Stream, StreamSender};

/// Errors of the SPDY layer.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// Reading or writing the connection failed.
    #[error("spdy connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A header block did not (de)compress.
    #[error("spdy header compression: {0}")]
    Compression(String),
    /// The peer sent something that is not valid SPDY/3.
    #[error("malformed spdy frame: {0}")]
    Malformed(String),
    /// The peer speaks another SPDY version.
    #[error("unsupported spdy version {0}")]
    UnsupportedVersion(u16),
    /// The session is gone (peer disconnected or the session was closed).
    #[error("spdy session closed")]
    Closed,
    /// The peer reset the stream.
    #[error("spdy stream {0} was reset by the peer")]
    Reset(u32),
}
