//! End-to-end: the Endpoints and EndpointSlice controllers inside `pier up`, seen
//! through the real `kubectl`: `get endpoints`, `describe svc`, `get endpointslices`,
//! mirroring of the seed's manual `external-service` Endpoints, and a pod turning
//! NotReady. There is no node agent yet, so the tests play it: pods are bound to a
//! node in their manifest and get their IP and Ready condition through
//! `kubectl patch --subresource=status`. These are API objects only; no traffic is
//! sent anywhere.

use std::time::Duration;

use pier_testkit::{table_rows, wait_for, Cluster};

const DEADLINE: Duration = Duration::from_secs(20);

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

const KUBIA_SVC: &str = include_str!("../../../examples/kubia-svc.yaml");

/// A kubia pod already bound to a node, so no scheduler is involved.
fn kubia_pod(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: kubia
spec:
  nodeName: node-1
  containers:
  - name: kubia
    image: luksa/kubia
    ports:
    - containerPort: 8080
"#
    )
}

/// Writes a pod's IP and readiness as a node agent would.
fn set_status(c: &Cluster, pod: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{status}","lastTransitionTime":"2024-05-01T10:00:00Z"}}]}}}}"#
    );
    c.kubectl(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &patch]).ok();
}

/// The ENDPOINTS cell of `kubectl get endpoints <name>`.
fn endpoints_cell(c: &Cluster, name: &str) -> Result<String, String> {
    let out = c.kubectl(&["get", "endpoints", name]);
    if !out.success() {
        return Err(out.stderr.clone());
    }
    let line = out.stdout.lines().nth(1).ok_or_else(|| out.stdout.clone())?;
    // NAME  ENDPOINTS  AGE: the middle may contain " + 1 more...".
    let rest = line.trim_start_matches(name).trim();
    let cell = rest.rsplit_once(char::is_whitespace).map(|(cell, _age)| cell.trim()).unwrap_or(rest);
    Ok(cell.to_string())
}

#[test]
fn kubectl_shows_endpoints_and_slices_of_a_service() {
    let c = cluster();
    c.kubectl_stdin(&["apply", "-f", "-"], KUBIA_SVC).ok();
    let pods = [
        ("kubia-a", "10.244.0.5"),
        ("kubia-b", "10.244.0.6"),
        ("kubia-c", "10.244.0.7"),
        ("kubia-d", "10.244.0.8"),
    ];
    for (name, ip) in pods {
        c.kubectl_stdin(&["apply", "-f", "-"], &kubia_pod(name)).ok();
        set_status(&c, name, ip, true);
    }

    // Upstream's printer: ready addresses in order, three at most, then "+ N more...".
    let want = "10.244.0.5:8080,10.244.0.6:8080,10.244.0.7:8080 + 1 more...";
    wait_for("kubectl get endpoints kubia", DEADLINE, || match endpoints_cell(&c, "kubia") {
        Ok(cell) if cell == want => Ok(()),
        other => Err(format!("{other:?}")),
    });

    let out = c.kubectl(&["describe", "svc", "kubia"]).ok().to_string();
    let line = out.lines().find(|l| l.starts_with("Endpoints:")).unwrap_or_default();
    assert!(line.contains("10.244.0.5:8080"), "describe svc:\n{out}");

    let out =
        c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=kubia"]).ok().to_string();
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], "{out}");
    assert_eq!(rows.len(), 2, "one slice: {out}");
    assert!(rows[1][0].starts_with("kubia-"), "{out}");
    assert_eq!(&rows[1][1..4], ["IPv4", "8080", "10.244.0.5,10.244.0.6,10.244.0.7"], "{out}");

    // kubia-b turns NotReady: it leaves `addresses` for `notReadyAddresses`, and its
    // slice endpoint is no longer ready.
    set_status(&c, "kubia-b", "10.244.0.6", false);
    wait_for("kubia-b out of the ready addresses", DEADLINE, || match endpoints_cell(&c, "kubia") {
        Ok(cell) if cell == "10.244.0.5:8080,10.244.0.7:8080,10.244.0.8:8080" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let ep = c.kubectl(&["get", "endpoints", "kubia", "-o", "json"]).json();
    let subset = &ep["subsets"][0];
    let ips = |list: &str| -> Vec<String> {
        subset[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ips("addresses"), ["10.244.0.5", "10.244.0.7", "10.244.0.8"], "{ep}");
    assert_eq!(ips("notReadyAddresses"), ["10.244.0.6"], "{ep}");
    assert_eq!(subset["addresses"][0]["targetRef"]["name"], "kubia-a", "{ep}");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"].is_string(),
        "{ep}"
    );

    let slices =
        c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=kubia", "-o", "json"]).json();
    let endpoints = slices["items"][0]["endpoints"].as_array().cloned().unwrap_or_default();
    let b = endpoints.iter().find(|e| e["addresses"][0] == "10.244.0.6").cloned().unwrap_or_default();
    assert_eq!(b["conditions"]["ready"], false, "{slices}");
    assert_eq!(b["conditions"]["serving"], false, "{slices}");
    assert_eq!(
        slices["items"][0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
}

#[test]
fn manual_endpoints_of_external_service_are_mirrored() {
    let c = cluster();
    let manifest = r#"
apiVersion: v1
kind: Service
metadata:
  name: external-service
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external-service
subsets:
  - addresses:
    - ip: 11.11.11.11
    - ip: 22.22.22.22
    ports:
    - port: 80
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], manifest).ok();
    let out = wait_for("a mirrored slice", DEADLINE, || {
        let out = c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=external-service"]);
        let text = out.stdout.clone();
        if out.success() && text.contains("11.11.11.11,22.22.22.22") {
            Ok(text)
        } else {
            Err(format!("{text}{}", out.stderr))
        }
    });
    let rows = table_rows(&out);
    assert_eq!(&rows[1][1..4], ["IPv4", "80", "11.11.11.11,22.22.22.22"], "{out}");
    let slices = c
        .kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=external-service",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(
        slices["items"][0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    // The user's Endpoints stay as written, and print as upstream.
    assert_eq!(endpoints_cell(&c, "external-service").as_deref(), Ok("11.11.11.11:80,22.22.22.22:80"));

    // The built-in `kubernetes` Endpoints are labelled skip-mirror: no mirrored slice.
    let out = c
        .kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes,endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io",
            "-o",
            "name",
        ])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "", "{out}");
}
