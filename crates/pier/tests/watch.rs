//! End-to-end: `kubectl get -w` prints changes as they happen, with and without
//! `--output-watch-events`, and keeps watching across the server's bookmarks.

use std::time::Duration;

use pier_testkit::Cluster;

const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

const KUBIA_SVC: &str = include_str!("../../../examples/kubia-svc.yaml");

#[test]
fn get_svc_watch_prints_additions_and_changes() {
    let c = cluster();
    let mut plain = c.kubectl_lines(&["get", "svc", "-w", "--show-labels"]).expect("kubectl starts");
    let mut events = c.kubectl_lines(&["get", "svc", "-w", "--output-watch-events"]).expect("kubectl starts");
    let header = plain.wait_line("the table header", WAIT, |l| l.starts_with("NAME"));
    assert_eq!(cells(&header), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "LABELS"]);
    let header = events.wait_line("the table header", WAIT, |l| l.starts_with("EVENT"));
    assert_eq!(cells(&header), ["EVENT", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    let k8s = events.wait_line("the existing service", WAIT, |l| l.contains("kubernetes"));
    assert_eq!(cells(&k8s)[..6], ["ADDED", "kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]);
    plain.wait_line("the existing service", WAIT, |l| l.starts_with("kubernetes"));

    c.kubectl_stdin(&["create", "-f", "-"], KUBIA_SVC).ok();
    let (at, added) =
        events.wait_line_from(0, "ADDED kubia", WAIT, |l| l.starts_with("ADDED") && l.contains("kubia"));
    let added = cells(&added);
    assert_eq!(added[..3], ["ADDED", "kubia", "ClusterIP"]);
    assert_eq!(added[4..6], ["<none>", "80/TCP"]);
    let (p_at, row) = plain.wait_line_from(0, "kubia's row", WAIT, |l| l.starts_with("kubia"));
    assert_eq!(cells(&row).last(), Some(&"<none>"), "no labels yet: {row}");

    // A label change is a MODIFIED event, and the new label shows.
    c.kubectl(&["label", "svc", "kubia", "tier=web"]).ok();
    let (_, modified) = events
        .wait_line_from(at + 1, "MODIFIED kubia", WAIT, |l| l.starts_with("MODIFIED") && l.contains("kubia"));
    assert_eq!(cells(&modified)[..3], ["MODIFIED", "kubia", "ClusterIP"]);
    let (_, row) = plain.wait_line_from(p_at + 1, "kubia's relabeled row", WAIT, |l| l.starts_with("kubia"));
    assert_eq!(cells(&row).last(), Some(&"tier=web"), "{row}");

    c.kubectl(&["delete", "svc", "kubia"]).ok();
    events.wait_line_from(at + 1, "DELETED kubia", WAIT, |l| l.starts_with("DELETED") && l.contains("kubia"));
    assert!(events.running() && plain.running(), "{}{}", events.stderr_text(), plain.stderr_text());
}

#[test]
fn get_pods_watch_with_output_watch_events() {
    let c = cluster();
    let mut w = c.kubectl_lines(&["get", "pods", "-w", "--output-watch-events"]).expect("kubectl starts");
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"watched"},"spec":{"containers":[{"name":"c","image":"luksa/kubia"}]}}"#;
    c.kubectl_stdin(&["create", "-f", "-"], pod).ok();
    let (at, added) = w.wait_line_from(0, "ADDED watched", WAIT, |l| l.starts_with("ADDED"));
    assert_eq!(cells(&added)[..5], ["ADDED", "watched", "0/1", "Pending", "0"]);
    // With no pod listed first, kubectl printed the header with the first event.
    assert_eq!(cells(&w.seen[0]), ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    c.kubectl(&["label", "pod", "watched", "x=y"]).ok();
    let (at, modified) = w.wait_line_from(at + 1, "MODIFIED watched", WAIT, |l| l.starts_with("MODIFIED"));
    assert_eq!(cells(&modified)[..2], ["MODIFIED", "watched"]);
    c.kubectl(&["delete", "pod", "watched"]).ok();
    let (_, deleted) = w.wait_line_from(at + 1, "DELETED watched", WAIT, |l| l.starts_with("DELETED"));
    assert_eq!(cells(&deleted)[..2], ["DELETED", "watched"]);
    assert!(w.running(), "{}", w.stderr_text());
}

#[test]
fn get_ns_watch_survives_bookmarks() {
    let c = cluster();
    let mut w = c.kubectl_lines(&["get", "ns", "-w"]).expect("kubectl starts");
    w.wait_line("kube-system", WAIT, |l| l.starts_with("kube-system"));
    let rv = c.kubectl(&["get", "ns", "-o", "jsonpath={.metadata.resourceVersion}"]).ok().to_string();
    // A client that asks for bookmarks gets one after the server's bookmark interval;
    // by then kubectl's own watch of the same collection has lived through it.
    let mut raw = c
        .curl_stream(&format!("/api/v1/namespaces?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"))
        .expect("curl starts");
    let mark = raw.wait_line("a BOOKMARK event", Duration::from_secs(30), |l| l.contains("\"BOOKMARK\""));
    let mark: serde_json::Value = serde_json::from_str(&mark).expect("a JSON watch event");
    assert_eq!(mark["object"]["kind"], "Namespace");
    assert!(mark["object"]["metadata"]["resourceVersion"].as_str().is_some_and(|v| !v.is_empty()), "{mark}");

    c.kubectl(&["create", "ns", "after-bookmark"]).ok();
    let line = w.wait_line("the new namespace", WAIT, |l| l.starts_with("after-bookmark"));
    assert_eq!(cells(&line)[..2], ["after-bookmark", "Active"]);
    raw.wait_line("ADDED on the raw watch", WAIT, |l| {
        l.contains("\"ADDED\"") && l.contains("after-bookmark")
    });
    c.kubectl(&["delete", "ns", "after-bookmark", "--wait=false"]).ok();
    let (_, line) = w.wait_line_from(0, "the namespace terminating", WAIT, |l| {
        l.starts_with("after-bookmark") && l.contains("Terminating")
    });
    assert_eq!(cells(&line)[..2], ["after-bookmark", "Terminating"]);
    assert!(w.running(), "kubectl's watch ended: {}", w.stderr_text());
    assert!(!w.seen.iter().any(|l| l.contains("BOOKMARK")), "{:?}", w.seen);
}
