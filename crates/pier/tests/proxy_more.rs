//! End-to-end: more of the service proxy (issue 5) with the real kubectl, curl and bash:
//! a UDP ClusterIP and the clearing of stale UDP conntrack entries when an endpoint goes
//! or stops serving (the `pier/udp-echo` image, and its client run in a pod from a fixed
//! source port), external IPs and `loadBalancerSourceRanges` from the host,
//! `internalTrafficPolicy: Local` across two nodes, the fallback to serving and
//! terminating endpoints when none is ready, and a restart of the proxy under an
//! established connection.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    apply, curl_from_host, curl_from_host_within, curl_from_pod, curl_from_pod_within, hit_pod, host_ip,
    jsonpath, metric, node_agent_pids, node_ip, wait_nodes, wait_running, WAIT, WEB_ON_NODE_1,
};
use pier_testkit::{table_rows, wait_for, Cluster};

/// The pier executable; pods see the host's files, so it runs inside them too.
const PIER: &str = env!("CARGO_BIN_EXE_pier");

/// Waits until `kubectl get <kind> <name>` says NotFound.
fn wait_gone(c: &Cluster, kind: &str, name: &str, timeout: Duration) {
    wait_for(&format!("{kind} {name} to be gone"), timeout, || {
        let out = c.kubectl(&["get", kind, name]);
        if !out.success() && out.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr))
        }
    });
}

/// `pier app udp-echo --client` inside `pod`: `count` datagrams to `server` from local
/// port `source_port`, each waited for `timeout_ms`; one line per datagram (the answer,
/// `timeout` or `refused`).
fn udp_query(
    c: &Cluster,
    pod: &str,
    server: &str,
    source_port: u16,
    count: u32,
    timeout_ms: u32,
) -> Vec<String> {
    let out = c.kubectl(&[
        "exec",
        pod,
        "--",
        PIER,
        "app",
        "udp-echo",
        "--client",
        server,
        "--source-port",
        &source_port.to_string(),
        "--count",
        &count.to_string(),
        "--timeout-ms",
        &timeout_ms.to_string(),
    ]);
    // Exit 1 only says that nothing was answered; the lines say what happened.
    assert!(matches!(out.code, Some(0 | 1)), "{out:?}");
    out.stdout.lines().map(str::to_string).collect()
}

/// The pod a `udp-echo` answer to the `n`th datagram `hi-<n>` came from.
fn udp_answerer(line: &str, n: u32) -> Option<&str> {
    line.strip_suffix(&format!(" hi-{n}"))
}

/// Waits (10 s at most) until datagrams from the client's fixed `source_port` are
/// answered by `pod`; returns how long that took.
fn wait_flow_moves(c: &Cluster, server: &str, source_port: u16, pod: &str) -> Duration {
    let since = Instant::now();
    wait_for(&format!("answers from {pod} on source port {source_port}"), Duration::from_secs(10), || {
        let a = udp_query(c, "client", server, source_port, 1, 500);
        if a.first().and_then(|l| udp_answerer(l, 1)) == Some(pod) {
            Ok(since.elapsed())
        } else {
            Err(format!("{a:?}"))
        }
    })
}

/// A client pod and the UDP Service `echo` (53 -> the echo pods' 5353).
const UDP_CLIENT_AND_SERVICE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers: [{name: client, image: debian, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: udp-echo}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353}]
"#;

#[test]
fn udp_cluster_ip_balances_and_forgets_removed_endpoints() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: echo-a, labels: {app: udp-echo}}
spec:
  containers: [{name: echo, image: pier/udp-echo, ports: [{containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, labels: {app: udp-echo}}
spec:
  containers: [{name: echo, image: pier/udp-echo, ports: [{containerPort: 5353, protocol: UDP}]}]
"#,
    );
    apply(&c, UDP_CLIENT_AND_SERVICE);
    wait_running(&c, "app=udp-echo", 2);
    wait_running(&c, "role=client", 1);
    let pods = BTreeSet::from(["echo-a", "echo-b"]);
    let ip = jsonpath(&c, "svc", "echo", ".spec.clusterIP");

    // bash's /dev/udp, a new socket (and source port) per query: every answer comes from
    // one of the pods, and both answer.
    let script = format!(
        "for i in $(seq 20); do bash -c 'exec 3<>/dev/udp/{ip}/53; printf hi >&3; \
         timeout 2 dd bs=512 count=1 status=none <&3' || printf no-answer; echo; done"
    );
    let answers = wait_for("the UDP service answering", WAIT, || {
        let out = c.kubectl(&["exec", "client", "--", "sh", "-c", &script]).ok().to_string();
        let hosts: Vec<String> =
            out.lines().map(|l| l.strip_suffix(" hi").unwrap_or("(not an answer)").to_string()).collect();
        if hosts.len() == 20 && hosts.iter().all(|h| pods.contains(h.as_str())) {
            Ok(hosts)
        } else {
            Err(out)
        }
    });
    let hit: BTreeSet<&str> = answers.iter().map(String::as_str).collect();
    assert_eq!(hit, pods, "20 queries: {answers:?}");

    // From one source port, every datagram follows the first one's conntrack entry to
    // the same pod, also from a new socket on that port.
    let server = format!("{ip}:53");
    let first = udp_query(&c, "client", &server, 40053, 3, 2000);
    let answerer = first.first().and_then(|l| udp_answerer(l, 1)).unwrap_or_else(|| panic!("{first:?}"));
    let answerer = answerer.to_string();
    let expect = |n: u32| format!("{answerer} hi-{n}");
    assert_eq!(first, (1..=3).map(expect).collect::<Vec<_>>(), "one source port, one pod");
    let again = udp_query(&c, "client", &server, 40053, 3, 2000);
    assert_eq!(again, (1..=3).map(expect).collect::<Vec<_>>(), "the entry outlives the socket");
    let other = *pods.iter().find(|p| **p != answerer).expect("two pods");

    // The answering pod goes. Its entry would keep steering this source port to the gone
    // address (a black hole) for as long as the client keeps sending; the proxy deletes
    // it when the endpoint leaves the slice, so the next datagram finds the other pod.
    c.kubectl(&["delete", "pod", &answerer, "--wait=false"]).ok();
    wait_gone(&c, "pod", &answerer, WAIT);
    let took = wait_flow_moves(&c, &server, 40053, other);
    eprintln!("source port 40053 reached {other} {took:?} after {answerer} was gone");
    let after = udp_query(&c, "client", &server, 40053, 3, 2000);
    assert_eq!(after, (1..=3).map(|n| format!("{other} hi-{n}")).collect::<Vec<_>>());
}

#[test]
fn udp_flows_leave_an_endpoint_that_stops_serving() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    let echo = |name: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: udp-echo}}}}
spec:
  containers:
  - name: echo
    image: pier/udp-echo
    ports: [{{containerPort: 5353, protocol: UDP}}]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1, failureThreshold: 1}}
"#
        )
    };
    apply(&c, &echo("echo-a"));
    apply(&c, &echo("echo-b"));
    apply(&c, UDP_CLIENT_AND_SERVICE);
    wait_running(&c, "role=client", 1);
    for pod in ["echo-a", "echo-b"] {
        wait_for(&format!("{pod} made ready"), WAIT, || {
            let out = c.kubectl(&["exec", pod, "--", "touch", "/tmp/ready"]);
            if out.success() {
                Ok(())
            } else {
                Err(out.stderr)
            }
        });
    }
    wait_running(&c, "app=udp-echo", 2);
    let server = format!("{}:53", jsonpath(&c, "svc", "echo", ".spec.clusterIP"));
    let first = wait_for("the UDP service answering", WAIT, || {
        let a = udp_query(&c, "client", &server, 40054, 1, 2000);
        a.first().and_then(|l| udp_answerer(l, 1)).map(str::to_string).ok_or(format!("{a:?}"))
    });
    let other = if first == "echo-a" { "echo-b" } else { "echo-a" };

    // The answering pod stops being ready (still running, still answering): its
    // endpoint stays in the slice, not ready and not serving. The proxy no longer picks
    // it, and (as kube-proxy, for an endpoint that stops serving) deletes the flows
    // DNAT'ed to it, so this source port moves to the other pod.
    c.kubectl(&["exec", &first, "--", "rm", "/tmp/ready"]).ok();
    wait_for(&format!("{first}'s endpoint not serving"), WAIT, || {
        let slices = c
            .kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=echo", "-o", "json"])
            .json();
        let all: Vec<serde_json::Value> = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .collect();
        let mine = all.iter().find(|e| e["targetRef"]["name"] == first.as_str());
        match mine.map(|e| &e["conditions"]) {
            Some(cond) if cond["serving"] == false && cond["ready"] == false => Ok(()),
            _ => Err(format!("{all:?}")),
        }
    });
    // New flows (a new source port each) already avoid it: the rules are right...
    wait_for(&format!("new flows reaching only {other}"), WAIT, || {
        let a: Vec<String> = (0..5).flat_map(|_| udp_query(&c, "client", &server, 0, 1, 2000)).collect();
        if a.iter().all(|l| udp_answerer(l, 1) == Some(other)) {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    });
    // ...and the old flow must follow.
    let took = wait_flow_moves(&c, &server, 40054, other);
    eprintln!("source port 40054 reached {other} {took:?} after {first} stopped serving");
}

#[test]
fn external_ips_and_load_balancer_source_ranges_from_the_host() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    let nodes = wait_nodes(&c, 1);
    let ip0 = node_ip(&nodes, "pier-node-0");
    let host = host_ip(&ip0);
    // An underlay address outside the LoadBalancer pool (.200-.250), so the pool never
    // hands it out too.
    let external = format!("{}.190", ip0.rsplit_once('.').expect("dotted").0);
    apply(
        &c,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers: [{{name: web, image: luksa/kubia, ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-ext}}
spec:
  selector: {{app: web}}
  externalIPs: ["{external}"]
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb}}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: ["{host}/32"]
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
        ),
    );
    wait_running(&c, "app=web", 1);
    let answers = |url: &str| match curl_from_host(url) {
        (0, body) if body == "You've hit web\n" => Ok(()),
        other => Err(format!("{other:?}")),
    };
    // A curl that gets nothing: the filter drops, so it times out (2 s is plenty on a
    // bridge that answers in microseconds).
    let fails = |url: &str| match curl_from_host_within(url, 2) {
        (0, body) => Err(format!("answered {body:?}")),
        (code, _) => Ok(code),
    };

    // externalIPs: kubectl shows it, and the node announces it on the underlay.
    let svc = c.kubectl(&["get", "svc", "web-ext"]).ok().to_string();
    assert_eq!(table_rows(&svc).get(1).map(|r| r[3].as_str()), Some(external.as_str()), "{svc}");
    let ext_url = format!("http://{external}");
    wait_for(&format!("{ext_url} from the host"), WAIT, || answers(&ext_url));
    // Taken off the Service, the address is no longer served.
    c.kubectl(&[
        "patch",
        "svc",
        "web-ext",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/externalIPs"}]"#,
    ])
    .ok();
    wait_for(&format!("{ext_url} no longer served"), WAIT, || fails(&ext_url));

    // loadBalancerSourceRanges admitting the host.
    let lb = wait_for("an EXTERNAL-IP for web-lb", WAIT, || {
        let out = c.kubectl(&["get", "svc", "web-lb"]).ok().to_string();
        match table_rows(&out).get(1) {
            Some(r) if r[3] != "<pending>" => Ok(r[3].clone()),
            _ => Err(out),
        }
    });
    let lb_url = format!("http://{lb}");
    wait_for(&format!("{lb_url} from the host, admitted"), WAIT, || answers(&lb_url));
    // A range without the host (a filter value only; nothing is sent there): refused
    // entry, while the ClusterIP still answers inside the cluster.
    let patch = |ranges: &str| {
        let body = format!(r#"{{"spec":{{"loadBalancerSourceRanges":{ranges}}}}}"#);
        c.kubectl(&["patch", "svc", "web-lb", "--type=merge", "-p", &body]).ok();
    };
    patch(r#"["192.0.2.0/24"]"#);
    let code = wait_for(&format!("{lb_url} closed to the host"), WAIT, || fails(&lb_url));
    assert_eq!(code, 28, "dropped, so curl times out");
    let cluster_ip = jsonpath(&c, "svc", "web-lb", ".spec.clusterIP");
    assert_eq!(curl_from_pod(&c, "web", &format!("http://{cluster_ip}"), 1), ["You've hit web"]);
    // Both ranges: admitted again.
    patch(&format!(r#"["192.0.2.0/24", "{host}/32"]"#));
    wait_for(&format!("{lb_url} from the host, admitted again"), WAIT, || answers(&lb_url));
}

#[test]
fn internal_traffic_policy_local_serves_only_clients_on_the_endpoints_node() {
    let c = pier_testkit::start_cluster!(nodes: 2);
    wait_nodes(&c, 2);
    apply(&c, WEB_ON_NODE_1);
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: client-0, labels: {role: client}}
spec:
  nodeSelector: {kubernetes.io/hostname: pier-node-0}
  containers: [{name: client, image: debian, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-1, labels: {role: client}}
spec:
  nodeSelector: {kubernetes.io/hostname: pier-node-1}
  containers: [{name: client, image: debian, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-any}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    wait_running(&c, "app=web", 1);
    let clients = wait_running(&c, "role=client", 2);
    for row in &clients {
        let node = row[6].as_str();
        assert_eq!(node, format!("pier-node-{}", &row[0]["client-".len()..]), "{row:?}");
    }
    let local = format!("http://{}", jsonpath(&c, "svc", "web-local", ".spec.clusterIP"));
    let any = format!("http://{}", jsonpath(&c, "svc", "web-any", ".spec.clusterIP"));
    let answers = |pod: &str, url: &str| {
        wait_for(&format!("{url} from {pod}"), WAIT, || {
            let a = curl_from_pod(&c, pod, url, 3);
            if a.iter().all(|l| hit_pod(l) == Some("web")) {
                Ok(())
            } else {
                Err(format!("{a:?}"))
            }
        })
    };
    // The twin without the policy works from both nodes.
    answers("client-0", &any);
    answers("client-1", &any);
    // Local: the endpoint's node serves its own clients...
    answers("client-1", &local);
    // ...and the other node, with no local endpoint, drops (so curl times out) rather
    // than sending the traffic across.
    assert_eq!(curl_from_pod_within(&c, "client-0", &local, 2, 2), ["curl-exit-28", "curl-exit-28"]);
    // The policy only matters inside: still fine from node 1, and the twin from node 0.
    answers("client-1", &local);
    answers("client-0", &any);
}

#[test]
fn terminating_endpoints_serve_while_none_is_ready() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: web
    image: luksa/kubia
    ports: [{containerPort: 8080}]
    lifecycle: {preStop: {exec: {command: [sleep, "20"]}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers: [{name: client, image: debian, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    wait_running(&c, "app=web", 1);
    wait_running(&c, "role=client", 1);
    let url = format!("http://{}", jsonpath(&c, "svc", "web", ".spec.clusterIP"));
    wait_for("the service answering", WAIT, || {
        let a = curl_from_pod(&c, "client", &url, 1);
        if a == ["You've hit web"] {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    });

    // Deleted, the pod runs its 20 s preStop hook while kubia keeps serving.
    c.kubectl(&["delete", "pod", "web", "--wait=false"]).ok();
    let deleted = Instant::now();
    let terminating = || {
        let out = c.kubectl(&["get", "pod", "web"]).ok().to_string();
        match table_rows(&out).get(1) {
            Some(r) if r[2] == "Terminating" => Ok(()),
            _ => Err(out),
        }
    };
    wait_for("web shown Terminating", WAIT, terminating);
    // Its endpoint: not ready, but serving and terminating.
    let conditions = wait_for("the endpoint serving and terminating", WAIT, || {
        let slices = c
            .kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"])
            .json();
        let conditions: Vec<serde_json::Value> = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| e["conditions"].clone())
            .collect();
        let want = serde_json::json!({"ready": false, "serving": true, "terminating": true});
        if conditions == [want] {
            Ok(conditions)
        } else {
            Err(format!("{conditions:?}"))
        }
    });
    // No endpoint is ready, so the proxy falls back to the serving, terminating one.
    let a = curl_from_pod(&c, "client", &url, 5);
    assert_eq!(a, vec!["You've hit web"; 5], "endpoint {conditions:?}");
    // All of that inside the hook's 20 s: the pod is still on its way out.
    terminating().unwrap_or_else(|out| panic!("web no longer Terminating after the checks: {out}"));
    assert!(deleted.elapsed() < Duration::from_secs(20), "checks took {:?}", deleted.elapsed());

    // Once it is gone, nothing serves: refused at once.
    wait_gone(&c, "pod", "web", Duration::from_secs(60));
    eprintln!("web was gone {:?} after its deletion", deleted.elapsed());
    wait_for("the service refusing", WAIT, || {
        let a = curl_from_pod(&c, "client", &url, 1);
        if a == ["curl-exit-7"] {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    });
}

#[test]
fn restarting_the_proxy_keeps_established_connections() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    let nodes = wait_nodes(&c, 1);
    let metrics_url = format!("http://{}:10249/metrics", node_ip(&nodes, "pier-node-0"));
    apply(
        &c,
        r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: kubia}
spec:
  replicas: 2
  selector: {app: kubia}
  template:
    metadata: {labels: {app: kubia}}
    spec:
      containers: [{name: kubia, image: luksa/kubia, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: kubia}
spec:
  selector: {app: kubia}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers: [{name: client, image: debian, command: [sleep, infinity]}]
"#,
    );
    wait_running(&c, "app=kubia", 2);
    wait_running(&c, "role=client", 1);
    let ip = jsonpath(&c, "svc", "kubia", ".spec.clusterIP");
    wait_for("the service answering", WAIT, || {
        let a = curl_from_pod(&c, "client", &format!("http://{ip}"), 1);
        if a.first().and_then(|l| hit_pod(l)).is_some() {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    });

    // One keep-alive connection through the ClusterIP (bash's /dev/tcp): a request,
    // then a second one on the same connection once the test says so.
    let script = format!(
        "exec 3<>/dev/tcp/{ip}/80; \
         ask() {{ printf 'GET / HTTP/1.1\\r\\nHost: kubia\\r\\n\\r\\n' >&3; \
                  while IFS= read -r -t 5 line <&3; do [ \"$line\" = $'\\r' ] && break; done; \
                  IFS= read -r -t 5 body <&3; echo \"$1: $body\"; }}; \
         ask first; while [ ! -e /tmp/go ]; do sleep 0.1; done; ask second"
    );
    let mut conn = c.kubectl_lines(&["exec", "client", "--", "bash", "-c", &script]).expect("kubectl exec");
    let first = conn.wait_line("the first answer", WAIT, |l| l.starts_with("first: "));
    let pod = hit_pod(first.trim_start_matches("first: ")).unwrap_or_else(|| panic!("{first}")).to_string();

    let full_syncs = || {
        let (code, text) = curl_from_host(&metrics_url);
        (code == 0).then(|| metric(&text, "kubeproxy_sync_full_proxy_rules_duration_seconds_count")).flatten()
    };
    let before =
        wait_for("the proxy's metrics", WAIT, || full_syncs().ok_or_else(|| "no metrics yet".to_string()));
    let agents = node_agent_pids(&c);
    assert_eq!(agents.len(), 1, "one node agent: {agents:?}");
    for pid in &agents {
        let out = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).output().expect("kill");
        assert!(out.status.success(), "kill -HUP {pid}: {out:?}");
    }
    // The new proxy's first sync is a full one over the table the old one left.
    wait_for("a full sync by the restarted proxy", WAIT, || match full_syncs() {
        Some(n) if n > before => Ok(()),
        other => Err(format!("full syncs {other:?}, before the restart {before}")),
    });
    let fresh = curl_from_pod(&c, "client", &format!("http://{ip}"), 4);
    assert!(fresh.iter().all(|a| hit_pod(a).is_some()), "new connections after the restart: {fresh:?}");

    c.kubectl(&["exec", "client", "--", "touch", "/tmp/go"]).ok();
    let second = conn.wait_line("the second answer", WAIT, |l| l.starts_with("second: "));
    assert_eq!(
        second.trim_start_matches("second: "),
        format!("You've hit {pod}"),
        "the established connection still reaches its pod"
    );
}
