//! End-to-end: cluster DNS (issue 6) with the real kubectl, dig and curl inside pods:
//! the `kube-dns` Service, service names resolved by short name, namespace-qualified
//! name and FQDN from two namespaces (the user's notes), SRV for named ports, one A
//! per ready pod of a headless Service, ExternalName as a CNAME, NXDOMAIN with the
//! zone's SOA.

mod common;

use common::{apply, hit_pod, wait_running, WAIT};
use pier_testkit::{table_rows, wait_for, Cluster};

/// The notes' setup: kubia-rc (3 replicas) and its Service in `parth-test-2`, a
/// headless Service over the same pods, an ExternalName Service, and a client pod in
/// `parth-test-2` and one in `default`.
const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: parth-test-2}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: kubia-rc, namespace: parth-test-2}
spec:
  replicas: 3
  selector: {app: kubia}
  template:
    metadata: {labels: {app: kubia}}
    spec:
      containers: [{name: kubia, image: luksa/kubia, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: kubia-rc, namespace: parth-test-2}
spec:
  selector: {app: kubia}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: kubia-headless, namespace: parth-test-2}
spec:
  clusterIP: None
  selector: {app: kubia}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: external-service, namespace: parth-test-2}
spec:
  type: ExternalName
  externalName: someapi.somecompany.com
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: parth-test-2, labels: {role: client}}
spec:
  containers: [{name: client, image: tutum/dnsutils, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {role: client}}
spec:
  containers: [{name: client, image: tutum/dnsutils, command: [sleep, infinity]}]
"#;

/// Runs `sh -c script` in the client pod of `ns`; stdout.
fn in_client(c: &Cluster, ns: &str, script: &str) -> String {
    c.kubectl(&["exec", "-n", ns, "client", "--", "sh", "-c", script]).ok().to_string()
}

/// `dig +short` lines, sorted.
fn dig_short(c: &Cluster, ns: &str, args: &str) -> Vec<String> {
    let mut lines: Vec<String> = in_client(c, ns, &format!("dig +short +time=2 +tries=2 {args}"))
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn pods_find_services_by_name() {
    let c = pier_testkit::start_cluster!(nodes: 1);
    apply(&c, SETUP);
    wait_for("3 kubia pods running", WAIT, || {
        let out = c.kubectl(&["get", "pods", "-n", "parth-test-2", "-l", "app=kubia"]).ok().to_string();
        let running = table_rows(&out).iter().skip(1).filter(|r| r[1] == "1/1" && r[2] == "Running").count();
        if running == 3 {
            Ok(())
        } else {
            Err(out)
        }
    });
    wait_running(&c, "role=client", 1);

    // kube-dns as upstream lists it.
    let svc = c.kubectl(&["get", "svc", "-n", "kube-system", "kube-dns"]).ok().to_string();
    let rows = table_rows(&svc);
    assert_eq!(rows[0][..5], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"], "{svc}");
    assert_eq!(
        rows[1][..5],
        ["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"],
        "{svc}"
    );

    // The notes: curl by short name, by name.namespace, by FQDN; the client's
    // resolver walks the search path of its /etc/resolv.conf.
    let ip = c
        .kubectl(&["get", "svc", "-n", "parth-test-2", "kubia-rc", "-o", "jsonpath={.spec.clusterIP}"])
        .ok()
        .to_string();
    let fqdn = "kubia-rc.parth-test-2.svc.cluster.local";
    wait_for("the service's name resolving", WAIT, || {
        let got = dig_short(&c, "parth-test-2", fqdn);
        if got == [ip.clone()] {
            Ok(())
        } else {
            Err(format!("{got:?}, want [{ip}]"))
        }
    });
    for url in ["http://kubia-rc", "http://kubia-rc.parth-test-2", &format!("http://{fqdn}")] {
        let answer = in_client(&c, "parth-test-2", &format!("curl -s -m 5 {url}"));
        assert!(hit_pod(answer.trim()).is_some_and(|p| p.starts_with("kubia-rc-")), "{url}: {answer:?}");
    }
    // From another namespace the short name is not the service; name.namespace is.
    let other = in_client(&c, "default", "curl -s -m 5 http://kubia-rc.parth-test-2");
    assert!(hit_pod(other.trim()).is_some(), "from default: {other:?}");
    let missing = in_client(&c, "default", "curl -s -m 5 http://kubia-rc; echo exit=$?");
    assert!(missing.contains("exit=6"), "kubia-rc does not resolve in default: {missing:?}");

    // SRV for the named port, one A per ready pod of the headless Service, the
    // ExternalName's CNAME.
    let srv = dig_short(&c, "parth-test-2", "SRV _http._tcp.kubia-rc.parth-test-2.svc.cluster.local");
    assert_eq!(srv, [format!("0 100 80 {fqdn}.")], "SRV");
    let pod_ips: Vec<String> = {
        let out = c
            .kubectl(&[
                "get",
                "pods",
                "-n",
                "parth-test-2",
                "-l",
                "app=kubia",
                "-o",
                "jsonpath={.items[*].status.podIP}",
            ])
            .ok()
            .to_string();
        let mut ips: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        ips.sort();
        ips
    };
    assert_eq!(pod_ips.len(), 3);
    assert_eq!(dig_short(&c, "parth-test-2", "kubia-headless.parth-test-2.svc.cluster.local"), pod_ips);
    let cname = in_client(
        &c,
        "parth-test-2",
        "dig +time=2 +tries=1 +noall +answer external-service.parth-test-2.svc.cluster.local",
    );
    assert!(
        cname
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[2..]
                == ["IN", "CNAME", "someapi.somecompany.com."]),
        "{cname}"
    );

    // Names that do not exist: NXDOMAIN with the zone's SOA.
    let nx = in_client(&c, "parth-test-2", "dig +time=2 +tries=1 nothere.parth-test-2.svc.cluster.local");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."), "{nx}");
}

/// A stand-in for the resolvers outside the cluster, on the host: answers
/// `example.com A` with 203.0.113.7 (a documentation address nobody connects to),
/// NOERROR without records for its other types, NXDOMAIN for the rest; counts
/// what it is asked.
struct StubUpstream {
    port: u16,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _thread: std::thread::JoinHandle<()>,
}

impl StubUpstream {
    fn start() -> StubUpstream {
        use pier_dns::wire::{Header, MessageWriter, Owner, Query, Section};
        // Bound on all of the host's addresses: the nodes reach it on the bridge.
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("stub socket");
        let port = socket.local_addr().expect("stub address").port();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&asked);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut out = Vec::new();
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let Ok(query) = Query::parse(&buf[..n]) else { continue };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let name = query.name.to_string().to_ascii_lowercase();
                let known = name == "example.com." || name == "example.com";
                let header = Header {
                    response: true,
                    recursion_available: true,
                    rcode: if known { 0 } else { 3 },
                    ..query.header
                };
                out.clear();
                let mut w = MessageWriter::new(&mut out, header);
                w.question(query.name.as_name(), query.qtype, query.qclass);
                w.set_section(Section::Answer);
                if known && query.qtype == pier_dns::wire::RecordType::A {
                    w.a(Owner::Question, 60, std::net::Ipv4Addr::new(203, 0, 113, 7));
                }
                w.finish(512);
                let _ = socket.send_to(&out, from);
            }
        });
        StubUpstream { port, asked, _thread: thread }
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The node DNS server's count of queries, from its metrics.
fn dns_requests(node_ip: &str) -> f64 {
    let (code, text) = common::curl_from_host(&format!("http://{node_ip}:9153/metrics"));
    assert_eq!(code, 0, "metrics of the node's DNS server");
    text.lines()
        .filter(|l| l.starts_with("coredns_dns_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn an_external_name_costs_one_round_trip_with_autopath() {
    let stub = StubUpstream::start();
    let port = stub.port;
    let c = Cluster::start_with_nodes_and(std::path::Path::new(env!("CARGO_BIN_EXE_pier")), 1, |underlay| {
        let bridge = format!("{}.1", underlay.rsplit_once('.').map_or(underlay, |(net, _)| net));
        vec!["--dns-upstream".into(), format!("{bridge}:{port}")]
    })
    .expect("pier up starts");
    let nodes = common::wait_nodes(&c, 1);
    let node_ip = common::node_ip(&nodes, "pier-node-0");
    // `plain` gets autopath; `explicit` spells the same search path out in
    // dnsConfig, which the server cannot know, so it answers it plainly.
    apply(
        &c,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: plain, labels: {role: client}}
spec:
  containers: [{name: c, image: tutum/dnsutils, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: explicit, labels: {role: client}}
spec:
  dnsConfig:
    searches: [default.svc.cluster.local, svc.cluster.local, cluster.local]
  containers: [{name: c, image: tutum/dnsutils, command: [sleep, infinity]}]
"#,
    );
    wait_running(&c, "role=client", 2);

    // One getent per pod, counting the queries the node's server received.
    let lookup = |pod: &str| -> (String, f64) {
        let before = dns_requests(&node_ip);
        let out = c.kubectl(&["exec", pod, "--", "getent", "ahostsv4", "example.com"]).ok().to_string();
        (out, dns_requests(&node_ip) - before)
    };
    wait_for("example.com resolving through the stub", WAIT, || {
        let (out, _) = lookup("plain");
        if out.contains("203.0.113.7") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let (plain_out, with_autopath) = lookup("plain");
    let (explicit_out, without) = lookup("explicit");
    assert!(plain_out.contains("203.0.113.7") && explicit_out.contains("203.0.113.7"));
    eprintln!("getent ahostsv4 example.com: {without} queries without autopath, {with_autopath} with");
    // ndots:5 walks 3 search domains before the name itself: 4 round trips per
    // address family asked; autopath answers the first with a CNAME and the records.
    assert!(without >= 4.0, "without autopath: {without} queries");
    assert!(with_autopath * 4.0 <= without, "with autopath {with_autopath}, without {without}");
    assert!(stub.asked() >= 1, "the upstream was asked");
}
