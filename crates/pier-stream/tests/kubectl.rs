//! The real kubectl (1.33 and, if present, 1.27) against pier-stream: WebSocket v5 and SPDY exec,
//! SPDY and WebSocket-tunnelled port-forward. Skipped when kubectl is not installed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const KUBECTL_127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

fn kubectls() -> Vec<&'static str> {
    let mut v = Vec::new();
    if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_ok() {
        v.push("kubectl");
    }
    if std::path::Path::new(KUBECTL_127).exists() {
        v.push(KUBECTL_127);
    }
    v
}

fn kubeconfig(dir: &tempfile::TempDir, addr: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\n\
         current-context: c\nusers:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn run_exec(
    kubectl: &str,
    cfg: &std::path::Path,
    websockets: bool,
    code: &str,
) -> std::process::Output {
    let mut child = Command::new(kubectl)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", if websockets { "true" } else { "false" })
        .args(["--kubeconfig", cfg.to_str().unwrap(), "exec", "-i", "x", "--", "echo-exit", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello from stdin\n").await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl exec hung")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_all_protocols() {
    let addr = common::start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = kubeconfig(&dir, addr);
    for kubectl in kubectls() {
        for websockets in [true, false] {
            for code in ["0", "3"] {
                let out = run_exec(kubectl, &cfg, websockets, code).await;
                let what = format!("{kubectl} websockets={websockets} code={code}");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(stdout, "hello from stdin\ndone\n", "{what}: stderr={stderr}");
                assert!(stderr.contains("to-stderr\n"), "{what}: stderr={stderr}");
                assert_eq!(out.status.code(), Some(code.parse().unwrap()), "{what}: stderr={stderr}");
            }
        }
    }
}

/// Starts `kubectl port-forward x :<port>` and returns the child and the local port it bound.
async fn start_port_forward(
    kubectl: &str,
    cfg: &std::path::Path,
    websockets: bool,
    port: u16,
) -> (tokio::process::Child, u16, BufReader<tokio::process::ChildStderr>) {
    let mut child = Command::new(kubectl)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if websockets { "true" } else { "false" })
        .args(["--kubeconfig", cfg.to_str().unwrap(), "port-forward", "x", &format!(":{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let local = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("kubectl port-forward exited");
            // "Forwarding from 127.0.0.1:40123 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split(' ').next().unwrap().parse::<u16>().unwrap();
            }
        }
    })
    .await
    .expect("no Forwarding line");
    // kubectl keeps printing "Handling connection for ..."; a closed pipe would kill it (SIGPIPE).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, local, stderr)
}

async fn echo_round_trip(local: u16, payload: Vec<u8>) -> Result<(), String> {
    let mut c = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
    let (mut r, mut w) = c.split();
    let send = async {
        w.write_all(&payload).await?;
        w.shutdown().await
    };
    let mut got = Vec::new();
    let recv = r.read_to_end(&mut got);
    let (sent, n) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(send, recv) })
        .await
        .map_err(|_| "echo through port-forward hung".to_string())?;
    sent.map_err(|e| format!("send: {e}"))?;
    n.map_err(|e| format!("recv: {e}"))?;
    if got != payload {
        return Err(format!("echoed {} bytes, want {} equal bytes", got.len(), payload.len()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_all_protocols() {
    let addr = common::start_server().await;
    let echo = common::start_echo().await;
    let refused = common::closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = kubeconfig(&dir, addr);
    for kubectl in kubectls() {
        for websockets in [true, false] {
            let (mut child, local, mut stderr) = start_port_forward(kubectl, &cfg, websockets, echo).await;
            // Two concurrent connections, one larger than the 64 KiB SPDY window.
            let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let (a, b) = tokio::join!(echo_round_trip(local, big), echo_round_trip(local, b"small".to_vec()));
            child.kill().await.unwrap();
            if a.is_err() || b.is_err() {
                let mut log = String::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut log)).await;
                panic!("{kubectl} websockets={websockets}: {a:?} {b:?}\nkubectl stderr:\n{log}");
            }

            let (mut child, local, mut stderr) = start_port_forward(kubectl, &cfg, websockets, refused).await;
            let mut c = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut sink)).await;
            let want =
                format!("error forwarding port {refused} to pod x, uid : dial tcp 127.0.0.1:{refused}");
            let found = tokio::time::timeout(Duration::from_secs(20), async {
                let mut line = String::new();
                loop {
                    line.clear();
                    if stderr.read_line(&mut line).await.unwrap() == 0 {
                        return false;
                    }
                    if line.contains(&want) {
                        return true;
                    }
                }
            })
            .await;
            assert_eq!(found, Ok(true), "{kubectl} websockets={websockets}: no error line");
            child.kill().await.unwrap();
        }
    }
}
