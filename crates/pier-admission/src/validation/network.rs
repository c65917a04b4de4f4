//! Endpoints, EndpointSlices, Ingresses and IngressClasses.

use std::collections::HashSet;
use std::net::IpAddr;

use pier_api::{FieldError, FieldPath};
use serde_json::{json, Value};

use super::meta::{self, NameRule, IMMUTABLE};
use super::PROTOCOLS;
use crate::names;
use crate::util::{arr_at, get, int_at, present, str_at};

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

/// ValidateEndpointsCreate.
pub fn endpoints(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let path = FieldPath::new("subsets");
    for (i, ss) in arr_at(obj, "subsets").iter().enumerate() {
        let ipath = path.index(i);
        let (addrs, not_ready) = (arr_at(ss, "addresses"), arr_at(ss, "notReadyAddresses"));
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(&ipath, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (list, items) in [("addresses", addrs), ("notReadyAddresses", not_ready)] {
            for (j, a) in items.iter().enumerate() {
                errs.extend(endpoint_address(a, &ipath.child(list).index(j)));
            }
        }
        let ports = arr_at(ss, "ports");
        for (j, p) in ports.iter().enumerate() {
            errs.extend(endpoint_port(p, ports.len() > 1, &ipath.child("ports").index(j)));
        }
    }
    errs
}

fn endpoint_address(a: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ip = str_at(a, "ip");
    let ip_path = path.child("ip");
    if names::parse_ip(ip).is_none() {
        errs.push(FieldError::invalid(&ip_path, ip, names::INVALID_IP_MSG));
    }
    let host = str_at(a, "hostname");
    if !host.is_empty() {
        for msg in names::dns1123_label(host) {
            errs.push(FieldError::invalid(&path.child("hostname"), host, &msg));
        }
    }
    if let Some(node) = get(a, "nodeName").and_then(Value::as_str) {
        for msg in names::dns1123_subdomain(node) {
            errs.push(FieldError::invalid(&path.child("nodeName"), node, &msg));
        }
    }
    // Loopback, link-local and unspecified addresses make no sense as endpoints.
    for msg in names::special_ip(ip) {
        errs.push(FieldError::invalid(&ip_path, ip, &msg));
    }
    errs
}

fn endpoint_port(p: &Value, require_name: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, &msg));
        }
    }
    let port = int_at(p, "port").unwrap_or(0);
    for msg in names::port_num(port) {
        errs.push(FieldError::invalid(&path.child("port"), port, &msg));
    }
    errs.extend(protocol(p, path));
    errs
}

fn protocol(p: &Value, path: &FieldPath) -> Vec<FieldError> {
    let proto = str_at(p, "protocol");
    if proto.is_empty() {
        vec![FieldError::required(&path.child("protocol"), "")]
    } else if !PROTOCOLS.contains(&proto) {
        vec![FieldError::not_supported(&path.child("protocol"), proto, PROTOCOLS)]
    } else {
        Vec::new()
    }
}

/// ValidateEndpointSliceCreate (discovery.k8s.io/v1).
pub fn endpoint_slice(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let at = str_at(obj, "addressType");
    let at_path = FieldPath::new("addressType");
    if at.is_empty() {
        errs.push(FieldError::required(&at_path, ""));
    } else if !ADDRESS_TYPES.contains(&at) {
        errs.push(FieldError::not_supported(&at_path, at, ADDRESS_TYPES));
    }
    let ep_path = FieldPath::new("endpoints");
    let endpoints = arr_at(obj, "endpoints");
    if endpoints.len() > 1000 {
        errs.push(FieldError::invalid(&ep_path, endpoints.len() as i64, "must have at most 1000 items"));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let apath = ep_path.index(i).child("addresses");
        let addrs = arr_at(ep, "addresses");
        if addrs.is_empty() {
            errs.push(FieldError::required(&apath, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(FieldError::invalid(&apath, addrs.len() as i64, "must have at most 100 items"));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let p = apath.index(j);
            match (at, names::parse_ip(a)) {
                ("IPv4", Some(IpAddr::V4(_))) | ("IPv6", Some(IpAddr::V6(_))) => {}
                ("IPv4", _) => errs.push(FieldError::invalid(&p, a, "must be a valid IPv4 address")),
                ("IPv6", _) => errs.push(FieldError::invalid(&p, a, "must be a valid IPv6 address")),
                ("FQDN", _) => {
                    for msg in names::dns1123_subdomain(a) {
                        errs.push(FieldError::invalid(&p, a, &msg));
                    }
                }
                _ => {}
            }
        }
        if let Some(host) = get(ep, "hostname").and_then(Value::as_str) {
            for msg in names::dns1123_label(host) {
                errs.push(FieldError::invalid(&ep_path.index(i).child("hostname"), host, &msg));
            }
        }
    }
    let ports_path = FieldPath::new("ports");
    let mut seen = HashSet::new();
    for (i, p) in arr_at(obj, "ports").iter().enumerate() {
        let ppath = ports_path.index(i);
        let name = str_at(p, "name");
        if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(&ppath.child("name"), name, &msg));
            }
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&ppath.child("name"), name));
        }
        errs.extend(protocol(p, &ppath));
        if let Some(port) = int_at(p, "port") {
            for msg in names::port_num(port) {
                errs.push(FieldError::invalid(&ppath.child("port"), port, &msg));
            }
        }
    }
    errs
}

/// ValidateEndpointSliceUpdate: addressType may not change.
pub fn endpoint_slice_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let (o, n) = (str_at(old, "addressType"), str_at(new, "addressType"));
    if o != n {
        errs.push(FieldError::invalid(&FieldPath::new("addressType"), n, IMMUTABLE));
    }
    super::merge(&mut errs, endpoint_slice(new));
    errs
}

fn host_errors(host: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if names::parse_ip(host).is_some() {
        errs.push(FieldError::invalid(path, host, "must be a DNS name, not an IP address"));
    }
    let msgs = if host.contains('*') {
        names::wildcard_dns1123_subdomain(host)
    } else {
        names::dns1123_subdomain(host)
    };
    for msg in msgs {
        errs.push(FieldError::invalid(path, host, &msg));
    }
    errs
}

/// ValidateIngressCreate (networking.k8s.io/v1).
pub fn ingress(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let spec_path = FieldPath::new("spec");
    let spec = get(obj, "spec").unwrap_or(&Value::Null);
    let rules = arr_at(spec, "rules");
    let default_backend = get(spec, "defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            &spec_path,
            json!(rules),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        errs.extend(backend(b, &spec_path.child("defaultBackend")));
    }
    let rules_path = spec_path.child("rules");
    for (i, rule) in rules.iter().enumerate() {
        let rpath = rules_path.index(i);
        let host = str_at(rule, "host");
        if !host.is_empty() {
            errs.extend(host_errors(host, &rpath.child("host")));
        }
        if let Some(http) = get(rule, "http").filter(|v| !v.is_null()) {
            let hpath = rpath.child("http");
            let paths = arr_at(http, "paths");
            if paths.is_empty() {
                errs.push(FieldError::required(&hpath.child("paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                errs.extend(http_path(p, &hpath.child("paths").index(j)));
            }
        }
    }
    for (i, tls) in arr_at(spec, "tls").iter().enumerate() {
        let tpath = spec_path.child("tls").index(i);
        for (j, h) in arr_at(tls, "hosts").iter().enumerate() {
            errs.extend(host_errors(h.as_str().unwrap_or(""), &tpath.child("hosts").index(j)));
        }
        let secret = str_at(tls, "secretName");
        if !secret.is_empty() {
            for msg in names::dns1123_subdomain(secret) {
                errs.push(FieldError::invalid(&tpath.child("secretName"), secret, &msg));
            }
        }
    }
    if let Some(class) = get(spec, "ingressClassName").and_then(Value::as_str) {
        for msg in names::dns1123_subdomain(class) {
            errs.push(FieldError::invalid(&spec_path.child("ingressClassName"), class, &msg));
        }
    }
    errs
}

fn http_path(p: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(pt) = get(p, "pathType").filter(|v| !v.is_null()) else {
        return vec![FieldError::required(&path.child("pathType"), "pathType must be specified")];
    };
    let pt = pt.as_str().unwrap_or("");
    let value = str_at(p, "path");
    let ppath = path.child("path");
    match pt {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(&ppath, value, "must be an absolute path"));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES {
                    if value.contains(seq) {
                        errs.push(FieldError::invalid(&ppath, value, &format!("must not contain '{seq}'")));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if value.ends_with(suffix) {
                        errs.push(FieldError::invalid(&ppath, value, &format!("cannot end with '{suffix}'")));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(&ppath, value, "must be an absolute path"));
            }
        }
        _ => errs.push(FieldError::not_supported(&path.child("pathType"), pt, PATH_TYPES)),
    }
    errs.extend(backend(get(p, "backend").unwrap_or(&Value::Null), &path.child("backend")));
    errs
}

fn backend(b: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (has_resource, has_service) = (present(b, "resource"), present(b, "service"));
    match (has_resource, has_service) {
        (true, true) => {
            errs.push(FieldError::invalid(path, "", "cannot set both resource and service backends"))
        }
        (true, false) => {
            let rpath = path.child("resource");
            for field in ["kind", "name"] {
                if str_at(b, &format!("resource.{field}")).is_empty() {
                    errs.push(FieldError::required(&rpath.child(field), ""));
                }
            }
        }
        (false, true) => {
            let spath = path.child("service");
            let name = str_at(b, "service.name");
            if name.is_empty() {
                errs.push(FieldError::required(&spath.child("name"), ""));
            } else {
                for msg in names::dns1035_label(name) {
                    errs.push(FieldError::invalid(&spath.child("name"), name, &msg));
                }
            }
            let port_name = str_at(b, "service.port.name");
            let number = int_at(b, "service.port.number").unwrap_or(0);
            let ppath = spath.child("port");
            match (port_name.is_empty(), number == 0) {
                (false, false) => {
                    errs.push(FieldError::invalid(path, "", "cannot set both port name & port number"))
                }
                (false, true) => {
                    for msg in names::port_name(port_name) {
                        errs.push(FieldError::invalid(&ppath.child("name"), port_name, &msg));
                    }
                }
                (true, false) => {
                    for msg in names::port_num(number) {
                        errs.push(FieldError::invalid(&ppath.child("number"), number, &msg));
                    }
                }
                (true, true) => errs.push(FieldError::required(path, "port name or number is required")),
            }
        }
        (false, false) => errs.push(FieldError::invalid(path, "", "resource or service backend is required")),
    }
    errs
}

/// ValidateIngressClass.
pub fn ingress_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, false, NameRule::Subdomain);
    let cpath = FieldPath::new("spec").child("controller");
    let controller = str_at(obj, "spec.controller");
    if controller.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
    } else if controller.len() > 250 {
        errs.push(FieldError::too_long(&cpath, 250));
    } else {
        let ok = controller.split_once('/').is_some_and(|(host, rest)| {
            !host.is_empty() && !rest.is_empty() && names::dns1123_subdomain(host).is_empty()
        });
        if !ok {
            errs.push(FieldError::invalid(
                &cpath,
                controller,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ));
        }
    }
    errs
}

/// ValidateIngressClassUpdate: the controller may not change.
pub fn ingress_class_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let (o, n) = (str_at(old, "spec.controller"), str_at(new, "spec.controller"));
    if o != n {
        errs.push(FieldError::invalid(&FieldPath::new("spec").child("controller"), n, IMMUTABLE));
    }
    super::merge(&mut errs, ingress_class(new));
    errs
}
