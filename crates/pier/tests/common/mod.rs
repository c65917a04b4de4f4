//! Helpers the end-to-end tests with nodes share (`node.rs`, `proxy.rs`, `proxy_more.rs`).

// Each test file uses its own subset.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use pier_testkit::{table_rows, wait_for, Cluster};

pub const WAIT: Duration = Duration::from_secs(30);

/// One kubia pod `web` (label `app=web`), pinned to the second node.
pub const WEB_ON_NODE_1: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeSelector: {kubernetes.io/hostname: pier-node-1}
  containers: [{name: web, image: luksa/kubia, ports: [{containerPort: 8080}]}]
"#;

pub fn apply(c: &Cluster, yaml: &str) {
    c.kubectl_stdin(&["apply", "-f", "-"], yaml).ok();
}

/// Waits until `n` pods with `selector` are Running and ready; returns their
/// `get pods -o wide` rows.
pub fn wait_running(c: &Cluster, selector: &str, n: usize) -> Vec<Vec<String>> {
    wait_for(&format!("{n} running pods {selector}"), WAIT, || {
        let out = c.kubectl(&["get", "pods", "-l", selector, "-o", "wide"]).ok().to_string();
        let rows: Vec<Vec<String>> = table_rows(&out).into_iter().skip(1).collect();
        let ready = rows.iter().filter(|r| r[1] == "1/1" && r[2] == "Running").count();
        if rows.len() == n && ready == n {
            Ok(rows)
        } else {
            Err(out)
        }
    })
}

/// Waits until `n` nodes are Ready; returns their `get nodes -o wide` rows.
pub fn wait_nodes(c: &Cluster, n: usize) -> Vec<Vec<String>> {
    wait_for(&format!("{n} Ready nodes"), WAIT, || {
        let out = c.kubectl(&["get", "nodes", "-o", "wide"]).ok().to_string();
        let rows: Vec<Vec<String>> =
            table_rows(&out).into_iter().skip(1).filter(|r| r[1] == "Ready").collect();
        if rows.len() == n {
            Ok(rows)
        } else {
            Err(out)
        }
    })
}

/// A node's INTERNAL-IP from [`wait_nodes`]' rows.
pub fn node_ip(nodes: &[Vec<String>], name: &str) -> String {
    nodes.iter().find(|r| r[0] == name).map(|r| r[5].clone()).expect("node row")
}

/// The host's address on the underlay: the bridge, .1 of the nodes' subnet.
pub fn host_ip(node_ip: &str) -> String {
    format!("{}.1", node_ip.rsplit_once('.').expect("dotted").0)
}

pub fn jsonpath(c: &Cluster, kind: &str, name: &str, path: &str) -> String {
    c.kubectl(&["get", kind, name, "-o", &format!("jsonpath={{{path}}}")]).ok().to_string()
}

/// Runs `curl` `n` times inside `pod` (one exec), one answer per line; failed requests
/// print `curl-exit-<code>`.
pub fn curl_from_pod(c: &Cluster, pod: &str, url: &str, n: usize) -> Vec<String> {
    curl_from_pod_within(c, pod, url, n, 5)
}

/// [`curl_from_pod`] with each request given at most `seconds`.
pub fn curl_from_pod_within(c: &Cluster, pod: &str, url: &str, n: usize, seconds: u32) -> Vec<String> {
    let script = format!("for i in $(seq {n}); do curl -s -m {seconds} {url} || echo curl-exit-$?; done",);
    c.kubectl(&["exec", pod, "--", "sh", "-c", &script]).ok().lines().map(str::to_string).collect()
}

/// curl from the host (the test's own namespace reaches the underlay bridge).
pub fn curl_from_host(url: &str) -> (i32, String) {
    curl_from_host_within(url, 5)
}

/// [`curl_from_host`] giving the request at most `seconds`.
pub fn curl_from_host_within(url: &str, seconds: u32) -> (i32, String) {
    let out =
        Command::new("curl").args(["-s", "-m", &seconds.to_string(), url]).output().expect("running curl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn hit_pod(answer: &str) -> Option<&str> {
    answer.strip_prefix("You've hit ")
}

/// The `pier node` agents the cluster started (descendants of `pier up` whose
/// command is `pier node ...`), by reading `/proc`.
pub fn node_agent_pids(c: &Cluster) -> Vec<u32> {
    let root = c.pid().expect("the cluster runs");
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let descends = |mut pid: u32| {
        for _ in 0..16 {
            match parent_of(pid) {
                Some(p) if p == root => return true,
                Some(p) if p > 1 => pid = p,
                _ => return false,
            }
        }
        false
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) == Some(&&b"node"[..]) && descends(pid) {
            out.push(pid);
        }
    }
    out
}

/// The value of a counter or gauge line `name value` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
