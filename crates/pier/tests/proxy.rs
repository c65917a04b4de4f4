//! End-to-end: the service proxy (issue 5) with the real kubectl and curl, from pods
//! and from the host: ClusterIPs balanced over ready pods, hairpin, immediate refusal
//! without endpoints, session affinity and its expiry, NodePorts, LoadBalancer
//! addresses announced on the underlay, and the client address a pod sees under both
//! external traffic policies.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    apply, curl_from_host, curl_from_pod, hit_pod, host_ip, jsonpath, node_ip, wait_nodes, wait_running,
    WAIT, WEB_ON_NODE_1,
};
use pier_testkit::{table_rows, wait_for, Cluster};

const KUBIA_RC: &str = include_str!("../../../examples/kubia-rc.yaml");

/// The book's replication controller with its container port named, for services
/// that target it by name.
fn kubia_rc_named_port() -> String {
    KUBIA_RC.replace("- containerPort: 8080", "- {name: web, containerPort: 8080}")
}

#[test]
fn cluster_ips_balance_hairpin_and_reject() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    apply(&c, &kubia_rc_named_port());
    apply(
        &c,
        r#"
apiVersion: v1
kind: Service
metadata: {name: kubia-rc}
spec:
  selector: {app: kubia-rc}
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: also, port: 8081, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: nobody-home}
spec:
  selector: {app: nothing-matches}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    let rows = wait_running(&c, "app=kubia-rc", 3);
    let pods: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let client = &rows[0][0];
    let ip = jsonpath(&c, "svc", "kubia-rc", ".spec.clusterIP");
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    assert!(octets.len() == 4 && octets[0] == 10 && (96..=111).contains(&octets[1]), "cluster IP {ip}");

    // Random per connection: several pods answer, and only the service's pods.
    let answers = wait_for("the service answering", WAIT, || {
        let a = curl_from_pod(&c, client, &format!("http://{ip}"), 30);
        if a.iter().all(|l| hit_pod(l).is_some()) {
            Ok(a)
        } else {
            Err(format!("{a:?}"))
        }
    });
    let hit: BTreeSet<&str> = answers.iter().filter_map(|a| hit_pod(a)).collect();
    assert!(hit.is_subset(&pods), "{hit:?} not among {pods:?}");
    assert!(hit.len() >= 2, "30 requests all went to {hit:?}");
    // The second port, by number, reaches the same pods.
    let other = curl_from_pod(&c, client, &format!("http://{ip}:8081"), 3);
    assert!(other.iter().all(|a| hit_pod(a).is_some_and(|p| pods.contains(p))), "{other:?}");
    // Hairpin: the client reaches itself through the service.
    assert!(
        hit.contains(client.as_str()) || {
            let more = curl_from_pod(&c, client, &format!("http://{ip}"), 40);
            more.iter().any(|a| hit_pod(a) == Some(client.as_str()))
        },
        "{client} never reached itself through {ip}"
    );

    // No endpoints: refused at once (curl exit 7), not a timeout, however often a
    // client retries (ICMP errors would be rate-limited after a few).
    let empty = jsonpath(&c, "svc", "nobody-home", ".spec.clusterIP");
    let started = Instant::now();
    let refused = curl_from_pod(&c, client, &format!("http://{empty}"), 20);
    assert_eq!(refused, vec!["curl-exit-7"; 20], "to {empty}");
    assert!(started.elapsed() < Duration::from_secs(4), "refusal took {:?}", started.elapsed());
    // A port the service does not have: refused too.
    assert_eq!(curl_from_pod(&c, client, &format!("http://{ip}:81"), 10), vec!["curl-exit-7"; 10]);

    // The `kubernetes` Service leads to the API server (`/version` is public).
    let api = c
        .kubectl(&[
            "exec",
            client,
            "--",
            "curl",
            "-sk",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://10.96.0.1/version",
        ])
        .ok()
        .to_string();
    assert_eq!(api, "200", "the API server through 10.96.0.1");

    // Endpoints follow readiness: scaled to one pod, only that one answers.
    c.kubectl(&["scale", "rc", "kubia-rc", "--replicas=1"]).ok();
    let left = wait_running(&c, "app=kubia-rc", 1);
    let only = left[0][0].clone();
    wait_for("only the remaining pod answering", WAIT, || {
        let a = curl_from_pod(&c, &only, &format!("http://{ip}"), 10);
        if a.iter().all(|l| hit_pod(l) == Some(only.as_str())) {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    });
}

#[test]
fn session_affinity_holds_then_expires() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    apply(&c, KUBIA_RC);
    apply(
        &c,
        r#"
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: kubia-rc}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    let rows = wait_running(&c, "app=kubia-rc", 3);
    let client = &rows[0][0];
    let ip = jsonpath(&c, "svc", "sticky", ".spec.clusterIP");
    let first = wait_for("the sticky service answering", WAIT, || {
        let a = curl_from_pod(&c, client, &format!("http://{ip}"), 1);
        a.first().and_then(|l| hit_pod(l)).map(str::to_string).ok_or(format!("{a:?}"))
    });
    let again = curl_from_pod(&c, client, &format!("http://{ip}"), 20);
    assert!(
        again.iter().all(|a| hit_pod(a) == Some(first.as_str())),
        "affinity to {first} broken: {again:?}"
    );

    // Idle longer than the timeout, the client may land elsewhere. Each try waits out
    // the timeout first (every request renews it); a third of the time the random
    // choice is the same pod again, so several tries may be needed.
    let deadline = Instant::now() + WAIT;
    let moved = loop {
        std::thread::sleep(Duration::from_millis(2_500));
        let a = curl_from_pod(&c, client, &format!("http://{ip}"), 1);
        match a.first().and_then(|l| hit_pod(l)) {
            Some(p) if p != first => break p.to_string(),
            _ if Instant::now() > deadline => panic!("never left {first} after the affinity timeout"),
            _ => {}
        }
    };
    let after = curl_from_pod(&c, client, &format!("http://{ip}"), 10);
    assert!(after.iter().all(|a| hit_pod(a) == Some(moved.as_str())), "new affinity to {moved}: {after:?}");
}

/// The `Received request from` lines a kubia pod logged, as client addresses.
fn clients_seen(c: &Cluster, pod: &str) -> Vec<String> {
    c.kubectl(&["logs", pod])
        .ok()
        .lines()
        .filter_map(|l| l.strip_prefix("Received request from ::ffff:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn node_ports_load_balancers_and_client_addresses() {
    let c = pier_testkit::start_cluster!(nodes: 2);
    let nodes = wait_nodes(&c, 2);
    let (ip0, ip1) = (node_ip(&nodes, "pier-node-0"), node_ip(&nodes, "pier-node-1"));
    let host_ip = host_ip(&ip0);

    // One kubia pod, on node 1 only.
    apply(&c, WEB_ON_NODE_1);
    apply(
        &c,
        r#"
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30123}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30124}]
"#,
    );
    wait_running(&c, "app=web", 1);

    // NodePort, on both nodes' addresses from the host; the pod sees a node address
    // (externalTrafficPolicy: Cluster masquerades).
    for ip in [&ip0, &ip1] {
        let url = format!("http://{ip}:30123");
        wait_for(&format!("{url} from the host"), WAIT, || match curl_from_host(&url) {
            (0, body) if body == "You've hit web\n" => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
    let seen = clients_seen(&c, "web");
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s != host_ip),
        "Cluster policy showed the client: {seen:?}"
    );

    // LoadBalancer: an address from the pool, shown by kubectl, reachable from the host.
    let external = wait_for("an EXTERNAL-IP for web-lb", WAIT, || {
        let out = c.kubectl(&["get", "svc", "web-lb"]).ok().to_string();
        match table_rows(&out).get(1) {
            Some(r) if r[3] != "<pending>" => Ok(r[3].clone()),
            _ => Err(out),
        }
    });
    let (subnet, last) = external.rsplit_once('.').expect("dotted");
    let last: u8 = last.parse().expect("octet");
    assert!(ip0.starts_with(subnet) && (200..=250).contains(&last), "{external} is not in the default pool");
    wait_for(&format!("http://{external} from the host"), WAIT, || {
        match curl_from_host(&format!("http://{external}")) {
            (0, body) if body == "You've hit web\n" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // externalTrafficPolicy: Local: the node with the pod serves and the pod sees the
    // host's own address; the other node drops, and its health check says 503.
    let before = clients_seen(&c, "web").len();
    wait_for("the Local NodePort on node 1", WAIT, || match curl_from_host(&format!("http://{ip1}:30124")) {
        (0, body) if body == "You've hit web\n" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let seen = clients_seen(&c, "web");
    assert_eq!(
        seen.get(before).map(String::as_str),
        Some(host_ip.as_str()),
        "Local policy hid the client: {seen:?}"
    );
    let (code, body) = curl_from_host(&format!("http://{ip0}:30124"));
    assert_ne!(code, 0, "node 0 has no local endpoint but answered {body:?}");
    let health = jsonpath(&c, "svc", "web-local", ".spec.healthCheckNodePort");
    let check = |ip: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{ip}:{health}/"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("health checks", WAIT, || match (check(&ip0), check(&ip1)) {
        (a, b) if a == "503" && b == "200" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let (_, body) = curl_from_host(&format!("http://{ip1}:{health}/"));
    assert_eq!(
        body,
        r#"{"service":{"namespace":"default","name":"web-local"},"localEndpoints":1,"serviceProxyHealthy":true}"#
    );

    // Metrics on the node: syncs happened and nothing failed.
    let (_, metrics) = curl_from_host(&format!("http://{ip1}:10249/metrics"));
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0"), "{metrics}");
    assert!(metrics.contains("kubeproxy_network_programming_duration_seconds_count"), "{metrics}");
}
