//! End-to-end: two `pier up` clusters at once, each with its own data directory and a
//! port of its own choosing, are independent, and both stop cleanly.

use std::net::TcpStream;

use pier_testkit::Cluster;

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

#[test]
fn two_clusters_side_by_side_are_independent_and_stop_cleanly() {
    let mut a = cluster();
    let mut b = cluster();
    assert_ne!(a.url, b.url);
    assert_ne!(a.data_dir(), b.data_dir());
    // Names derived from the data directories, so kubeconfig contexts do not clash.
    let ctx_a = a.kubectl(&["config", "current-context"]).ok().trim().to_string();
    let ctx_b = b.kubectl(&["config", "current-context"]).ok().trim().to_string();
    assert_ne!(ctx_a, ctx_b);

    assert_eq!(
        a.kubectl(&["create", "configmap", "only-in-a", "--from-literal=k=a"]).ok().trim(),
        "configmap/only-in-a created"
    );
    assert_eq!(b.kubectl(&["create", "ns", "only-in-b"]).ok().trim(), "namespace/only-in-b created");
    let err = b.kubectl(&["get", "cm", "only-in-a"]).err().to_string();
    assert_eq!(err.trim(), "Error from server (NotFound): configmaps \"only-in-a\" not found");
    let err = a.kubectl(&["get", "ns", "only-in-b"]).err().to_string();
    assert_eq!(err.trim(), "Error from server (NotFound): namespaces \"only-in-b\" not found");
    // Each has its own `kubernetes` service at the first address, and its own uid.
    let uid_a = a.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
    let uid_b = b.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
    assert_ne!(uid_a, uid_b);
    for c in [&a, &b] {
        let ip =
            c.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string();
        assert_eq!(ip, "10.96.0.1");
    }
    // One cluster's client certificate is refused by the other.
    let cross = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-k", "--cert"])
        .arg(a.data_dir().join("pki/admin.crt"))
        .arg("--key")
        .arg(a.data_dir().join("pki/admin.key"))
        .arg(format!("{}/api/v1/namespaces", b.url))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&cross.stdout).to_string();
    assert!(code == "401" || code == "000", "a's certificate got {code} from b");

    // Stopping one leaves the other serving.
    let (addr_a, addr_b) = (a.authority().to_string(), b.authority().to_string());
    let status = a.shutdown().expect("a stops within 10 s of SIGTERM").expect("a was running");
    assert!(status.success(), "a exited with {status}");
    assert!(TcpStream::connect(&addr_a).is_err(), "a's port is still open");
    assert!(b.kubectl(&["get", "cm", "only-in-a", "-o", "name"]).err().contains("not found"));
    assert_eq!(b.kubectl(&["get", "ns", "only-in-b", "-o", "name"]).ok().trim(), "namespace/only-in-b");
    let status = b.shutdown().expect("b stops within 10 s of SIGTERM").expect("b was running");
    assert!(status.success(), "b exited with {status}");
    assert!(TcpStream::connect(&addr_b).is_err(), "b's port is still open");
}
