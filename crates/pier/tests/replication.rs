//! End-to-end: the book's ReplicationController story with the real `kubectl` against
//! `pier up`: apply, list, scale, take a pod out by relabelling it, describe, delete.
//! A Node object (written with kubectl; there is no node agent yet) lets the
//! scheduler bind the pods.

use std::time::Duration;

use pier_testkit::{table_rows, wait_for, Cluster};

const WAIT: Duration = Duration::from_secs(20);

const KUBIA_RC: &str = include_str!("../../../examples/kubia-rc.yaml");

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels:
    kubernetes.io/hostname: node-1
"#;

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

/// The rows of `kubectl get pods -l app=kubia-rc` that are not terminating.
fn running_pods(c: &Cluster) -> Vec<Vec<String>> {
    let out = c.kubectl(&["get", "pods", "-l", "app=kubia-rc"]).ok().to_string();
    table_rows(&out)
        .into_iter()
        .skip(1)
        .filter(|r| r.get(2).map(String::as_str) != Some("Terminating"))
        .collect()
}

fn wait_pods(c: &Cluster, n: usize) -> Vec<Vec<String>> {
    wait_for(&format!("{n} kubia-rc pods"), WAIT, || {
        let rows = running_pods(c);
        if rows.len() == n {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
}

fn is_generated_name(name: &str) -> bool {
    name.strip_prefix("kubia-rc-")
        .is_some_and(|s| s.len() == 5 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

#[test]
fn replication_controller_story() {
    let c = cluster();
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], NODE).ok().trim(), "node/node-1 created");
    let ready = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}]}}"#;
    c.kubectl(&["patch", "node", "node-1", "--subresource=status", "--type=merge", "-p", ready]).ok();

    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_RC).ok().trim(),
        "replicationcontroller/kubia-rc created"
    );
    let rows = wait_pods(&c, 3);
    assert!(rows.iter().all(|r| is_generated_name(&r[0])), "{rows:?}");

    // `kubectl get rc`: DESIRED 3 CURRENT 3.
    wait_for("rc status", WAIT, || {
        let out = c.kubectl(&["get", "rc", "kubia-rc"]).ok().to_string();
        let rows = table_rows(&out);
        if rows[0][..3] == ["NAME", "DESIRED", "CURRENT"] && rows[1][..3] == ["kubia-rc", "3", "3"] {
            Ok(())
        } else {
            Err(out)
        }
    });
    // The pods are bound to the node.
    wait_for("pods bound", WAIT, || {
        let out = c.kubectl(&["get", "pods", "-l", "app=kubia-rc", "-o", "wide"]).ok().to_string();
        let rows = table_rows(&out);
        let node_col = rows[0].iter().position(|h| h == "NODE").ok_or("no NODE column")?;
        if rows[1..].iter().all(|r| r[node_col] == "node-1") {
            Ok(())
        } else {
            Err(out)
        }
    });

    // kubectl scale goes through the scale subresource.
    assert_eq!(
        c.kubectl(&["scale", "rc", "kubia-rc", "--replicas=5"]).ok().trim(),
        "replicationcontroller/kubia-rc scaled"
    );
    let rows = wait_pods(&c, 5);
    let victim = rows[0][0].clone();

    // Take a pod out by relabelling it: a replacement appears, the pod is released.
    c.kubectl(&["label", "pod", &victim, "app=foo", "--overwrite"]).ok();
    let rows = wait_pods(&c, 5);
    assert!(rows.iter().all(|r| r[0] != victim), "{rows:?}");
    wait_for("the relabelled pod is released", WAIT, || {
        let pod = c.kubectl(&["get", "pod", &victim, "-o", "json"]).json();
        if pod["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty) {
            Ok(())
        } else {
            Err(pod["metadata"]["ownerReferences"].to_string())
        }
    });

    // describe tells the story with upstream's events.
    let out = wait_for("SuccessfulCreate events in describe", WAIT, || {
        let out = c.kubectl(&["describe", "rc", "kubia-rc"]).ok().to_string();
        let creates = out
            .lines()
            .filter(|l| l.contains("SuccessfulCreate") && l.contains("Created pod: kubia-rc-"))
            .count();
        if creates == 6 {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(
        out.lines().any(|l| l.starts_with("Replicas:") && l.trim_end().ends_with("5 current / 5 desired")),
        "{out}"
    );
    assert!(out.contains("replication-controller"), "{out}");

    // Deleting the RC deletes its pods through the garbage collector. Bound pods are
    // deleted gracefully and there is no node agent to finish that, so they show as
    // Terminating; the released pod stays.
    c.kubectl(&["delete", "rc", "kubia-rc"]).ok();
    wait_for("pods terminating", WAIT, || {
        let rows = running_pods(&c);
        if rows.is_empty() {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    let out = c.kubectl(&["get", "pod", &victim]).ok().to_string();
    assert_eq!(table_rows(&out)[1][2], "Pending", "{out}");
}
