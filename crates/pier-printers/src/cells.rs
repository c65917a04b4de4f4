//! The cells of one row for each printer, computed as upstream's print functions do,
//! always in the wide form (the server sends every column; kubectl hides the wide ones).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::columns::Printer;
use crate::duration::translate_timestamp_since;
use crate::json::{arr_at, get, int_at, map_len, object, opt_int_at, str_at, string_map, time_at};
use crate::pod;
use crate::selector::{format_labels, label_selector_string};

/// At most this many entries are listed in ENDPOINTS, HOSTS and PORTS cells before
/// `+ N more...`.
const LIST_MAX: usize = 3;

/// The cells of `obj`'s row: one per column of [`column_definitions`](crate::column_definitions)
/// for the same group and kind.
pub fn row_cells(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = || json!(str_at(obj, &["metadata", "name"]));
    let age = || json!(translate_timestamp_since(time_at(obj, &["metadata", "creationTimestamp"]), now));
    match Printer::for_kind(group, kind) {
        Printer::Pod => pod::cells(obj, now),
        Printer::ReplicationController => {
            let (names, images) = container_cells(get(obj, &["spec", "template", "spec", "containers"]));
            vec![
                name(),
                json!(replicas(obj)),
                json!(int_at(obj, &["status", "replicas"])),
                json!(int_at(obj, &["status", "readyReplicas"])),
                age(),
                json!(names),
                json!(images),
                json!(format_labels(&string_map(obj, &["spec", "selector"]))),
            ]
        }
        Printer::ReplicaSet => {
            let (names, images) = container_cells(get(obj, &["spec", "template", "spec", "containers"]));
            // metav1.FormatLabelSelector.
            let selector = match label_selector_string(get(obj, &["spec", "selector"])) {
                Ok(s) if s.is_empty() => "<none>".to_string(),
                Ok(s) => s,
                Err(_) => "<error>".to_string(),
            };
            vec![
                name(),
                json!(replicas(obj)),
                json!(int_at(obj, &["status", "replicas"])),
                json!(int_at(obj, &["status", "readyReplicas"])),
                age(),
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        Printer::Deployment => {
            let (names, images) = container_cells(get(obj, &["spec", "template", "spec", "containers"]));
            // Unlike ReplicaSets, upstream prints an empty selector as "" here.
            let selector = label_selector_string(get(obj, &["spec", "selector"]))
                .unwrap_or_else(|_| "<invalid>".to_string());
            vec![
                name(),
                json!(format!("{}/{}", int_at(obj, &["status", "readyReplicas"]), replicas(obj))),
                json!(int_at(obj, &["status", "updatedReplicas"])),
                json!(int_at(obj, &["status", "availableReplicas"])),
                age(),
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        Printer::Service => service_cells(obj, now),
        Printer::Endpoints => vec![name(), json!(format_endpoints(obj)), age()],
        Printer::EndpointSlice => {
            let ports = arr_at(obj, &["ports"]).iter().map(|p| {
                if let Some(n) = opt_int_at(p, &["port"]) {
                    n.to_string()
                } else if let Some(n) = get(p, &["name"]).as_str() {
                    n.to_string()
                } else {
                    "*".to_string()
                }
            });
            let addresses = arr_at(obj, &["endpoints"])
                .iter()
                .flat_map(|e| arr_at(e, &["addresses"]))
                .map(|a| a.as_str().unwrap_or("").to_string());
            vec![
                name(),
                json!(str_at(obj, &["addressType"])),
                json!(list_with_more(ports)),
                json!(list_with_more(addresses)),
                age(),
            ]
        }
        Printer::Ingress => {
            let class = get(obj, &["spec", "ingressClassName"]).as_str().unwrap_or("<none>");
            let ports = if arr_at(obj, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
            vec![
                name(),
                json!(class),
                json!(format_ingress_hosts(arr_at(obj, &["spec", "rules"]))),
                json!(load_balancer_addresses(get(obj, &["status", "loadBalancer"])).join(",")),
                json!(ports),
                age(),
            ]
        }
        Printer::IngressClass => {
            let parameters = match object(obj, &["spec", "parameters"]) {
                None => "<none>".to_string(),
                Some(p) => {
                    let mut s = str_at(p, &["kind"]).to_string();
                    if let Some(group) = get(p, &["apiGroup"]).as_str() {
                        s = format!("{s}.{group}");
                    }
                    format!("{s}/{}", str_at(p, &["name"]))
                }
            };
            vec![name(), json!(str_at(obj, &["spec", "controller"])), json!(parameters), age()]
        }
        Printer::Node => node_cells(obj, now),
        Printer::Event { events_api } => event_cells(obj, events_api, now),
        Printer::Namespace => {
            // The API defaults an unset phase to Active.
            let phase = match str_at(obj, &["status", "phase"]) {
                "" => "Active",
                p => p,
            };
            vec![name(), json!(phase), age()]
        }
        Printer::Secret => {
            // The API defaults an unset type to Opaque.
            let ty = match str_at(obj, &["type"]) {
                "" => "Opaque",
                t => t,
            };
            vec![name(), json!(ty), json!(map_len(obj, &["data"])), age()]
        }
        Printer::ConfigMap => {
            vec![name(), json!(map_len(obj, &["data"]) + map_len(obj, &["binaryData"])), age()]
        }
        Printer::ServiceAccount => vec![name(), json!(arr_at(obj, &["secrets"]).len()), age()],
        Printer::Lease => vec![name(), json!(str_at(obj, &["spec", "holderIdentity"])), age()],
        Printer::Default => {
            // Upstream formats the creation time in RFC 3339, Go's zero time when unset.
            let created = time_at(obj, &["metadata", "creationTimestamp"]).map_or_else(
                || "0001-01-01T00:00:00Z".to_string(),
                |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            vec![name(), json!(created)]
        }
    }
}

/// Row conditions upstream attaches (only finished Pods have any).
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    match Printer::for_kind(group, kind) {
        Printer::Pod => pod::conditions(obj),
        _ => Vec::new(),
    }
}

/// `spec.replicas`, which the API defaults to 1 when unset.
fn replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// Container names and images, each joined with `,`.
fn container_cells(containers: &Value) -> (String, String) {
    let containers = containers.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// The first three items joined with `,`, then ` + N more...`; `<unset>` when empty.
fn list_with_more(items: impl Iterator<Item = String>) -> String {
    let mut shown = Vec::new();
    let mut count = 0usize;
    for item in items {
        if shown.len() < LIST_MAX {
            shown.push(item);
        }
        count += 1;
    }
    let ret = shown.join(",");
    if count > LIST_MAX {
        format!("{ret} + {} more...", count - LIST_MAX)
    } else if ret.is_empty() {
        "<unset>".to_string()
    } else {
        ret
    }
}

/// `ip:port` for each ready address and port of an Endpoints object (notReadyAddresses are
/// not shown), at most three, `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        // Headless services may have no ports: list the bare IPs.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int_at(p, &["port"]))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for addr in addresses {
                if list.len() == LIST_MAX {
                    break;
                }
                let ip = str_at(addr, &["ip"]);
                list.push(match port {
                    Some(port) => join_host_port(ip, port),
                    None => ip.to_string(),
                });
            }
        }
    }
    let ret = list.join(",");
    if count > LIST_MAX {
        format!("{ret} + {} more...", count - LIST_MAX)
    } else {
        ret
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses are bracketed.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Rule hosts, at most three, `*` when no rule names a host.
fn format_ingress_hosts(rules: &[Value]) -> String {
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == LIST_MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", rules.len().saturating_sub(LIST_MAX))
    } else {
        ret
    }
}

/// The distinct ingress points of a load-balancer status (IP, else hostname), sorted.
fn load_balancer_addresses(status: &Value) -> Vec<String> {
    let set: BTreeSet<&str> = arr_at(status, &["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let hostname = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !hostname.is_empty() {
                Some(hostname)
            } else {
                None
            }
        })
        .collect();
    set.into_iter().map(str::to_string).collect()
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = get(svc, &["spec"]);
    // The API defaults an unset type to ClusterIP.
    let svc_type = match str_at(spec, &["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    // Upstream reads clusterIPs[0]; clusterIP is the fallback for objects written before
    // clusterIPs was filled in (the API keeps both in step).
    let cluster_ip = arr_at(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| Some(str_at(spec, &["clusterIP"])).filter(|s| !s.is_empty()))
        .unwrap_or("<none>");

    let external_ips: Vec<&str> = arr_at(spec, &["externalIPs"]).iter().filter_map(Value::as_str).collect();
    let external_ip = match svc_type {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(get(svc, &["status", "loadBalancer"]));
            if all.is_empty() && external_ips.is_empty() {
                "<pending>".to_string()
            } else {
                all.extend(external_ips.iter().map(|s| s.to_string()));
                all.join(",")
            }
        }
        "ExternalName" => str_at(spec, &["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };

    let ports: Vec<String> = arr_at(spec, &["ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            // The API defaults the protocol to TCP.
            let protocol = match str_at(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };

    vec![
        json!(str_at(svc, &["metadata", "name"])),
        json!(svc_type),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        json!(translate_timestamp_since(time_at(svc, &["metadata", "creationTimestamp"]), now)),
        json!(format_labels(&string_map(spec, &["selector"]))),
    ]
}

/// Label prefix and label naming a node's roles.
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = get(node, &["status"]);
    // Only the Ready condition is shown; its absence is Unknown.
    let mut states: Vec<String> =
        match arr_at(status, &["conditions"]).iter().rev().find(|c| str_at(c, &["type"]) == "Ready") {
            Some(c) if str_at(c, &["status"]) == "True" => vec!["Ready".to_string()],
            Some(_) => vec!["NotReady".to_string()],
            None => vec!["Unknown".to_string()],
        };
    if crate::json::bool_at(node, &["spec", "unschedulable"]) {
        states.push("SchedulingDisabled".to_string());
    }

    let mut roles: BTreeSet<&str> = BTreeSet::new();
    for (k, v) in string_map(node, &["metadata", "labels"]) {
        if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if k == NODE_ROLE_LABEL && !v.is_empty() {
            roles.insert(v);
        }
    }
    let roles =
        if roles.is_empty() { "<none>".to_string() } else { roles.into_iter().collect::<Vec<_>>().join(",") };

    let address = |ty: &str| {
        arr_at(status, &["addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == ty)
            .map_or("<none>", |a| str_at(a, &["address"]))
            .to_string()
    };
    let info = |field: &str| match str_at(status, &["nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };

    vec![
        json!(str_at(node, &["metadata", "name"])),
        json!(states.join(",")),
        json!(roles),
        json!(translate_timestamp_since(time_at(node, &["metadata", "creationTimestamp"]), now)),
        json!(str_at(status, &["nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// Field names of an Event in the core API and in `events.k8s.io`, which upstream prints
/// from one internal type.
struct EventFields {
    involved: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    reporting_controller: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    involved: "involvedObject",
    message: "message",
    source: "source",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    reporting_controller: "reportingComponent",
};

const EVENTS_API_EVENT: EventFields = EventFields {
    involved: "regarding",
    message: "note",
    source: "deprecatedSource",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    reporting_controller: "reportingController",
};

fn event_cells(ev: &Value, events_api: bool, now: DateTime<Utc>) -> Vec<Value> {
    let f = if events_api { &EVENTS_API_EVENT } else { &CORE_EVENT };
    let since = |t| translate_timestamp_since(t, now);

    let first_seen = match time_at(ev, &[f.first]) {
        Some(t) => since(Some(t)),
        None => since(time_at(ev, &["eventTime"])),
    };
    let mut last_seen = match time_at(ev, &[f.last]) {
        Some(t) => since(Some(t)),
        None => first_seen.clone(),
    };
    let mut count = int_at(ev, &[f.count]);
    if let Some(series) = object(ev, &["series"]) {
        last_seen = since(time_at(series, &["lastObservedTime"]));
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }

    let involved = get(ev, &[f.involved]);
    let kind = str_at(involved, &["kind"]).to_lowercase();
    let target = match str_at(involved, &["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };

    let first_non_empty = |a: &'static str, b: &'static str| {
        let a = str_at(ev, &[f.source, a]);
        if a.is_empty() {
            str_at(ev, &[b])
        } else {
            a
        }
    };
    let component = first_non_empty("component", f.reporting_controller);
    let instance = first_non_empty("host", "reportingInstance");
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        json!(last_seen),
        json!(str_at(ev, &["type"])),
        json!(str_at(ev, &["reason"])),
        json!(target),
        json!(str_at(involved, &["fieldPath"])),
        json!(source),
        json!(str_at(ev, &[f.message]).trim()),
        json!(first_seen),
        json!(count),
        json!(str_at(ev, &["metadata", "name"])),
    ]
}
