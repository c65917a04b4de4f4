//! Apply and update tables over real schemas (Service, Deployment).

use serde_json::{json, Value};

use crate::*;

const T1: &str = "2024-01-01T00:00:00Z";
const T2: &str = "2024-01-02T00:00:00Z";

fn svc() -> Option<pier_schema::SchemaCursor> {
    pier_schema::patch_schema("io.k8s.api.core.v1.Service")
}

fn main_write<'a>(manager: &'a str, time: &'a str) -> Write<'a> {
    Write { manager, api_version: "v1", subresource: None, time, scope: Scope::Except(&["status"]) }
}

fn service(labels: Value, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": labels},
           "spec": {"selector": {"app": "web"}, "ports": ports}})
}

fn fields_of(managed: &ManagedFields, manager: &str) -> Value {
    managed
        .entries()
        .iter()
        .find(|e| e.manager == manager)
        .map(|e| e.fields.to_fields_v1())
        .unwrap_or(Value::Null)
}

const P80: &str = r#"k:{"port":80,"protocol":"TCP"}"#;

#[test]
fn apply_creates_and_records_the_applied_set() {
    let config = service(json!({"app": "web"}), json!([{"port": 80, "targetPort": 8080}]));
    let out =
        apply(svc(), None, &config, &ManagedFields::new(), &main_write("mgr", T1), false).expect("applies");
    assert_eq!(out.object, config);
    assert_eq!(
        fields_of(&out.managed, "mgr"),
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:ports": {P80: {".": {}, "f:port": {}, "f:targetPort": {}}}, "f:selector": {}}})
    );
    let encoded = out.managed.encode();
    assert_eq!(encoded[0]["operation"], "Apply");
    assert_eq!(encoded[0]["apiVersion"], "v1");
    assert_eq!(encoded[0]["time"], T1);
    assert_eq!(encoded[0]["fieldsType"], "FieldsV1");
}

#[test]
fn apply_removes_what_the_manager_no_longer_applies() {
    let first = service(json!({"app": "web", "tier": "front"}), json!([{"port": 80}, {"port": 81}]));
    let a = apply(svc(), None, &first, &ManagedFields::new(), &main_write("mgr", T1), false).expect("first");
    // The server defaults the live object meanwhile.
    let mut live = a.object.clone();
    live["spec"]["ports"][0]["protocol"] = json!("TCP");
    live["spec"]["ports"][1]["protocol"] = json!("TCP");
    live["spec"]["type"] = json!("ClusterIP");
    let second = service(json!({"app": "web"}), json!([{"port": 80}]));
    let b = apply(svc(), Some(&live), &second, &a.managed, &main_write("mgr", T2), false).expect("second");
    assert_eq!(b.object["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(b.object["spec"]["ports"], json!([{"port": 80, "protocol": "TCP"}]));
    // Unowned defaults stay.
    assert_eq!(b.object["spec"]["type"], "ClusterIP");
    assert_eq!(b.managed.encode()[0]["time"], T2);
}

#[test]
fn apply_keeps_removed_fields_another_manager_owns() {
    let first = service(json!({"app": "web", "tier": "front"}), json!([{"port": 80}]));
    let a = apply(svc(), None, &first, &ManagedFields::new(), &main_write("mgr", T1), false).expect("first");
    // An updater sets the same label value again: now both own it.
    let mut edited = a.object.clone();
    edited["metadata"]["labels"]["tier"] = json!("front");
    edited["spec"]["ports"][0]["name"] = json!("http");
    let managed = update(svc(), Some(&a.object), &edited, &a.managed, &main_write("editor", T1));
    assert_eq!(fields_of(&managed, "editor"), json!({"f:spec": {"f:ports": {P80: {"f:name": {}}}}}));
    let mut shared = managed.clone();
    let tier = Path::fields(&["metadata", "labels", "tier"]);
    let mut entries = shared.entries().to_vec();
    for e in &mut entries {
        if e.manager == "editor" {
            e.fields.insert(&tier);
        }
    }
    shared = ManagedFields::from(entries);
    let second = service(json!({"app": "web"}), json!([]));
    let b = apply(svc(), Some(&edited), &second, &shared, &main_write("mgr", T2), false).expect("second");
    assert_eq!(b.object["metadata"]["labels"], json!({"app": "web", "tier": "front"}));
    // The port item stays because the editor owns a field in it.
    assert_eq!(b.object["spec"]["ports"], json!([{"port": 80, "name": "http"}]));
}

#[test]
fn conflicts_force_and_shared_values() {
    let created =
        service(json!({"app": "web"}), json!([{"port": 80, "protocol": "TCP", "targetPort": 8080}]));
    let managed =
        update(svc(), None, &created, &ManagedFields::new(), &main_write("kubectl-client-side-apply", T1));
    assert_eq!(
        fields_of(&managed, "kubectl-client-side-apply"),
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
               "f:spec": {"f:ports": {".": {}, P80: {".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                          "f:selector": {}}})
    );

    // The same values: no conflict, both own them.
    let same = service(json!({"app": "web"}), json!([{"port": 80, "targetPort": 8080}]));
    let ok =
        apply(svc(), Some(&created), &same, &managed, &main_write("ssa", T2), false).expect("same values");
    assert_eq!(ok.object, created);
    assert!(fields_of(&ok.managed, "kubectl-client-side-apply")["f:spec"]["f:ports"][P80]
        .get("f:targetPort")
        .is_some());

    // A different value: conflict in upstream's words.
    let other = service(json!({"app": "web"}), json!([{"port": 80, "targetPort": 9090}]));
    let err =
        apply(svc(), Some(&created), &other, &managed, &main_write("ssa", T2), false).expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.ports[port=80,protocol="TCP"].targetPort"#
    );

    // Forced: the applier takes the field.
    let forced =
        apply(svc(), Some(&created), &other, &managed, &main_write("ssa", T2), true).expect("forced");
    assert_eq!(forced.object["spec"]["ports"][0]["targetPort"], 9090);
    let csa = fields_of(&forced.managed, "kubectl-client-side-apply");
    assert!(csa["f:spec"]["f:ports"][P80].get("f:targetPort").is_none(), "{csa}");
    assert!(fields_of(&forced.managed, "ssa")["f:spec"]["f:ports"][P80].get("f:targetPort").is_some());
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let created =
        service(json!({"app": "web"}), json!([{"port": 80, "protocol": "TCP", "targetPort": 8080}]));
    let managed = update(svc(), None, &created, &ManagedFields::new(), &main_write("kubectl-create", T1));
    let config = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "x"}},
                        "spec": {"selector": {"app": "x"}}});
    let err = apply(svc(), Some(&created), &config, &managed, &main_write("ssa", T2), false)
        .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using v1:\n- .metadata.labels.app\n- .spec.selector"
    );
    let ApplyError::Conflicts(c) = err else { panic!("not conflicts") };
    assert_eq!(c.0[0].cause_message(), r#"conflict with "kubectl-create" using v1"#);
}

#[test]
fn updates_take_fields_from_appliers() {
    let config = service(json!({"app": "web"}), json!([{"port": 80, "targetPort": 8080}]));
    let a =
        apply(svc(), None, &config, &ManagedFields::new(), &main_write("ssa", T1), false).expect("applies");
    let mut edited = a.object.clone();
    edited["spec"]["ports"][0]["targetPort"] = json!(7070);
    let managed = update(svc(), Some(&a.object), &edited, &a.managed, &main_write("kubectl-edit", T2));
    assert_eq!(
        fields_of(&managed, "kubectl-edit"),
        json!({"f:spec": {"f:ports": {P80: {"f:targetPort": {}}}}})
    );
    assert!(fields_of(&managed, "ssa")["f:spec"]["f:ports"][P80].get("f:targetPort").is_none());
    // Re-applying the old value now conflicts with the editor.
    let err =
        apply(svc(), Some(&edited), &config, &managed, &main_write("ssa", T2), false).expect_err("conflict");
    assert!(err.to_string().contains(r#"conflict with "kubectl-edit" using v1"#), "{err}");
}

#[test]
fn no_op_updates_keep_managed_fields() {
    let obj = service(json!({"app": "web"}), json!([{"port": 80, "protocol": "TCP"}]));
    let managed = update(svc(), None, &obj, &ManagedFields::new(), &main_write("a", T1));
    assert_eq!(update(svc(), Some(&obj), &obj, &managed, &main_write("b", T2)), managed);
    // Status is out of scope for main-resource writes.
    let mut with_status = obj.clone();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
    assert_eq!(update(svc(), Some(&obj), &with_status, &managed, &main_write("b", T2)), managed);
}

#[test]
fn status_writes_are_recorded_with_their_subresource() {
    let obj = service(json!({"app": "web"}), json!([{"port": 80, "protocol": "TCP"}]));
    let mut with_status = obj.clone();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
    let write = Write {
        manager: "lb",
        api_version: "v1",
        subresource: Some("status"),
        time: T1,
        scope: Scope::Only(&["status"]),
    };
    let managed = update(svc(), Some(&obj), &with_status, &ManagedFields::new(), &write);
    let entry = &managed.encode()[0];
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:loadBalancer": {".": {}, "f:ingress": {}}}}));
}

#[test]
fn deployment_containers_merge_by_name() {
    let deploy = pier_schema::patch_schema("io.k8s.api.apps.v1.Deployment");
    let config = |image: &str, extra: bool| {
        let mut containers = vec![json!({"name": "app", "image": image})];
        if extra {
            containers.push(json!({"name": "sidecar", "image": "busybox"}));
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}}})
    };
    let w = Write {
        manager: "m",
        api_version: "apps/v1",
        subresource: None,
        time: T1,
        scope: Scope::Except(&["status"]),
    };
    let a = apply(deploy, None, &config("nginx:1", true), &ManagedFields::new(), &w, false).expect("first");
    let b = apply(deploy, Some(&a.object), &config("nginx:2", false), &a.managed, &w, false).expect("second");
    assert_eq!(
        b.object["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "nginx:2"}])
    );
    let set = fields_of(&b.managed, "m");
    assert_eq!(set["f:spec"]["f:selector"], json!({}));
    assert!(set["f:spec"]["f:template"]["f:spec"]["f:containers"].get(r#"k:{"name":"app"}"#).is_some());
}

#[test]
fn invalid_configurations_are_refused() {
    let with_managed = json!({"metadata": {"name": "a", "managedFields": [{"manager": "x"}]}});
    let err = apply(svc(), None, &with_managed, &ManagedFields::new(), &main_write("m", T1), false)
        .expect_err("refused");
    assert_eq!(err, ApplyError::ManagedFieldsInConfig);
    let not_object = json!([1]);
    assert_eq!(
        apply(svc(), None, &not_object, &ManagedFields::new(), &main_write("m", T1), false),
        Err(ApplyError::NotAnObject)
    );
}
