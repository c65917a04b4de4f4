//! Rendering a log file for `kubectl logs`, with the kubelet's options and rules
//! (`pkg/kubelet/kuberuntime/logs`).

use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::format::{format_time, parse, Stream};
use crate::writer::{LogFollower, LogState};
use crate::LogError;

/// Output is sent in chunks of about this size (or less, before waiting for more).
const CHUNK: usize = 32 * 1024;

/// `PodLogOptions` as the kubelet applies them to one container's log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// `tailLines`: start this many lines (records) before the end. As in the kubelet,
    /// each record of a split line counts as a line. `None`: from the start.
    pub tail_lines: Option<u64>,
    /// Skip records older than this (`sinceTime`, or now minus `sinceSeconds`; see
    /// [`resolve_since`]).
    pub since: Option<DateTime<Utc>>,
    /// `timestamps`: prefix each line with its RFC3339Nano time (nine digits) and a
    /// space. A line split into partial records gets one prefix.
    pub timestamps: bool,
    /// `limitBytes`: stop after this many bytes of output (cutting the last line).
    pub limit_bytes: Option<u64>,
    /// `follow`: at the end of the file, wait for more until the log is finished.
    pub follow: bool,
    /// Only this stream (`stream`: `Stdout`/`Stderr`); `None` for both, interleaved.
    /// The API forbids combining a stream with `tailLines`; here the tail would count
    /// both streams' records.
    pub stream: Option<Stream>,
}

/// The `since` bound the kubelet uses: the later of `sinceTime` and
/// `now - sinceSeconds`.
pub fn resolve_since(
    since_seconds: Option<i64>,
    since_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from_seconds = since_seconds.map(|s| now - Duration::seconds(s));
    match (from_seconds, since_time) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the log at `path` with `opts` and sends the output to `sink`.
///
/// With `opts.follow` and a `follower`, it keeps waiting for new records until the
/// writer finishes, then ends; without a follower (the container is not running) a
/// follow ends at the end of the file, as the kubelet's does. With a follower, only
/// whole records are read. Output is sent in chunks as it is produced, never the whole
/// log at once.
///
/// Returns `Ok` also when `sink`'s receiver is dropped (the client went away), also
/// while waiting for new records.
///
/// # Errors
///
/// [`LogError::Open`] when the file cannot be opened, [`LogError::Io`] when reading
/// it fails. Lines that are not CRI records are skipped.
pub async fn read_logs(
    path: &Path,
    opts: &LogOptions,
    follower: Option<LogFollower>,
    sink: &mpsc::Sender<Bytes>,
) -> Result<(), LogError> {
    let mut file =
        File::open(path).await.map_err(|source| LogError::Open { path: path.to_path_buf(), source })?;
    let io_err = |op| move |source| LogError::Io { op, path: path.to_path_buf(), source };
    // Without `follow` the follower still bounds the read to whole records.
    let mut follower = follower;
    let mut pos = match opts.tail_lines {
        Some(n) => tail_start(&mut file, n).await.map_err(io_err("read"))?,
        None => 0,
    };
    file.seek(SeekFrom::Start(pos)).await.map_err(io_err("seek"))?;

    let mut render = Render::new(opts);
    // Only a plain (not followed) tail stops after `tail_lines` records; a followed one
    // goes on with new records, as in the kubelet.
    let mut lines_left = opts.tail_lines.filter(|_| !opts.follow);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        // Read the bound first: once `finished` is seen, everything up to `len` is
        // all there will ever be.
        let state = follower.as_mut().map(|f| *f.rx.borrow_and_update());
        let bound = state.map_or(u64::MAX, |s: LogState| s.len);
        // Read up to the bound, rendering each whole line.
        loop {
            let want = usize::try_from(bound.saturating_sub(pos)).unwrap_or(usize::MAX).min(CHUNK);
            if want == 0 {
                break;
            }
            let n = file.read(&mut chunk[..want]).await.map_err(io_err("read"))?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            pending.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + i + 1];
                start += i + 1;
                let flow = render.line(line);
                if flow == Flow::Stop || (flow == Flow::Go && take_line(&mut lines_left)) {
                    return render.flush(sink).await;
                }
            }
            pending.drain(..start);
            if render.out.len() >= CHUNK && !render.flush_more(sink).await {
                return Ok(());
            }
        }
        let done = !opts.follow || state.is_none_or(|s| s.finished);
        if done {
            // The kubelet renders a trailing line without newline too; the writer
            // never leaves one, but a file from elsewhere might.
            if !pending.is_empty() {
                render.line(&pending);
            }
            return render.flush(sink).await;
        }
        if !render.flush_more(sink).await {
            return Ok(());
        }
        let Some(f) = follower.as_mut() else { return Ok(()) };
        tokio::select! {
            // An error means the writer is gone; the next pass sees `finished`.
            _ = f.rx.changed() => {}
            () = sink.closed() => return Ok(()),
        }
    }
}

/// Counts a rendered line against a plain tail; true when the tail is done.
fn take_line(left: &mut Option<u64>) -> bool {
    match left {
        Some(n) => {
            *n = n.saturating_sub(1);
            *n == 0
        }
        None => false,
    }
}

/// The offset of the start of the last `n` lines of `file` (0 if it has fewer), as
/// the kubelet's `tail.FindTailLineStartIndex`: scanning backwards for newlines.
async fn tail_start(file: &mut File, n: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 4096;
    let size = file.seek(SeekFrom::End(0)).await?;
    // The last byte is the newline ending the last line, so n lines start after
    // the (n+1)-th newline from the end.
    let mut seen = 0u64;
    let mut right = size;
    let mut buf = vec![0u8; BLOCK as usize];
    while right > 0 {
        let left = right.saturating_sub(BLOCK);
        let len = usize::try_from(right - left).unwrap_or(0);
        file.seek(SeekFrom::Start(left)).await?;
        file.read_exact(&mut buf[..len]).await?;
        for (i, &b) in buf[..len].iter().enumerate().rev() {
            if b == b'\n' {
                seen += 1;
                if seen == n + 1 {
                    return Ok(left + i as u64 + 1);
                }
            }
        }
        right = left;
    }
    Ok(0)
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Rendered (or filtered out by since or stream).
    Go,
    /// Not a record: skipped, and not counted as a line.
    Skipped,
    /// The byte limit is reached.
    Stop,
}

/// Turns records into output: since, stream, timestamps and the byte limit.
struct Render<'a> {
    opts: &'a LogOptions,
    remain: u64,
    /// Whether the next record starts a line (gets a timestamp). As in the kubelet it is
    /// shared by both streams and updated by skipped records too.
    new_line: bool,
    out: Vec<u8>,
}

impl<'a> Render<'a> {
    fn new(opts: &'a LogOptions) -> Self {
        Self { opts, remain: opts.limit_bytes.unwrap_or(u64::MAX), new_line: true, out: Vec::new() }
    }

    fn line(&mut self, line: &[u8]) -> Flow {
        let Some(record) = parse(line) else { return Flow::Skipped };
        let add_prefix = self.new_line;
        self.new_line = record.content.last().is_none_or(|&b| b == b'\n');
        if self.opts.since.is_some_and(|since| record.time < since)
            || self.opts.stream.is_some_and(|s| s != record.stream)
        {
            return Flow::Go;
        }
        let mut text = Vec::new();
        if self.opts.timestamps && add_prefix {
            text.extend_from_slice(format_time(record.time).as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(&record.content);
        let take = usize::try_from(self.remain).unwrap_or(usize::MAX).min(text.len());
        self.out.extend_from_slice(&text[..take]);
        self.remain -= take as u64;
        if self.remain == 0 {
            Flow::Stop
        } else {
            Flow::Go
        }
    }

    /// Sends what is buffered; false when the receiver is gone.
    async fn flush_more(&mut self, sink: &mpsc::Sender<Bytes>) -> bool {
        if self.out.is_empty() {
            return true;
        }
        sink.send(Bytes::from(std::mem::take(&mut self.out))).await.is_ok()
    }

    async fn flush(&mut self, sink: &mpsc::Sender<Bytes>) -> Result<(), LogError> {
        self.flush_more(sink).await;
        Ok(())
    }
}
