//! Service validation (upstream `ValidateService`, `validateServicePort`,
//! `ValidateServiceClusterIPsRelatedFields`, `ValidateServiceUpdate`), in upstream's
//! order so the aggregate message lists errors as kubectl users know them.

use std::collections::HashSet;
use std::net::IpAddr;

use pier_api::{FieldError, FieldPath};
use serde_json::{json, Value};

use super::meta::{self, NameRule, IMMUTABLE};
use super::{port_num_or_name, PROTOCOLS};
use crate::defaults::externally_accessible;
use crate::names;
use crate::util::{arr_at, get, int_at, present, str_at};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const TRAFFIC_DISTRIBUTIONS: &[&str] = &["PreferClose", "PreferSameNode", "PreferSameZone"];
/// Upstream's `MaxClientIPServiceAffinitySeconds`: one day.
const MAX_AFFINITY_SECONDS: i64 = 86400;

/// The `clusterIPs` of a Service as strings (non-strings become empty strings, which
/// then fail IP parsing with upstream's message).
pub(crate) fn cluster_ips(svc: &Value) -> Vec<String> {
    arr_at(svc, "spec.clusterIPs").iter().map(|v| v.as_str().unwrap_or("").to_string()).collect()
}

/// Whether the Service is headless: `clusterIPs` is exactly `["None"]`. Before
/// normalization only `clusterIP` may be set, so that counts too.
pub(crate) fn is_headless(svc: &Value) -> bool {
    let ips = cluster_ips(svc);
    match ips.as_slice() {
        [one] => one == "None",
        [] => str_at(svc, "spec.clusterIP") == "None",
        _ => false,
    }
}

/// Upstream `NeedsHealthCheck`: only LoadBalancer services with the Local policy.
pub(crate) fn needs_health_check(svc: &Value) -> bool {
    str_at(svc, "spec.type") == "LoadBalancer" && str_at(svc, "spec.externalTrafficPolicy") == "Local"
}

fn str_list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| json!(s)).collect())
}

/// ValidateService.
pub fn validate(svc: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(svc, true, NameRule::Dns1035);
    let spec_path = FieldPath::new("spec");
    let spec = get(svc, "spec").cloned().unwrap_or(Value::Null);
    let ty = str_at(&spec, "type");
    let ports = arr_at(&spec, "ports");
    let headless = is_headless(svc);
    let ips = cluster_ips(svc);

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(&spec_path.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            let detail = format!("may not be set to 'None' for {ty} services");
            errs.push(FieldError::invalid(&spec_path.child("clusterIPs").index(0), "None", &detail));
        }
        "ExternalName" => {
            if !ips.is_empty() || !str_at(&spec, "clusterIP").is_empty() {
                errs.push(FieldError::forbidden(
                    &spec_path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !arr_at(&spec, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    &spec_path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if present(&spec, "ipFamilyPolicy") {
                errs.push(FieldError::forbidden(
                    &spec_path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // A CNAME may end in a dot to mark it fully qualified.
            let raw = str_at(&spec, "externalName");
            let cname = raw.strip_suffix('.').unwrap_or(raw);
            if cname.is_empty() {
                errs.push(FieldError::required(&spec_path.child("externalName"), ""));
            } else {
                for msg in names::dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(&spec_path.child("externalName"), cname, &msg));
                }
            }
        }
        _ => {}
    }

    let mut port_names = HashSet::new();
    let ports_path = spec_path.child("ports");
    for (i, p) in ports.iter().enumerate() {
        errs.extend(service_port(p, ports.len() > 1, &mut port_names, &ports_path.index(i)));
    }

    if let Some(sel) = get(&spec, "selector").filter(|v| !v.is_null()) {
        errs.extend(meta::labels(Some(sel), &spec_path.child("selector")));
    }

    let affinity = str_at(&spec, "sessionAffinity");
    let affinity_path = spec_path.child("sessionAffinity");
    if affinity.is_empty() {
        errs.push(FieldError::required(&affinity_path, ""));
    } else if !AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(&affinity_path, affinity, AFFINITIES));
    }
    let cfg_path = spec_path.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        errs.extend(client_ip_config(get(&spec, "sessionAffinityConfig"), &cfg_path));
    } else if affinity == "None" && present(&spec, "sessionAffinityConfig") {
        errs.push(FieldError::forbidden(&cfg_path, "must not be set when session affinity is None"));
    }

    errs.extend(cluster_ips_related(svc));

    let ext_path = spec_path.child("externalIPs");
    for (i, ip) in arr_at(&spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let p = ext_path.index(i);
        if names::parse_ip(ip).is_none() {
            errs.push(FieldError::invalid(&p, ip, names::INVALID_IP_MSG));
        } else {
            for msg in names::special_ip(ip) {
                errs.push(FieldError::invalid(&p, ip, &msg));
            }
        }
    }

    let type_path = spec_path.child("type");
    if ty.is_empty() {
        errs.push(FieldError::required(&type_path, ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(&type_path, ty, TYPES));
    }

    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_at(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    &ports_path.index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    // Duplicates are keyed by (protocol, number), as upstream keys them.
    let mut seen_node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = int_at(p, "nodePort").unwrap_or(0);
        if np != 0 && !seen_node_ports.insert((str_at(p, "protocol").to_string(), np)) {
            errs.push(FieldError::duplicate(&ports_path.index(i).child("nodePort"), np));
        }
    }
    let mut seen_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (str_at(p, "protocol").to_string(), int_at(p, "port").unwrap_or(0));
        if !seen_ports.insert(key.clone()) {
            errs.push(FieldError::duplicate(&ports_path.index(i), json!({"protocol": key.0, "port": key.1})));
        }
    }

    let ranges = arr_at(&spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream spells this path with a capital L.
        let rpath = spec_path.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(&rpath, "may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, r) in ranges.iter().enumerate() {
            // Space padding is tolerated for historical reasons.
            let r = r.as_str().unwrap_or("").trim();
            if !names::is_cidr(r) {
                errs.push(FieldError::invalid(&rpath.index(i), r, names::INVALID_CIDR_MSG));
            }
        }
    }

    let alloc_present = present(&spec, "allocateLoadBalancerNodePorts");
    if alloc_present && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            &spec_path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && !alloc_present {
        // Upstream reports this one without the `spec.` prefix.
        errs.push(FieldError::required(&FieldPath::new("allocateLoadBalancerNodePorts"), ""));
    }
    if present(&spec, "loadBalancerClass") {
        let class = str_at(&spec, "loadBalancerClass");
        let cpath = spec_path.child("loadBalancerClass");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(&cpath, "may only be used when service type is 'LoadBalancer'"));
        } else {
            for msg in names::qualified_name(class) {
                errs.push(FieldError::invalid(&cpath, class, &msg));
            }
        }
    }

    errs.extend(external_traffic_policy(svc));

    let itp_path = spec_path.child("internalTrafficPolicy");
    match get(&spec, "internalTrafficPolicy").filter(|v| !v.is_null()) {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required(&itp_path, ""));
        }
        None => {}
        Some(v) => {
            let v = v.as_str().unwrap_or("");
            if !TRAFFIC_POLICIES.contains(&v) {
                errs.push(FieldError::not_supported(&itp_path, v, TRAFFIC_POLICIES));
            }
        }
    }
    if let Some(td) = get(&spec, "trafficDistribution").filter(|v| !v.is_null()) {
        let td = td.as_str().unwrap_or("");
        if !TRAFFIC_DISTRIBUTIONS.contains(&td) {
            errs.push(FieldError::not_supported(
                &spec_path.child("trafficDistribution"),
                td,
                TRAFFIC_DISTRIBUTIONS,
            ));
        }
    }
    errs
}

fn service_port(
    p: &Value,
    require_name: bool,
    names_seen: &mut HashSet<String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, &msg));
        }
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&path.child("name"), name));
        }
    }
    let port = int_at(p, "port").unwrap_or(0);
    for msg in names::port_num(port) {
        errs.push(FieldError::invalid(&path.child("port"), port, &msg));
    }
    let proto = str_at(p, "protocol");
    if proto.is_empty() {
        errs.push(FieldError::required(&path.child("protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(&path.child("protocol"), proto, PROTOCOLS));
    }
    errs.extend(port_num_or_name(get(p, "targetPort"), &path.child("targetPort")));
    if let Some(ap) = get(p, "appProtocol").and_then(Value::as_str) {
        for msg in names::qualified_name(ap) {
            errs.push(FieldError::invalid(&path.child("appProtocol"), ap, &msg));
        }
    }
    errs
}

fn client_ip_config(cfg: Option<&Value>, path: &FieldPath) -> Vec<FieldError> {
    let detail = "when session affinity type is ClientIP";
    let Some(cfg) = cfg.filter(|v| !v.is_null()) else {
        return vec![FieldError::required(path, detail)];
    };
    let Some(cip) = get(cfg, "clientIP").filter(|v| !v.is_null()) else {
        return vec![FieldError::required(&path.child("clientIP"), detail)];
    };
    let tpath = path.child("clientIP").child("timeoutSeconds");
    match get(cip, "timeoutSeconds").filter(|v| !v.is_null()) {
        None => vec![FieldError::required(&tpath, detail)],
        Some(t) => {
            let t = t.as_i64().unwrap_or(0);
            if t <= 0 || t > MAX_AFFINITY_SECONDS {
                let msg = format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}");
                vec![FieldError::invalid(&tpath, t, &msg)]
            } else {
                Vec::new()
            }
        }
    }
}

/// ValidateServiceClusterIPsRelatedFields (single-stack IPv4 or IPv6 families).
pub(crate) fn cluster_ips_related(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_at(svc, "spec.type") == "ExternalName" {
        return errs;
    }
    let spec_path = FieldPath::new("spec");
    let ips_path = spec_path.child("clusterIPs");
    let fam_path = spec_path.child("ipFamilies");
    let cip = str_at(svc, "spec.clusterIP");
    let ips = cluster_ips(svc);
    if !cip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(&ips_path, ""));
        } else if ips[0] != cip {
            errs.push(FieldError::invalid(&ips_path, str_list(&ips), "first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            str_list(&ips),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    let families: Vec<&str> =
        arr_at(svc, "spec.ipFamilies").iter().map(|v| v.as_str().unwrap_or("")).collect();
    for (i, fam) in families.iter().enumerate() {
        if !IP_FAMILIES.contains(fam) {
            errs.push(FieldError::not_supported(&fam_path.index(i), *fam, IP_FAMILIES));
        }
        if !seen.insert(*fam) {
            errs.push(FieldError::duplicate(&fam_path.index(i), *fam));
        }
    }
    if let Some(pol) = get(svc, "spec.ipFamilyPolicy").filter(|v| !v.is_null()) {
        let pol = pol.as_str().unwrap_or("");
        if !IP_FAMILY_POLICIES.contains(&pol) {
            errs.push(FieldError::not_supported(&spec_path.child("ipFamilyPolicy"), pol, IP_FAMILY_POLICIES));
        }
    }
    let mut invalid = false;
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    str_list(&ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        match names::parse_ip(ip) {
            Some(addr) => parsed.push(addr),
            None => {
                invalid = true;
                errs.push(FieldError::invalid(&ips_path.index(i), ip.as_str(), names::INVALID_IP_MSG));
            }
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(&ips_path, str_list(&ips), "may only hold up to 2 values"));
    }
    if invalid {
        return errs;
    }
    if parsed.len() > 1 && parsed[0].is_ipv4() == parsed[1].is_ipv4() {
        errs.push(FieldError::invalid(
            &ips_path,
            str_list(&ips),
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(svc) {
        for (i, ip) in parsed.iter().enumerate().take(families.len()) {
            match (families[i], ip) {
                ("IPv4", IpAddr::V6(_)) => errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    ips[i].as_str(),
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                )),
                ("IPv6", IpAddr::V4(_)) => errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    ips[i].as_str(),
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                )),
                _ => {}
            }
        }
    }
    errs
}

fn external_traffic_policy(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = get(svc, "spec").cloned().unwrap_or(Value::Null);
    let path = FieldPath::new("spec").child("externalTrafficPolicy");
    let etp = str_at(&spec, "externalTrafficPolicy");
    if !externally_accessible(&spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(&path, etp, "may only be set for externally-accessible services"));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(&path, ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(&path, etp, TRAFFIC_POLICIES));
    }
    let hc_path = FieldPath::new("spec").child("healthCheckNodePort");
    let hc = int_at(&spec, "healthCheckNodePort").unwrap_or(0);
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                &hc_path,
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // A zero here is not an error: the allocator assigns one (see crate docs).
        for msg in names::port_num(hc) {
            errs.push(FieldError::invalid(&hc_path, hc, &msg));
        }
    }
    errs
}

/// ValidateServiceUpdate.
pub fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let spec_path = FieldPath::new("spec");
    let external = str_at(old, "spec.type") == "ExternalName" || str_at(new, "spec.type") == "ExternalName";
    if !external {
        let (o, n) = (str_at(old, "spec.clusterIP"), str_at(new, "spec.clusterIP"));
        if o != n {
            errs.push(FieldError::invalid(&spec_path.child("clusterIP"), n, IMMUTABLE));
        } else if !(is_headless(old) && is_headless(new)) {
            // Secondary IPs may be added or dropped, never changed.
            let (oi, ni) = (cluster_ips(old), cluster_ips(new));
            for (i, ip) in oi.iter().enumerate() {
                if ni.get(i).is_some_and(|n| n != ip) {
                    errs.push(FieldError::invalid(
                        &spec_path.child("clusterIPs").index(i),
                        str_list(&ni),
                        "may not change once set",
                    ));
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && int_at(old, "spec.healthCheckNodePort") != int_at(new, "spec.healthCheckNodePort")
    {
        errs.push(FieldError::forbidden(&spec_path.child("healthCheckNodePort"), IMMUTABLE));
    }
    if str_at(old, "spec.type") == "LoadBalancer"
        && str_at(new, "spec.type") == "LoadBalancer"
        && get(old, "spec.loadBalancerClass") != get(new, "spec.loadBalancerClass")
    {
        let v = get(new, "spec.loadBalancerClass").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid(&spec_path.child("loadBalancerClass"), v, "may not change once set"));
    }
    // Metadata errors were reported by the update check; ValidateService repeats the
    // create-time ones, which upstream also does, so drop exact repeats.
    for e in validate(new) {
        if !errs.contains(&e) {
            errs.push(e);
        }
    }
    errs
}
