//! End-to-end: the main user story of the API server issue, run with the default
//! `kubectl` (the dispatcher on PATH) and with the oldest and newest bundled clients
//! (`kubectl.1.27`, `kubectl.1.33`), each against its own fresh cluster.

use std::path::PathBuf;

use pier_testkit::{kubectl_version, table_rows};

const KUBIA_SVC: &str = include_str!("../../../examples/kubia-svc.yaml");

/// `minor` is the client's minor version when it is pinned.
fn story(kubectl: PathBuf, minor: Option<u32>) {
    let mut c = pier_testkit::start_cluster!();
    c.kubectl = kubectl;
    let who = c.kubectl.display().to_string();

    // kubectl get ns
    let rows = table_rows(c.kubectl(&["get", "ns"]).ok());
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"], "{who}");
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"], "{who}");
    assert!(rows[1..].iter().all(|r| r[1] == "Active"), "{who}: {rows:?}");

    // kubectl get svc
    let rows = table_rows(c.kubectl(&["get", "svc"]).ok());
    assert_eq!(rows[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{who}");
    assert_eq!(rows[1][..5], ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"], "{who}");
    assert_eq!(rows.len(), 2, "{who}: {rows:?}");

    // kubectl apply, twice
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok().trim(),
        "service/kubia created",
        "{who}"
    );
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok().trim(),
        "service/kubia unchanged",
        "{who}"
    );
    let changed = KUBIA_SVC.replace("targetPort: 8080", "targetPort: 8081");
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], &changed).ok().trim(),
        "service/kubia configured",
        "{who}"
    );

    // kubectl create secret tls
    let dir = pier_testkit::tempfile::tempdir().expect("temp dir");
    let (key, cert) = (dir.path().join("tls.key"), dir.path().join("tls.cert"));
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
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let cert_arg = format!("--cert={}", cert.display());
    let key_arg = key.display().to_string();
    let out = c.kubectl(&["create", "secret", "tls", "tls-secret", &cert_arg, "--key", &key_arg]);
    assert_eq!(out.ok().trim(), "secret/tls-secret created", "{who}");
    c.kubectl(&["create", "configmap", "settings", "--from-literal=a=1"]).ok();

    // kubectl get svc,secrets,cm -A -o wide
    let out = c.kubectl(&["get", "svc,secrets,cm", "-A", "-o", "wide"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        "{who}: {out}"
    );
    let row = |name: &str| rows.iter().find(|r| r.get(1).map(String::as_str) == Some(name)).cloned();
    let svc = row("service/kubia").unwrap_or_else(|| panic!("{who}: {out}"));
    assert_eq!(svc[0], "default");
    assert_eq!(svc[2], "ClusterIP");
    assert_eq!(svc[4..6], ["<none>", "80/TCP"], "{who}: {out}");
    assert_eq!(svc[7], "app=kubia", "{who}: {out}");
    let k8s = row("service/kubernetes").unwrap_or_else(|| panic!("{who}: {out}"));
    assert_eq!(k8s[2..6], ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"], "{who}");
    assert_eq!(k8s[7], "<none>", "{who}");
    assert!(out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NAMESPACE", "NAME", "TYPE", "DATA", "AGE"]), "{who}: {out}");
    let secret = row("secret/tls-secret").unwrap_or_else(|| panic!("{who}: {out}"));
    assert_eq!(secret[..4], ["default", "secret/tls-secret", "kubernetes.io/tls", "2"], "{who}");
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NAMESPACE", "NAME", "DATA", "AGE"]),
        "{who}: {out}"
    );
    let cm = row("configmap/settings").unwrap_or_else(|| panic!("{who}: {out}"));
    assert_eq!(cm[..3], ["default", "configmap/settings", "1"], "{who}");

    // kubectl describe svc
    let out = c.kubectl(&["describe", "svc", "kubia"]).ok().to_string();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("{who}: describe lacks {name}:\n{out}"))
    };
    assert_eq!(field("Name:"), "kubia");
    assert_eq!(field("Namespace:"), "default");
    assert_eq!(field("Selector:"), "app=kubia");
    assert_eq!(field("Type:"), "ClusterIP");
    assert_eq!(field("TargetPort:"), "8081/TCP");
    assert_eq!(field("Port:"), "<unset>  80/TCP");
    assert_eq!(field("Session Affinity:"), "None");
    assert_eq!(field("Events:"), "<none>");

    // kubectl label / annotate
    assert_eq!(
        c.kubectl(&["label", "svc", "kubia", "tier=web"]).ok().trim(),
        "service/kubia labeled",
        "{who}"
    );
    // kubectl 1.27 itself prints "annotate" (kubernetes/kubernetes#119846, fixed in 1.28).
    let annotated = if minor == Some(27) { "service/kubia annotate" } else { "service/kubia annotated" };
    assert_eq!(c.kubectl(&["annotate", "svc", "kubia", "note=hi"]).ok().trim(), annotated, "{who}");
    let rows = table_rows(c.kubectl(&["get", "svc", "kubia", "--show-labels"]).ok());
    assert_eq!(rows[0].last().map(String::as_str), Some("LABELS"), "{who}");
    assert_eq!(rows[1].last().map(String::as_str), Some("tier=web"), "{who}");
    assert_eq!(
        c.kubectl(&["get", "svc", "-l", "tier=web", "-o", "name"]).ok().trim(),
        "service/kubia",
        "{who}"
    );
    assert_eq!(
        c.kubectl(&["label", "svc", "kubia", "tier-"]).ok().trim(),
        "service/kubia unlabeled",
        "{who}"
    );
    assert_eq!(c.kubectl(&["get", "svc", "-l", "tier", "-o", "name"]).ok().trim(), "", "{who}");

    // -o yaml | json | name
    let yaml = c.kubectl(&["get", "svc", "kubia", "-o", "yaml"]).ok().to_string();
    assert!(yaml.starts_with("apiVersion: v1\n"), "{who}: {yaml}");
    for line in
        ["kind: Service", "  name: kubia", "    note: hi", "    targetPort: 8081", "  type: ClusterIP"]
    {
        assert!(yaml.lines().any(|l| l == line), "{who}: no {line:?} in\n{yaml}");
    }
    let json = c.kubectl(&["get", "svc", "kubia", "-o", "json"]).json();
    assert_eq!(json["kind"], "Service");
    assert_eq!(json["metadata"]["annotations"]["note"], "hi");
    assert!(json["metadata"].get("labels").is_none(), "{who}: the last label went: {json}");
    assert_eq!(json["spec"]["ports"][0]["targetPort"], 8081);
    let list = c.kubectl(&["get", "svc", "-o", "json"]).json();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        c.kubectl(&["get", "svc,secrets", "-o", "name"]).ok(),
        "service/kubernetes\nservice/kubia\nsecret/tls-secret\n",
        "{who}"
    );

    // kubectl delete
    assert_eq!(c.kubectl(&["delete", "svc", "kubia"]).ok().trim(), "service \"kubia\" deleted", "{who}");
    assert_eq!(
        c.kubectl(&["delete", "secret", "tls-secret"]).ok().trim(),
        "secret \"tls-secret\" deleted",
        "{who}"
    );
    let err = c.kubectl(&["get", "svc", "kubia"]).err().to_string();
    assert_eq!(err.trim(), "Error from server (NotFound): services \"kubia\" not found", "{who}");
    let err = c.kubectl(&["delete", "svc", "kubia"]).err().to_string();
    assert_eq!(err.trim(), "Error from server (NotFound): services \"kubia\" not found", "{who}");
}

#[test]
fn user_story_with_the_default_kubectl() {
    story(PathBuf::from("kubectl"), None);
}

#[test]
fn user_story_with_kubectl_1_27() {
    story(kubectl_version(27), Some(27));
}

#[test]
fn user_story_with_kubectl_1_33() {
    story(kubectl_version(33), Some(33));
}
