//! Writing a container's output in the CRI format and reading it back as `kubectl logs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pier_logs::{read_logs, resolve_since, LogFollower, LogOptions, LogWriter, Source, Stream, MAX_LINE};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

/// A running capture: writable ends for stdout and stderr.
struct Capture {
    out: Option<DuplexStream>,
    err: Option<DuplexStream>,
    follower: LogFollower,
    task: JoinHandle<Result<(), pier_logs::LogError>>,
}

fn start(path: &Path) -> Capture {
    let writer = LogWriter::create(path).expect("create log");
    let follower = writer.follower();
    let (out, out_src) = tokio::io::duplex(64 * 1024);
    let (err, err_src) = tokio::io::duplex(64 * 1024);
    let task =
        tokio::spawn(writer.capture(Some(Box::new(out_src) as Source), Some(Box::new(err_src) as Source)));
    Capture { out: Some(out), err: Some(err), follower, task }
}

impl Capture {
    /// Writes to one stream and waits until the log file has grown by whole records.
    async fn write(&mut self, stream: Stream, data: &[u8]) {
        let before = self.follower.written();
        let pipe = match stream {
            Stream::Stdout => self.out.as_mut(),
            Stream::Stderr => self.err.as_mut(),
        };
        pipe.expect("stream open").write_all(data).await.expect("write");
        while self.follower.written() == before {
            assert!(timeout(DEADLINE, self.follower.changed()).await.expect("log grows in time"));
        }
    }

    async fn finish(mut self) {
        drop(self.out.take());
        drop(self.err.take());
        timeout(DEADLINE, self.task).await.expect("capture ends").expect("join").expect("capture ok");
        assert!(self.follower.is_finished());
    }
}

async fn read(path: &Path, opts: LogOptions) -> String {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let path = path.to_path_buf();
    let task = tokio::spawn(async move { read_logs(&path, &opts, None, &tx).await });
    let mut out = Vec::new();
    while let Some(chunk) = timeout(DEADLINE, rx.recv()).await.expect("output in time") {
        out.extend_from_slice(&chunk);
    }
    task.await.expect("join").expect("read ok");
    String::from_utf8(out).expect("utf-8")
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("0.log")
}

/// Parses the `<time> ` prefix of a `timestamps` line, checking the fixed format.
fn stamp(line: &str) -> (DateTime<Utc>, &str) {
    let (ts, rest) = line.split_once(' ').expect("timestamp prefix");
    assert_eq!(ts.len(), "2006-01-02T15:04:05.000000000Z".len(), "nine fractional digits: {ts}");
    assert!(ts.ends_with('Z'), "{ts}");
    (DateTime::parse_from_rfc3339(ts).expect("rfc3339").to_utc(), rest)
}

#[tokio::test]
async fn write_then_read_with_each_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let mut cap = start(&path);
    cap.write(Stream::Stdout, b"one\ntwo\n").await;
    cap.write(Stream::Stderr, b"oops\r\n").await;
    let before_three = Utc::now();
    cap.write(Stream::Stdout, b"three\n\nlast without newline").await;
    cap.finish().await;

    // The file: one record per line, in arrival order; the unterminated tail is partial.
    let file = std::fs::read_to_string(&path).expect("read file");
    let tags: Vec<(&str, &str, &str)> = file
        .lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let _time = p.next();
            (p.next().expect("stream"), p.next().expect("tag"), p.next().expect("content"))
        })
        .collect();
    assert_eq!(
        tags,
        [
            ("stdout", "F", "one"),
            ("stdout", "F", "two"),
            ("stderr", "F", "oops"),
            ("stdout", "F", "three"),
            ("stdout", "F", ""),
            ("stdout", "P", "last without newline"),
        ]
    );

    let all = "one\ntwo\noops\nthree\n\nlast without newline";
    assert_eq!(read(&path, LogOptions::default()).await, all);
    // A follow with no writer (container not running) ends at the end of the file.
    assert_eq!(read(&path, LogOptions { follow: true, ..LogOptions::default() }).await, all);

    // tailLines counts records from the end.
    let tail = |n| LogOptions { tail_lines: Some(n), ..LogOptions::default() };
    assert_eq!(read(&path, tail(2)).await, "\nlast without newline");
    assert_eq!(read(&path, tail(4)).await, "oops\nthree\n\nlast without newline");
    assert_eq!(read(&path, tail(0)).await, "");
    assert_eq!(read(&path, tail(100)).await, all);

    // since: records before the time are skipped.
    let since = LogOptions { since: Some(before_three), ..LogOptions::default() };
    assert_eq!(read(&path, since).await, "three\n\nlast without newline");

    // limitBytes cuts mid-line and stops.
    let limit = LogOptions { limit_bytes: Some(6), ..LogOptions::default() };
    assert_eq!(read(&path, limit).await, "one\ntw");

    // Stream selection.
    let stderr = LogOptions { stream: Some(Stream::Stderr), ..LogOptions::default() };
    assert_eq!(read(&path, stderr).await, "oops\n");
    let stdout = LogOptions { stream: Some(Stream::Stdout), ..LogOptions::default() };
    assert_eq!(read(&path, stdout).await, "one\ntwo\nthree\n\nlast without newline");

    // timestamps: `<RFC3339Nano, nine digits, Z> <line>`, the record's own time.
    let ts = read(&path, LogOptions { timestamps: true, tail_lines: Some(3), ..LogOptions::default() }).await;
    let lines: Vec<&str> = ts.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 3, "{ts}");
    let (t, rest) = stamp(lines[0]);
    assert_eq!(rest, "three\n");
    assert!(t >= before_three && t <= Utc::now(), "{t} not the write time");
    assert_eq!(stamp(lines[1]).1, "\n");
    assert_eq!(stamp(lines[2]).1, "last without newline");
    // The prefix counts against limitBytes, as in the kubelet.
    let ts_limit = LogOptions { timestamps: true, limit_bytes: Some(31), ..LogOptions::default() };
    let out = read(&path, ts_limit).await;
    assert_eq!((out.len(), out.ends_with('Z')), (31, false), "{out}");
}

#[tokio::test]
async fn long_lines_are_split_and_joined_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let mut cap = start(&path);
    let long: String = (0..(2 * MAX_LINE + 100)).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    cap.write(Stream::Stdout, format!("{long}\nshort\n").as_bytes()).await;
    cap.finish().await;

    let file = std::fs::read_to_string(&path).expect("file");
    let tags: Vec<(&str, usize)> = file
        .lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ').skip(2);
            (p.next().expect("tag"), p.next().expect("content").len())
        })
        .collect();
    assert_eq!(tags, [("P", MAX_LINE), ("P", MAX_LINE), ("F", 100), ("F", 5)]);

    assert_eq!(read(&path, LogOptions::default()).await, format!("{long}\nshort\n"));
    // One timestamp per logical line, not per record.
    let ts = read(&path, LogOptions { timestamps: true, ..LogOptions::default() }).await;
    let lines: Vec<&str> = ts.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(stamp(lines[0]).1, format!("{long}\n"));
    assert_eq!(stamp(lines[1]).1, "short\n");
}

#[tokio::test]
async fn follow_streams_new_lines_and_ends_with_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let mut cap = start(&path);
    cap.write(Stream::Stdout, b"before\n").await;

    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let opts = LogOptions { follow: true, tail_lines: Some(1), ..LogOptions::default() };
    let follower = cap.follower.clone();
    let reader = {
        let path = path.clone();
        tokio::spawn(async move { read_logs(&path, &opts, Some(follower), &tx).await })
    };
    let first = timeout(DEADLINE, rx.recv()).await.expect("first chunk in time").expect("chunk");
    assert_eq!(&first[..], b"before\n");

    // A line written after the reader started reaches it.
    cap.write(Stream::Stderr, b"after\n").await;
    let next = timeout(DEADLINE, rx.recv()).await.expect("new line in time").expect("chunk");
    assert_eq!(&next[..], b"after\n");

    // The reader waits (no end yet) until both streams close.
    assert!(!reader.is_finished());
    // An unterminated line is only logged at EOF, as a partial record.
    cap.out.as_mut().expect("stdout").write_all(b"end").await.expect("write");
    cap.finish().await;
    let mut rest = Vec::new();
    while let Some(chunk) = timeout(DEADLINE, rx.recv()).await.expect("end in time") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"end");
    timeout(DEADLINE, reader).await.expect("reader ends").expect("join").expect("read ok");
}

#[tokio::test]
async fn follow_ends_when_the_client_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let cap = start(&path);
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let opts = LogOptions { follow: true, ..LogOptions::default() };
    let follower = cap.follower.clone();
    let reader = tokio::spawn(async move { read_logs(&path, &opts, Some(follower), &tx).await });
    drop(rx);
    timeout(DEADLINE, reader).await.expect("reader ends").expect("join").expect("read ok");
    cap.finish().await;
}

#[test]
fn since_is_the_later_of_time_and_seconds() {
    let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").expect("time").to_utc();
    let t = DateTime::parse_from_rfc3339("2024-05-01T11:59:00Z").expect("time").to_utc();
    assert_eq!(resolve_since(Some(10), Some(t), now), Some(now - chrono::Duration::seconds(10)));
    assert_eq!(resolve_since(Some(600), Some(t), now), Some(t));
    assert_eq!(resolve_since(None, None, now), None);
}
