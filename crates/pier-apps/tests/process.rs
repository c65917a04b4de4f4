//! The apps as real processes: output, signals, exit codes.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pier-apps");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Connects once the app listens, or fails after a deadline.
fn connect_when_ready(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("app never listened on {port}: {e}"),
        }
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for exit with a deadline; kills the child and fails if it does not stop.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("app did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    format!("{}{}", status.trim_end(), String::from_utf8(body).unwrap())
}

#[test]
fn kubia_v2_serves_logs_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = spawn(&["kubia", "--version", "v2", "--port", &port.to_string()]);
    let mut stream = connect_when_ready(port);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = hostname_of_this_machine();
    assert_eq!(get(&mut stream), format!("HTTP/1.1 200 OKThis is v2 running in pod {host}\n"));
    terminate(&child);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Kubia server starting...");
    // Dual-stack sockets report IPv4 clients as mapped addresses, as Node does.
    assert!(
        lines[1] == "Received request from ::ffff:127.0.0.1" || lines[1] == "Received request from 127.0.0.1",
        "{out}"
    );
}

#[test]
fn pause_exits_zero_on_sigterm() {
    let mut child = spawn(&["pause"]);
    wait_for_sigterm_handler(&child);
    terminate(&child);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err.trim(), "Shutting down, got signal: Terminated");
}

/// Waits until the child catches SIGTERM (bit 15 of `SigCgt` in /proc/PID/status).
fn wait_for_sigterm_handler(child: &Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let path = format!("/proc/{}/status", child.id());
    loop {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (15 - 1)) != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "pause never installed its SIGTERM handler");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn taken_port_fails_with_a_clear_message() {
    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let output = Command::new(BIN).args(["kubia", "--port", &port.to_string()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.starts_with(&format!("kubia: cannot listen on port {port}: Address")), "{err}");
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn unknown_app_is_a_usage_error() {
    let output = Command::new(BIN).args(["nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown app \"nope\""));
}

fn hostname_of_this_machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn udp_echo_answers_its_client_from_a_fixed_source_port() {
    let port = free_udp_port();
    let mut server = spawn(&["udp-echo", "--port", &port.to_string()]);
    let host = hostname_of_this_machine();
    let source = free_udp_port();
    let target = format!("127.0.0.1:{port}");
    // Until the server is bound its port refuses; retry with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = loop {
        let output = Command::new(BIN)
            .args(["udp-echo", "--client", &target, "--source-port", &source.to_string()])
            .args(["--count", "3", "--timeout-ms", "2000", "--message", "ping"])
            .output()
            .unwrap();
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{host} ping-1\n{host} ping-2\n{host} ping-3\n")
    );
    terminate(&server);
    assert_eq!(wait_exit(&mut server).code(), Some(0));
    let mut out = String::new();
    server.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.starts_with(&format!("UDP echo server listening on 0.0.0.0:{port}\n")), "{out}");
    // Every datagram came from the one source port.
    let from = format!("Received datagram from 127.0.0.1:{source}");
    assert_eq!(out.lines().filter(|l| *l == from).count(), 3, "{out}");

    // Nobody listening: refused, and a failure.
    let output =
        Command::new(BIN).args(["udp-echo", "--client", &target, "--timeout-ms", "2000"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "refused\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("no answer from {target}")),
        "{output:?}"
    );
}
