//! End-to-end: deletion as upstream does it, driven by the real `kubectl`: the
//! garbage collector (background, orphan and foreground propagation through
//! ownerReferences), user finalizers and `Terminating`, and namespace termination.
//! The tests create the RC's dependent pods themselves, owned by the RC's uid. So
//! that a replication controller (when one runs) leaves them alone, the RC wants no
//! replicas and the pods do not match its selector: they are the RC's dependents
//! through a non-controller ownerReference only, which is all the garbage collector
//! looks at.

use std::time::Duration;

use pier_testkit::{table_rows, wait_for, Cluster};

const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

const RC: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: kubia
spec:
  replicas: 0
  selector:
    app: kubia
  template:
    metadata:
      labels:
        app: kubia
    spec:
      containers:
      - name: kubia
        image: luksa/kubia
"#;

/// Creates the RC and two pods it owns (`kubia-a`, `kubia-b`, the first with extra
/// `finalizers`), plus a pod nobody owns; returns the RC's uid.
fn rc_with_pods(c: &Cluster, finalizers_of_a: &[&str]) -> String {
    assert_eq!(c.kubectl_stdin(&["apply", "-f", "-"], RC).ok().trim(), "replicationcontroller/kubia created");
    let uid = c.kubectl(&["get", "rc", "kubia", "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
    assert!(!uid.is_empty());
    for (name, finalizers) in [("kubia-a", finalizers_of_a), ("kubia-b", &[][..])] {
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app": "dependent"},
                "finalizers": finalizers,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "ReplicationController",
                    "name": "kubia",
                    "uid": uid,
                    "controller": false,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]},
        });
        assert_eq!(
            c.kubectl_stdin(&["create", "-f", "-"], &pod.to_string()).ok().trim(),
            format!("pod/{name} created")
        );
    }
    let bystander = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bystander","labels":{"app":"dependent"}},"spec":{"containers":[{"name":"c","image":"luksa/kubia"}]}}"#;
    c.kubectl_stdin(&["create", "-f", "-"], bystander).ok();
    uid
}

fn pod_names(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&["get", "pods", "-o", "name"]).ok().to_string();
    out.lines().map(str::to_string).collect()
}

#[test]
fn delete_rc_in_the_background_deletes_its_pods() {
    let c = cluster();
    rc_with_pods(&c, &[]);
    assert_eq!(c.kubectl(&["delete", "rc", "kubia"]).ok().trim(), "replicationcontroller \"kubia\" deleted");
    let err = c.kubectl(&["get", "rc", "kubia"]).err().to_string();
    assert!(
        err.contains("Error from server (NotFound): replicationcontrollers \"kubia\" not found"),
        "{err}"
    );
    wait_for("the garbage collector to delete the RC's pods", WAIT, || {
        let names = pod_names(&c);
        if names == ["pod/bystander"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
}

#[test]
fn delete_rc_with_cascade_orphan_keeps_pods_and_drops_their_owner_references() {
    let c = cluster();
    rc_with_pods(&c, &[]);
    let out = c.kubectl(&["delete", "rc", "kubia", "--cascade=orphan"]).ok().to_string();
    assert_eq!(out.trim(), "replicationcontroller \"kubia\" deleted");
    // kubectl waited for the RC to be gone, which happens only after its dependents
    // were released.
    c.kubectl(&["get", "rc", "kubia"]).err();
    assert_eq!(pod_names(&c), ["pod/bystander", "pod/kubia-a", "pod/kubia-b"]);
    for name in ["kubia-a", "kubia-b"] {
        let pod = c.kubectl(&["get", "pod", name, "-o", "json"]).json();
        assert!(pod["metadata"].get("ownerReferences").is_none(), "{name} still owned: {pod}");
        assert!(pod["metadata"].get("deletionTimestamp").is_none(), "{pod}");
        // Upstream never shows an empty list: `finalizers: []` was dropped on create.
        assert!(pod["metadata"].get("finalizers").is_none(), "{pod}");
    }
    // Orphans stay orphans: nothing collects them later either.
    assert_eq!(c.kubectl(&["delete", "pod", "bystander"]).ok().trim(), "pod \"bystander\" deleted");
    assert_eq!(pod_names(&c), ["pod/kubia-a", "pod/kubia-b"]);
}

#[test]
fn delete_rc_in_the_foreground_waits_for_its_pods() {
    let c = cluster();
    rc_with_pods(&c, &["example.com/hold"]);
    let out = c.kubectl(&["delete", "rc", "kubia", "--cascade=foreground", "--wait=false"]).ok().to_string();
    assert_eq!(out.trim(), "replicationcontroller \"kubia\" deleted");

    // The RC stays, marked, while a dependent remains.
    let rc = c.kubectl(&["get", "rc", "kubia", "-o", "json"]).json();
    assert!(rc["metadata"]["deletionTimestamp"].is_string(), "{rc}");
    assert_eq!(rc["metadata"]["finalizers"], serde_json::json!(["foregroundDeletion"]), "{rc}");
    wait_for("the collector to delete the unblocked pod", WAIT, || {
        let names = pod_names(&c);
        if names == ["pod/bystander", "pod/kubia-a"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    let held = wait_for("the held pod to be terminating", WAIT, || {
        let out = c.kubectl(&["get", "pod", "kubia-a"]).ok().to_string();
        let rows = table_rows(&out);
        if rows.get(1).is_some_and(|r| r[2] == "Terminating") {
            Ok(rows)
        } else {
            Err(out)
        }
    });
    assert_eq!(held[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let rc = c.kubectl(&["get", "rc", "kubia", "-o", "json"]).json();
    assert!(rc["metadata"]["deletionTimestamp"].is_string(), "the RC went before its pod: {rc}");
    let rows = table_rows(c.kubectl(&["get", "rc"]).ok());
    assert_eq!(rows[1][0], "kubia", "{rows:?}");

    // Releasing the last dependent releases the owner.
    let out = c
        .kubectl(&[
            "patch",
            "pod",
            "kubia-a",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "pod/kubia-a patched");
    wait_for("the RC to go after its last pod", WAIT, || {
        let out = c.kubectl(&["get", "rc", "kubia"]);
        if out.success() {
            Err(out.stdout)
        } else if out.stderr.contains("replicationcontrollers \"kubia\" not found") {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    assert_eq!(pod_names(&c), ["pod/bystander"]);
}

#[test]
fn foreground_delete_that_waits_returns_when_everything_is_gone() {
    let c = cluster();
    rc_with_pods(&c, &[]);
    let out = c.kubectl(&["delete", "rc", "kubia", "--cascade=foreground"]).ok().to_string();
    assert_eq!(out.trim(), "replicationcontroller \"kubia\" deleted");
    c.kubectl(&["get", "rc", "kubia"]).err();
    // Foreground: the dependents were gone before the owner was.
    assert_eq!(pod_names(&c), ["pod/bystander"]);
}

#[test]
fn a_finalizer_keeps_an_object_until_it_is_removed() {
    let c = cluster();
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/keep"]},"data":{"k":"v"}}"#;
    assert_eq!(c.kubectl_stdin(&["create", "-f", "-"], cm).ok().trim(), "configmap/held created");
    let out = c.kubectl(&["delete", "cm", "held", "--wait=false"]).ok().to_string();
    assert_eq!(out.trim(), "configmap \"held\" deleted");
    let held = c.kubectl(&["get", "cm", "held", "-o", "json"]).json();
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(held["metadata"]["finalizers"], serde_json::json!(["example.com/keep"]));
    assert_eq!(held["data"]["k"], "v");
    // Deleting again changes nothing; it is still there.
    c.kubectl(&["delete", "cm", "held", "--wait=false"]).ok();
    let again = c.kubectl(&["get", "cm", "held", "-o", "json"]).json();
    assert_eq!(again["metadata"]["deletionTimestamp"], held["metadata"]["deletionTimestamp"]);

    // A pod with a finalizer shows as Terminating.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"held-pod","finalizers":["example.com/keep"]},"spec":{"containers":[{"name":"c","image":"luksa/kubia"}]}}"#;
    c.kubectl_stdin(&["create", "-f", "-"], pod).ok();
    c.kubectl(&["delete", "pod", "held-pod", "--wait=false"]).ok();
    let rows = table_rows(c.kubectl(&["get", "pod", "held-pod"]).ok());
    assert_eq!(rows[1][..3], ["held-pod", "0/1", "Terminating"], "{rows:?}");

    let out = c
        .kubectl(&["patch", "cm", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "configmap/held patched");
    let err = c.kubectl(&["get", "cm", "held"]).err().to_string();
    assert!(err.contains("Error from server (NotFound): configmaps \"held\" not found"), "{err}");

    let out = c
        .kubectl(&[
            "patch",
            "pod",
            "held-pod",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "pod/held-pod patched");
    c.kubectl(&["get", "pod", "held-pod"]).err();
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it_then_the_namespace() {
    let c = cluster();
    assert_eq!(c.kubectl(&["create", "ns", "gone"]).ok().trim(), "namespace/gone created");
    c.kubectl(&["create", "configmap", "settings", "-n", "gone", "--from-literal=a=1"]).ok();
    c.kubectl(&["create", "secret", "generic", "creds", "-n", "gone", "--from-literal=a=1"]).ok();
    c.kubectl(&["create", "service", "clusterip", "web", "-n", "gone", "--tcp=80:8080"]).ok();
    let ip =
        c.kubectl(&["get", "svc", "web", "-n", "gone", "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string();
    // kubectl waits until the namespace itself is gone.
    assert_eq!(c.kubectl(&["delete", "ns", "gone"]).ok().trim(), "namespace \"gone\" deleted");
    let err = c.kubectl(&["get", "ns", "gone"]).err().to_string();
    assert!(err.contains("Error from server (NotFound): namespaces \"gone\" not found"), "{err}");
    for res in ["configmaps", "secrets", "services", "serviceaccounts"] {
        let out = c.kubectl(&["get", res, "-n", "gone", "-o", "name"]);
        assert_eq!(out.ok().trim(), "", "{res} left in a deleted namespace");
    }
    // The service's cluster IP was released with it.
    let reuse = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"reuse"}},"spec":{{"clusterIP":"{ip}","ports":[{{"port":80}}]}}}}"#
    );
    assert_eq!(c.kubectl_stdin(&["create", "-f", "-"], &reuse).ok().trim(), "service/reuse created");
    // A namespace of the same name can be made again, empty.
    c.kubectl(&["create", "ns", "gone"]).ok();
    let err = c.kubectl(&["get", "cm", "settings", "-n", "gone", "-o", "name"]).err().to_string();
    assert!(err.contains("configmaps \"settings\" not found"), "{err}");
}

#[test]
fn a_terminating_namespace_refuses_new_content() {
    let c = cluster();
    c.kubectl(&["create", "ns", "doomed"]).ok();
    c.kubectl(&["create", "configmap", "plain", "-n", "doomed", "--from-literal=a=1"]).ok();
    let sticky = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sticky","finalizers":["example.com/keep"]}}"#;
    c.kubectl_stdin(&["create", "-n", "doomed", "-f", "-"], sticky).ok();
    assert_eq!(
        c.kubectl(&["delete", "ns", "doomed", "--wait=false"]).ok().trim(),
        "namespace \"doomed\" deleted"
    );

    let rows = table_rows(c.kubectl(&["get", "ns", "doomed"]).ok());
    assert_eq!(rows[1][..2], ["doomed", "Terminating"], "{rows:?}");
    let ns = c.kubectl(&["get", "ns", "doomed", "-o", "json"]).json();
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]), "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating");

    let late = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}"#;
    let err = c.kubectl_stdin(&["create", "-n", "doomed", "-f", "-"], late).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": configmaps \"late\" is forbidden: \
         unable to create new content in namespace doomed because it is being terminated"
    );
    let err = c.kubectl(&["create", "configmap", "late", "-n", "doomed"]).err().to_string();
    assert!(
        err.contains("configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"),
        "{err}"
    );

    // Everything without a finalizer goes; the held object stays, and so does the namespace.
    wait_for("the namespace to be emptied but for the held object", WAIT, || {
        let out =
            c.kubectl(&["get", "cm,secrets,sa,svc,pods", "-n", "doomed", "-o", "name"]).ok().to_string();
        if out.trim() == "configmap/sticky" {
            Ok(())
        } else {
            Err(out)
        }
    });
    let sticky = c.kubectl(&["get", "cm", "sticky", "-n", "doomed", "-o", "json"]).json();
    assert!(sticky["metadata"]["deletionTimestamp"].is_string(), "{sticky}");
    c.kubectl(&["get", "ns", "doomed"]).ok();

    let patch = r#"{"metadata":{"finalizers":null}}"#;
    c.kubectl(&["patch", "cm", "sticky", "-n", "doomed", "--type=merge", "-p", patch]).ok();
    wait_for("the namespace to go once it is empty", WAIT, || {
        let out = c.kubectl(&["get", "ns", "doomed"]);
        if out.stderr.contains("namespaces \"doomed\" not found") {
            Ok(())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr))
        }
    });
}
