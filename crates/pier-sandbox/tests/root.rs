//! Privileged tests: real namespaces, veths, bridges, overlays and processes.
//!
//! They need root and fail (never skip) without it. Everything is made inside
//! namespaces the test creates, named `pier-t<pid>-...`; the host namespace gets no
//! link, route or firewall change. A [`Cleanup`] guard kills the test's processes,
//! unmounts and deletes its namespaces on drop, so a failing assertion cleans up too.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use pier_sandbox::netlink::netns_path;
use pier_sandbox::rootfs::{self, GeneratedFiles, RootfsPlan};
use pier_sandbox::{
    apply_plan, apply_teardown, hostname_file, hosts_file, pod_resolv_conf, spawn, ClusterDns,
    ContainerCommand, DnsPolicy, NetApplier, NetOp, NetlinkApplier, Netns, NetnsName, NodeNetwork,
    PodIpAllocator, ResolvConf, SandboxSpec, SpawnError, Underlay,
};

mod common;
use common::{output, Cleanup, DEADLINE};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "pier-sandbox root tests must run as root (they create namespaces, links and mounts); \
         they fail rather than skip"
    );
}

fn ns(name: String) -> NetnsName {
    NetnsName::new(name).expect("valid netns name")
}

fn run_in(cleanup: &mut Cleanup, spec: &SandboxSpec, script: &str) -> (String, String, i32) {
    let child = spawn(spec, ContainerCommand::new(["/bin/sh", "-c", script]))
        .unwrap_or_else(|e| panic!("spawn in {}: {e}: {:?}", spec.hostname, std::error::Error::source(&e)));
    cleanup.children.push(Box::new(child));
    let child = cleanup.children.last_mut().expect("just pushed");
    output(child.as_mut())
}

fn libc_sigpipe() -> u32 {
    nix::sys::signal::Signal::SIGPIPE as u32
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?} (is iproute2 installed?): {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn host_state() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    format!("{}\n{}\n{}", ip(&["netns", "list"]), ip(&["-o", "link"]), mounts)
}

/// A TCP listener on `port` inside namespace `name`, answering one connection.
fn listen_in(name: &NetnsName, port: u16, reply: &'static str) -> std::thread::JoinHandle<String> {
    let fd = std::fs::File::open(netns_path(name)).expect("open pod netns");
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        // Only this thread enters the pod's namespace.
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns into pod B");
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).expect("bind in B");
        ready_tx.send(()).expect("signal ready");
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::try_from(DEADLINE).expect("timeout")).expect("poll listener");
        assert!(n > 0, "no connection to pod B within {DEADLINE:?}");
        let (mut conn, peer) = listener.accept().expect("accept");
        conn.write_all(reply.as_bytes()).expect("reply");
        peer.ip().to_string()
    });
    ready_rx.recv_timeout(DEADLINE).expect("listener in B ready");
    handle
}

struct Pod {
    netns: NetnsName,
    ip: Ipv4Addr,
    spec: SandboxSpec,
    net: pier_sandbox::PodNetwork,
}

#[test]
fn two_pods_on_a_node_talk_and_stay_isolated() {
    require_root();
    let pid = std::process::id();
    let prefix = format!("pier-t{pid}");
    let mut cleanup = Cleanup::default();
    let netlink = NetlinkApplier::new();
    assert!(
        !Path::new("/var/ready").exists(),
        "/var/ready exists on the host; the isolation check needs it absent"
    );

    let base = PathBuf::from(format!("/var/tmp/{prefix}-sandbox"));
    std::fs::create_dir(&base).expect("create test dir");
    cleanup.dirs.push(base.clone());

    // The underlay bridge lives in a namespace standing in for the host.
    let host_ns = ns(format!("{prefix}-ul"));
    let node_ns = ns(format!("{prefix}-node"));
    cleanup.netns.push(host_ns.clone());
    cleanup.netns.push(node_ns.clone());
    let underlay = Underlay {
        ns: Netns::Named(host_ns.clone()),
        bridge: "pier-ul".parse().expect("ifname"),
        addr: "172.30.0.1/24".parse().expect("cidr"),
    };
    let node = NodeNetwork::new(
        underlay.clone(),
        node_ns.clone(),
        "172.30.0.10/24".parse().expect("cidr"),
        "10.244.0.1/24".parse().expect("cidr"),
    )
    .expect("node plan");
    let mut setup = vec![NetOp::AddNetns { name: host_ns.clone() }];
    setup.extend(underlay.render_setup());
    setup.extend(node.render_setup());
    apply_plan(&netlink, &setup).unwrap_or_else(|e| panic!("node setup: {e}: {:?}", e.source));

    let mut ipam = PodIpAllocator::open(&base.join("ipam"), node.pod_cidr()).expect("ipam");
    let cluster = ClusterDns::default();
    let host_resolv = ResolvConf::parse("nameserver 192.0.2.53\n");
    let mut pods = Vec::new();
    for name in ["pod-a", "pod-b"] {
        let uid = format!("{prefix}-{name}-uid");
        let ip = ipam.allocate(&uid).expect("allocate");
        let netns = ns(format!("{prefix}-{name}"));
        cleanup.netns.push(netns.clone());
        let net = node.pod(netns.clone(), &uid, ip).expect("pod plan");
        apply_plan(&netlink, &net.render_setup())
            .unwrap_or_else(|e| panic!("pod {name} setup: {e}: {:?}", e.source));
        let resolv = pod_resolv_conf(DnsPolicy::ClusterFirst, "default", &cluster, &host_resolv, None);
        let mut plan = RootfsPlan::new(
            base.join("pods").join(name),
            GeneratedFiles {
                hosts: hosts_file(&[ip.into()], name, None, &[]),
                hostname: hostname_file(name),
                resolv_conf: resolv.render(),
            },
        );
        // Pods must not see each other's upper layers through the host root.
        plan.masked.push(base.clone());
        cleanup.rootfs.push(plan.clone());
        rootfs::prepare(&plan).unwrap_or_else(|e| panic!("rootfs {name}: {e}: {:?}", e.source));
        pods.push(Pod {
            netns: netns.clone(),
            ip,
            spec: SandboxSpec { netns, hostname: name.to_string(), rootfs: plan },
            net,
        });
    }
    let (a, b) = (&pods[0], &pods[1]);
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 0, 2));
    assert_eq!(b.ip, Ipv4Addr::new(10, 244, 0, 3));

    // Each pod: eth0 with its IP, up, and a default route via cbr0.
    for p in &pods {
        let addrs = ip(&["-n", p.netns.as_str(), "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addrs.contains(&format!("inet {}/24", p.ip)), "{}: {addrs}", p.netns);
        let link = ip(&["-n", p.netns.as_str(), "-o", "link", "show", "dev", "eth0"]);
        assert!(link.contains(",UP"), "{}: eth0 not up: {link}", p.netns);
        let route = ip(&["-n", p.netns.as_str(), "route", "show", "default"]);
        // rtnetlink marks the route `proto static` (ip(8) would say `proto boot`).
        assert_eq!(route.trim(), "default via 10.244.0.1 dev eth0 proto static", "{}", p.netns);
    }
    // The node side: host ends on cbr0 with hairpin; the node on the underlay.
    let port = ip(&["-n", node_ns.as_str(), "-d", "link", "show", "dev", a.net.host_veth.as_str()]);
    assert!(port.contains("master cbr0") && port.contains("hairpin on"), "{port}");
    let eth0 = ip(&["-n", node_ns.as_str(), "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(eth0.contains("inet 172.30.0.10/24"), "{eth0}");
    let fwd = std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(netns_path(&node_ns)).expect("node netns");
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns node");
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read sysctl")
        })
        .join()
        .expect("thread")
    });
    assert_eq!(fwd.trim(), "1", "ip_forward inside the node namespace");

    // Pod A's process reaches pod B's IP over TCP (bash's /dev/tcp: no extra tools).
    let listener = listen_in(&b.netns, 8080, "hello from b\n");
    let (out, err, code) =
        run_in(&mut cleanup, &a.spec, &format!("exec bash -c 'exec 3<>/dev/tcp/{}/8080; cat <&3'", b.ip));
    assert_eq!((out.as_str(), code), ("hello from b\n", 0), "stderr: {err}");
    let peer = listener.join().expect("listener thread");
    assert_eq!(peer, a.ip.to_string(), "B saw A's pod IP (no NAT on the bridge)");

    // Inside A: its hostname, env, resolv.conf, hosts, its own eth0 in /sys, /proc and /dev.
    let (out, err, code) = run_in(
        &mut cleanup,
        &a.spec,
        "hostname; echo \"HOSTNAME=$HOSTNAME\"; cat /etc/resolv.conf; tail -n 1 /etc/hosts; \
         ls /sys/class/net | tr '\\n' ' '; echo; test -r /proc/self/status && echo proc-ok; \
         echo x > /dev/null && test -c /dev/urandom && echo dev-ok; pwd",
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out,
        "pod-a\nHOSTNAME=pod-a\n\
         search default.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 10.96.0.10\n\
         options ndots:5\n\
         10.244.0.2\tpod-a\n\
         eth0 lo \nproc-ok\ndev-ok\n/\n"
    );

    // Exit codes, the signal state and the environment the process starts with: no
    // blocked signals and SIGPIPE back to its default (the test harness ignores it, as
    // every Rust program does), the pod's variables overriding the defaults.
    let (_, _, code) = run_in(&mut cleanup, &a.spec, "exit 3");
    assert_eq!(code, 3);
    let mut cmd =
        ContainerCommand::new(["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status; echo \"$PATH $FOO\""]);
    cmd.env = vec![
        ("FOO".into(), "one".into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("FOO".into(), "two".into()),
    ];
    let child = spawn(&a.spec, cmd).expect("spawn with env");
    cleanup.children.push(Box::new(child));
    let (out, err, code) = output(cleanup.children.last_mut().expect("just pushed").as_mut());
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("SigBlk:\t0000000000000000"), "{out}");
    let ignored = lines.get(1).and_then(|l| l.strip_prefix("SigIgn:\t")).expect("SigIgn line");
    let ignored = u64::from_str_radix(ignored, 16).expect("hex mask");
    assert_eq!(ignored & (1 << (libc_sigpipe() - 1)), 0, "SIGPIPE is not ignored: {out}");
    assert_eq!(lines.get(2).copied(), Some("/usr/bin:/bin two"), "{out}");

    // A long-running container is killed through its pidfd and reaped once.
    let mut child = spawn(&a.spec, ContainerCommand::new(["sleep", "60"])).expect("spawn sleep");
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    child.kill().expect("killing a reaped child is a no-op");

    // A file written by A is private to A: B and the host do not see it.
    let (_, err, code) = run_in(&mut cleanup, &a.spec, "touch /var/ready && test -e /var/ready");
    assert_eq!(code, 0, "touch in A: {err}");
    let (_, _, code) = run_in(&mut cleanup, &a.spec, "test -e /var/ready");
    assert_eq!(code, 0, "A's later process sees A's file");
    let (out, _, code) = run_in(
        &mut cleanup,
        &b.spec,
        &format!("test -e /var/ready; echo $?; ls {} 2>&1 | wc -l", base.display()),
    );
    assert_eq!(code, 0);
    assert_eq!(out, "1\n0\n", "B must not see A's file nor the pods' directory");
    assert!(!Path::new("/var/ready").exists(), "the host must not see A's file");
    assert!(a.spec.rootfs.upper().join("var/ready").exists(), "A's write is in A's upper layer");
    let host_hostname = nix::unistd::gethostname().expect("hostname");
    assert_ne!(host_hostname.to_string_lossy(), "pod-a", "the host's hostname is unchanged");

    // A failing step names itself.
    let err = spawn(&a.spec, ContainerCommand::new(["/no/such/program"])).expect_err("missing program");
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    let not_found = |e: &SpawnError| matches!(e, SpawnError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    assert!(not_found(&err), "{err:?}");
    // A bare name is searched in the container's PATH, inside its root.
    let err = spawn(&a.spec, ContainerCommand::new(["no-such-program"])).expect_err("missing program");
    assert!(not_found(&err), "{err:?}");
    // A working directory that does not exist in the root fails at its own step.
    let mut cmd = ContainerCommand::new(["true"]);
    cmd.working_dir = "/no/such/dir".into();
    let err = spawn(&a.spec, cmd).expect_err("missing working directory");
    assert!(matches!(&err, SpawnError::Step { step, .. } if step == "chdir /no/such/dir"), "{err:?}");

    // Teardown through the real plans, then nothing of ours is left.
    for child in &mut cleanup.children {
        let _ = child.kill();
        let _ = child.wait_code();
    }
    cleanup.children.clear();
    for p in &pods {
        rootfs::teardown(&p.spec.rootfs).expect("rootfs teardown");
        apply_teardown(&netlink, &p.net.render_teardown()).expect("pod teardown");
        ipam.release(&format!("{prefix}-{}-uid", p.spec.hostname)).expect("release");
    }
    let mut teardown = node.render_teardown();
    teardown.extend(underlay.render_teardown());
    teardown.push(NetOp::DelNetns { name: host_ns.clone() });
    apply_teardown(&netlink, &teardown).expect("node teardown");
    // Teardowns are idempotent.
    apply_teardown(&netlink, &teardown).expect("node teardown again");
    assert_eq!(ipam.allocations().count(), 0);

    let state = host_state();
    for name in [&prefix, node.underlay_veth.as_str(), a.net.host_veth.as_str()] {
        assert!(!state.contains(name), "{name} left behind:\n{state}");
    }
    assert!(!state.contains(&base.display().to_string()), "mount left behind");
}

#[test]
fn failed_pod_plan_leaves_nothing_behind() {
    require_root();
    let prefix = format!("pier-t{}-rb", std::process::id());
    let mut cleanup = Cleanup::default();
    let netlink = NetlinkApplier::new();
    let node_ns = ns(format!("{prefix}-node"));
    cleanup.netns.push(node_ns.clone());
    netlink.apply(&NetOp::AddNetns { name: node_ns.clone() }).expect("node netns");
    // A node plan whose cbr0 was never made: the pod's SetMaster step fails.
    let node = NodeNetwork::new(
        Underlay {
            ns: Netns::Named(node_ns.clone()),
            bridge: "unused".parse().expect("ifname"),
            addr: "172.30.0.1/24".parse().expect("cidr"),
        },
        node_ns.clone(),
        "172.30.0.10/24".parse().expect("cidr"),
        "10.244.0.1/24".parse().expect("cidr"),
    )
    .expect("node plan");
    let pod_ns = ns(format!("{prefix}-pod"));
    cleanup.netns.push(pod_ns.clone());
    let pod = node.pod(pod_ns.clone(), "uid", "10.244.0.2".parse().expect("ip")).expect("plan");
    let err = apply_plan(&netlink, &pod.render_setup()).expect_err("no cbr0");
    assert!(err.to_string().contains("master cbr0"), "{err}");
    assert_eq!(err.rolled_back, 2, "{err}");
    assert!(err.rollback_failures.is_empty(), "{:?}", err.rollback_failures);
    assert!(!netns_path(&pod_ns).exists(), "pod namespace rolled back");
    let links = ip(&["-n", node_ns.as_str(), "-o", "link"]);
    assert!(!links.contains(pod.host_veth.as_str()), "veth rolled back: {links}");
    // Creating an existing namespace fails instead of adopting it.
    let again = netlink.apply(&NetOp::AddNetns { name: node_ns.clone() });
    assert!(matches!(again, Err(pier_sandbox::OpError::NetnsExists(_))), "{again:?}");
    drop(cleanup);
    assert!(!ip(&["netns", "list"]).contains(&prefix));
}
