//! Integration tests: the API server in-process on a temporary SQLite store, driven
//! by the `kube` client and `kube-runtime`'s watcher, as Pier's own components drive it.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

struct TestServer {
    inner: pier_testkit::in_process::InProcess,
    client: Client,
}

impl TestServer {
    async fn start() -> TestServer {
        let inner = pier_testkit::in_process::InProcess::start().await.expect("API server starts");
        let client = inner.client.clone();
        TestServer { inner, client }
    }

    fn server(&self) -> &pier_apiserver::RunningServer {
        &self.inner.server
    }
}

fn svc(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}}
    }))
    .expect("service")
}

#[tokio::test]
async fn crud_with_typed_client() {
    let t = TestServer::start().await;
    let api: Api<Service> = Api::namespaced(t.client.clone(), "default");
    let created = api.create(&PostParams::default(), &svc("kubia")).await.expect("create");
    let ip = created.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("cluster IP allocated");
    assert_ne!(ip, "10.96.0.1");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let got = api.get("kubia").await.expect("get");
    assert_eq!(got.metadata.resource_version, created.metadata.resource_version);
    let err = api.create(&PostParams::default(), &svc("kubia")).await.expect_err("duplicate");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));

    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(names, ["kubernetes", "kubia"]);
    let labelled = api.list(&ListParams::default().labels("app=kubia")).await.expect("list by label");
    assert_eq!(labelled.items.len(), 1);

    api.delete("kubia", &DeleteParams::default()).await.expect("delete");
    let err = api.get("kubia").await.expect_err("gone");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).expect("cm");
    let first = api.create(&PostParams::default(), &cm).await.expect("create");
    let mut newer = first.clone();
    newer.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("c", &PostParams::default(), &newer).await.expect("update");
    let mut stale = first.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api.replace("c", &PostParams::default(), &stale).await.expect_err("stale");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");
    // Patches apply to the latest version without a resourceVersion.
    let patched = api
        .patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"b": "x"}})))
        .await
        .expect("patch");
    let data = patched.data.expect("data");
    assert_eq!(data.get("a").map(String::as_str), Some("2"));
    assert_eq!(data.get("b").map(String::as_str), Some("x"));
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    for i in 0..25 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:02}")}})).expect("cm");
        api.create(&PostParams::default(), &cm).await.expect("create");
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.expect("page");
        pages += 1;
        names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert_eq!(names.first().map(String::as_str), Some("cm-00"));
}

#[tokio::test]
async fn runtime_watcher_sees_changes_and_streaming_lists_work() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    for config in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
        let name = format!("w-{}", rand_suffix());
        let mut stream = watcher(api.clone(), config).boxed();
        // Wait for the initial list to finish before writing.
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
                Ok(Ok(Some(watcher::Event::InitDone))) => break,
                Ok(Ok(Some(_))) => continue,
                other => panic!("initial list did not finish: {other:?}"),
            }
        }
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm");
        api.create(&PostParams::default(), &cm).await.expect("create");
        api.delete(&name, &DeleteParams::default()).await.expect("delete");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
                Ok(Ok(Some(watcher::Event::Apply(o)))) if o.metadata.name.as_deref() == Some(&name) => {
                    seen.push("apply")
                }
                Ok(Ok(Some(watcher::Event::Delete(o)))) if o.metadata.name.as_deref() == Some(&name) => {
                    seen.push("delete")
                }
                Ok(Ok(Some(_))) => {}
                other => panic!("watch ended or failed: {other:?}"),
            }
        }
        assert_eq!(seen, ["apply", "delete"]);
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

#[tokio::test]
async fn watch_from_a_compacted_revision_gets_410_expired() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "old"}})).expect("cm");
    let first = api.create(&PostParams::default(), &cm).await.expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    api.patch("old", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "1"}})))
        .await
        .expect("patch");
    let store = t.server().api.objects.store().clone();
    let current = store.current_revision().await.expect("rev");
    store.compact(current).await.expect("compact");
    let mut events = api.watch(&WatchParams::default(), &rv).await.expect("watch starts").boxed();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(e)))) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        Ok(Err(kube::Error::Api(s))) => assert_eq!(s.code, 410),
        other => panic!("expected a 410, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_with_bookmarks_and_initial_events_end() {
    let t = TestServer::start().await;
    let api: Api<Namespace> = Api::all(t.client.clone());
    let params = WatchParams::streaming_lists();
    let mut events = api.watch(&params, "0").await.expect("watch").boxed();
    let mut added = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(_)))) => added += 1,
            Ok(Ok(Some(WatchEvent::Bookmark(b)))) => {
                assert_eq!(
                    b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 4, "the four built-in namespaces");
}

#[tokio::test]
async fn anonymous_requests_are_refused_but_version_is_public() {
    let t = TestServer::start().await;
    let mut cfg = kube::Config::new(t.server().url.parse().expect("url"));
    cfg.root_cert = Some(vec![pem_to_der(&t.server().pki.ca.cert_pem)]);
    let anon = Client::try_from(cfg).expect("client");
    let api: Api<Namespace> = Api::all(anon.clone());
    let err = api.list(&ListParams::default()).await.expect_err("anonymous");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 401), "expected 401");
    let v = anon.apiserver_version().await.expect("version is public");
    assert_eq!(v.major, "1");
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes()).next().expect("one cert").expect("valid").to_vec()
}

/// What the API server answered to a request, as JSON.
async fn send_raw(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req =
        http::Request::builder().method(method).uri(path).header("content-type", "application/json");
    if method == "GET" {
        req = req.header("accept", "application/json");
    }
    let body = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
    let resp = client.send(req.body(body.into()).expect("request")).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn binding(pod: &str, kind: &str, node: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": kind, "name": node},
    })
}

#[tokio::test]
async fn pods_are_bound_through_the_binding_subresource() {
    use k8s_openapi::api::core::v1::Pod;
    let t = TestServer::start().await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "annotations": {"keep": "me"}},
        "spec": {"containers": [{"name": "c", "image": "luksa/kubia"}]},
    }))
    .expect("pod");
    let created = pods.create(&PostParams::default(), &pod).await.expect("create");
    let path = "/api/v1/namespaces/default/pods/web/binding";

    // Bad bindings: the target must be a Node and be named; the names must agree.
    let (code, body) = send_raw(&t.client, "POST", path, Some(binding("web", "Service", ""))).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Binding \"web\" is invalid: [target.kind: Unsupported value: \"Service\": supported values: \"Node\", \"<empty>\", target.name: Required value]"
    );
    let (code, body) = send_raw(&t.client, "POST", path, Some(binding("other", "Node", "n1"))).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (400, Some("name in URL does not match name in Binding object"))
    );
    let (code, _) = send_raw(
        &t.client,
        "POST",
        "/api/v1/namespaces/default/pods/nope/binding",
        Some(binding("nope", "Node", "n1")),
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = send_raw(&t.client, "GET", path, None).await;
    assert_eq!(code, 405, "binding is create-only");

    // The binding sets the node once, adds its annotations, marks the pod scheduled.
    let mut good = binding("web", "Node", "n1");
    good["metadata"]["annotations"] = json!({"from": "binding"});
    let (code, body) = send_raw(&t.client, "POST", path, Some(good)).await;
    assert_eq!(
        (code, body["kind"].as_str(), body["status"].as_str()),
        (201, Some("Status"), Some("Success")),
        "{body}"
    );
    let bound = pods.get("web").await.expect("get");
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
    let annotations = bound.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        (annotations.get("keep").map(String::as_str), annotations.get("from").map(String::as_str)),
        (Some("me"), Some("binding"))
    );
    let scheduled = bound
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| c.status.clone());
    assert_eq!(scheduled.as_deref(), Some("True"));
    assert_eq!(
        bound.metadata.managed_fields, created.metadata.managed_fields,
        "a binding is not a field manager's write"
    );

    let (code, body) = send_raw(&t.client, "POST", path, Some(binding("web", "Node", "n2"))).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on pods \"web\": pod web is already assigned to node \"n1\""
    );

    // Discovery lists it as upstream does.
    let (_, list) = send_raw(&t.client, "GET", "/api/v1", None).await;
    let entry =
        list["resources"].as_array().and_then(|r| r.iter().find(|e| e["name"] == "pods/binding")).cloned();
    assert_eq!(
        entry.map(|e| (e["kind"].clone(), e["verbs"].clone())),
        Some((json!("Binding"), json!(["create"])))
    );
}
