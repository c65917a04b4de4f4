//! Appending a container's output to its log file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::format::{encode, Stream, MAX_LINE};
use crate::LogError;

/// A container output stream to capture: a pipe, a PTY master, anything readable.
pub type Source = Box<dyn AsyncRead + Unpin + Send>;

/// What followers see: how far the file is complete, and whether it will grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogState {
    /// Bytes of whole records in the file; readers never read past it, so they never
    /// see half a record.
    pub(crate) len: u64,
    /// Both streams hit EOF (or the writer was dropped): no more records.
    pub(crate) finished: bool,
}

struct Shared {
    path: PathBuf,
    file: Mutex<File>,
    state: watch::Sender<LogState>,
}

impl Shared {
    /// Appends encoded records and wakes followers. The write is a plain blocking
    /// `write` to a local file, short (at most a few records), like the runtime's own
    /// logger; the lock only orders whole records of the two streams.
    fn append(&self, records: &[u8]) -> Result<(), LogError> {
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(records).map_err(|source| LogError::Io {
            op: "write",
            path: self.path.clone(),
            source,
        })?;
        let added = u64::try_from(records.len()).unwrap_or(u64::MAX);
        self.state.send_modify(|s| s.len += added);
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A writer dropped mid-capture (task aborted) must still end every follow.
        self.state.send_modify(|s| s.finished = true);
    }
}

/// The writing end of one container's log file (one per container start, as the
/// kubelet's `<restartCount>.log`).
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// A handle to wait for a log to grow or finish; pass it to [`crate::read_logs`] to
/// follow. Cheap to clone, one per reader.
#[derive(Debug, Clone)]
pub struct LogFollower {
    pub(crate) rx: watch::Receiver<LogState>,
}

impl LogFollower {
    /// Whether the log is finished (the container's streams are closed).
    pub fn is_finished(&self) -> bool {
        self.rx.borrow().finished
    }

    /// Bytes of whole records in the file so far.
    pub fn written(&self) -> u64 {
        self.rx.borrow().len
    }

    /// Waits for the next append (or the end); false once the log is finished and
    /// nothing more will change.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok() && !self.rx.borrow_and_update().finished
    }

    /// Waits until the log is finished.
    pub async fn finished(&mut self) {
        // An error means the writer is gone, which also finishes the log.
        let _ = self.rx.wait_for(|s| s.finished).await;
    }
}

impl LogWriter {
    /// Opens `path` for appending, creating it (not its directory) if needed.
    ///
    /// # Errors
    ///
    /// [`LogError::Open`] if the file cannot be opened.
    pub fn create(path: &Path) -> Result<Self, LogError> {
        let open_err = |source| LogError::Open { path: path.to_path_buf(), source };
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let (state, _) = watch::channel(LogState { len, finished: false });
        Ok(Self { shared: Arc::new(Shared { path: path.to_path_buf(), file: Mutex::new(file), state }) })
    }

    /// A handle for readers that follow this log.
    pub fn follower(&self) -> LogFollower {
        LogFollower { rx: self.shared.state.subscribe() }
    }

    /// Copies `stdout` and `stderr` (either may be absent, e.g. a TTY container has
    /// only stdout) into the file until both hit EOF, then marks the log finished.
    ///
    /// # Errors
    ///
    /// The first error of either stream ([`LogError::Source`]) or of the file
    /// ([`LogError::Io`]). A stream that fails stops being copied (its pending
    /// text is written as a partial record); the other carries on, and the log is
    /// marked finished either way.
    pub async fn capture(self, stdout: Option<Source>, stderr: Option<Source>) -> Result<(), LogError> {
        let (out, err) = tokio::join!(
            copy(&self.shared, Stream::Stdout, stdout),
            copy(&self.shared, Stream::Stderr, stderr)
        );
        self.shared.state.send_modify(|s| s.finished = true);
        out.and(err)
    }
}

/// Copies one stream, cutting it into records as containerd's CRI logger does.
async fn copy(shared: &Shared, stream: Stream, source: Option<Source>) -> Result<(), LogError> {
    let Some(mut source) = source else { return Ok(()) };
    let mut pending: Vec<u8> = Vec::with_capacity(2 * MAX_LINE);
    let mut chunk = vec![0u8; MAX_LINE];
    loop {
        let read = source.read(&mut chunk).await;
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                flush_partial(shared, stream, &pending)?;
                return Err(LogError::Source { stream, source });
            }
        };
        if n == 0 {
            // A last line without newline is kept as a partial record.
            return flush_partial(shared, stream, &pending);
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut records = Vec::new();
        let consumed = split_lines(&pending, stream, &mut records);
        pending.drain(..consumed);
        if !records.is_empty() {
            shared.append(&records)?;
        }
    }
}

fn flush_partial(shared: &Shared, stream: Stream, pending: &[u8]) -> Result<(), LogError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    encode(&mut records, Utc::now(), stream, true, pending);
    shared.append(&records)
}

/// Encodes every complete record in `buf` into `out` and returns how many bytes of
/// `buf` they used. A line ends at `\n` (a `\r` before it is dropped too, as TTY output
/// has `\r\n`); content longer than [`MAX_LINE`] goes out in `P` records of that size.
fn split_lines(buf: &[u8], stream: Stream, out: &mut Vec<u8>) -> usize {
    let now = Utc::now();
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = if i > 0 && rest[i - 1] == b'\r' { i - 1 } else { i };
                if end <= MAX_LINE {
                    encode(out, now, stream, false, &rest[..end]);
                    pos += i + 1;
                } else {
                    encode(out, now, stream, true, &rest[..MAX_LINE]);
                    pos += MAX_LINE;
                }
            }
            None if rest.len() > MAX_LINE => {
                encode(out, now, stream, true, &rest[..MAX_LINE]);
                pos += MAX_LINE;
            }
            None => return pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8]) -> (Vec<(bool, Vec<u8>)>, usize) {
        let mut out = Vec::new();
        let used = split_lines(input, Stream::Stdout, &mut out);
        let records = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = crate::format::parse(l).expect("record");
                (r.partial, r.content.strip_suffix(b"\n").unwrap_or(&r.content).to_vec())
            })
            .collect();
        (records, used)
    }

    #[test]
    fn lines_crlf_and_leftover() {
        let (records, used) = split(b"a\r\n\nbc\ntail");
        assert_eq!(records, vec![(false, b"a".to_vec()), (false, vec![]), (false, b"bc".to_vec())]);
        assert_eq!(used, 7);
    }

    #[test]
    fn exactly_max_is_full_and_longer_is_split() {
        let mut line = vec![b'x'; MAX_LINE];
        line.push(b'\n');
        let (records, _) = split(&line);
        assert_eq!(records, vec![(false, vec![b'x'; MAX_LINE])]);

        let mut line = vec![b'y'; 2 * MAX_LINE + 5];
        line.push(b'\n');
        let (records, used) = split(&line);
        assert_eq!(
            records,
            vec![(true, vec![b'y'; MAX_LINE]), (true, vec![b'y'; MAX_LINE]), (false, vec![b'y'; 5])]
        );
        assert_eq!(used, line.len());
    }
}
