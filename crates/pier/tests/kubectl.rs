//! End-to-end: the real `kubectl` against `pier up`, asserting on what kubectl prints.
//! Covers the user story of the API server issue: namespaces, the `kubernetes`
//! service, apply (client- and server-side), secrets, listings, describe, watch,
//! errors, restarts.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use pier_testkit::{kubectl_version, table_rows, wait_for, Cluster};

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

const KUBIA_SVC: &str = include_str!("../../../examples/kubia-svc.yaml");

#[test]
fn builtin_namespaces_and_kubernetes_service() {
    let c = cluster();
    let out = c.kubectl(&["get", "ns"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    assert!(rows[1..].iter().all(|r| r[1] == "Active"), "{out}");

    let out = c.kubectl(&["get", "svc"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(&rows[1][..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]);
}

#[test]
fn apply_twice_then_change_then_server_side() {
    let c = cluster();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC);
    assert_eq!(out.ok().trim(), "service/kubia created");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC);
    assert_eq!(out.ok().trim(), "service/kubia unchanged");
    let changed = KUBIA_SVC.replace("targetPort: 8080", "targetPort: 8081");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &changed);
    assert_eq!(out.ok().trim(), "service/kubia configured");
    let svc = c.kubectl(&["get", "svc", "kubia", "-o", "json"]).json();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8081);
    let ip = svc["spec"]["clusterIP"].as_str().expect("cluster IP").to_string();
    assert!(ip.starts_with("10.9") || ip.starts_with("10.10") || ip.starts_with("10.11"), "{ip}");

    // Switching to server-side apply with what was last applied client-side: no
    // conflict, and kubectl migrates the client-side manager's fields to itself.
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert_eq!(out.ok().trim(), "service/kubia serverside-applied");
    // Now the same manager changes its own field freely.
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], KUBIA_SVC);
    assert_eq!(out.ok().trim(), "service/kubia serverside-applied");
    let svc = c.kubectl(&["get", "svc", "kubia", "-o", "json"]).json();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some(ip.as_str()), "the cluster IP survives apply");

    // Another manager's field with another value is a conflict until forced.
    c.kubectl(&["patch", "svc", "kubia", "-p", r#"{"spec":{"ports":[{"port":80,"targetPort":7070}]}}"#]).ok();
    let err = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], KUBIA_SVC).err().to_string();
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .spec.ports[port=80,protocol="TCP"].targetPort"#),
        "{err}"
    );
    let out = c.kubectl_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], KUBIA_SVC);
    assert_eq!(out.ok().trim(), "service/kubia serverside-applied");
    let svc = c.kubectl(&["get", "svc", "kubia", "-o", "json"]).json();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
}

#[test]
fn tls_secret_and_wide_listing_across_namespaces() {
    let c = cluster();
    let dir = tempfile_dir();
    let key = dir.path().join("tls.key");
    let cert = dir.path().join("tls.cert");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubia.example.com",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let cert_arg = format!("--cert={}", cert.display());
    let key_path = key.display().to_string();
    let out = c.kubectl(&["create", "secret", "tls", "tls-secret", &cert_arg, "--key", &key_path]);
    assert_eq!(out.ok().trim(), "secret/tls-secret created");
    let secret = c.kubectl(&["get", "secret", "tls-secret", "-o", "json"]).json();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert!(secret["data"]["tls.crt"].as_str().is_some_and(|s| !s.is_empty()));

    c.kubectl(&["create", "configmap", "settings", "--from-literal=a=1"]).ok();
    c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok();
    let out = c.kubectl(&["get", "svc,secrets,cm", "-A", "-o", "wide"]).ok().to_string();
    assert!(out.contains("SELECTOR"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("default") && l.contains("service/kubia") && l.contains("app=kubia")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("secret/tls-secret") && l.contains("kubernetes.io/tls") && l.contains(" 2 ")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains("configmap/settings")), "{out}");
}

#[test]
fn describe_service() {
    let c = cluster();
    c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok();
    let out = c.kubectl(&["describe", "svc", "kubia"]).ok().to_string();
    for line in [
        "Name:",
        "Namespace:",
        "Selector:",
        "Type:",
        "IP:",
        "Port:",
        "TargetPort:",
        "Endpoints:",
        "Session Affinity:",
        "Events:",
    ] {
        assert!(out.contains(line), "describe lacks {line}:\n{out}");
    }
    assert!(out.lines().any(|l| l.starts_with("Selector:") && l.ends_with("app=kubia")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("TargetPort:") && l.contains("8080/TCP")), "{out}");
}

#[test]
fn get_pods_watch_prints_changes_as_they_happen() {
    let c = cluster();
    let mut child = c.kubectl_spawn(&["get", "pods", "-w"]).expect("kubectl starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"watched"},"spec":{"containers":[{"name":"c","image":"luksa/kubia"}]}}"#;
    c.kubectl_stdin(&["create", "-f", "-"], pod).ok();
    let mut seen = Vec::new();
    let line = wait_for("the watch to print the new pod", Duration::from_secs(15), || {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        seen.iter().find(|l| l.starts_with("watched")).cloned().ok_or_else(|| format!("{seen:?}"))
    });
    assert!(line.contains("0/1"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn labels_annotations_scale_expose_edit_and_output_formats() {
    let c = cluster();
    let rc = include_str!("../../../examples/kubia-rc.yaml");
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], rc).ok().trim(),
        "replicationcontroller/kubia-rc created"
    );
    assert_eq!(
        c.kubectl(&["label", "rc", "kubia-rc", "tier=web"]).ok().trim(),
        "replicationcontroller/kubia-rc labeled"
    );
    assert_eq!(
        c.kubectl(&["annotate", "rc", "kubia-rc", "note=hi"]).ok().trim(),
        "replicationcontroller/kubia-rc annotated"
    );
    let out = c.kubectl(&["get", "rc", "--show-labels"]).ok().to_string();
    assert!(out.contains("tier=web"), "{out}");
    assert_eq!(
        c.kubectl(&["get", "rc", "-l", "tier=web", "-o", "name"]).ok().trim(),
        "replicationcontroller/kubia-rc"
    );
    assert_eq!(c.kubectl(&["get", "rc", "-l", "tier!=web", "-o", "name"]).ok().trim(), "");
    assert_eq!(
        c.kubectl(&["scale", "rc", "kubia-rc", "--replicas=5"]).ok().trim(),
        "replicationcontroller/kubia-rc scaled"
    );
    let rcj = c.kubectl(&["get", "rc", "kubia-rc", "-o", "json"]).json();
    assert_eq!(rcj["spec"]["replicas"], 5);
    assert_eq!(rcj["metadata"]["annotations"]["note"], "hi");
    let header = c.kubectl(&["get", "rc", "-o", "wide"]).ok().lines().next().unwrap_or_default().to_string();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    );

    assert_eq!(
        c.kubectl(&["expose", "rc", "kubia-rc", "--port=80", "--target-port=8080", "--name=kubia-rc"])
            .ok()
            .trim(),
        "service/kubia-rc exposed"
    );
    let yaml = c.kubectl(&["get", "svc", "kubia-rc", "-o", "yaml"]).ok().to_string();
    assert!(yaml.contains("app: kubia-rc") && yaml.contains("targetPort: 8080"), "{yaml}");

    // kubectl edit through a scripted editor that changes the port.
    let dir = tempfile_dir();
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/port: 80$/port: 81/' \"$1\"\n").expect("write editor");
    std::process::Command::new("chmod").arg("+x").arg(&editor).status().expect("chmod");
    let out = std::process::Command::new("kubectl")
        .args(["edit", "svc", "kubia-rc"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("KUBE_EDITOR", &editor)
        .output()
        .expect("kubectl edit runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "service/kubia-rc edited");
    let svc = c.kubectl(&["get", "svc", "kubia-rc", "-o", "json"]).json();
    assert_eq!(svc["spec"]["ports"][0]["port"], 81);

    assert_eq!(c.kubectl(&["delete", "svc", "kubia-rc"]).ok().trim(), "service \"kubia-rc\" deleted");
    let err = c.kubectl(&["get", "svc", "kubia-rc"]).err().to_string();
    assert!(err.contains("Error from server (NotFound): services \"kubia-rc\" not found"), "{err}");
}

#[test]
fn errors_read_like_upstream() {
    let c = cluster();
    let bad_field = KUBIA_SVC.replace("  ports:", "  portz: 1\n  ports:");
    let err = c.kubectl_stdin(&["apply", "-f", "-"], &bad_field).err().to_string();
    assert!(err.contains("strict decoding error: unknown field \"spec.portz\""), "{err}");

    let two_ports = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"multi"},"spec":{"ports":[{"name":"http","port":80},{"port":443}]}}"#;
    let err = c.kubectl_stdin(&["create", "-f", "-"], two_ports).err().to_string();
    assert!(err.contains("The Service \"multi\" is invalid: spec.ports[1].name: Required value"), "{err}");

    let err = c.kubectl(&["get", "widgets"]).err().to_string();
    assert!(err.contains("the server doesn't have a resource type \"widgets\""), "{err}");

    let taken = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"taken"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}"#;
    let err = c.kubectl_stdin(&["create", "-f", "-"], taken).err().to_string();
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

#[test]
fn objects_survive_restart_and_kill_9() {
    let mut c = cluster();
    c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok();
    let ip = c.kubectl(&["get", "svc", "kubia", "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string();
    c.restart().expect("restart");
    assert_eq!(c.kubectl(&["get", "svc", "kubia", "-o", "jsonpath={.spec.clusterIP}"]).ok(), ip);
    c.kubectl(&["create", "configmap", "acked", "--from-literal=k=v"]).ok();
    c.kill9().expect("kill -9");
    c.relaunch().expect("relaunch");
    assert_eq!(c.kubectl(&["get", "cm", "acked", "-o", "jsonpath={.data.k}"]).ok(), "v");
    // A restarted allocator still knows the IP is taken.
    let clash = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"clash"}},"spec":{{"clusterIP":"{ip}","ports":[{{"port":80}}]}}}}"#
    );
    let err = c.kubectl_stdin(&["create", "-f", "-"], &clash).err().to_string();
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

#[test]
fn oldest_and_newest_bundled_kubectl_work() {
    let mut c = cluster();
    for minor in [27, 33] {
        c.kubectl = kubectl_version(minor);
        let name = format!("kubia-{minor}");
        let svc = KUBIA_SVC.replace("name: kubia", &format!("name: {name}"));
        assert_eq!(
            c.kubectl_stdin(&["apply", "-f", "-"], &svc).ok().trim(),
            format!("service/{name} created")
        );
        let out = c.kubectl(&["get", "svc", &name]).ok().to_string();
        assert!(table_rows(&out)[1][..2] == [name.as_str(), "ClusterIP"], "{out}");
        c.kubectl(&["create", "secret", "generic", &format!("s{minor}"), "--from-literal=a=b"]).ok();
        assert_eq!(c.kubectl(&["delete", "svc", &name]).ok().trim(), format!("service \"{name}\" deleted"));
    }
}

/// A temporary directory removed when the test ends.
fn tempfile_dir() -> pier_testkit::tempfile::TempDir {
    pier_testkit::tempfile::tempdir().expect("temp dir")
}
