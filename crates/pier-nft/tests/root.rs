//! Privileged tests: real nft and real conntrack, each inside network namespaces the
//! test makes.
//!
//! They need root and fail (never skip) without it. Named namespaces are
//! `pier-tn<pid>-<what>`, removed by a [`Cleanup`] guard also when an assertion fails;
//! the one test of the caller's-namespace mode uses a thread that has unshared its
//! own namespace, which ends with the thread. Nothing is added to the host
//! namespace: its ruleset is only read, to check that nothing leaked into it. All
//! packets stay inside the test's namespace (a veth pair and loopback).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use pier_nft::{
    proto, ConntrackEntry, Family, FlowFilter, IpFamily, NetlinkConntrack, NftApplier, NftCli, NftError,
    TableName,
};
use pier_sandbox::netlink::{create_netns, delete_netns, in_netns};
use pier_sandbox::{Netns, NetnsName};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "pier-nft root tests must run as root (they make network namespaces and nftables tables); \
         they fail rather than skip"
    );
}

/// Deletes the test's namespaces on drop; deleting a namespace deletes its links,
/// tables and conntrack entries with it.
#[derive(Default)]
struct Cleanup {
    netns: Vec<NetnsName>,
}

impl Cleanup {
    fn netns(&mut self, what: &str) -> NetnsName {
        let name = NetnsName::new(format!("pier-tn{}-{what}", std::process::id())).expect("netns name");
        create_netns(&name).unwrap_or_else(|e| panic!("create netns {name}: {e}"));
        self.netns.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.netns {
            if let Err(e) = delete_netns(name) {
                eprintln!("cleanup: delete netns {name}: {e}");
            }
        }
    }
}

fn ip(ns: &NetnsName, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", ns.as_str()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?} (is iproute2 installed?): {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn table(name: &str) -> TableName {
    TableName::new(format!("{name}_{}", std::process::id())).expect("table name")
}

/// The host namespace must not have the table: it is only looked at, never changed.
fn assert_not_on_host(t: &TableName) {
    match NftCli::new().list_table_blocking(Family::Ip, t) {
        Err(NftError::NoSuchTable { .. }) => {}
        other => panic!("table ip {t} must not exist in the host namespace: {other:?}"),
    }
}

#[tokio::test]
async fn a_ruleset_applies_lists_back_and_bad_ones_are_refused_whole() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = cleanup.netns("rules");
    let nft = NftCli::in_netns(ns.clone());
    let t = table("pier_test");

    let script = format!(
        "table ip {t} {{\n\
         \tset service_ips {{\n\t\ttype ipv4_addr\n\t\telements = {{ 10.96.0.1, 10.96.0.10 }}\n\t}}\n\
         \tchain services {{\n\t\tip daddr @service_ips counter accept\n\t}}\n\
         }}\n"
    );
    nft.apply(&script).await.unwrap_or_else(|e| panic!("apply: {e}"));
    let listed = nft.list_table(Family::Ip, &t).await.unwrap_or_else(|e| panic!("list: {e}"));
    let want = format!(
        "table ip {t} {{\n\
         \tset service_ips {{\n\t\ttype ipv4_addr\n\t\telements = {{ 10.96.0.1, 10.96.0.10 }}\n\t}}\n\n\
         \tchain services {{\n\t\tip daddr @service_ips counter packets 0 bytes 0 accept\n\t}}\n\
         }}\n"
    );
    assert_eq!(listed, want, "\n--- listed ---\n{listed}\n--- want ---\n{want}");
    // The outline: names of chains and sets, no rules, no elements.
    let outline = nft.list_table_terse(Family::Ip, &t).await.unwrap_or_else(|e| panic!("terse: {e}"));
    assert!(outline.contains("chain services {") && outline.contains("set service_ips {"), "{outline}");
    assert!(!outline.contains("10.96.0.10") && !outline.contains("counter"), "{outline}");

    // A syntax error: nft names the line and the token.
    let bad = format!("table ip {t} {{\n\tchain services {{\n\t\tip daddr 10.96.0.1 accept junk\n\t}}\n}}\n");
    let err = nft.apply(&bad).await.expect_err("syntax error");
    let NftError::Rejected(r) = &err else { panic!("want a rejection, got {err:?}") };
    assert_eq!(r.diagnostics.len(), 1, "{}", r.stderr);
    assert_eq!(r.diagnostics[0].line, Some(3), "{}", r.stderr);
    assert!(r.diagnostics[0].message.contains("syntax error"), "{}", r.stderr);
    assert!(err.to_string().contains("line 3:"), "{err}");
    assert!(err.to_string().contains("junk"), "{err}");

    // A semantic error in the middle of a transaction: nothing of it is applied.
    let half = format!("add chain ip {t} extra\nadd rule ip {t} services jump nowhere\n");
    let err = nft.apply(&half).await.expect_err("jump to a missing chain");
    assert!(err.to_string().contains("nowhere"), "{err}");
    let NftError::Rejected(r) = &err else { panic!("want a rejection, got {err:?}") };
    assert_eq!(r.diagnostics[0].line, Some(2), "{}", r.stderr);
    assert_eq!(nft.list_table(Family::Ip, &t).await.expect("list"), want, "the transaction was atomic");

    assert!(nft.delete_table(Family::Ip, &t).await.expect("delete"));
    assert!(matches!(nft.list_table(Family::Ip, &t).await, Err(NftError::NoSuchTable { .. })));
    assert!(matches!(nft.list_table_terse(Family::Ip, &t).await, Err(NftError::NoSuchTable { .. })));
    assert!(!nft.delete_table(Family::Ip, &t).await.expect("delete a missing table"));
    assert_not_on_host(&t);
}

#[test]
fn the_default_applier_works_in_the_calling_threads_namespace() {
    require_root();
    let t = table("pier_current");
    let host_ns = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
    let t2 = t.clone();
    std::thread::spawn(move || {
        // This thread's own namespace, gone when the thread ends.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        let mine = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
        assert_ne!(mine, host_ns, "must not run in the host namespace");
        let nft = NftCli::new();
        nft.apply_blocking(&format!("table ip {t2} {{\n}}\n")).expect("apply");
        assert_eq!(
            nft.list_table_blocking(Family::Ip, &t2).expect("list"),
            format!("table ip {t2} {{\n}}\n")
        );
        let entries = NetlinkConntrack::new().list_blocking(IpFamily::V4).expect("dump");
        assert_eq!(entries, [], "a new namespace has no connections");
    })
    .join()
    .expect("the namespace thread's assertions");
    assert_not_on_host(&t);
}

fn entries_to(ct: &NetlinkConntrack, service: &str) -> Vec<ConntrackEntry> {
    let service: IpAddr = service.parse().expect("address");
    ct.list_blocking(IpFamily::V4)
        .expect("dump conntrack")
        .into_iter()
        .filter(|e| e.original.dst == service)
        .collect()
}

/// One UDP request and its answer, `client` -> `service` DNAT'ed to `server`.
fn exchange(client: &UdpSocket, server: &UdpSocket, service: &str) {
    let service: SocketAddr = service.parse().expect("address");
    client.send_to(b"query", service).expect("send query");
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("the endpoint gets the query through the DNAT");
    assert_eq!(&buf[..n], b"query");
    server.send_to(b"answer", from).expect("send answer");
    let (n, from) = client.recv_from(&mut buf).expect("the client gets the answer");
    assert_eq!((&buf[..n], from), (&b"answer"[..], service), "answered from the service address");
}

#[test]
fn stale_udp_flows_of_a_removed_endpoint_are_cleared_and_others_kept() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = cleanup.netns("ct");
    // The endpoint 10.250.1.1:5353 behind two "services" 10.96.0.10:53 and
    // 10.96.0.11:53; the route only lets the first packet reach the nat hook, the
    // DNAT then sends it to the local endpoint. A packet that escaped DNAT would leave
    // through a veth whose peer is in the same namespace, which does not forward.
    ip(&ns, &["link", "set", "lo", "up"]);
    ip(&ns, &["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
    ip(&ns, &["addr", "add", "10.250.1.1/24", "dev", "eth0"]);
    ip(&ns, &["link", "set", "eth0", "up"]);
    ip(&ns, &["link", "set", "peer0", "up"]);
    ip(&ns, &["route", "add", "10.96.0.0/12", "dev", "eth0"]);
    let nft = NftCli::in_netns(ns.clone());
    let t = table("pier_ct");
    let rules = format!(
        "table ip {t} {{\n\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr 10.96.0.10 udp dport 53 dnat to 10.250.1.1:5353\n\
         \t\tip daddr 10.96.0.11 udp dport 53 dnat to 10.250.1.1:5353\n\t}}\n}}\n"
    );
    nft.apply_blocking(&rules).unwrap_or_else(|e| panic!("apply: {e}"));

    let (server, c1, c2) = in_netns(&Netns::Named(ns.clone()), || {
        Ok((
            UdpSocket::bind("10.250.1.1:5353"),
            UdpSocket::bind("10.250.1.1:0"),
            UdpSocket::bind("10.250.1.1:0"),
        ))
    })
    .expect("enter the namespace");
    let (server, c1, c2) = (server.expect("bind"), c1.expect("bind"), c2.expect("bind"));
    for s in [&server, &c1, &c2] {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    }
    exchange(&c1, &server, "10.96.0.10:53");
    exchange(&c2, &server, "10.96.0.11:53");

    let ct = NetlinkConntrack::in_netns(ns.clone());
    let before = entries_to(&ct, "10.96.0.10");
    assert_eq!(before.len(), 1, "{before:?}");
    let e = before[0];
    let c1_port = c1.local_addr().expect("addr").port();
    assert_eq!((e.original.protocol, e.original.src_port, e.original.dst_port), (proto::UDP, c1_port, 53));
    assert_eq!((e.reply.src, e.reply.src_port), ("10.250.1.1".parse().expect("ip"), 5353));
    // The kernel's own view agrees, where it has one.
    let proc = in_netns(&Netns::Named(ns.clone()), || {
        Ok(std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").ok())
    })
    .expect("enter the namespace");
    if let Some(proc) = proc {
        assert!(proc.lines().any(|l| l.contains("dst=10.96.0.10") && l.contains("sport=5353")), "{proc}");
    }

    let endpoint: IpAddr = "10.250.1.1".parse().expect("ip");
    let other: IpAddr = "10.250.1.2".parse().expect("ip");
    let service: IpAddr = "10.96.0.10".parse().expect("ip");
    // Another endpoint's removal touches nothing.
    assert_eq!(ct.clear_blocking(&[FlowFilter::udp_to_service(service, 53, other)]).expect("clear"), 0);
    assert_eq!(entries_to(&ct, "10.96.0.10").len(), 1);
    // This endpoint's removal from 10.96.0.10:53 deletes that flow only.
    assert_eq!(ct.clear_blocking(&[FlowFilter::udp_to_service(service, 53, endpoint)]).expect("clear"), 1);
    assert_eq!(entries_to(&ct, "10.96.0.10"), []);
    assert_eq!(entries_to(&ct, "10.96.0.11").len(), 1, "the other service's flow stays");
    // A NodePort-style filter matches on the port whatever the address.
    assert_eq!(ct.clear_blocking(&[FlowFilter::udp_to_node_port(53, endpoint)]).expect("clear"), 1);
    assert_eq!(entries_to(&ct, "10.96.0.11"), []);

    // With the entry gone, the next packet is a new flow and is DNAT'ed afresh.
    exchange(&c1, &server, "10.96.0.10:53");
    assert_eq!(entries_to(&ct, "10.96.0.10").len(), 1);
    assert_not_on_host(&t);
}
