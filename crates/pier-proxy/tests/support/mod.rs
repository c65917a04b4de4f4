//! Fixtures and checks for the golden tests: Services and EndpointSlices written like
//! manifests, golden-file comparison (`PIER_BLESS=1` rewrites the files), and
//! validation of scripts by the real `nft` inside a throwaway network namespace.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pier_proxy::{Ipv4Cidr, NodeInfo, RenderConfig};
use serde_json::{json, Value};

/// The node the tests build models for.
pub fn node() -> NodeInfo {
    NodeInfo { name: "node-a".into(), node_ips: vec!["172.30.0.10".parse().expect("ip")] }
}

/// Pier's defaults: pod network 10.244.0.0/16, service network 10.96.0.0/12.
pub fn config() -> RenderConfig {
    RenderConfig {
        cluster_cidr: Some(cidr("10.244.0.0/16")),
        service_cidrs: vec![cidr("10.96.0.0/12")],
        ..RenderConfig::default()
    }
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().expect("cidr")
}

/// A Service from manifest-like JSON (`apiVersion` and `kind` are added).
pub fn service(mut v: Value) -> Service {
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Service");
    serde_json::from_value(v).expect("Service fixture")
}

/// An IPv4 EndpointSlice of Service `ns/svc` with the given ports and endpoints.
pub fn slice(ns: &str, svc: &str, name: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("EndpointSlice fixture")
}

/// A ready endpoint on a node.
pub fn ready(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true, "serving": true, "terminating": false}})
}

/// An endpoint with explicit conditions.
pub fn endpoint(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

/// Compares `actual` with `tests/golden/<name>.nft`, or rewrites the file when
/// `PIER_BLESS=1`. On a mismatch both texts and the first differing line are printed.
pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.nft"));
    if std::env::var_os("PIER_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with PIER_BLESS=1 to create it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered script (first at line {}; PIER_BLESS=1 rewrites it)\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

/// Whether the tests run as root (effective uid 0), read from /proc so no libc call
/// is needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Runs `sh -c <script>` in a new network namespace (`unshare -n`) with the given
/// files; the namespace, and every table in it, dies with the process, so the host's
/// ruleset is never touched. Returns stdout; panics with nft's stderr on failure.
/// Returns `None` when not root (the caller then only compares text).
pub fn in_netns(files: &[(&str, &str)], script: &str) -> Option<String> {
    if !is_root() {
        eprintln!("not root: skipping the nft check in a network namespace");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write nft script");
    }
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", script])
        .current_dir(dir.path())
        .output()
        .expect("run unshare (util-linux) and nft");
    assert!(
        out.status.success(),
        "`unshare -n sh -c '{script}'` failed: {}\n{}\n--- scripts:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        files.iter().map(|(n, t)| format!("# {n}\n{t}")).collect::<Vec<_>>().join("\n")
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -c -f` of a complete script in an empty namespace: nft parses it and the
/// kernel checks it, without committing.
pub fn nft_check(script: &str) {
    in_netns(&[("full.nft", script)], "nft -c -f full.nft");
}

/// The ruleset in a form that compares equal for equal rulesets: see
/// [`pier_nft::canonical_ruleset`].
pub fn canonical_ruleset(json_listing: &str) -> Vec<String> {
    pier_nft::canonical_ruleset(json_listing).expect("nft -j output")
}
