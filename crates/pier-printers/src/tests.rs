//! Table-driven tests: (object, expected cells) for every printer, including the outputs
//! shown in the user's notes and objects with missing fields.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};

use crate::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 2, 12, 0, 0).single().unwrap_or_default()
}

/// The RFC 3339 timestamp `secs` seconds before [`now`].
fn ago(secs: i64) -> String {
    (now() - TimeDelta::seconds(secs)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Cells as plain strings so that expected rows read like kubectl output.
fn text(cells: &[Value]) -> Vec<String> {
    cells
        .iter()
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Checks each (object, expected cells) case, and that headers match.
fn check(group: &str, kind: &str, headers: &[&str], cases: &[(Value, &[&str])]) {
    let names: Vec<String> = column_definitions(group, kind).into_iter().map(|c| c.name).collect();
    assert_eq!(names, headers, "{group}/{kind} columns");
    for (obj, want) in cases {
        let got = text(&row_cells(group, kind, obj, now()));
        assert_eq!(got, *want, "{group}/{kind} cells of {obj}");
    }
}

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs)})
}

#[test]
fn every_registered_resource_has_a_printer_and_one_cell_per_column() {
    let odd_objects = [
        json!({}),
        json!(null),
        json!("not an object"),
        json!({"metadata": 1, "spec": [], "status": "x", "subsets": {}, "endpoints": 3, "ports": "p"}),
        json!({"spec": {"containers": 1, "ports": [1, "x", null], "rules": [3]},
               "status": {"containerStatuses": [1, {"state": 2}], "conditions": "c"}}),
    ];
    for def in pier_api::registry::RESOURCES {
        assert!(has_printer(def.group, def.kind), "{} has no printer", def.kind);
        let columns = column_definitions(def.group, def.kind);
        assert_eq!(columns.iter().filter(|c| c.format == "name").count(), 1, "{}", def.kind);
        for obj in &odd_objects {
            assert_eq!(row_cells(def.group, def.kind, obj, now()).len(), columns.len(), "{} {obj}", def.kind);
        }
    }
}

#[test]
fn columns_serialise_as_table_column_definitions() {
    let cols = column_definitions("", "Service");
    let v = json!(cols);
    assert_eq!(v[0]["name"], "Name");
    assert_eq!(v[0]["type"], "string");
    assert_eq!(v[0]["format"], "name");
    assert_eq!(v[0]["priority"], 0);
    assert!(v[0]["description"].as_str().is_some_and(|d| d.starts_with("Name must be unique")));
    assert_eq!(v[2]["format"], "");
    assert_eq!(v[6]["name"], "Selector");
    assert_eq!(v[6]["priority"], 1);
    let back: Vec<Column> = serde_json::from_value(v).unwrap_or_default();
    assert_eq!(back, cols);
}

#[test]
fn services() {
    let svc = |spec: Value, status: Value| json!({"metadata": meta("kubia", 22 * HOUR), "spec": spec, "status": status});
    let tcp80 = json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"}]);
    check(
        "",
        "Service",
        &["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
        &[
            // From the notes: `kubia-rc   ClusterIP   10.120.0.244   <none>   80/TCP   22h`.
            (
                json!({"metadata": meta("kubia-rc", 22 * HOUR + 1800), "spec": {"type": "ClusterIP",
                    "clusterIP": "10.120.0.244", "clusterIPs": ["10.120.0.244"], "ports": tcp80,
                    "selector": {"app": "kubia-rc"}}}),
                &["kubia-rc", "ClusterIP", "10.120.0.244", "<none>", "80/TCP", "22h", "app=kubia-rc"],
            ),
            (
                svc(
                    json!({"type": "NodePort", "clusterIPs": ["10.96.1.2"],
                    "ports": [{"port": 80, "nodePort": 30123, "protocol": "TCP"}], "selector": {"app": "kubia"}}),
                    json!({}),
                ),
                &["kubia", "NodePort", "10.96.1.2", "<none>", "80:30123/TCP", "22h", "app=kubia"],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIPs": ["10.96.1.3"], "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP"}],
                    "selector": {"app": "kubia", "tier": "web"}}),
                    json!({}),
                ),
                &["kubia", "ClusterIP", "10.96.1.3", "<none>", "80/TCP,443/TCP", "22h", "app=kubia,tier=web"],
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.4"],
                    "ports": [{"port": 80, "nodePort": 32143, "protocol": "TCP"}], "selector": {"app": "kubia"}}),
                    json!({"loadBalancer": {}}),
                ),
                &["kubia", "LoadBalancer", "10.96.1.4", "<pending>", "80:32143/TCP", "22h", "app=kubia"],
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.4"], "externalIPs": ["1.2.3.4"],
                    "ports": [{"port": 80, "nodePort": 32143, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "130.211.53.173"}, {"hostname": "lb.example.com"},
                        {"ip": "130.211.53.173"}, {}]}}),
                ),
                &[
                    "kubia",
                    "LoadBalancer",
                    "10.96.1.4",
                    "130.211.53.173,lb.example.com,1.2.3.4",
                    "80:32143/TCP",
                    "22h",
                    "<none>",
                ],
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.4"], "externalIPs": ["1.2.3.4"],
                    "ports": [{"port": 80, "protocol": "UDP"}]}),
                    json!({}),
                ),
                &["kubia", "LoadBalancer", "10.96.1.4", "1.2.3.4", "80/UDP", "22h", "<none>"],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": tcp80,
                    "selector": {"app": "kubia"}}),
                    json!({}),
                ),
                &["kubia", "ClusterIP", "None", "<none>", "80/TCP", "22h", "app=kubia"],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.9"], "externalIPs": ["5.6.7.8", "9.9.9.9"],
                    "ports": tcp80}),
                    json!({}),
                ),
                &["kubia", "ClusterIP", "10.96.0.9", "5.6.7.8,9.9.9.9", "80/TCP", "22h", "<none>"],
            ),
            (
                json!({"metadata": meta("external-service", 5 * MIN), "spec": {"type": "ExternalName",
                    "externalName": "someapi.somecompany.com", "ports": tcp80}}),
                &[
                    "external-service",
                    "ExternalName",
                    "<none>",
                    "someapi.somecompany.com",
                    "80/TCP",
                    "5m",
                    "<none>",
                ],
            ),
            // A Service without selector or ports, and one with nothing at all.
            (
                svc(json!({"type": "ClusterIP", "clusterIP": "10.96.0.8"}), json!(null)),
                &["kubia", "ClusterIP", "10.96.0.8", "<none>", "<none>", "22h", "<none>"],
            ),
            (json!({}), &["", "ClusterIP", "<none>", "<none>", "<none>", "<unknown>", "<none>"]),
        ],
    );
}

#[test]
fn endpoints() {
    let ep = |subsets: Value| json!({"metadata": meta("kubia-rc", 23 * HOUR), "subsets": subsets});
    let addrs = |ips: &[&str]| Value::Array(ips.iter().map(|ip| json!({"ip": ip})).collect());
    check(
        "",
        "Endpoints",
        &["Name", "Endpoints", "Age"],
        &[
            // From the notes.
            (
                ep(
                    json!([{"addresses": addrs(&["10.116.0.6", "10.116.1.6", "10.116.2.4"]), "ports": [{"port": 8080}]}]),
                ),
                &["kubia-rc", "10.116.0.6:8080,10.116.1.6:8080,10.116.2.4:8080", "23h"],
            ),
            (
                ep(
                    json!([{"addresses": addrs(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]),
                    "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]),
                ),
                &["kubia-rc", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 7 more...", "23h"],
            ),
            (
                ep(json!([{"addresses": addrs(&["11.11.11.11"]), "ports": [{"port": 80}]},
                          {"addresses": addrs(&["22.22.22.22"]), "notReadyAddresses": addrs(&["3.3.3.3"]), "ports": [{"port": 80}]}])),
                &["kubia-rc", "11.11.11.11:80,22.22.22.22:80", "23h"],
            ),
            (
                ep(json!([{"addresses": addrs(&["10.0.0.1", "10.0.0.2"])}])),
                &["kubia-rc", "10.0.0.1,10.0.0.2", "23h"],
            ),
            (
                ep(json!([{"addresses": addrs(&["fd00::1"]), "ports": [{"port": 53}]}])),
                &["kubia-rc", "[fd00::1]:53", "23h"],
            ),
            // Only not-ready addresses: a subset, but nothing to show.
            (
                ep(json!([{"notReadyAddresses": addrs(&["10.0.0.1"]), "ports": [{"port": 80}]}])),
                &["kubia-rc", "", "23h"],
            ),
            (ep(json!([])), &["kubia-rc", "<none>", "23h"]),
            (json!({"metadata": {"name": "x"}}), &["x", "<none>", "<unknown>"]),
        ],
    );
}

fn pod(spec: Value, status: Value) -> Value {
    json!({"metadata": meta("kubia-7nog1", 10 * MIN), "spec": spec, "status": status})
}

fn one_container() -> Value {
    json!({"containers": [{"name": "kubia", "image": "luksa/kubia"}], "nodeName": "node-1"})
}

#[test]
fn pods() {
    let running = json!({"running": {"startedAt": ago(9 * MIN)}});
    check(
        "",
        "Pod",
        &["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"],
        &[
            (
                pod(
                    one_container(),
                    json!({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "kubia", "ready": true, "restartCount": 0, "state": running}]}),
                ),
                &["kubia-7nog1", "1/1", "Running", "0", "10m", "10.244.1.5", "node-1", "<none>", "<none>"],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Running", "podIP": "10.244.1.5",
                    "containerStatuses": [{"name": "kubia", "ready": false, "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(5 * MIN)}}}]}),
                ),
                &[
                    "kubia-7nog1",
                    "0/1",
                    "CrashLoopBackOff",
                    "3 (5m ago)",
                    "10m",
                    "10.244.1.5",
                    "node-1",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Pending", "containerStatuses": [{"name": "kubia", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                &[
                    "kubia-7nog1",
                    "0/1",
                    "ContainerCreating",
                    "0",
                    "10m",
                    "<none>",
                    "node-1",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Pending"})),
                &["kubia-7nog1", "0/1", "Pending", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Succeeded", "containerStatuses": [{"name": "kubia",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                &["kubia-7nog1", "0/1", "Completed", "0", "10m", "<none>", "node-1", "<none>", "<none>"],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "kubia",
                    "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
                ),
                &["kubia-7nog1", "0/1", "Error", "0", "10m", "<none>", "node-1", "<none>", "<none>"],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "kubia",
                    "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                &["kubia-7nog1", "0/1", "Signal:9", "0", "10m", "<none>", "node-1", "<none>", "<none>"],
            ),
            (
                pod(
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "kubia",
                    "state": {"terminated": {"exitCode": 3}}}]}),
                ),
                &["kubia-7nog1", "0/1", "ExitCode:3", "0", "10m", "<none>", "node-1", "<none>", "<none>"],
            ),
            // Two containers: the first completed, the second still runs.
            (
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "b", "ready": true, "state": running}]}),
                ),
                &["kubia-7nog1", "1/2", "NotReady", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
            ),
            (
                pod(
                    json!({"initContainers": [{"name": "init"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending",
                    "initContainerStatuses": [{"name": "init", "state": {"running": {}}}],
                    "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                &["kubia-7nog1", "0/1", "Init:0/1", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
            ),
            (
                pod(
                    json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "i2", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}]}),
                ),
                &[
                    "kubia-7nog1",
                    "0/1",
                    "Init:CrashLoopBackOff",
                    "2 (30s ago)",
                    "10m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                pod(
                    json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending",
                    "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                &["kubia-7nog1", "0/1", "Init:Error", "0", "10m", "<none>", "<none>", "<none>", "<none>"],
            ),
            (
                pod(
                    json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending",
                    "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 1}}}]}),
                ),
                &[
                    "kubia-7nog1",
                    "0/1",
                    "Init:ExitCode:1",
                    "0",
                    "10m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>",
                ],
            ),
            // A sidecar (restartable init container) that started counts towards READY.
            (
                pod(
                    json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                        "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                            "state": running, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(4 * HOUR)}}}],
                        "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": running}]}),
                ),
                &[
                    "kubia-7nog1",
                    "2/2",
                    "Running",
                    "1 (4h ago)",
                    "10m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                json!({"metadata": {"name": "gated", "creationTimestamp": ago(5)}, "spec": {"containers": [{"name": "a"}]},
                    "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                &["gated", "0/1", "SchedulingGated", "0", "5s", "<none>", "<none>", "<none>", "<none>"],
            ),
            (
                json!({"metadata": {"name": "going", "creationTimestamp": ago(DAY), "deletionTimestamp": ago(0)},
                    "spec": one_container(), "status": {"phase": "Running", "podIP": "10.244.1.9",
                    "containerStatuses": [{"name": "kubia", "ready": true, "state": running}]}}),
                &["going", "1/1", "Terminating", "0", "24h", "10.244.1.9", "node-1", "<none>", "<none>"],
            ),
            // Finished pods stay Completed while they are deleted.
            (
                json!({"metadata": {"name": "done", "creationTimestamp": ago(DAY), "deletionTimestamp": ago(0)},
                    "spec": one_container(), "status": {"phase": "Succeeded",
                    "containerStatuses": [{"name": "kubia", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                &["done", "0/1", "Completed", "0", "24h", "<none>", "node-1", "<none>", "<none>"],
            ),
            (
                json!({"metadata": {"name": "lost", "creationTimestamp": ago(DAY), "deletionTimestamp": ago(0)},
                    "spec": one_container(), "status": {"phase": "Running", "reason": "NodeLost"}}),
                &["lost", "0/1", "Unknown", "0", "24h", "<none>", "node-1", "<none>", "<none>"],
            ),
            (
                pod(
                    json!({"containers": [{"name": "a"}], "nodeName": "n", "readinessGates": [
                        {"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]}),
                    json!({"phase": "Running", "nominatedNodeName": "n2", "conditions": [
                        {"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}),
                ),
                &["kubia-7nog1", "0/1", "Running", "0", "10m", "<none>", "n", "n2", "1/2"],
            ),
            (json!({}), &["", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]),
        ],
    );
}

#[test]
fn replication_controllers_and_replica_sets() {
    let template = json!({"metadata": {"labels": {"app": "kubia"}},
        "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}, {"name": "side", "image": "busybox"}]}});
    let rc = json!({"metadata": meta("kubia", 2 * DAY + 3 * HOUR), "spec": {"replicas": 3, "selector": {"app": "kubia"},
        "template": template}, "status": {"replicas": 3, "readyReplicas": 2}});
    let headers = ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"];
    check(
        "",
        "ReplicationController",
        &headers,
        &[
            (rc, &["kubia", "3", "3", "2", "2d3h", "kubia,side", "luksa/kubia,busybox", "app=kubia"]),
            (json!({"metadata": {"name": "bare"}}), &["bare", "1", "0", "0", "<unknown>", "", "", "<none>"]),
        ],
    );
    check(
        "apps",
        "ReplicaSet",
        &headers,
        &[
            (
                json!({"metadata": meta("kubia", 90 * DAY), "spec": {"replicas": 0,
                    "selector": {"matchLabels": {"app": "kubia"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
                    "template": template}, "status": {"replicas": 0}}),
                &[
                    "kubia",
                    "0",
                    "0",
                    "0",
                    "90d",
                    "kubia,side",
                    "luksa/kubia,busybox",
                    "app=kubia,env in (prod)",
                ],
            ),
            (json!({"metadata": {"name": "bare"}}), &["bare", "1", "0", "0", "<unknown>", "", "", "<none>"]),
            (
                json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}}),
                &["bad", "1", "0", "0", "<unknown>", "", "", "<error>"],
            ),
        ],
    );
}

#[test]
fn deployments() {
    check(
        "apps",
        "Deployment",
        &["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
        &[
            (
                json!({"metadata": meta("kubia", 3 * 365 * DAY), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}},
                    "template": {"spec": {"containers": [{"name": "nodejs", "image": "luksa/kubia:v1"}]}}},
                    "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
                &["kubia", "2/3", "3", "2", "3y", "nodejs", "luksa/kubia:v1", "app=kubia"],
            ),
            (json!({"metadata": {"name": "bare"}}), &["bare", "0/1", "0", "0", "<unknown>", "", "", ""]),
            (
                json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}),
                &["bad", "0/1", "0", "0", "<unknown>", "", "", "<invalid>"],
            ),
        ],
    );
}

#[test]
fn ingresses_and_ingress_classes() {
    let rule = |host: &str| {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "kubia-nodeport", "port": {"number": 80}}}}]}})
    };
    check(
        "networking.k8s.io",
        "Ingress",
        &["Name", "Class", "Hosts", "Address", "Ports", "Age"],
        &[
            // From the notes (which predate the CLASS column).
            (
                json!({"metadata": meta("kubia", 29 * MIN), "spec": {"rules": [rule("kubia.example.com")]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.99.100"}]}}}),
                &["kubia", "<none>", "kubia.example.com", "192.168.99.100", "80", "29m"],
            ),
            (
                json!({"metadata": meta("kubia", 29 * MIN), "spec": {"ingressClassName": "pier",
                    "tls": [{"hosts": ["kubia.example.com"], "secretName": "tls-secret"}],
                    "rules": [rule("kubia.example.com"), rule("foo.example.com")]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example.com"}]}}}),
                &[
                    "kubia",
                    "pier",
                    "kubia.example.com,foo.example.com",
                    "10.0.0.2,lb.example.com",
                    "80, 443",
                    "29m",
                ],
            ),
            (
                json!({"metadata": meta("many", 29 * MIN), "spec": {"rules": [rule("a"), rule("b"), rule(""), rule("d"), rule("e")]}}),
                &["many", "<none>", "a,b,d + 2 more...", "", "80", "29m"],
            ),
            (
                json!({"metadata": meta("default-backend", 29 * MIN), "spec": {"defaultBackend": {"service": {"name": "x"}}}}),
                &["default-backend", "<none>", "*", "", "80", "29m"],
            ),
            (json!({}), &["", "<none>", "*", "", "80", "<unknown>"]),
        ],
    );
    check(
        "networking.k8s.io",
        "IngressClass",
        &["Name", "Controller", "Parameters", "Age"],
        &[
            (
                json!({"metadata": meta("pier", HOUR), "spec": {"controller": "pier.dev/ingress"}}),
                &["pier", "pier.dev/ingress", "<none>", "60m"],
            ),
            (
                json!({"metadata": meta("ext", HOUR), "spec": {"controller": "example.com/ingress",
                    "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}}),
                &["ext", "example.com/ingress", "IngressParameters.k8s.example.com/external-lb", "60m"],
            ),
            (
                json!({"metadata": meta("core", HOUR), "spec": {"controller": "c", "parameters": {"kind": "ConfigMap", "name": "cfg"}}}),
                &["core", "c", "ConfigMap/cfg", "60m"],
            ),
        ],
    );
}

#[test]
fn namespaces_nodes_secrets_configmaps_serviceaccounts_leases() {
    check(
        "",
        "Namespace",
        &["Name", "Status", "Age"],
        &[
            (
                json!({"metadata": meta("default", 40 * DAY), "status": {"phase": "Active"}}),
                &["default", "Active", "40d"],
            ),
            (
                json!({"metadata": meta("old", 5), "status": {"phase": "Terminating"}}),
                &["old", "Terminating", "5s"],
            ),
            (json!({"metadata": {"name": "new"}}), &["new", "Active", "<unknown>"]),
        ],
    );
    check(
        "",
        "Node",
        &[
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime",
        ],
        &[
            (
                json!({"metadata": {"name": "node-1", "creationTimestamp": ago(6 * DAY),
                    "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "", "kubernetes.io/role": "edge"}},
                    "spec": {"unschedulable": true},
                    "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                        "addresses": [{"type": "InternalIP", "address": "172.30.0.10"}, {"type": "Hostname", "address": "node-1"}],
                        "nodeInfo": {"kubeletVersion": "v1.33.0-pier", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                            "containerRuntimeVersion": "pier://0.1.0"}}}),
                &[
                    "node-1",
                    "Ready,SchedulingDisabled",
                    "control-plane,edge",
                    "6d",
                    "v1.33.0-pier",
                    "172.30.0.10",
                    "<none>",
                    "Debian GNU/Linux 12",
                    "6.1.0",
                    "pier://0.1.0",
                ],
            ),
            (
                json!({"metadata": {"name": "node-2", "creationTimestamp": ago(HOUR)},
                    "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                &[
                    "node-2",
                    "NotReady",
                    "<none>",
                    "60m",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>",
                ],
            ),
            (
                json!({"metadata": {"name": "node-3"}}),
                &[
                    "node-3",
                    "Unknown",
                    "<none>",
                    "<unknown>",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>",
                ],
            ),
        ],
    );
    check(
        "",
        "Secret",
        &["Name", "Type", "Data", "Age"],
        &[
            (
                json!({"metadata": meta("tls-secret", 3 * MIN), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
                &["tls-secret", "kubernetes.io/tls", "2", "3m"],
            ),
            (json!({"metadata": meta("empty", 3 * MIN)}), &["empty", "Opaque", "0", "3m"]),
        ],
    );
    check(
        "",
        "ConfigMap",
        &["Name", "Data", "Age"],
        &[
            (
                json!({"metadata": meta("cfg", 200), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
                &["cfg", "3", "3m20s"],
            ),
            (json!({"metadata": meta("kube-root-ca.crt", 200)}), &["kube-root-ca.crt", "0", "3m20s"]),
        ],
    );
    check(
        "",
        "ServiceAccount",
        &["Name", "Secrets", "Age"],
        &[
            (json!({"metadata": meta("default", DAY), "secrets": [{"name": "t"}]}), &["default", "1", "24h"]),
            (json!({"metadata": meta("default", DAY)}), &["default", "0", "24h"]),
        ],
    );
    check(
        "coordination.k8s.io",
        "Lease",
        &["Name", "Holder", "Age"],
        &[
            (
                json!({"metadata": meta("node-1", 30), "spec": {"holderIdentity": "node-1"}}),
                &["node-1", "node-1", "30s"],
            ),
            (json!({"metadata": meta("free", 30), "spec": {}}), &["free", "", "30s"]),
        ],
    );
}

#[test]
fn endpoint_slices() {
    check(
        "discovery.k8s.io",
        "EndpointSlice",
        &["Name", "AddressType", "Ports", "Endpoints", "Age"],
        &[
            (
                json!({"metadata": meta("kubia-abc12", 23 * HOUR), "addressType": "IPv4",
                    "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": ["10.116.0.6"]}, {"addresses": ["10.116.1.6"]}, {"addresses": ["10.116.2.4"]}]}),
                &["kubia-abc12", "IPv4", "8080", "10.116.0.6,10.116.1.6,10.116.2.4", "23h"],
            ),
            (
                json!({"metadata": meta("many", 23 * HOUR), "addressType": "IPv4",
                    "ports": [{"port": 1}, {"name": "named"}, {}, {"port": 4}],
                    "endpoints": [{"addresses": ["a", "b"]}, {"addresses": ["c", "d", "e"]}]}),
                &["many", "IPv4", "1,named,* + 1 more...", "a,b,c + 2 more...", "23h"],
            ),
            (
                json!({"metadata": meta("empty", 23 * HOUR), "addressType": "IPv6"}),
                &["empty", "IPv6", "<unset>", "<unset>", "23h"],
            ),
        ],
    );
}

#[test]
fn events_core_and_events_api() {
    let headers = [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ];
    check(
        "",
        "Event",
        &headers,
        &[
            (
                json!({"metadata": meta("kubia-7nog1.17a", 10 * MIN), "type": "Normal", "reason": "Scheduled",
                    "involvedObject": {"kind": "Pod", "name": "kubia-7nog1", "fieldPath": "spec.containers{kubia}"},
                    "source": {"component": "default-scheduler"}, "message": "Successfully assigned default/kubia-7nog1 to node-1\n",
                    "firstTimestamp": ago(10 * MIN), "lastTimestamp": ago(2 * MIN), "count": 4}),
                &[
                    "2m",
                    "Normal",
                    "Scheduled",
                    "pod/kubia-7nog1",
                    "spec.containers{kubia}",
                    "default-scheduler",
                    "Successfully assigned default/kubia-7nog1 to node-1",
                    "10m",
                    "4",
                    "kubia-7nog1.17a",
                ],
            ),
            (
                json!({"metadata": meta("ev2", 10 * MIN), "type": "Warning", "reason": "BackOff",
                    "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet", "host": "node-1"},
                    "eventTime": ago(45), "series": {"count": 7, "lastObservedTime": ago(5)}}),
                &["5s", "Warning", "BackOff", "pod/p", "", "kubelet, node-1", "", "45s", "7", "ev2"],
            ),
            (
                json!({"metadata": meta("ev3", 10 * MIN), "type": "Normal", "reason": "RegisteredNode",
                    "involvedObject": {"kind": "Node"}, "reportingComponent": "node-controller", "reportingInstance": "pier",
                    "eventTime": ago(90)}),
                &[
                    "90s",
                    "Normal",
                    "RegisteredNode",
                    "node",
                    "",
                    "node-controller, pier",
                    "",
                    "90s",
                    "1",
                    "ev3",
                ],
            ),
            (json!({}), &["<unknown>", "", "", "", "", "", "", "<unknown>", "1", ""]),
        ],
    );
    check(
        "events.k8s.io",
        "Event",
        &headers,
        &[(
            json!({"metadata": meta("ev4", 10 * MIN), "type": "Normal", "reason": "Started", "note": " Started container ",
                "regarding": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
                "reportingController": "kubelet", "reportingInstance": "node-1",
                "deprecatedSource": {"component": "kubelet"},
                "deprecatedFirstTimestamp": ago(3 * HOUR), "deprecatedLastTimestamp": ago(HOUR), "deprecatedCount": 2}),
            &[
                "60m",
                "Normal",
                "Started",
                "pod/p",
                "spec.containers{c}",
                "kubelet, node-1",
                "Started container",
                "3h",
                "2",
                "ev4",
            ],
        )],
    );
}

#[test]
fn kinds_without_printer_get_name_and_created_at() {
    assert!(!has_printer("example.com", "Widget"));
    let cols = column_definitions("example.com", "Widget");
    assert_eq!(
        json!(cols[1]),
        json!({"name": "Created At", "type": "date", "format": "",
        "description": cols[1].description, "priority": 0})
    );
    check(
        "example.com",
        "Widget",
        &["Name", "Created At"],
        &[
            (
                json!({"metadata": {"name": "w", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}),
                &["w", "2024-05-01T08:00:00Z"],
            ),
            (json!({"metadata": {"name": "w"}}), &["w", "0001-01-01T00:00:00Z"]),
        ],
    );
}

#[test]
fn table_with_partial_object_metadata_rows() {
    let a = pod(one_container(), json!({"phase": "Running"}));
    let b = json!({"metadata": {"name": "done", "namespace": "x", "uid": "u1"}, "status": {"phase": "Succeeded"}});
    let t = table("", "Pod", &[&a, &b], now(), IncludeObject::Metadata, json!({"resourceVersion": "42"}));
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(9));
    assert_eq!(t["rows"][0]["cells"][0], "kubia-7nog1");
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": a["metadata"]})
    );
    assert!(t["rows"][0].get("conditions").is_none());
    assert_eq!(
        t["rows"][1]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
        "message": "The pod has completed successfully."}])
    );
    // Go writes an unset creationTimestamp inside ObjectMeta as null.
    assert_eq!(
        t["rows"][1]["object"]["metadata"],
        json!({"name": "done", "namespace": "x", "uid": "u1",
        "creationTimestamp": null})
    );

    let empty = table("", "Service", &[], now(), IncludeObject::Metadata, Value::Null);
    assert_eq!(empty["metadata"], json!({}));
    assert_eq!(empty["rows"], json!([]));
}

#[test]
fn table_object_modes() {
    let svc = json!({"metadata": {"name": "s", "resourceVersion": "7"}, "spec": {"type": "ClusterIP"}});
    let full = table("", "Service", &[&svc], now(), IncludeObject::Object, json!({}));
    assert_eq!(full["rows"][0]["object"]["apiVersion"], "v1");
    assert_eq!(full["rows"][0]["object"]["kind"], "Service");
    assert_eq!(full["rows"][0]["object"]["spec"], svc["spec"]);
    let none = table("", "Service", &[&svc], now(), IncludeObject::None, json!({}));
    assert_eq!(none["rows"][0]["object"], Value::Null);

    assert_eq!(IncludeObject::parse(""), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("Object"), Ok(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("None"), Ok(IncludeObject::None));
    let err = IncludeObject::parse("All").err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("unrecognized includeObject value: \"All\""));
}

#[test]
fn watch_tables_carry_headers_only_on_the_first_event() {
    let svc = json!({"metadata": {"name": "s", "resourceVersion": "7"}, "spec": {"type": "ClusterIP"}});
    let first = watch_table("", "Service", &svc, now(), IncludeObject::Metadata, true);
    assert_eq!(first["columnDefinitions"].as_array().map(Vec::len), Some(7));
    assert_eq!(first["metadata"], json!({"resourceVersion": "7"}));
    let later = watch_table("", "Service", &svc, now(), IncludeObject::Metadata, false);
    assert_eq!(later["columnDefinitions"], Value::Null);
    assert_eq!(later["rows"][0]["cells"][0], "s");
}
