//! Test harness for Pier's end-to-end tests: start a cluster from the built `pier`
//! binary in a temporary data directory, drive it with the real `kubectl`, wait on
//! conditions with deadlines, and clean up (by PID) even when a test fails.

pub mod in_process;

pub use tempfile;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A `pier up` process and its data directory; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Cluster {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    pub url: String,
    pub kubeconfig: PathBuf,
    bin: PathBuf,
    /// Which kubectl to run: the dispatcher on PATH or a bundled version.
    pub kubectl: PathBuf,
    /// Extra `pier up` arguments (nodes, underlay, cluster name).
    up_args: Vec<String>,
}

impl Cluster {
    /// The cluster name given with `--cluster-name` (clusters with nodes), which is
    /// also the name of its underlay bridge.
    pub fn cluster_name(&self) -> Option<&str> {
        let i = self.up_args.iter().position(|a| a == "--cluster-name")?;
        self.up_args.get(i + 1).map(String::as_str)
    }
}

/// A free underlay subnet and cluster name for a test cluster with nodes: the third
/// octet of `172.31.X.0/24` is picked so no bridge of that name exists yet, starting
/// from an offset derived from the PID (test binaries run one after another; threads
/// of one binary share the counter).
fn pick_underlay() -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 200;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let x = (base + n * 7) % 250 + 1;
        let name = format!("pier-t{x}");
        if !Path::new("/sys/class/net").join(&name).exists() {
            return (name, format!("172.31.{x}.0/24"));
        }
    }
}

/// Where the `kubectl` package keeps its bundled clients.
pub const KUBECTL_BUNDLE_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The path of a bundled kubectl of a given minor version, e.g. `kubectl_version(27)`.
pub fn kubectl_version(minor: u32) -> PathBuf {
    Path::new(KUBECTL_BUNDLE_DIR).join(format!("kubectl.1.{minor}"))
}

impl Cluster {
    /// Starts `pier up` on a free port in a new temporary data directory and waits
    /// until it prints its address.
    pub fn start(bin: &Path) -> anyhow::Result<Cluster> {
        Self::start_with(bin, vec!["--nodes".into(), "0".into()])
    }

    /// Starts a cluster with `nodes` real nodes (root: namespaces, bridge), on an
    /// underlay and cluster name no other running cluster uses.
    pub fn start_with_nodes(bin: &Path, nodes: u32) -> anyhow::Result<Cluster> {
        Self::start_with_nodes_and(bin, nodes, |_| Vec::new())
    }

    /// [`Cluster::start_with_nodes`] with more `pier up` arguments, chosen knowing the
    /// underlay (e.g. `172.30.5.0/24`; the host's bridge holds its first address).
    pub fn start_with_nodes_and(
        bin: &Path,
        nodes: u32,
        more: impl FnOnce(&str) -> Vec<String>,
    ) -> anyhow::Result<Cluster> {
        let (name, underlay) = pick_underlay();
        let mut args =
            vec!["--nodes".into(), nodes.to_string(), "--cluster-name".into(), name, "--underlay".into()];
        args.extend(more(&underlay));
        args.insert(5, underlay);
        Self::start_with(bin, args)
    }

    fn start_with(bin: &Path, up_args: Vec<String>) -> anyhow::Result<Cluster> {
        let data_dir =
            tempfile::Builder::new().prefix("pier-test-").tempdir().context("making the data dir")?;
        let mut c = Cluster {
            child: None,
            data_dir,
            url: String::new(),
            kubeconfig: PathBuf::new(),
            bin: bin.to_path_buf(),
            kubectl: PathBuf::from("kubectl"),
            up_args,
        };
        c.launch()?;
        Ok(c)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .args(["up", "--api-port", "0", "--data-dir"])
            .arg(self.data_dir.path())
            .args(&self.up_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Pier is up: API server at ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        // Keep stderr drained so the server never blocks on a full pipe; echo it for failures.
        std::thread::spawn(move || {
            let mut buf = String::new();
            let mut r = BufReader::new(stderr);
            while r.read_to_string(&mut buf).map(|n| n > 0).unwrap_or(false) {
                eprint!("{buf}");
                buf.clear();
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .context("pier up did not report its address within 30 s")?;
        self.url = url;
        self.kubeconfig = self.data_dir.path().join("kubeconfig");
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (SIGTERM, wait, then SIGKILL) and starts it again on the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL")?;
            child.wait().context("waiting for pier")?;
        }
        Ok(())
    }

    /// Starts the server again after [`Cluster::kill9`].
    pub fn relaunch(&mut self) -> anyhow::Result<()> {
        self.launch()
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown().map(|_| ())
    }

    /// Stops the server as [`Cluster::stop`] does and returns how it exited (`None`
    /// when it was not running).
    pub fn shutdown(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait().context("waiting for pier")? {
                    return Ok(Some(status));
                }
                if Instant::now() > deadline {
                    signal(child.id(), "KILL")?;
                    child.wait().context("waiting for pier")?;
                    bail!("pier did not stop within 10 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(None)
    }

    /// The API server's `host:port`.
    pub fn authority(&self) -> &str {
        self.url.trim_start_matches("https://").trim_end_matches('/')
    }

    /// Sends one raw request with `curl`, authenticated with the admin certificate from
    /// the data directory's `pki/`, for what kubectl cannot send (malformed or oversized
    /// bodies, raw watch streams). `body` goes through stdin.
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> CurlOutput {
        self.curl_with(&[], method, path, content_type, body)
    }

    /// [`Cluster::curl`] with extra curl options, e.g. `--http1.1`.
    pub fn curl_with(
        &self,
        options: &[&str],
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> CurlOutput {
        let mut cmd = self.curl_command(method, path, content_type);
        cmd.args(options);
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.args(["-w", "\n%{http_code}"]);
        cmd.stdin(if body.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = cmd.spawn().and_then(|mut child| {
            if let (Some(input), Some(mut pipe)) = (body, child.stdin.take()) {
                // The server may answer (413) before reading everything; a broken pipe is fine.
                let _ = pipe.write_all(input);
            }
            child.wait_with_output()
        });
        match output {
            Ok(o) => {
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
                CurlOutput {
                    code: code.trim().parse().unwrap_or(0),
                    body: body.to_string(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                }
            }
            Err(e) => CurlOutput { code: 0, body: String::new(), stderr: format!("running curl: {e}") },
        }
    }

    fn curl_command(&self, method: &str, path: &str, content_type: Option<&str>) -> Command {
        let pki = self.data_dir().join("pki");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"));
        if let Some(ct) = content_type {
            cmd.arg("-H").arg(format!("Content-Type: {ct}"));
        }
        cmd.arg(format!("{}{path}", self.url));
        cmd
    }

    /// Streams a raw `GET` (a watch) with `curl -N`; every line it prints is collected.
    pub fn curl_stream(&self, path: &str) -> anyhow::Result<Lines> {
        let mut cmd = self.curl_command("GET", path, None);
        cmd.arg("-N");
        Lines::spawn(cmd, "curl")
    }

    /// Starts `kubectl` (this cluster's, or `bin`) in the background, e.g. `get svc -w`;
    /// every line it prints is collected. Killed on drop.
    pub fn kubectl_lines(&self, args: &[&str]) -> anyhow::Result<Lines> {
        self.kubectl_lines_with(&self.kubectl, args)
    }

    pub fn kubectl_lines_with(&self, bin: &Path, args: &[&str]) -> anyhow::Result<Lines> {
        let mut cmd = Command::new(bin);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env_remove("KUBERNETES_SERVICE_HOST");
        Lines::spawn(cmd, "kubectl")
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        self.kubectl_with(&self.kubectl, args, None)
    }

    /// Runs kubectl with `stdin` piped in (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> KubectlOutput {
        self.kubectl_with(&self.kubectl, args, Some(stdin))
    }

    pub fn kubectl_with(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        let mut cmd = Command::new(bin);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env_remove("KUBERNETES_SERVICE_HOST");
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = cmd.spawn().and_then(|mut child| {
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        });
        KubectlOutput::new(args, output)
    }

    /// Starts `kubectl` in the background (for `get -w`), output to pipes.
    pub fn kubectl_spawn(&self, args: &[&str]) -> anyhow::Result<Child> {
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting kubectl")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping pier: {e:#}");
        }
    }
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    // Only ever the PID of a process this harness started.
    let status =
        Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// What one `curl` request got back.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// The HTTP status code (0 when curl could not connect).
    pub code: u16,
    pub body: String,
    pub stderr: String,
}

impl CurlOutput {
    /// The body parsed as JSON (a `Status` for failures).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.body) {
            Ok(v) => v,
            Err(e) => panic!("curl got no JSON ({e}), code {}:\n{}\n{}", self.code, self.body, self.stderr),
        }
    }
}

/// A background process whose output lines are collected as they come (`kubectl get
/// -w`, a raw watch through curl). Killed (by its PID) on drop.
pub struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Lines {
    fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Lines> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = err.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Ok(Lines { child, rx, seen: Vec::new(), stderr: err })
    }

    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits until a line received after the first `from` lines satisfies `pred`;
    /// returns its index in [`Lines::seen`] and the line.
    #[track_caller]
    pub fn wait_line_from(
        &mut self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        wait_for(what, timeout, || {
            self.drain();
            if let Some(i) = self.seen.iter().skip(from).position(|l| pred(l)) {
                return Ok((from + i, self.seen[from + i].clone()));
            }
            let running = self.running();
            Err(format!("lines: {:?}; stderr: {}; running: {running}", self.seen, self.stderr_text()))
        })
    }

    /// Waits until any line satisfies `pred`.
    #[track_caller]
    pub fn wait_line(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_from(0, what, timeout, pred).1
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Only the process this harness started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one kubectl run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    fn new(args: &[&str], output: std::io::Result<Output>) -> Self {
        let args = args.iter().map(|s| s.to_string()).collect();
        match output {
            Ok(o) => KubectlOutput {
                args,
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => KubectlOutput {
                args,
                code: None,
                stdout: String::new(),
                stderr: format!("running kubectl: {e}"),
            },
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The stdout of a run that must succeed; panics with everything kubectl said otherwise.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success(),
            "kubectl {:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// The stderr of a run that must fail; panics otherwise.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert!(
            !self.success(),
            "kubectl {:?} succeeded but should have failed:\n{}",
            self.args,
            self.stdout
        );
        &self.stderr
    }

    /// stdout parsed as JSON (for `-o json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(self.ok()) {
            Ok(v) => v,
            Err(e) => panic!("kubectl {:?} printed no JSON ({e}):\n{}", self.args, self.stdout),
        }
    }
}

/// Waits until `check` returns `Some`, polling every 20 ms, or fails after `timeout`
/// with the last thing `check` said.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(why) => why,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Splits kubectl's table output into rows of whitespace-separated cells.
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Whether the current user is root (end-to-end tests need it and fail loudly without).
pub fn require_root() {
    let uid =
        Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(uid.as_deref().ok(), Some("0"), "end-to-end tests must run as root");
}

/// Starts `pier up` from the calling test crate's `pier` binary (which only a test of
/// the `pier` package can name, hence a macro), after checking for root.
#[macro_export]
macro_rules! start_cluster {
    () => {{
        $crate::require_root();
        $crate::Cluster::start(::std::path::Path::new(env!("CARGO_BIN_EXE_pier"))).expect("pier up starts")
    }};
    (nodes: $n:expr) => {{
        $crate::require_root();
        $crate::Cluster::start_with_nodes(::std::path::Path::new(env!("CARGO_BIN_EXE_pier")), $n)
            .expect("pier up starts")
    }};
}
