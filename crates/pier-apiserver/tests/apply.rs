//! Server-side apply and `managedFields` against the in-process API server, driven by
//! the `kube` client.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

async fn start() -> (pier_testkit::in_process::InProcess, Api<Service>) {
    let t = pier_testkit::in_process::InProcess::start().await.expect("API server starts");
    let api: Api<Service> = Api::namespaced(t.client.clone(), "default");
    (t, api)
}

fn config(labels: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"selector": {"app": "web"}, "ports": ports}
    })
}

/// The object as JSON, with its managedFields entry for `manager`.
async fn get_raw(api: &Api<Service>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("get")).expect("json")
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager)
}

const P80: &str = r#"k:{"port":80,"protocol":"TCP"}"#;

#[tokio::test]
async fn apply_creates_then_removes_what_is_no_longer_applied() {
    let (_t, api) = start().await;
    let pp = PatchParams::apply("mgr");
    let first = config(
        json!({"app": "web", "tier": "front"}),
        json!([{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]),
    );
    let created = api.patch("web", &pp, &Patch::Apply(&first)).await.expect("apply creates");
    assert!(created.metadata.uid.is_some());
    let obj = get_raw(&api, "web").await;
    let e = entry(&obj, "mgr").expect("apply entry");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].is_string());
    assert_eq!(e["fieldsV1"]["f:metadata"]["f:labels"], json!({"f:app": {}, "f:tier": {}}));
    assert_eq!(e["fieldsV1"]["f:spec"]["f:ports"][P80], json!({".": {}, "f:name": {}, "f:port": {}}));
    assert_eq!(e["fieldsV1"]["f:spec"]["f:selector"], json!({}));

    let second = config(json!({"app": "web"}), json!([{"port": 80, "name": "a"}]));
    let updated = api.patch("web", &pp, &Patch::Apply(&second)).await.expect("apply again");
    let labels = updated.metadata.labels.unwrap_or_default();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["app"]);
    let ports = updated.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.iter().map(|p| p.port).collect::<Vec<_>>(), [80]);

    // Applying the same configuration again changes nothing.
    let again = api.patch("web", &pp, &Patch::Apply(&second)).await.expect("no-op apply");
    assert_eq!(again.metadata.resource_version, updated.metadata.resource_version);
}

#[tokio::test]
async fn conflicts_with_other_managers_unless_forced() {
    let (_t, api) = start().await;
    let svc: Service =
        serde_json::from_value(config(json!({"app": "web"}), json!([{"port": 80, "targetPort": 8080}])))
            .expect("service");
    let pp = PostParams { field_manager: Some("kubectl-client-side-apply".into()), ..Default::default() };
    api.create(&pp, &svc).await.expect("create");
    let obj = get_raw(&api, "web").await;
    let csa = entry(&obj, "kubectl-client-side-apply").expect("update entry");
    assert_eq!(csa["operation"], "Update");
    assert!(csa["fieldsV1"]["f:spec"]["f:ports"][P80]["f:targetPort"].is_object(), "{csa}");

    // The same value: no conflict.
    let same = config(json!({"app": "web"}), json!([{"port": 80, "targetPort": 8080}]));
    api.patch("web", &PatchParams::apply("ssa"), &Patch::Apply(&same)).await.expect("same value applies");

    let other = config(json!({"app": "web"}), json!([{"port": 80, "targetPort": 9090}]));
    let err =
        api.patch("web", &PatchParams::apply("ssa"), &Patch::Apply(&other)).await.expect_err("conflict");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.ports[port=80,protocol="TCP"].targetPort"#
    );

    let forced = api
        .patch("web", &PatchParams::apply("ssa").force(), &Patch::Apply(&other))
        .await
        .expect("forced apply");
    let port = &forced.spec.and_then(|s| s.ports).unwrap_or_default()[0];
    assert_eq!(port.target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090)));
    let obj = get_raw(&api, "web").await;
    let csa = entry(&obj, "kubectl-client-side-apply").expect("update entry stays");
    assert!(csa["fieldsV1"]["f:spec"]["f:ports"][P80].get("f:targetPort").is_none(), "{csa}");
    let ssa = entry(&obj, "ssa").expect("apply entry");
    assert!(ssa["fieldsV1"]["f:spec"]["f:ports"][P80]["f:targetPort"].is_object(), "{ssa}");
}

#[tokio::test]
async fn every_write_records_its_manager() {
    let (t, api) = start().await;
    let svc: Service =
        serde_json::from_value(config(json!({"app": "web"}), json!([{"port": 80}]))).expect("service");
    api.create(&PostParams { field_manager: Some("kubectl-create".into()), ..Default::default() }, &svc)
        .await
        .expect("create");

    // A merge patch by another manager takes the label it changes.
    let patch = json!({"metadata": {"labels": {"app": "other"}}});
    let pp = PatchParams { field_manager: Some("kubectl-label".into()), ..Default::default() };
    let before = api.patch("web", &pp, &Patch::Merge(&patch)).await.expect("patch");
    let obj = get_raw(&api, "web").await;
    assert_eq!(
        entry(&obj, "kubectl-label").expect("label entry")["fieldsV1"]["f:metadata"]["f:labels"],
        json!({"f:app": {}})
    );
    let create = entry(&obj, "kubectl-create").expect("create entry");
    assert!(create["fieldsV1"]["f:metadata"]["f:labels"].get("f:app").is_none(), "{create}");

    // A patch that changes nothing writes nothing.
    let same = api.patch("web", &pp, &Patch::Merge(&patch)).await.expect("no-op patch");
    assert_eq!(same.metadata.resource_version, before.metadata.resource_version);

    // Status writes are recorded with their subresource.
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let pp = PatchParams { field_manager: Some("lb".into()), ..Default::default() };
    api.patch_status("web", &pp, &Patch::Merge(&status)).await.expect("status patch");
    let obj = get_raw(&api, "web").await;
    let lb = entry(&obj, "lb").expect("status entry");
    assert_eq!(lb["subresource"], "status");
    assert_eq!(lb["fieldsV1"], json!({"f:status": {"f:loadBalancer": {"f:ingress": {}}}}));

    // Without ?fieldManager= the manager is the User-Agent's prefix.
    let body = serde_json::to_vec(&json!({"metadata": {"annotations": {"a": "b"}}})).expect("json");
    let req = http::Request::patch("/api/v1/namespaces/default/services/web")
        .header("content-type", "application/merge-patch+json")
        .header("user-agent", "kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/abc")
        .body(body)
        .expect("request");
    let client: Client = t.client.clone();
    client.request::<Value>(req).await.expect("patch without manager");
    let obj = get_raw(&api, "web").await;
    assert!(entry(&obj, "kube-controller-manager").is_some(), "{}", obj["metadata"]["managedFields"]);
}

#[tokio::test]
async fn apply_options_are_validated_as_upstream() {
    let (t, _api) = start().await;
    let client: Client = t.client.clone();
    let body = serde_json::to_vec(&config(json!({}), json!([{"port": 80}]))).expect("json");
    let req = http::Request::patch("/api/v1/namespaces/default/services/web")
        .header("content-type", "application/apply-patch+yaml")
        .body(body)
        .expect("request");
    let err = client.request::<Value>(req).await.expect_err("no field manager");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );

    let req = http::Request::patch("/api/v1/namespaces/default/services/web?force=true")
        .header("content-type", "application/merge-patch+json")
        .body(b"{}".to_vec())
        .expect("request");
    let err = client.request::<Value>(req).await.expect_err("force on a merge patch");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 422);
    assert!(status.message.ends_with("force: Forbidden: may not be specified for non-apply patch"));

    let with_managed = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}});
    let api: Api<Service> = Api::namespaced(client, "default");
    let err = api
        .patch("web", &PatchParams::apply("m"), &Patch::Apply(&with_managed))
        .await
        .expect_err("managedFields");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!((status.code, status.message.as_str()), (400, "metadata.managedFields must be nil"));
}
