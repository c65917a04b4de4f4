//! Privileged tests: running processes inside an existing container (`kubectl exec`),
//! with pipes and with a terminal.
//!
//! They need root and fail (never skip) without it. The test makes one pod sandbox (a
//! network namespace named `pier-tj<pid>` with a veth `eth0`, an overlay root under
//! `/var/tmp`) and one container in it; a [`Cleanup`] guard kills the test's processes,
//! tears the overlay down and deletes the namespace on drop, also when an assertion
//! fails.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;

use pier_sandbox::netlink::create_netns;
use pier_sandbox::rootfs::{self, GeneratedFiles, RootfsPlan};
use pier_sandbox::{
    hostname_file, hosts_file, spawn, spawn_in, spawn_in_tty, ContainerCommand, ExecError, NetnsName,
    SandboxSpec, Stdio, WinSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{output, Cleanup, DEADLINE};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn exec(cleanup: &mut Cleanup, pid: u32, cmd: ContainerCommand) -> (String, String, i32) {
    let child =
        spawn_in(pid, cmd).unwrap_or_else(|e| panic!("spawn_in: {e}: {:?}", std::error::Error::source(&e)));
    cleanup.children.push(Box::new(child));
    output(cleanup.children.last_mut().expect("just pushed").as_mut())
}

fn sh(script: &str) -> ContainerCommand {
    ContainerCommand::new(["/bin/sh", "-c", script])
}

/// Reads from the terminal until `want` appears, within the deadline.
async fn read_until(pty: &mut pier_sandbox::Pty, seen: &mut String, want: &str) {
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let n = tokio::time::timeout(DEADLINE, pty.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want:?} on the terminal within {DEADLINE:?}; got {seen:?}"))
            .expect("read terminal");
        assert!(n > 0, "terminal closed before {want:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn exec_joins_a_running_container() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "pier-sandbox root tests must run as root; they fail rather than skip"
    );
    let prefix = format!("pier-tj{}", std::process::id());
    let mut cleanup = Cleanup::default();
    let base = PathBuf::from(format!("/var/tmp/{prefix}-sandbox"));
    std::fs::create_dir(&base).expect("create test dir");
    cleanup.dirs.push(base.clone());

    // The pod: a network namespace whose eth0 has the pod IP, and an overlay root.
    let netns = NetnsName::new(prefix.clone()).expect("netns name");
    create_netns(&netns).expect("create netns");
    cleanup.netns.push(netns.clone());
    ip(&["-n", netns.as_str(), "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
    ip(&["-n", netns.as_str(), "addr", "add", "10.250.0.5/24", "dev", "eth0"]);
    ip(&["-n", netns.as_str(), "link", "set", "eth0", "up"]);
    let mut plan = RootfsPlan::new(
        base.join("pod"),
        GeneratedFiles {
            hosts: hosts_file(&["10.250.0.5".parse().expect("ip")], "exec-pod", None, &[]),
            hostname: hostname_file("exec-pod"),
            resolv_conf: "nameserver 192.0.2.53\n".to_string(),
        },
    );
    plan.masked.push(base.clone());
    cleanup.rootfs.push(plan.clone());
    rootfs::prepare(&plan).unwrap_or_else(|e| panic!("rootfs: {e}: {:?}", e.source));
    let spec = SandboxSpec { netns, hostname: "exec-pod".to_string(), rootfs: plan };

    // The container writes a file in its overlay, says so, and stays up.
    let mut main = ContainerCommand::new([
        "/bin/sh",
        "-c",
        "echo secret > /tmp/container-file && echo ready && exec sleep 60",
    ]);
    main.stderr = Stdio::null();
    let child = spawn(&spec, main)
        .unwrap_or_else(|e| panic!("spawn container: {e}: {:?}", std::error::Error::source(&e)));
    let pid = child.id();
    cleanup.children.push(Box::new(child));
    let stdout = cleanup.children[0].take_stdout().expect("container stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    assert_eq!(rx.recv_timeout(DEADLINE).expect("container ready in time"), "ready\n");
    assert!(spec.rootfs.upper().join("tmp/container-file").exists(), "the container wrote in its overlay");

    // The exec'd process sees the container's hostname, files, network and cwd.
    let mut cmd = sh("hostname; cat /tmp/container-file; ip -4 -o addr show dev eth0 | awk '{print $4}'; pwd; echo \"$FOO\"");
    cmd.working_dir = PathBuf::from("/tmp");
    cmd.env.push(("FOO".to_string(), "bar".to_string()));
    let (out, err, code) = exec(&mut cleanup, pid, cmd);
    assert_eq!((out.as_str(), code), ("exec-pod\nsecret\n10.250.0.5/24\n/tmp\nbar\n", 0), "stderr: {err}");
    // Its writes land in the container's overlay, not on the host.
    let (_, err, code) = exec(&mut cleanup, pid, sh("echo from-exec > /tmp/exec-file"));
    assert_eq!(code, 0, "{err}");
    assert!(spec.rootfs.upper().join("tmp/exec-file").exists(), "exec's write is in the pod's upper layer");

    // Exit codes propagate.
    let (_, _, code) = exec(&mut cleanup, pid, sh("exit 7"));
    assert_eq!(code, 7);

    // stdin and stdout pipes.
    let mut cmd = ContainerCommand::new(["tr", "a-z", "A-Z"]);
    cmd.stdin = Stdio::piped();
    let mut child = spawn_in(pid, cmd).expect("spawn tr");
    child.stdin.take().expect("stdin").write_all(b"hello from stdin\n").expect("write stdin");
    cleanup.children.push(Box::new(child));
    let (out, _, code) = output(cleanup.children.last_mut().expect("pushed").as_mut());
    assert_eq!((out.as_str(), code), ("HELLO FROM STDIN\n", 0));

    // A missing program is a clear error, worded as runc's.
    let err = spawn_in(pid, ContainerCommand::new(["nosuch"])).expect_err("missing program");
    assert!(matches!(err, ExecError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), r#"exec: "nosuch": executable file not found in $PATH"#);
    assert_eq!(err.exit_code(), Some(127));
    let err = spawn_in(pid, ContainerCommand::new(["/no/such"])).expect_err("missing path");
    assert_eq!(err.to_string(), r#"exec: "/no/such": stat /no/such: no such file or directory"#);
    let mut bad_dir = ContainerCommand::new(["true"]);
    bad_dir.working_dir = PathBuf::from("/no/such/dir");
    let err = spawn_in(pid, bad_dir).expect_err("missing working dir");
    assert!(err.to_string().contains("chdir /no/such/dir"), "{err}");

    // With a terminal: tty reports one from the container's devpts, output comes
    // through the master, and a resize is visible to `stty size`.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let cmd = sh("tty; stty size; echo ready-for-resize; read _; stty size; exit 3");
        let (mut child, mut pty) =
            spawn_in_tty(pid, cmd, Some(WinSize { cols: 80, rows: 24 })).expect("spawn_in_tty");
        let mut seen = String::new();
        read_until(&mut pty, &mut seen, "ready-for-resize").await;
        assert!(seen.starts_with("/dev/pts/"), "tty: {seen:?}");
        assert!(seen.contains("24 80\r\n"), "stty size: {seen:?}");
        pty.resizer().resize(WinSize { cols: 132, rows: 50 }).expect("resize");
        pty.write_all(b"go\n").await.expect("write terminal");
        read_until(&mut pty, &mut seen, "50 132\r\n").await;
        let status =
            tokio::time::timeout(DEADLINE, child.wait()).await.expect("exits in time").expect("wait");
        assert_eq!(status.code(), Some(3));
        // After the process exits the master reads EOF, not an error.
        let mut rest = Vec::new();
        tokio::time::timeout(DEADLINE, pty.read_to_end(&mut rest)).await.expect("eof in time").expect("read");
    });
}
