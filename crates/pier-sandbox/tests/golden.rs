//! Golden tests of the pure renderers: network plans, rollback, mount lists.
//!
//! `UPDATE_GOLDEN=1 cargo test -p pier-sandbox --test golden` rewrites the files in
//! `tests/golden/`; review them as a diff.

use std::path::PathBuf;

use pier_sandbox::rootfs::{self, GeneratedFiles, RootfsPlan};
use pier_sandbox::{
    apply_plan, apply_teardown, plan, Netns, NetnsName, NodeNetwork, PodNetwork, RecordingApplier, Underlay,
};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {} (UPDATE_GOLDEN=1 creates it): {e}", path.display()));
    assert!(expected == actual, "golden {name} differs\n--- expected\n{expected}--- actual\n{actual}");
}

fn ns(name: &str) -> NetnsName {
    NetnsName::new(name).expect("valid netns name")
}

fn node() -> NodeNetwork {
    let underlay = Underlay {
        ns: Netns::Host,
        bridge: "pier-demo".parse().expect("ifname"),
        addr: "172.30.0.1/24".parse().expect("cidr"),
    };
    NodeNetwork::new(
        underlay,
        ns("pier-demo-node-0"),
        "172.30.0.10/24".parse().expect("cidr"),
        "10.244.0.1/24".parse().expect("cidr"),
    )
    .expect("node plan")
}

fn pod() -> PodNetwork {
    node()
        .pod(
            ns("pier-demo-pod-kubia-x7k2q"),
            "5f0c2b9e-4a7d-4c1e-9b3a-0d6e8f1a2b3c",
            "10.244.0.5".parse().expect("ip"),
        )
        .expect("pod plan")
}

#[test]
fn underlay_network() {
    let n = node();
    check(
        "underlay.txt",
        &(plan::render_text(&n.underlay.render_setup())
            + "# teardown\n"
            + &plan::render_text(&n.underlay.render_teardown())),
    );
}

#[test]
fn node_network() {
    let n = node();
    check(
        "node_network.txt",
        &(plan::render_text(&n.render_setup()) + "# teardown\n" + &plan::render_text(&n.render_teardown())),
    );
}

#[test]
fn pod_network() {
    let p = pod();
    check(
        "pod_network.txt",
        &(plan::render_text(&p.render_setup()) + "# teardown\n" + &plan::render_text(&p.render_teardown())),
    );
}

#[test]
fn veth_names_fit_ifnamsiz_and_are_deterministic() {
    let a = pod();
    let b = pod();
    assert_eq!(a.host_veth, b.host_veth);
    assert!(a.host_veth.as_str().len() <= 15);
    let other = node().pod(ns("x"), "another-uid", "10.244.0.6".parse().expect("ip")).expect("pod plan");
    assert_ne!(a.host_veth, other.host_veth);
}

#[test]
fn pod_ip_must_be_usable_in_node_cidr() {
    let n = node();
    for bad in ["10.244.1.5", "10.244.0.0", "10.244.0.1", "10.244.0.255"] {
        assert!(n.pod(ns("x"), "uid", bad.parse().expect("ip")).is_err(), "{bad} accepted");
    }
}

#[test]
fn failed_plan_rolls_back_newest_first() {
    let p = pod();
    let applier = RecordingApplier::failing_on(
        "ip -n pier-demo-pod-kubia-x7k2q route add default via 10.244.0.1 dev eth0",
    );
    let err = apply_plan(&applier, &p.render_setup()).expect_err("injected failure");
    assert_eq!(err.step, 5);
    assert_eq!(err.rolled_back, 2);
    assert!(err.rollback_failures.is_empty());
    check("pod_network_rollback.txt", &applier.text());
}

#[test]
fn teardown_continues_past_failures() {
    let p = pod();
    let applier = RecordingApplier::failing_on(p.render_teardown()[0].to_string());
    let err = apply_teardown(&applier, &p.render_teardown()).expect_err("injected failure");
    assert_eq!(err.failures.len(), 1);
    assert_eq!(applier.ops().len(), 2, "the namespace is still deleted");
}

fn rootfs_plan() -> RootfsPlan {
    let mut plan = RootfsPlan::new(
        "/var/lib/pier/pods/5f0c2b9e",
        GeneratedFiles {
            hosts: pier_sandbox::hosts_file(
                &["10.244.0.5".parse().expect("ip")],
                "kubia-x7k2q",
                None,
                &[],
            ),
            hostname: pier_sandbox::hostname_file("kubia-x7k2q"),
            resolv_conf: "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n".to_string(),
        },
    );
    plan.masked.push(PathBuf::from("/var/lib/pier"));
    plan
}

#[test]
fn rootfs_mounts() {
    let plan = rootfs_plan();
    check(
        "rootfs_mounts.txt",
        &("# pod setup (node mount namespace)\n".to_string()
            + &rootfs::render_text(&plan.pod_setup())
            + "# container (its own mount namespace)\n"
            + &rootfs::render_text(&plan.container_mounts())
            + "# pod teardown\n"
            + &rootfs::render_text(&plan.pod_teardown())),
    );
}
