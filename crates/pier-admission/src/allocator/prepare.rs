//! The Service registry's update preparation (upstream's `patchAllocatedValues` and
//! `dropTypeDependentFields`): carry allocated values over when the client omitted them,
//! and drop type-dependent values the client did not touch when the type no longer
//! needs them.

use serde_json::{json, Value};

use crate::util::{get, int_at, str_at};

/// Whether the Service type has a `clusterIP` field at all (everything but ExternalName;
/// headless services count: their value is `None`).
pub(crate) fn needs_cluster_ip(svc: &Value) -> bool {
    str_at(svc, "spec.type") != "ExternalName"
}

/// Whether the Service type exposes node ports.
pub(crate) fn needs_node_port(svc: &Value) -> bool {
    matches!(str_at(svc, "spec.type"), "NodePort" | "LoadBalancer")
}

/// Whether node ports are allocated for ports that did not ask for one.
pub(crate) fn should_allocate_node_ports(svc: &Value) -> bool {
    match str_at(svc, "spec.type") {
        "NodePort" => true,
        "LoadBalancer" => {
            get(svc, "spec.allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false)
        }
        _ => false,
    }
}

fn needs_external_traffic_policy(svc: &Value) -> bool {
    get(svc, "spec").is_some_and(crate::defaults::externally_accessible)
}

fn spec_mut(svc: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    svc.get_mut("spec").and_then(Value::as_object_mut)
}

fn node_ports(svc: &Value) -> Vec<i64> {
    crate::util::arr_at(svc, "spec.ports").iter().map(|p| int_at(p, "nodePort").unwrap_or(0)).collect()
}

/// Fills what `new` left unset from `old` where both types use it: the cluster IPs,
/// node ports (matched by port name) and the health-check node port. This is what lets
/// `kubectl replace` with a manifest that has no `clusterIP` succeed.
pub fn patch_allocated_values(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_ip = str_at(old, "spec.clusterIP").to_string();
        let old_ips = get(old, "spec.clusterIPs").cloned();
        if let Some(spec) = spec_mut(new) {
            if spec.get("clusterIP").and_then(Value::as_str).is_none_or(str::is_empty) && !old_ip.is_empty() {
                spec.insert("clusterIP".into(), json!(old_ip));
            }
            let ips_empty = spec.get("clusterIPs").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if ips_empty {
                if let Some(ips) = old_ips.filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                    spec.insert("clusterIPs".into(), ips);
                }
            }
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let old_ports = crate::util::arr_at(old, "spec.ports").to_vec();
        let new_used = node_ports(new);
        let used: Vec<i64> =
            node_ports(old).into_iter().filter(|p| *p != 0 && new_used.contains(p)).collect();
        if let Some(ports) = spec_mut(new).and_then(|s| s.get_mut("ports")).and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if int_at(p, "nodePort").unwrap_or(0) != 0 {
                    continue;
                }
                let name = str_at(p, "name").to_string();
                let old_val = old_ports
                    .iter()
                    .find(|o| str_at(o, "name") == name)
                    .and_then(|o| int_at(o, "nodePort"))
                    .unwrap_or(0);
                if old_val != 0 && !used.contains(&old_val) {
                    if let Some(m) = p.as_object_mut() {
                        m.insert("nodePort".into(), json!(old_val));
                    }
                }
            }
        }
    }
    if crate::validation::service::needs_health_check(old)
        && crate::validation::service::needs_health_check(new)
    {
        let old_hc = int_at(old, "spec.healthCheckNodePort").unwrap_or(0);
        if let Some(spec) = spec_mut(new) {
            if spec.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0) == 0 && old_hc != 0 {
                spec.insert("healthCheckNodePort".into(), json!(old_hc));
            }
        }
    }
}

/// On a type change, clears values that only the old type used, provided the client left
/// them as they were (a changed value is the client's request, for validation to judge).
pub fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let same = |path: &str, new: &Value| get(old, path) == get(new, path);
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        let (same_ip, same_ips) = (same("spec.clusterIP", new), same("spec.clusterIPs", new));
        let same_fam = same("spec.ipFamilies", new);
        let same_pol = same("spec.ipFamilyPolicy", new);
        if let Some(spec) = spec_mut(new) {
            if same_ip && same_ips {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            if same_fam {
                spec.remove("ipFamilies");
            }
            if same_pol {
                spec.remove("ipFamilyPolicy");
            }
        }
    }
    if needs_node_port(old) && !needs_node_port(new) && node_ports(old) == node_ports(new) {
        if let Some(ports) = spec_mut(new).and_then(|s| s.get_mut("ports")).and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    let hc_same = same("spec.healthCheckNodePort", new);
    if crate::validation::service::needs_health_check(old)
        && !crate::validation::service::needs_health_check(new)
        && hc_same
    {
        if let Some(spec) = spec_mut(new) {
            spec.remove("healthCheckNodePort");
        }
    }
    let etp_same = same("spec.externalTrafficPolicy", new);
    let drop_etp = needs_external_traffic_policy(old) && !needs_external_traffic_policy(new) && etp_same;
    let not_lb = str_at(new, "spec.type") != "LoadBalancer";
    if let Some(spec) = spec_mut(new) {
        if not_lb {
            spec.remove("allocateLoadBalancerNodePorts");
        }
        if drop_etp && !crate::defaults::externally_accessible(&Value::Object(spec.clone())) {
            spec.remove("externalTrafficPolicy");
        }
    }
    if not_lb {
        if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
            status.insert("loadBalancer".into(), json!({}));
        }
    }
}
