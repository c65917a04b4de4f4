//! End-to-end: pods run as real sandboxed processes on a node `pier up` starts in its
//! own network namespace, driven with the real `kubectl` as in issue 4's story:
//! nodes, pod IPs, pod-to-pod HTTP, the environment, resolv.conf, logs, exec (exit
//! codes, stdin, TTY), port-forward, private files, restarts, bad input, and cleanup.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{apply, wait_running, WAIT};
use pier_testkit::{table_rows, wait_for, Cluster};

const KUBIA_RC: &str = include_str!("../../../examples/kubia-rc.yaml");
const KUBIA_SVC: &str = include_str!("../../../examples/kubia-svc.yaml");

fn cluster() -> Cluster {
    pier_testkit::start_cluster!(nodes: 1)
}

fn pod_field(c: &Cluster, pod: &str, path: &str) -> String {
    c.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")]).ok().to_string()
}

#[test]
fn kubia_pods_run_on_the_node() {
    let c = cluster();
    let nodes = wait_for("a Ready node", WAIT, || {
        let out = c.kubectl(&["get", "nodes", "-o", "wide"]).ok().to_string();
        let rows = table_rows(&out);
        match rows.get(1) {
            Some(r) if r[0] == "pier-node-0" && r[1] == "Ready" => Ok(rows),
            _ => Err(out),
        }
    });
    assert_eq!(nodes[0][5], "INTERNAL-IP");
    assert!(nodes[1][5].starts_with("172.31."), "{nodes:?}");

    apply(&c, KUBIA_SVC);
    apply(&c, KUBIA_RC);
    let rows = wait_running(&c, "app=kubia-rc", 3);
    for r in &rows {
        assert!(r[5].starts_with("10.244.0."), "pod IP {r:?}");
        assert_eq!(r[6], "pier-node-0");
    }
    let (a, b) = (&rows[0][0], &rows[1]);

    // Pod to pod over the node's bridge: the other pod answers with its hostname.
    let hit = c.kubectl(&["exec", a, "--", "curl", "-s", &format!("http://{}:8080", b[5])]).ok().to_string();
    assert_eq!(hit, format!("You've hit {}\n", b[0]));

    // The environment: hostname and the service links of services that existed.
    let env = c.kubectl(&["exec", a, "--", "env"]).ok().to_string();
    let svc_ip = c.kubectl(&["get", "svc", "kubia", "-o", "jsonpath={.spec.clusterIP}"]).ok().to_string();
    for line in [
        format!("HOSTNAME={a}"),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".to_string(),
        "KUBERNETES_SERVICE_PORT=443".to_string(),
        "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443".to_string(),
        format!("KUBIA_SERVICE_HOST={svc_ip}"),
        "KUBIA_SERVICE_PORT=80".to_string(),
        format!("KUBIA_PORT_80_TCP_ADDR={svc_ip}"),
        "KUBIA_PORT_80_TCP_PROTO=tcp".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from:\n{env}");
    }
    assert_eq!(
        c.kubectl(&["exec", a, "--", "cat", "/etc/resolv.conf"]).ok(),
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(c.kubectl(&["exec", a, "--", "hostname"]).ok().trim(), a.as_str());
    let hosts = c.kubectl(&["exec", a, "--", "cat", "/etc/hosts"]).ok().to_string();
    assert!(hosts.lines().any(|l| l == format!("{}\t{a}", rows[0][5])), "{hosts}");

    // Logs of the pod that answered, as the book's app prints them.
    let logs = c.kubectl(&["logs", &b[0]]).ok().to_string();
    assert!(logs.starts_with("Kubia server starting...\n"), "{logs}");
    assert!(logs.contains(&format!("Received request from ::ffff:{}", rows[0][5])), "{logs}");
    let tail = c.kubectl(&["logs", &b[0], "--tail=1", "--timestamps"]).ok().to_string();
    assert!(tail.ends_with(&format!("Received request from ::ffff:{}\n", rows[0][5])), "{tail}");
    assert!(tail.starts_with("20") && tail.contains("Z Received"), "{tail}");

    // Exit codes and stdin through exec.
    let failed = c.kubectl(&["exec", a, "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(failed.code, Some(7), "{failed:?}");
    assert_eq!(failed.stdout, "out\n");
    assert!(failed.stderr.starts_with("err\n"), "{failed:?}");
    assert_eq!(c.kubectl_stdin(&["exec", "-i", a, "--", "tr", "a-z", "A-Z"], "hello\n").ok(), "HELLO\n");
    let missing = c.kubectl(&["exec", a, "--", "nosuchprogram"]);
    assert!(!missing.success());
    assert!(
        missing.stderr.contains("exec: \"nosuchprogram\": executable file not found in $PATH"),
        "{missing:?}"
    );

    // Files a pod writes are its own.
    let marker = format!("/var/pier-e2e-{}", std::process::id());
    assert!(!Path::new(&marker).exists());
    c.kubectl(&["exec", a, "--", "touch", &marker]).ok();
    c.kubectl(&["exec", a, "--", "ls", &marker]).ok();
    assert!(!c.kubectl(&["exec", &b[0], "--", "ls", &marker]).success(), "the other pod sees {marker}");
    assert!(!Path::new(&marker).exists(), "the host sees {marker}");

    // Port-forward from the host to the pod.
    let pf = c.kubectl_lines(&["port-forward", &b[0], ":8080"]).expect("port-forward starts");
    assert_eq!(curl_forwarded(pf), format!("You've hit {}\n", b[0]));
}

/// Waits for `kubectl port-forward POD :8080` to listen, then GETs `/` through it.
fn curl_forwarded(mut pf: pier_testkit::Lines) -> String {
    let line = pf.wait_line("forwarding", WAIT, |l| l.starts_with("Forwarding from 127.0.0.1:"));
    let port = line
        .trim_start_matches("Forwarding from 127.0.0.1:")
        .split_whitespace()
        .next()
        .expect("a port")
        .to_string();
    let got = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&got.stdout).into_owned()
}

#[test]
fn exec_and_port_forward_with_kubectl_1_27_over_spdy() {
    let c = cluster();
    let old = pier_testkit::kubectl_version(27);
    c.kubectl(&["run", "spdy", "--image=luksa/kubia"]).ok();
    wait_running(&c, "run=spdy", 1);
    let out = c.kubectl_with(&old, &["exec", "spdy", "--", "sh", "-c", "hostname; exit 3"], None);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "spdy\n");
    let pf = c.kubectl_lines_with(&old, &["port-forward", "pod/spdy", ":8080"]).expect("port-forward");
    assert_eq!(curl_forwarded(pf), "You've hit spdy\n");
}

#[test]
fn exec_with_a_terminal() {
    let c = cluster();
    c.kubectl(&["run", "tty", "--image=busybox", "--command", "--", "sleep", "3600"]).ok();
    wait_running(&c, "run=tty", 1);
    // kubectl wants a terminal for -t: `script` gives it one.
    let cmd = format!(
        "KUBECONFIG={} kubectl exec -it tty -- sh -c 'tty; stty size; exit 4'",
        c.kubeconfig.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
}

#[test]
fn containers_that_fail_say_why() {
    let c = cluster();
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: exits}
spec:
  restartPolicy: Never
  containers: [{name: main, image: busybox, command: [sh, -c, "echo bye; exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crashes}
spec:
  containers: [{name: main, image: busybox, command: [sh, -c, "exit 1"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: nocommand}
spec:
  containers: [{name: main, image: busybox, command: [nosuchprogram]}]
---
apiVersion: v1
kind: Pod
metadata: {name: unknownimage}
spec:
  containers: [{name: main, image: example.com/unknown:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: noconfig}
spec:
  containers:
  - name: main
    image: busybox
    command: [sleep, "3600"]
    env: [{name: X, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]
"#,
    );
    let status = |pod: &str| -> String {
        let out = c.kubectl(&["get", "pod", pod]).ok().to_string();
        table_rows(&out).get(1).map(|r| r[2].clone()).unwrap_or_default()
    };
    let wait_status = |pod: &str, want: &str| {
        wait_for(&format!("{pod} {want}"), WAIT, || {
            let s = status(pod);
            if s == want {
                Ok(())
            } else {
                Err(s)
            }
        })
    };
    wait_status("exits", "Error");
    assert_eq!(pod_field(&c, "exits", ".status.containerStatuses[0].state.terminated.exitCode"), "3");
    assert_eq!(c.kubectl(&["logs", "exits"]).ok(), "bye\n");
    wait_status("crashes", "CrashLoopBackOff");
    wait_status("nocommand", "CrashLoopBackOff");
    let describe = c.kubectl(&["describe", "pod", "nocommand"]).ok().to_string();
    assert!(describe.contains("StartError"), "{describe}");
    assert!(describe.contains("exec: \"nosuchprogram\": executable file not found in $PATH"), "{describe}");
    wait_status("unknownimage", "ErrImagePull");
    let msg = pod_field(&c, "unknownimage", ".status.containerStatuses[0].state.waiting.message");
    assert!(msg.starts_with("image \"example.com/unknown:1\" is not in Pier's image table"), "{msg}");
    wait_status("noconfig", "CreateContainerConfigError");
    let msg = pod_field(&c, "noconfig", ".status.containerStatuses[0].state.waiting.message");
    assert_eq!(msg, "configmap \"nope\" not found");
    // The node and its other pods keep working.
    c.kubectl(&["run", "fine", "--image=luksa/kubia"]).ok();
    wait_running(&c, "run=fine", 1);
}

#[test]
fn deletion_honours_the_grace_period() {
    let c = cluster();
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers: [{name: main, image: busybox, command: [sh, -c, "trap '' TERM; while true; do sleep 1; done"]}]
"#,
    );
    wait_for("stubborn running", WAIT, || {
        let s = pod_field(&c, "stubborn", ".status.phase");
        if s == "Running" {
            Ok(())
        } else {
            Err(s)
        }
    });
    let start = Instant::now();
    c.kubectl(&["delete", "pod", "stubborn"]).ok();
    let took = start.elapsed();
    // SIGTERM is ignored, so the node waits the 2 s grace period, then kills.
    assert!(took >= Duration::from_millis(1800), "deleted after {took:?}");
    assert!(took < Duration::from_secs(10), "deleted after {took:?}");
}

#[test]
fn restarting_pier_up_brings_the_pods_back_and_stopping_it_leaves_nothing() {
    let mut c = cluster();
    let bridge = c.cluster_name().expect("cluster name").to_string();
    apply(&c, KUBIA_RC);
    let before = wait_running(&c, "app=kubia-rc", 3);
    c.restart().expect("pier up restarts");
    let after = wait_running(&c, "app=kubia-rc", 3);
    let ips = |rows: &[Vec<String>]| {
        let mut v: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[5].clone())).collect();
        v.sort();
        v
    };
    assert_eq!(ips(&before), ips(&after), "pods keep their names and IPs");
    let hit = c.kubectl(&["exec", &after[0][0], "--", "curl", "-s", &format!("http://{}:8080", after[1][5])]);
    assert_eq!(hit.ok(), format!("You've hit {}\n", after[1][0]));
    c.stop().expect("pier up stops");
    assert!(!Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} left behind");
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(!netns.iter().any(|n| n.starts_with(&bridge)), "namespaces left: {netns:?}");
    let procs = std::process::Command::new("pgrep")
        .args(["-f", &format!("pier node.*{}", c.data_dir().display())])
        .output()
        .expect("pgrep");
    assert!(procs.stdout.is_empty(), "node processes left: {}", String::from_utf8_lossy(&procs.stdout));
}

/// The seed's readiness probe (`ls /var/ready`): a pod is ready only once the file
/// exists in that pod, and only ready pods are endpoints of the service.
#[test]
fn readiness_and_liveness_probes() {
    let c = cluster();
    apply(
        &c,
        r#"
apiVersion: v1
kind: Service
metadata: {name: kubia}
spec:
  selector: {app: probed}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: probed}
spec:
  replicas: 2
  selector: {app: probed}
  template:
    metadata: {labels: {app: probed}}
    spec:
      containers:
      - name: kubia
        image: parthghetia/kubia
        ports: [{containerPort: 8080}]
        readinessProbe: {exec: {command: [ls, /var/ready]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: kubia
    image: luksa/kubia-unhealthy
    livenessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1, failureThreshold: 2}
"#,
    );
    let rows = wait_for("two probed pods running, not ready", WAIT, || {
        let out = c.kubectl(&["get", "pods", "-l", "app=probed", "-o", "wide"]).ok().to_string();
        let rows: Vec<Vec<String>> = table_rows(&out).into_iter().skip(1).collect();
        if rows.len() == 2 && rows.iter().all(|r| r[1] == "0/1" && r[2] == "Running") {
            Ok(rows)
        } else {
            Err(out)
        }
    });
    let (a, b) = (&rows[0], &rows[1]);
    c.kubectl(&["exec", &a[0], "--", "touch", "/var/ready"]).ok();
    let started = Instant::now();
    wait_for("the touched pod ready", WAIT, || {
        let ready = pod_field(&c, &a[0], r#".status.conditions[?(@.type=="Ready")].status"#);
        if ready == "True" {
            Ok(())
        } else {
            Err(ready)
        }
    });
    // Within about one period (1 s) plus the API round trips.
    assert!(started.elapsed() < Duration::from_secs(3), "ready after {:?}", started.elapsed());
    assert_eq!(pod_field(&c, &b[0], r#".status.conditions[?(@.type=="Ready")].status"#), "False");
    let endpoints = wait_for("only the ready pod is an endpoint", WAIT, || {
        let ep = c.kubectl(&["get", "endpoints", "kubia"]).ok().to_string();
        if ep.contains(&format!("{}:8080", a[5])) && !ep.contains(&b[5]) {
            Ok(ep)
        } else {
            Err(ep)
        }
    });
    assert!(!endpoints.contains(&b[5]));
    let events = c.kubectl(&["describe", "pod", &b[0]]).ok().to_string();
    assert!(
        events.contains("Readiness probe failed: ls: cannot access '/var/ready': No such file or directory"),
        "{events}"
    );

    // kubia-unhealthy answers 500 from its 6th request: the liveness probe restarts it.
    wait_for("unhealthy restarted", Duration::from_secs(60), || {
        let n = pod_field(&c, "unhealthy", ".status.containerStatuses[0].restartCount");
        if n.parse::<u32>().unwrap_or(0) >= 1 {
            Ok(())
        } else {
            Err(n)
        }
    });
    let events = c.kubectl(&["describe", "pod", "unhealthy"]).ok().to_string();
    assert!(events.contains("Liveness probe failed: HTTP probe failed with statuscode: 500"), "{events}");
    assert!(events.contains("Container kubia failed liveness probe, will be restarted"), "{events}");
}

/// preStop hooks run before the container is stopped: an exec hook (from inside the
/// pod) and an httpGet hook (from the node) both reach a server pod, whose log shows it.
#[test]
fn pre_stop_hooks_run_before_termination() {
    let c = cluster();
    c.kubectl(&["run", "server", "--image=luksa/kubia"]).ok();
    let server = wait_running(&c, "run=server", 1);
    let server_ip = server[0][5].clone();
    apply(
        &c,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  containers:
  - name: main
    image: busybox
    command: [sleep, "3600"]
    lifecycle:
      preStop: {{exec: {{command: [curl, -s, "http://{server_ip}:8080/from-exec-hook"]}}}}
  - name: second
    image: busybox
    command: [sleep, "3600"]
    lifecycle:
      preStop: {{httpGet: {{host: "{server_ip}", port: 8080, path: /from-http-hook}}}}
"#
        ),
    );
    let hooked = wait_for("hooked running", WAIT, || {
        let out = c.kubectl(&["get", "pod", "hooked", "-o", "wide"]).ok().to_string();
        match table_rows(&out).get(1) {
            Some(r) if r[1] == "2/2" => Ok(r.clone()),
            _ => Err(out),
        }
    });
    c.kubectl(&["delete", "pod", "hooked"]).ok();
    let logs = c.kubectl(&["logs", "server"]).ok().to_string();
    assert!(logs.contains(&format!("Received request from ::ffff:{}", hooked[5])), "exec hook: {logs}");
    let requests = logs.matches("Received request from").count();
    assert_eq!(requests, 2, "{logs}");
}

/// Two nodes: pods land on both, and reach each other across the underlay (each
/// node routes the other's pod CIDR through the other's address).
#[test]
fn pods_on_two_nodes_reach_each_other() {
    let c = pier_testkit::start_cluster!(nodes: 2);
    wait_for("two Ready nodes", WAIT, || {
        let out = c.kubectl(&["get", "nodes"]).ok().to_string();
        if table_rows(&out).iter().skip(1).filter(|r| r[1] == "Ready").count() == 2 {
            Ok(())
        } else {
            Err(out)
        }
    });
    let yaml = KUBIA_RC.replace("replicas: 3", "replicas: 4");
    apply(&c, &yaml);
    let rows = wait_running(&c, "app=kubia-rc", 4);
    let on = |node: &str| rows.iter().filter(|r| r[6] == node).cloned().collect::<Vec<_>>();
    let (zero, one) = (on("pier-node-0"), on("pier-node-1"));
    assert!(!zero.is_empty() && !one.is_empty(), "{rows:?}");
    assert!(zero.iter().all(|r| r[5].starts_with("10.244.0.")), "{rows:?}");
    assert!(one.iter().all(|r| r[5].starts_with("10.244.1.")), "{rows:?}");
    for (from, to) in [(&zero[0], &one[0]), (&one[0], &zero[0])] {
        let hit =
            c.kubectl(&["exec", &from[0], "--", "curl", "-s", "-m", "5", &format!("http://{}:8080", to[5])]);
        assert_eq!(hit.ok(), format!("You've hit {}\n", to[0]));
    }
}

/// `dnsPolicy: None` with `dnsConfig`, `fieldRef` environment, and two containers in
/// one pod sharing its network: the second cannot take the port the first holds, and
/// says so in its log while the first keeps serving.
#[test]
fn pod_spec_details() {
    let c = cluster();
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: details}
spec:
  dnsPolicy: None
  dnsConfig: {nameservers: [10.0.0.53], searches: [example.test], options: [{name: ndots, value: "2"}]}
  containers:
  - name: first
    image: luksa/kubia
    env:
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: GREETING, value: "hello $(MY_NODE)"}
  - name: second
    image: luksa/kubia
"#,
    );
    wait_for("second crash-looping", WAIT, || {
        let out = c.kubectl(&["get", "pod", "details"]).ok().to_string();
        match table_rows(&out).get(1) {
            Some(r) if r[2] == "CrashLoopBackOff" && r[1] == "1/2" => Ok(()),
            _ => Err(out),
        }
    });
    assert_eq!(
        c.kubectl(&["exec", "details", "-c", "first", "--", "cat", "/etc/resolv.conf"]).ok(),
        "search example.test\nnameserver 10.0.0.53\noptions ndots:2\n"
    );
    let ip = pod_field(&c, "details", ".status.podIP");
    let env = c.kubectl(&["exec", "details", "-c", "first", "--", "env"]).ok().to_string();
    for line in
        [format!("MY_IP={ip}"), "MY_NODE=pier-node-0".to_string(), "GREETING=hello pier-node-0".to_string()]
    {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    let logs = c.kubectl(&["logs", "details", "-c", "second", "--previous"]).ok().to_string();
    assert!(logs.contains("Address already in use"), "{logs}");
    let hit = c.kubectl(&["exec", "details", "-c", "first", "--", "curl", "-s", "http://127.0.0.1:8080"]);
    assert_eq!(hit.ok(), "You've hit details\n");
}

/// `kubectl logs -f` streams lines as the container writes them, `--since` filters by
/// time, `port-forward svc/NAME` reaches a pod behind the service, and a pod cannot use
/// the node's streaming endpoint (it has no client certificate).
#[test]
fn follow_logs_forward_to_a_service_and_keep_pods_off_the_node_endpoint() {
    let c = cluster();
    c.kubectl(&[
        "run",
        "ticker",
        "--image=busybox",
        "--command",
        "--",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done",
    ])
    .ok();
    wait_running(&c, "run=ticker", 1);
    let mut follow = c.kubectl_lines(&["logs", "-f", "ticker", "--tail=1"]).expect("logs -f");
    let (first, _) = follow.wait_line_from(0, "a first line", WAIT, |l| l.starts_with("tick "));
    // A line written after `logs -f` started arrives while it keeps running.
    follow.wait_line_from(first + 2, "a later line", WAIT, |l| l.starts_with("tick "));
    assert!(follow.running(), "logs -f ended early");
    // Once the log spans well over a second, `--since=1s` shows only its end.
    wait_for("eight ticks", WAIT, || {
        let n = c.kubectl(&["logs", "ticker"]).ok().lines().count();
        if n >= 8 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let recent = c.kubectl(&["logs", "ticker", "--since=1s"]).ok().to_string();
    let all = c.kubectl(&["logs", "ticker"]).ok().to_string();
    assert!(!recent.is_empty() && recent.lines().count() < all.lines().count(), "{recent:?} vs {all:?}");
    assert!(!recent.contains("tick 0\n"), "{recent}");

    apply(&c, KUBIA_RC);
    let rows = wait_running(&c, "app=kubia-rc", 3);
    let names: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    c.kubectl(&["expose", "rc", "kubia-rc", "--port=80", "--target-port=8080"]).ok();
    let pf = c.kubectl_lines(&["port-forward", "svc/kubia-rc", ":80"]).expect("port-forward svc");
    let hit = curl_forwarded(pf);
    assert!(names.iter().any(|n| hit == format!("You've hit {n}\n")), "{hit} not from {names:?}");

    // The node's endpoint answers only clients with a certificate from the cluster CA.
    let node_ip = c.kubectl(&["get", "node", "pier-node-0", "-o", "jsonpath={.status.addresses[0].address}"]);
    let url = format!("https://{}:10250/containerLogs/default/ticker/ticker", node_ip.ok());
    let probe =
        c.kubectl(&["exec", &names[0], "--", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert!(!probe.success() || probe.stdout.trim() == "000", "a pod reached the node endpoint: {probe:?}");
}
