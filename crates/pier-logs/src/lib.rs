//! Container log files in the CRI format, as the kubelet keeps them: writing from a
//! container's output, reading with tail, since, timestamps, byte limit and follow.
//!
//! Each line of the file is one record (see [`format`]):
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F log content 1
//! 2016-10-06T00:17:09.669794203Z stderr P first 16 KiB of a long line
//! ```
//!
//! - [`LogWriter`] appends a container's stdout and stderr to the file as the container
//!   runtime (containerd's CRI logger) does: one record per line, lines longer than
//!   [`MAX_LINE`] split into `P` (partial) records, a last line without newline a `P`
//!   record. Records of both streams interleave in arrival order. Every append wakes the
//!   [`LogFollower`]s; the log is finished once both streams hit EOF.
//! - [`read_logs`] renders the file as the kubelet does for `kubectl logs`:
//!   [`LogOptions`] carries `tailLines`, `sinceTime`/`sinceSeconds`, `timestamps`,
//!   `limitBytes`, `follow` and a stream selection. Output goes to a channel of
//!   [`bytes::Bytes`], so it can be streamed into an HTTP body without buffering.
//!
//! ```no_run
//! use pier_logs::{read_logs, LogOptions, LogWriter, Source};
//! # async fn demo(mut child: tokio::process::Child) -> Result<(), pier_logs::LogError> {
//! let writer = LogWriter::create("/var/log/pods/ns_pod_uid/app/0.log".as_ref())?;
//! let follower = writer.follower();
//! let stdout = child.stdout.take().map(|s| Box::new(s) as Source);
//! let stderr = child.stderr.take().map(|s| Box::new(s) as Source);
//! tokio::spawn(writer.capture(stdout, stderr));
//!
//! let (tx, mut rx) = tokio::sync::mpsc::channel(16);
//! let opts = LogOptions { follow: true, timestamps: true, ..LogOptions::default() };
//! let path = std::path::PathBuf::from("/var/log/pods/ns_pod_uid/app/0.log");
//! tokio::spawn(async move { read_logs(&path, &opts, Some(follower), &tx).await });
//! while let Some(chunk) = rx.recv().await {
//!     // write `chunk` to the response body
//! #   drop(chunk);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod format;
mod reader;
mod writer;

pub use format::{Record, Stream, MAX_LINE};
pub use reader::{read_logs, resolve_since, LogOptions};
pub use writer::{LogFollower, LogWriter, Source};

use std::io;
use std::path::PathBuf;

/// Why a log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Creating or opening the log file failed.
    #[error("open log file {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the log file failed.
    #[error("{op} log file {path}")]
    Io {
        /// `read`, `write`, `seek`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a container's output stream failed (the log has everything before it).
    #[error("read container {stream}")]
    Source {
        /// The stream.
        stream: Stream,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
