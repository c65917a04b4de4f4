//! End-to-end: Deployments driven by the real `kubectl` against `pier up`: create,
//! listings, `set image`, `rollout status|history|undo|restart`, `scale`.
//!
//! There is no node agent yet, so a helper plays the kubelet's part: it watches pods
//! with kubectl and, once the scheduler has bound one to the test's Node, reports it
//! Running and Ready through the `status` subresource; pods being deleted are
//! removed at once, as a kubelet would after stopping them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pier_testkit::{table_rows, wait_for, Cluster};

const ROLLOUT: Duration = Duration::from_secs(60);

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

/// The stand-in kubelet; stopped (its kubectl watch killed, by handle) on drop.
struct FakeKubelet {
    watch: Child,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let _ = self.watch.kill();
        let _ = self.watch.wait();
    }
}

fn kubectl_cmd(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(&c.kubectl);
    cmd.args(args).env("KUBECONFIG", &c.kubeconfig).env_remove("KUBERNETES_SERVICE_HOST");
    cmd
}

/// Registers a Ready node for the scheduler and starts the fake kubelet.
fn node_and_kubelet(c: &Cluster) -> FakeKubelet {
    c.kubectl_stdin(&["apply", "-f", "-"], NODE).ok();
    let ready = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;
    c.kubectl(&["patch", "node", "node-1", "--subresource=status", "--type=merge", "-p", ready]).ok();

    let mut watch = kubectl_cmd(c, &["get", "pods", "--watch", "-o", "name"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get pods --watch starts");
    let stdout = watch.stdout.take().expect("watch stdout");
    let kubeconfig = c.kubeconfig.clone();
    let kubectl = c.kubectl.clone();
    std::thread::spawn(move || {
        let run = |args: &[&str]| {
            Command::new(&kubectl)
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
        };
        // Ends when the watch is killed or the cluster stops (EOF).
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some(name) = line.trim().strip_prefix("pod/") else { continue };
            let Ok(out) = run(&["get", "pod", name, "-o", "json"]) else { continue };
            let Ok(pod) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { continue };
            if pod["metadata"]["deletionTimestamp"].is_string() {
                let _ = run(&["delete", "pod", name, "--grace-period=0", "--force", "--wait=false"]);
                continue;
            }
            let bound = pod["spec"]["nodeName"].is_string();
            let ready = pod["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if bound && !ready {
                let patch = r#"{"status":{"phase":"Running","conditions":[{"type":"PodScheduled","status":"True"},{"type":"Initialized","status":"True"},{"type":"ContainersReady","status":"True"},{"type":"Ready","status":"True"}]}}"#;
                let _ = run(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", patch]);
            }
        }
    });
    FakeKubelet { watch }
}

fn rollout_status(c: &Cluster) -> String {
    let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    out.ok().to_string()
}

/// `kubectl get rs` rows (NAME DESIRED CURRENT READY AGE) without the header, by name.
fn rs_rows(c: &Cluster) -> Vec<Vec<String>> {
    let out = c.kubectl(&["get", "rs"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], "{out}");
    rows[1..].to_vec()
}

fn history(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&["rollout", "history", "deployment/web"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["deployment.apps/web"], "{out}");
    assert_eq!(rows[1], ["REVISION", "CHANGE-CAUSE"], "{out}");
    rows[2..]
        .iter()
        .map(|r| {
            assert_eq!(r.get(1).map(String::as_str), Some("<none>"), "{out}");
            r[0].clone()
        })
        .collect()
}

fn image(c: &Cluster) -> String {
    c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
        .ok()
        .to_string()
}

#[test]
fn deployment_rollouts_with_kubectl() {
    let c = cluster();
    let _kubelet = node_and_kubelet(&c);

    let out = c.kubectl(&["create", "deployment", "web", "--image=luksa/kubia", "--replicas=3"]);
    assert_eq!(out.ok().trim(), "deployment.apps/web created");
    let out = rollout_status(&c);
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");

    let out = c.kubectl(&["get", "deploy", "web"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{out}");
    assert_eq!(&rows[1][..4], ["web", "3/3", "3", "3"], "{out}");
    let rows = rs_rows(&c);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let first = rows[0][0].clone();
    assert!(first.starts_with("web-"), "{first}");
    assert_eq!(&rows[0][1..4], ["3", "3", "3"]);
    let hash = first.trim_start_matches("web-");
    let out = c
        .kubectl(&["get", "pods", "-l", &format!("pod-template-hash={hash}"), "-o", "name"])
        .ok()
        .to_string();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(history(&c), ["1"]);

    // A new template: a new ReplicaSet takes over.
    let out = c.kubectl(&["set", "image", "deployment/web", "kubia=luksa/kubia:v2"]);
    assert_eq!(out.ok().trim(), "deployment.apps/web image updated");
    rollout_status(&c);
    let rows = rs_rows(&c);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let second = rows.iter().find(|r| r[0] != first).map(|r| r[0].clone()).expect("a second replica set");
    for r in &rows {
        let want = if r[0] == second { ["3", "3", "3"] } else { ["0", "0", "0"] };
        assert_eq!(&r[1..4], want, "{rows:?}");
    }
    assert_eq!(history(&c), ["1", "2"]);
    let out = c.kubectl(&["rollout", "history", "deployment/web", "--revision=2"]).ok().to_string();
    assert!(out.contains("luksa/kubia:v2"), "{out}");

    // Undo: the first ReplicaSet comes back as revision 3.
    let out = c.kubectl(&["rollout", "undo", "deployment/web"]);
    assert_eq!(out.ok().trim(), "deployment.apps/web rolled back");
    rollout_status(&c);
    assert_eq!(image(&c), "luksa/kubia");
    assert_eq!(history(&c), ["2", "3"]);
    let rev = c
        .kubectl(&[
            "get",
            "rs",
            &first,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
        .ok()
        .to_string();
    assert_eq!(rev, "3");
    let rows = rs_rows(&c);
    assert_eq!(rows.len(), 2, "undo reuses the old replica set: {rows:?}");

    // Restart: same image, a new template annotation, a new ReplicaSet.
    let out = c.kubectl(&["rollout", "restart", "deployment/web"]);
    assert_eq!(out.ok().trim(), "deployment.apps/web restarted");
    rollout_status(&c);
    let restarted = c
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        ])
        .ok()
        .to_string();
    assert!(!restarted.is_empty());
    assert_eq!(history(&c), ["2", "3", "4"]);
    assert_eq!(rs_rows(&c).len(), 3);

    // Scale: the current ReplicaSet follows.
    let out = c.kubectl(&["scale", "deployment/web", "--replicas=5"]);
    assert_eq!(out.ok().trim(), "deployment.apps/web scaled");
    rollout_status(&c);
    wait_for("5 ready replicas", ROLLOUT, || {
        let out = c.kubectl(&["get", "deploy", "web"]).ok().to_string();
        let rows = table_rows(&out);
        if rows.get(1).is_some_and(|r| r[1..4] == ["5/5", "5", "5"]) {
            Ok(())
        } else {
            Err(out)
        }
    });

    // The story, in upstream's words.
    let out =
        c.kubectl(&["get", "events", "--field-selector", "reason=ScalingReplicaSet", "-o", "json"]).json();
    let messages: Vec<String> = out["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert!(messages.contains(&format!("Scaled up replica set {first} from 0 to 3")), "{messages:#?}");
    assert!(messages.contains(&format!("Scaled up replica set {second} from 0 to 1")), "{messages:#?}");
    assert!(
        messages.iter().any(|m| m.starts_with(&format!("Scaled down replica set {first} from 3 to"))),
        "{messages:#?}"
    );
    let out = c.kubectl(&["describe", "deployment", "web"]).ok().to_string();
    assert!(out.contains("Available      True    MinimumReplicasAvailable"), "{out}");
    assert!(out.contains("Progressing    True    NewReplicaSetAvailable"), "{out}");
    assert!(out.contains("ScalingReplicaSet"), "{out}");
}

#[test]
fn stuck_rollout_reports_its_progress_deadline_to_kubectl() {
    let c = cluster();
    // No kubelet: pods never become Ready.
    c.kubectl(&["create", "deployment", "web", "--image=luksa/kubia", "--replicas=2"]).ok();
    c.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":1}}"#,
    ])
    .ok();
    let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let err = out.err();
    assert!(err.contains("deployment \"web\" exceeded its progress deadline"), "{err}");
}
