//! Integration tests of the Endpoints, EndpointSlice and mirroring controllers against
//! an in-process API server. There is no node agent: pods get their IP and Ready
//! condition through the `status` subresource, written by the tests.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::{json, Value};

async fn start() -> (InProcess, Client) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    tokio::spawn(pier_controllers::endpoints::run(client.clone()));
    (server, client)
}

async fn create_service(client: &Client, v: Value) -> Service {
    let svc: Service = serde_json::from_value(v).expect("a Service");
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service")
}

fn kubia_service() -> Value {
    json!({"metadata": {"name": "kubia"},
           "spec": {"selector": {"app": "kubia"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// Creates a pod (bound to `node-1`), then gives it an IP and a Ready condition.
async fn create_pod(client: &Client, name: &str, labels: Value, ip: &str, ready: bool, spec: Value) -> Pod {
    let mut pod_spec = json!({"nodeName": "node-1", "containers": [{"name": "kubia", "image": "luksa/kubia",
        "ports": [{"name": "http", "containerPort": 8080}]}]});
    if let (Some(base), Some(extra)) = (pod_spec.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": pod_spec}))
            .expect("a Pod");
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &pod).await.expect("create pod");
    set_status(client, name, Some(ip), ready).await
}

/// Writes a pod's status as a node agent would.
async fn set_status(client: &Client, name: &str, ip: Option<&str>, ready: bool) -> Pod {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": ip.map(|ip| vec![json!({"ip": ip})]),
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now}],
    }});
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("patch pod status")
}

async fn slices_of(client: &Client, service: &str) -> Vec<EndpointSlice> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    Api::<EndpointSlice>::namespaced(client.clone(), "default").list(&lp).await.expect("list slices").items
}

/// Every endpoint of a Service's slices: (address, ready, serving, terminating).
async fn slice_endpoints(client: &Client, service: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<(String, bool, bool, bool)> = slices_of(client, service)
        .await
        .iter()
        .flat_map(|s| s.endpoints.clone().unwrap_or_default())
        .map(|e| {
            let c = e.conditions.unwrap_or_default();
            (
                e.addresses.first().cloned().unwrap_or_default(),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

async fn endpoints(client: &Client, name: &str) -> Option<Endpoints> {
    Api::<Endpoints>::namespaced(client.clone(), "default").get_opt(name).await.expect("get endpoints")
}

/// (ready IPs, not-ready IPs) of an Endpoints object, in its order.
fn addresses(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let ips = |f: fn(
        &k8s_openapi::api::core::v1::EndpointSubset,
    ) -> Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        ep.subsets
            .iter()
            .flatten()
            .flat_map(|s| f(s).into_iter().flatten().map(|a| a.ip.clone()))
            .collect::<Vec<_>>()
    };
    (ips(|s| s.addresses.as_ref()), ips(|s| s.not_ready_addresses.as_ref()))
}

fn ep(ip: &str, ready: bool, serving: bool, terminating: bool) -> (String, bool, bool, bool) {
    (ip.to_string(), ready, serving, terminating)
}

#[tokio::test]
async fn pods_of_a_service_become_slices_and_endpoints() {
    let (_server, client) = start().await;
    let svc = create_service(&client, kubia_service()).await;
    for (i, name) in ["kubia-a", "kubia-b", "kubia-c"].iter().enumerate() {
        create_pod(&client, name, json!({"app": "kubia"}), &format!("10.244.0.{}", i + 5), true, json!({}))
            .await;
    }
    // Not selected: other labels, and a selected pod without an IP.
    create_pod(&client, "other", json!({"app": "other"}), "10.244.0.9", true, json!({})).await;
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "pending", "labels": {"app": "kubia"}},
        "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}}))
        .expect("a Pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");

    let want = vec![
        ep("10.244.0.5", true, true, false),
        ep("10.244.0.6", true, true, false),
        ep("10.244.0.7", true, true, false),
    ];
    eventually("three ready endpoints in the slices", || async {
        let got = slice_endpoints(&client, "kubia").await;
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let slices = slices_of(&client, "kubia").await;
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    assert!(
        slice.metadata.name.as_deref().is_some_and(|n| n.starts_with("kubia-")),
        "{:?}",
        slice.metadata.name
    );
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), Some(owner.uid.as_str())), ("Service", svc.metadata.uid.as_deref()));
    let ports = slice.ports.clone().unwrap_or_default();
    assert_eq!(
        (ports[0].port, ports[0].protocol.as_deref(), ports[0].name.as_deref()),
        (Some(8080), Some("TCP"), Some(""))
    );
    let e = &slice.endpoints.as_ref().expect("endpoints")[0];
    assert_eq!(e.node_name.as_deref(), Some("node-1"));
    assert_eq!(e.target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("kubia-a"));
    let trigger = slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("endpoints.kubernetes.io/last-change-trigger-time"));
    assert!(trigger.is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()), "{trigger:?}");

    let ep_obj = eventually("the Endpoints object", || async {
        match endpoints(&client, "kubia").await {
            Some(e) if addresses(&e).0.len() == 3 => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(addresses(&ep_obj).0, ["10.244.0.5", "10.244.0.6", "10.244.0.7"]);
    let subset = &ep_obj.subsets.as_ref().expect("subsets")[0];
    assert_eq!(subset.ports.as_ref().map(|p| p[0].port), Some(8080));
    let a = &subset.addresses.as_ref().expect("addresses")[0];
    assert_eq!(a.target_ref.as_ref().and_then(|r| r.kind.as_deref()), Some("Pod"));
    assert_eq!(a.node_name.as_deref(), Some("node-1"));
    assert!(ep_obj
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("endpoints.kubernetes.io/last-change-trigger-time")));

    // A pod turns NotReady: not ready in the slice, and moved to notReadyAddresses.
    set_status(&client, "kubia-b", Some("10.244.0.6"), false).await;
    eventually("kubia-b not ready", || async {
        let got = slice_endpoints(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await.map(|e| addresses(&e));
        let want_ep =
            (vec!["10.244.0.5".to_string(), "10.244.0.7".to_string()], vec!["10.244.0.6".to_string()]);
        if got.contains(&ep("10.244.0.6", false, false, false)) && e.as_ref() == Some(&want_ep) {
            Ok(())
        } else {
            Err(format!("{got:?} {e:?}"))
        }
    })
    .await;

    // Relabelled: it leaves both.
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch(
            "kubia-c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .expect("relabel");
    eventually("kubia-c gone", || async {
        let got = slice_endpoints(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await.map(|e| addresses(&e));
        let gone = !got.iter().any(|g| g.0 == "10.244.0.7")
            && e.as_ref().is_some_and(|e| !e.0.contains(&"10.244.0.7".to_string()));
        if gone {
            Ok(())
        } else {
            Err(format!("{got:?} {e:?}"))
        }
    })
    .await;

    // Deleted while bound to a node: terminating, serving, not ready; out of Endpoints.
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("kubia-a", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("kubia-a terminating", || async {
        let got = slice_endpoints(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await.map(|e| addresses(&e));
        let in_ep = e.as_ref().is_some_and(|e| {
            e.0.contains(&"10.244.0.5".to_string()) || e.1.contains(&"10.244.0.5".to_string())
        });
        let terminating = got.contains(&ep("10.244.0.5", false, true, true));
        // Pier may also finish the deletion at once (no node agent to wait for).
        let gone = !got.iter().any(|g| g.0 == "10.244.0.5");
        if (terminating || gone) && !in_ep {
            Ok(())
        } else {
            Err(format!("{got:?} {e:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn writes_only_what_changed() {
    let (_server, client) = start().await;
    create_service(&client, kubia_service()).await;
    create_pod(&client, "kubia-a", json!({"app": "kubia"}), "10.244.0.5", true, json!({})).await;
    let slice = eventually("a slice", || async {
        let s = slices_of(&client, "kubia").await;
        match s.first() {
            Some(s) if s.endpoints.as_ref().is_some_and(|e| e.len() == 1) => Ok(s.clone()),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    let ep_rv = eventually("the Endpoints", || async {
        match endpoints(&client, "kubia").await {
            Some(e) if addresses(&e).0.len() == 1 => Ok(e.metadata.resource_version),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // A change that does not matter to endpoints (an annotation), then one that does on
    // another pod: once the second is visible, the first must not have caused a write.
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch(
            "kubia-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
        )
        .await
        .expect("annotate");
    create_pod(&client, "marker", json!({"app": "marker"}), "10.244.0.6", true, json!({})).await;
    create_service(
        &client,
        json!({"metadata": {"name": "marker"},
        "spec": {"selector": {"app": "marker"}, "ports": [{"port": 80}]}}),
    )
    .await;
    eventually("the marker service's slice", || async {
        let n = slice_endpoints(&client, "marker").await.len();
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    let now = slices_of(&client, "kubia").await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].metadata.resource_version, slice.metadata.resource_version, "the slice was rewritten");
    let ep_now = endpoints(&client, "kubia").await.and_then(|e| e.metadata.resource_version);
    assert_eq!(ep_now, ep_rv, "the Endpoints were rewritten");
}

#[tokio::test]
async fn named_ports_resolve_per_pod() {
    let (_server, client) = start().await;
    create_service(&client, json!({"metadata": {"name": "kubia"},
        "spec": {"selector": {"app": "kubia"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}))
    .await;
    create_pod(&client, "p8080", json!({"app": "kubia"}), "10.244.0.5", true, json!({})).await;
    create_pod(&client, "p9090", json!({"app": "kubia"}), "10.244.0.6", true,
        json!({"containers": [{"name": "kubia", "image": "luksa/kubia", "ports": [{"name": "http", "containerPort": 9090}]}]}))
    .await;
    create_pod(
        &client,
        "noport",
        json!({"app": "kubia"}),
        "10.244.0.7",
        true,
        json!({"containers": [{"name": "kubia", "image": "luksa/kubia"}]}),
    )
    .await;
    let got = eventually("two slices, one per port number", || async {
        let mut got: Vec<(i32, Vec<String>)> = slices_of(&client, "kubia")
            .await
            .iter()
            .map(|s| {
                let port = s.ports.as_ref().and_then(|p| p.first()).and_then(|p| p.port).unwrap_or(0);
                (port, s.endpoints.iter().flatten().flat_map(|e| e.addresses.clone()).collect())
            })
            .collect();
        got.sort();
        if got.len() == 2 {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    assert_eq!(got, [(8080, vec!["10.244.0.5".to_string()]), (9090, vec!["10.244.0.6".to_string()])]);
    let e = eventually("Endpoints with both ports", || async {
        match endpoints(&client, "kubia").await {
            Some(e) if e.subsets.as_ref().is_some_and(|s| s.len() == 2) => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut pairs: Vec<(String, i32)> = e
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            let port = s.ports.as_ref().map_or(0, |p| p[0].port);
            s.addresses.iter().flatten().map(move |a| (a.ip.clone(), port))
        })
        .collect();
    pairs.sort();
    assert_eq!(pairs, [("10.244.0.5".to_string(), 8080), ("10.244.0.6".to_string(), 9090)]);
}

#[tokio::test]
async fn more_than_a_hundred_pods_fill_two_slices() {
    let (_server, client) = start().await;
    create_service(&client, kubia_service()).await;
    for i in 0..120 {
        create_pod(
            &client,
            &format!("p{i:03}"),
            json!({"app": "kubia"}),
            &format!("10.244.{}.{}", i / 100, i % 100 + 2),
            i % 3 != 0,
            json!({}),
        )
        .await;
    }
    let sizes = eventually("120 endpoints in slices of at most 100", || async {
        let mut sizes: Vec<usize> = slices_of(&client, "kubia")
            .await
            .iter()
            .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
            .collect();
        sizes.sort();
        if sizes.iter().sum::<usize>() == 120 {
            Ok(sizes)
        } else {
            Err(format!("{sizes:?}"))
        }
    })
    .await;
    assert_eq!(sizes, [20, 100]);
    eventually("Endpoints with 80 ready and 40 not", || async {
        let e = endpoints(&client, "kubia").await.map(|e| addresses(&e));
        match &e {
            Some((r, n)) if r.len() == 80 && n.len() == 40 => Ok(()),
            _ => Err(format!("{e:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn headless_services_publish_hostnames() {
    let (_server, client) = start().await;
    create_service(&client, json!({"metadata": {"name": "kubia-headless"},
        "spec": {"clusterIP": "None", "selector": {"app": "kubia"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
    .await;
    create_pod(
        &client,
        "web-0",
        json!({"app": "kubia"}),
        "10.244.0.5",
        true,
        json!({"hostname": "web-0", "subdomain": "kubia-headless"}),
    )
    .await;
    let slice = eventually("the headless slice", || async {
        let s = slices_of(&client, "kubia-headless").await;
        match s.first() {
            Some(s) if s.endpoints.as_ref().is_some_and(|e| e.len() == 1) => Ok(s.clone()),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    assert_eq!(slice.endpoints.as_ref().and_then(|e| e[0].hostname.clone()).as_deref(), Some("web-0"));
    assert!(slice.metadata.labels.as_ref().is_some_and(|l| l.contains_key("service.kubernetes.io/headless")));
    let e = eventually("headless Endpoints", || async {
        match endpoints(&client, "kubia-headless").await {
            Some(e) if e.subsets.is_some() => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let a = &e.subsets.as_ref().expect("subsets")[0].addresses.as_ref().expect("addresses")[0];
    assert_eq!(a.hostname.as_deref(), Some("web-0"));
}

#[tokio::test]
async fn user_endpoints_of_selectorless_services_are_mirrored() {
    let (_server, client) = start().await;
    create_service(
        &client,
        json!({"metadata": {"name": "external-service"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external-service"},
        "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "22.22.22.22"}], "ports": [{"port": 80}]}]
    }))
    .expect("Endpoints");
    let api = Api::<Endpoints>::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &manual).await.expect("create endpoints");
    let slice = eventually("a mirrored slice", || async {
        let s = slices_of(&client, "external-service").await;
        match s.first() {
            Some(s) if s.endpoints.as_ref().is_some_and(|e| e.len() == 2) => Ok(s.clone()),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslicemirroring-controller.k8s.io")
    );
    let mut ips: Vec<String> = slice.endpoints.iter().flatten().flat_map(|e| e.addresses.clone()).collect();
    ips.sort();
    assert_eq!(ips, ["11.11.11.11", "22.22.22.22"]);
    assert_eq!(slice.ports.as_ref().and_then(|p| p[0].port), Some(80));

    // The user's Endpoints are left exactly as written.
    let e = endpoints(&client, "external-service").await.expect("endpoints");
    assert_eq!(addresses(&e).0, ["11.11.11.11", "22.22.22.22"]);
    assert!(e
        .metadata
        .annotations
        .as_ref()
        .is_none_or(|a| !a.contains_key("endpoints.kubernetes.io/last-change-trigger-time")));

    // An edit is mirrored into the same slice.
    api.patch("external-service", &PatchParams::default(), &Patch::Merge(json!({
        "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "33.33.33.33"}], "ports": [{"port": 80}]}]})))
        .await
        .expect("patch endpoints");
    eventually("the edit mirrored", || async {
        let s = slices_of(&client, "external-service").await;
        let mut ips: Vec<String> = s
            .iter()
            .flat_map(|s| s.endpoints.clone().unwrap_or_default())
            .flat_map(|e| e.addresses)
            .collect();
        ips.sort();
        if s.len() == 1 && s[0].metadata.name == slice.metadata.name && ips == ["11.11.11.11", "33.33.33.33"]
        {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    // The built-in `kubernetes` Endpoints carry skip-mirror and are not mirrored; the
    // Endpoints deleted, the mirrored slice goes.
    api.delete("external-service", &DeleteParams::default()).await.expect("delete endpoints");
    eventually("the mirrored slice gone", || async {
        let s = slices_of(&client, "external-service").await;
        if s.is_empty() {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let mirrored_kubernetes = slices_of(&client, "kubernetes").await.into_iter().any(|s| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
            .map(String::as_str)
            == Some("endpointslicemirroring-controller.k8s.io")
    });
    assert!(!mirrored_kubernetes);
}

#[tokio::test]
async fn services_without_pods_external_names_and_deletions() {
    let (_server, client) = start().await;
    create_service(&client, kubia_service()).await;
    create_service(
        &client,
        json!({"metadata": {"name": "alias"},
        "spec": {"type": "ExternalName", "externalName": "example.com", "selector": {"app": "kubia"}}}),
    )
    .await;
    create_pod(&client, "kubia-a", json!({"app": "kubia"}), "10.244.0.5", true, json!({})).await;
    // A Service whose pods are gone keeps one empty placeholder slice and empty Endpoints.
    eventually("one endpoint", || async {
        let n = slice_endpoints(&client, "kubia").await.len();
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch(
            "kubia-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
        )
        .await
        .expect("relabel");
    eventually("a placeholder slice and empty Endpoints", || async {
        let s = slices_of(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await;
        let placeholder = s.len() == 1 && s[0].endpoints.as_ref().is_none_or(Vec::is_empty);
        let empty = e.as_ref().is_some_and(|e| e.subsets.as_ref().is_none_or(Vec::is_empty));
        if placeholder && empty {
            Ok(())
        } else {
            Err(format!("{s:?} {e:?}"))
        }
    })
    .await;
    // ExternalName Services get nothing.
    assert!(slices_of(&client, "alias").await.is_empty());
    assert!(endpoints(&client, "alias").await.is_none());

    // Deleting the Service removes its Endpoints and slices.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("kubia", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("Endpoints and slices gone", || async {
        let s = slices_of(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await;
        if s.is_empty() && e.is_none() {
            Ok(())
        } else {
            Err(format!("{s:?} {e:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn publish_not_ready_addresses_lists_unready_pods_as_ready() {
    let (_server, client) = start().await;
    create_service(&client, json!({"metadata": {"name": "kubia"},
        "spec": {"selector": {"app": "kubia"}, "publishNotReadyAddresses": true, "ports": [{"port": 80, "targetPort": 8080}]}}))
    .await;
    create_pod(&client, "kubia-a", json!({"app": "kubia"}), "10.244.0.5", false, json!({})).await;
    eventually("a ready but not serving endpoint", || async {
        let got = slice_endpoints(&client, "kubia").await;
        let e = endpoints(&client, "kubia").await.map(|e| addresses(&e));
        if got == [ep("10.244.0.5", true, false, false)] && e == Some((vec!["10.244.0.5".into()], vec![])) {
            Ok(())
        } else {
            Err(format!("{got:?} {e:?}"))
        }
    })
    .await;
}
