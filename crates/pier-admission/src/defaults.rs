//! Defaulting, as upstream's `SetDefaults_*` functions (pkg/apis/core/v1/defaults.go,
//! pkg/apis/apps/v1/defaults.go, discovery and networking) and the defaulting admission
//! plugins apply them on create and update. Every default only fills a field that is
//! absent or null (or an empty string where upstream tests `== ""`), so defaulting is
//! idempotent and never overrides what the user wrote.

use serde_json::{json, Map, Value};

use crate::util::{default_field, default_str, ensure_obj, str_at};

/// Fills in upstream's defaults on `obj`, an object of `kind` in API `group` (`""` for
/// core). Kinds without defaults are left untouched.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => pod(obj),
        ("", "ReplicationController") => replication_controller(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "Deployment") => deployment(obj),
        ("", "Service") => service(obj),
        ("", "Secret") => secret(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Endpoints") => endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj),
        ("", "Node") => node(obj),
        _ => {}
    }
}

fn pod(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    pod_spec(spec);
    // Only Pods (not templates) get enableServiceLinks: SetDefaults_Pod, not _PodSpec.
    default_field(spec, "enableServiceLinks", json!(true));
    // What the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins
    // add to every new Pod, so `kubectl get pod -o yaml` looks as it does upstream.
    default_str(spec, "serviceAccountName", "default");
    let sa = spec.get("serviceAccountName").cloned().unwrap_or(json!("default"));
    default_field(spec, "serviceAccount", sa);
    default_field(spec, "priority", json!(0));
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    default_tolerations(spec);
}

/// The DefaultTolerationSeconds plugin: tolerate not-ready/unreachable nodes for 300s.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let has = list.iter().any(|t| {
            let k = str_at(t, "key");
            let effect = str_at(t, "effect");
            (k == key || (k.is_empty() && str_at(t, "operator") == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !has {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300
            }));
        }
    }
}

/// SetDefaults_PodSpec plus the per-container, volume and probe defaults.
pub(crate) fn pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c, host_network);
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume(v);
        }
    }
}

fn container(c: &mut Map<String, Value>, host_network: bool) {
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    let policy = if image_tag(&image).as_deref() == Some("latest") { "Always" } else { "IfNotPresent" };
    default_str(c, "imagePullPolicy", policy);
    // `resources: {}` is what upstream serializes for the non-pointer struct.
    default_field(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_str(p, "protocol", "TCP");
            // On the host network a container port is a host port (SetDefaults_Pod).
            if host_network {
                if let Some(cp) = p.get("containerPort").cloned() {
                    default_field(p, "hostPort", cp);
                }
            }
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef").and_then(Value::as_object_mut) {
                default_str(fr, "apiVersion", "v1");
            }
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe_name).and_then(Value::as_object_mut) {
            probe(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) =
                lc.get_mut(hook).and_then(|h| h.get_mut("httpGet")).and_then(Value::as_object_mut)
            {
                http_get(h);
            }
        }
    }
}

fn probe(p: &mut Map<String, Value>) {
    default_field(p, "timeoutSeconds", json!(1));
    default_field(p, "periodSeconds", json!(10));
    default_field(p, "successThreshold", json!(1));
    default_field(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        http_get(h);
    }
}

fn http_get(h: &mut Map<String, Value>) {
    default_str(h, "path", "/");
    default_str(h, "scheme", "HTTP");
}

fn volume(v: &mut Map<String, Value>) {
    const SOURCES: &[&str] = &[
        "emptyDir",
        "hostPath",
        "secret",
        "configMap",
        "downwardAPI",
        "projected",
        "persistentVolumeClaim",
        "nfs",
        "iscsi",
        "csi",
        "ephemeral",
        "image",
        "gitRepo",
    ];
    // A volume without any source is an emptyDir (SetDefaults_Volume).
    if !SOURCES.iter().any(|s| v.contains_key(*s)) && v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
            default_field(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default_field(h, "type", json!(""));
    }
    if let Some(items) =
        v.get_mut("downwardAPI").and_then(|d| d.get_mut("items")).and_then(Value::as_array_mut)
    {
        for it in items.iter_mut() {
            if let Some(fr) = it.get_mut("fieldRef").and_then(Value::as_object_mut) {
                default_str(fr, "apiVersion", "v1");
            }
        }
    }
}

/// The tag of an image reference as upstream's `parsers.ParseImageName` sees it:
/// `latest` when neither tag nor digest is given, `None` for digest references.
pub fn image_tag(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    // A colon before the last `/` belongs to a registry host:port, not a tag.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => Some(tag.to_string()),
        None if digest => None,
        None => Some("latest".to_string()),
    }
}

fn template_spec(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec").and_then(Value::as_object_mut) {
        pod_spec(spec);
    }
}

fn replication_controller(obj: &mut Value) {
    let tmpl_labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = tmpl_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let empty = spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty);
            if empty {
                spec.insert("selector".into(), labels.clone());
            }
        }
        if let Some(meta) = ensure_obj(obj, "metadata") {
            let empty = meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty);
            if empty {
                meta.insert("labels".into(), labels);
            }
        }
    }
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_field(spec, "replicas", json!(1));
    }
    template_spec(obj);
}

fn replica_set(obj: &mut Value) {
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_field(spec, "replicas", json!(1));
    }
    template_spec(obj);
}

fn deployment(obj: &mut Value) {
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_field(spec, "replicas", json!(1));
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Some(st) = strategy.as_object_mut() {
            default_str(st, "type", "RollingUpdate");
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    default_field(ru, "maxUnavailable", json!("25%"));
                    default_field(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
    }
    template_spec(obj);
}

/// Whether a Service type reaches outside the cluster (upstream `ExternallyAccessible`).
pub(crate) fn externally_accessible(spec: &Value) -> bool {
    let ty = str_at(spec, "type");
    ty == "LoadBalancer"
        || ty == "NodePort"
        || (ty == "ClusterIP"
            && spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
}

fn service(obj: &mut Value) {
    let Some(spec) = ensure_obj(obj, "spec") else { return };
    default_str(spec, "sessionAffinity", "None");
    default_str(spec, "type", "ClusterIP");
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_str(p, "protocol", "TCP");
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(_) => false,
            };
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let spec_value = Value::Object(spec.clone());
    if externally_accessible(&spec_value) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_field(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let cfg = spec.entry("sessionAffinityConfig").or_insert_with(|| json!({}));
        if let Some(cfg) = cfg.as_object_mut() {
            let cip = cfg.entry("clientIP").or_insert_with(|| json!({}));
            if let Some(cip) = cip.as_object_mut() {
                default_field(cip, "timeoutSeconds", json!(10800));
            }
        }
    }
    if ty == "LoadBalancer" {
        default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        // The registry keeps clusterIP and clusterIPs in step (normalizeClusterIPs) and
        // records the family of a set IP; Pier's service network is single-stack IPv4.
        let cip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        if !cip.is_empty() {
            let ips_empty = spec.get("clusterIPs").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if ips_empty {
                spec.insert("clusterIPs".into(), json!([cip]));
            }
            default_field(spec, "ipFamilies", json!(["IPv4"]));
            default_field(spec, "ipFamilyPolicy", json!("SingleStack"));
        }
    }
    let status = ensure_obj(obj, "status");
    if let Some(status) = status {
        default_field(status, "loadBalancer", json!({}));
    }
}

fn secret(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default_str(m, "type", "Opaque");
    }
}

fn namespace(obj: &mut Value) {
    let name = str_at(obj, "metadata.name").to_string();
    if !name.is_empty() {
        if let Some(meta) = ensure_obj(obj, "metadata") {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(l) = labels.as_object_mut() {
                // Always the namespace's own name: upstream overwrites user values.
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }
    // The namespace strategy adds the `kubernetes` finalizer the lifecycle controller
    // removes once the namespace is empty.
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_field(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure_obj(obj, "status") {
        default_str(status, "phase", "Active");
    }
}

fn endpoints(obj: &mut Value) {
    if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
        for s in subsets.iter_mut() {
            if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default_str(p, "protocol", "TCP");
                }
            }
        }
    }
}

fn endpoint_slice(obj: &mut Value) {
    if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "name", json!(""));
            default_str(p, "protocol", "TCP");
        }
    }
}

fn node(obj: &mut Value) {
    // SetDefaults_NodeStatus: allocatable defaults to capacity.
    let capacity = obj.pointer("/status/capacity").cloned();
    if let (Some(cap), Some(status)) = (capacity, obj.get_mut("status").and_then(Value::as_object_mut)) {
        default_field(status, "allocatable", cap);
    }
}

#[cfg(test)]
mod tests;
