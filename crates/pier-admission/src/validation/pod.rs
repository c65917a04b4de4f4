//! Pods and pod templates (upstream `ValidatePodSpec`, `validateContainers`,
//! `validateProbe`, `validateHandler`, `ValidatePodUpdate`).

use std::collections::HashSet;

use pier_api::{FieldError, FieldPath};
use serde_json::Value;

use super::meta::{self, NameRule, IS_NEGATIVE};
use super::{port_num_or_name, PROTOCOLS};
use crate::names;
use crate::util::{arr_at, get, int_at, present, str_at};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];
const HTTP_SCHEMES: &[&str] = &["HTTP", "HTTPS"];
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// ValidatePodCreate: metadata plus spec.
pub fn validate(pod: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(pod, true, NameRule::Subdomain);
    errs.extend(pod_spec(get(pod, "spec").unwrap_or(&Value::Null), &FieldPath::new("spec")));
    errs
}

/// ValidatePodTemplateSpec: template labels, annotations and spec, at `path`.
pub fn template(tmpl: &Value, path: &FieldPath) -> Vec<FieldError> {
    let meta_path = path.child("metadata");
    let mut errs = meta::labels(get(tmpl, "metadata.labels"), &meta_path.child("labels"));
    errs.extend(meta::annotations(get(tmpl, "metadata.annotations"), &meta_path.child("annotations")));
    let spec_path = path.child("spec");
    errs.extend(pod_spec(get(tmpl, "spec").unwrap_or(&Value::Null), &spec_path));
    if !arr_at(tmpl, "spec.ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            &spec_path.child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// ValidatePodSpec (the parts Pier runs).
pub fn pod_spec(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volume_names = volumes(spec, &path.child("volumes"), &mut errs);
    let mut names_seen = HashSet::new();
    let containers = arr_at(spec, "containers");
    let cpath = path.child("containers");
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        errs.extend(container(
            c,
            &path.child("initContainers").index(i),
            &mut names_seen,
            &volume_names,
            false,
        ));
    }
    if containers.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
    }
    for (i, c) in containers.iter().enumerate() {
        errs.extend(container(c, &cpath.index(i), &mut names_seen, &volume_names, true));
    }

    let rp_path = path.child("restartPolicy");
    let rp = str_at(spec, "restartPolicy");
    if rp.is_empty() {
        errs.push(FieldError::required(&rp_path, ""));
    } else if !RESTART_POLICIES.contains(&rp) {
        errs.push(FieldError::not_supported(&rp_path, rp, RESTART_POLICIES));
    }
    let dns_path = path.child("dnsPolicy");
    let dns = str_at(spec, "dnsPolicy");
    if dns.is_empty() {
        errs.push(FieldError::required(&dns_path, ""));
    } else if !DNS_POLICIES.contains(&dns) {
        errs.push(FieldError::not_supported(&dns_path, dns, DNS_POLICIES));
    } else if dns == "None" && !present(spec, "dnsConfig") {
        errs.push(FieldError::required(
            &path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(sel) = get(spec, "nodeSelector").filter(|v| !v.is_null()) {
        errs.extend(meta::labels(Some(sel), &path.child("nodeSelector")));
    }
    for (field, rule) in [("serviceAccountName", NameRule::Subdomain), ("nodeName", NameRule::Subdomain)] {
        let v = str_at(spec, field);
        if !v.is_empty() {
            for msg in rule.check(v, false) {
                errs.push(FieldError::invalid(&path.child(field), v, &msg));
            }
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = str_at(spec, field);
        if !v.is_empty() {
            for msg in names::dns1123_label(v) {
                errs.push(FieldError::invalid(&path.child(field), v, &msg));
            }
        }
    }
    if let Some(ads) = int_at(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            let msg = names::inclusive_range_error(1, i64::from(i32::MAX));
            errs.push(FieldError::invalid(&path.child("activeDeadlineSeconds"), ads, &msg));
        }
    }
    if let Some(t) = int_at(spec, "terminationGracePeriodSeconds") {
        if t < 0 {
            errs.push(FieldError::invalid(&path.child("terminationGracePeriodSeconds"), t, IS_NEGATIVE));
        }
    }
    errs
}

fn volumes(spec: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, v) in arr_at(spec, "volumes").iter().enumerate() {
        let vpath = path.index(i);
        let mut el = Vec::new();
        let mut count = 0;
        for src in VOLUME_SOURCES {
            if present(v, src) {
                if count > 0 {
                    el.push(FieldError::forbidden(
                        &vpath.child(src),
                        "may not specify more than 1 volume type",
                    ));
                } else {
                    count += 1;
                }
            }
        }
        if count == 0 {
            el.push(FieldError::required(&vpath, "must specify a volume type"));
        }
        let name = str_at(v, "name");
        let npath = vpath.child("name");
        if name.is_empty() {
            el.push(FieldError::required(&npath, ""));
        } else {
            for msg in names::dns1123_label(name) {
                el.push(FieldError::invalid(&npath, name, &msg));
            }
        }
        if seen.contains(name) {
            el.push(FieldError::duplicate(&npath, name));
        }
        if el.is_empty() {
            seen.insert(name.to_string());
        }
        errs.extend(el);
    }
    seen
}

fn container(
    c: &Value,
    path: &FieldPath,
    names_seen: &mut HashSet<String>,
    volumes: &HashSet<String>,
    regular: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(c, "name");
    let npath = path.child("name");
    if name.is_empty() {
        errs.push(FieldError::required(&npath, ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&npath, name, &msg));
        }
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&npath, name));
        }
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    if regular {
        for (probe_name, single_success) in
            [("livenessProbe", true), ("readinessProbe", false), ("startupProbe", true)]
        {
            if let Some(p) = get(c, probe_name).filter(|v| !v.is_null()) {
                errs.extend(probe(p, &path.child(probe_name), single_success));
            }
        }
    }
    if let Some(lc) = get(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = get(lc, hook).filter(|v| !v.is_null()) {
                errs.extend(handler(h, &path.child("lifecycle").child(hook)));
            }
        }
    }
    errs.extend(container_ports(arr_at(c, "ports"), &path.child("ports")));
    errs.extend(env(arr_at(c, "env"), &path.child("env")));
    errs.extend(volume_mounts(arr_at(c, "volumeMounts"), volumes, &path.child("volumeMounts")));
    let pull_path = path.child("imagePullPolicy");
    let pull = str_at(c, "imagePullPolicy");
    if pull.is_empty() {
        errs.push(FieldError::required(&pull_path, ""));
    } else if !PULL_POLICIES.contains(&pull) {
        errs.push(FieldError::not_supported(&pull_path, pull, PULL_POLICIES));
    }
    let tmp_path = path.child("terminationMessagePolicy");
    let tmp = str_at(c, "terminationMessagePolicy");
    if tmp.is_empty() {
        errs.push(FieldError::required(&tmp_path, ""));
    } else if !TERMINATION_MESSAGE_POLICIES.contains(&tmp) {
        errs.push(FieldError::not_supported(&tmp_path, tmp, TERMINATION_MESSAGE_POLICIES));
    }
    errs
}

fn probe(p: &Value, path: &FieldPath, single_success: bool) -> Vec<FieldError> {
    let mut errs = handler(p, path);
    for field in
        ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"]
    {
        if let Some(n) = int_at(p, field) {
            if n < 0 {
                errs.push(FieldError::invalid(&path.child(field), n, IS_NEGATIVE));
            }
        }
    }
    // Liveness and startup probes pass on a single success by definition.
    if single_success {
        if let Some(n) = int_at(p, "successThreshold") {
            if n != 1 {
                errs.push(FieldError::invalid(&path.child("successThreshold"), n, "must be 1"));
            }
        }
    }
    errs
}

/// validateHandler: exactly one of exec, httpGet, tcpSocket, grpc (and sleep for hooks).
fn handler(h: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    for kind in ["exec", "httpGet", "tcpSocket", "grpc", "sleep"] {
        let Some(v) = get(h, kind).filter(|v| !v.is_null()) else { continue };
        let kpath = path.child(kind);
        if count > 0 {
            errs.push(FieldError::forbidden(&kpath, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match kind {
            "exec" if arr_at(v, "command").is_empty() => {
                errs.push(FieldError::required(&kpath.child("command"), ""));
            }
            "httpGet" => {
                if str_at(v, "path").is_empty() {
                    errs.push(FieldError::required(&kpath.child("path"), ""));
                }
                errs.extend(port_num_or_name(get(v, "port"), &kpath.child("port")));
                let scheme = str_at(v, "scheme");
                if !HTTP_SCHEMES.contains(&scheme) {
                    errs.push(FieldError::not_supported(&kpath.child("scheme"), scheme, HTTP_SCHEMES));
                }
            }
            "tcpSocket" => errs.extend(port_num_or_name(get(v, "port"), &kpath.child("port"))),
            "grpc" => {
                let port = int_at(v, "port").unwrap_or(0);
                for msg in names::port_num(port) {
                    errs.push(FieldError::invalid(&kpath.child("port"), port, &msg));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn container_ports(ports: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ppath = path.index(i);
        let name = str_at(p, "name");
        if !name.is_empty() {
            for msg in names::port_name(name) {
                errs.push(FieldError::invalid(&ppath.child("name"), name, &msg));
            }
            if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&ppath.child("name"), name));
            }
        }
        let cp = int_at(p, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(&ppath.child("containerPort"), ""));
        } else {
            for msg in names::port_num(cp) {
                errs.push(FieldError::invalid(&ppath.child("containerPort"), cp, &msg));
            }
        }
        let hp = int_at(p, "hostPort").unwrap_or(0);
        if hp != 0 {
            for msg in names::port_num(hp) {
                errs.push(FieldError::invalid(&ppath.child("hostPort"), hp, &msg));
            }
        }
        let proto = str_at(p, "protocol");
        if proto.is_empty() {
            errs.push(FieldError::required(&ppath.child("protocol"), ""));
        } else if !PROTOCOLS.contains(&proto) {
            errs.push(FieldError::not_supported(&ppath.child("protocol"), proto, PROTOCOLS));
        }
    }
    errs
}

fn env(vars: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in vars.iter().enumerate() {
        let epath = path.index(i);
        let name = str_at(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&epath.child("name"), ""));
        } else {
            for msg in names::env_var_name(name) {
                errs.push(FieldError::invalid(&epath.child("name"), name, &msg));
            }
        }
        if let Some(vf) = get(e, "valueFrom").filter(|v| !v.is_null()) {
            let vpath = epath.child("valueFrom");
            let sources = ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef"];
            let n = sources.iter().filter(|s| present(vf, s)).count();
            if n == 0 {
                errs.push(FieldError::invalid(&vpath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
            } else if n > 1 {
                errs.push(FieldError::invalid(
                    &vpath,
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
            if !str_at(e, "value").is_empty() {
                errs.push(FieldError::invalid(&vpath, "", "may not be specified when `value` is not empty"));
            }
            if let Some(fr) = get(vf, "fieldRef") {
                if str_at(fr, "fieldPath").is_empty() {
                    errs.push(FieldError::required(&vpath.child("fieldRef").child("fieldPath"), ""));
                }
            }
        }
    }
    errs
}

fn volume_mounts(mounts: &[Value], volumes: &HashSet<String>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let mpath = path.index(i);
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&mpath.child("name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(&mpath.child("name"), name));
        }
        let mount_path = str_at(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(&mpath.child("mountPath"), ""));
        } else if !paths.insert(mount_path.to_string()) {
            errs.push(FieldError::invalid(&mpath.child("mountPath"), mount_path, "must be unique"));
        }
    }
    errs
}

/// ValidatePodUpdate: metadata, the new spec, and the short list of mutable spec fields.
pub fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let spec_path = FieldPath::new("spec");
    errs.extend(pod_spec(get(new, "spec").unwrap_or(&Value::Null), &spec_path));
    let old_spec = get(old, "spec").cloned().unwrap_or(Value::Null);
    let mut masked = get(new, "spec").cloned().unwrap_or(Value::Null);
    // Copy the mutable fields from the old spec; whatever still differs was changed
    // where upstream forbids it.
    if let (Some(m), Some(o)) = (masked.as_object_mut(), old_spec.as_object()) {
        for list in ["containers", "initContainers"] {
            let old_list = o.get(list).and_then(Value::as_array);
            if let (Some(new_list), Some(old_list)) =
                (m.get_mut(list).and_then(Value::as_array_mut), old_list)
            {
                if new_list.len() == old_list.len() {
                    for (n, o) in new_list.iter_mut().zip(old_list) {
                        if let (Some(n), Some(img)) = (n.as_object_mut(), o.get("image")) {
                            n.insert("image".into(), img.clone());
                        }
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
            match o.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        // Tolerations may only grow: the old ones must all still be there.
        let old_tol = o.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        let new_tol = m.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            match o.get("tolerations") {
                Some(v) => m.insert("tolerations".into(), v.clone()),
                None => m.remove("tolerations"),
            };
        }
        // Binding an unscheduled pod sets nodeName; Pier's scheduler may do it by update.
        if str_at(&old_spec, "nodeName").is_empty() {
            match o.get("nodeName") {
                Some(v) => m.insert("nodeName".into(), v.clone()),
                None => m.remove("nodeName"),
            };
        }
    }
    if masked != old_spec {
        let detail = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
        errs.push(FieldError::forbidden(&spec_path, detail));
    }
    errs
}
