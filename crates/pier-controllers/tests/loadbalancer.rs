//! Integration tests of the LoadBalancer controller against an in-process API server:
//! addresses from a pool in `status.loadBalancer`, as `kubectl get svc` shows them.

use std::net::Ipv4Addr;
use std::process::Command;

use k8s_openapi::api::core::v1::{Event, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use pier_controllers::loadbalancer::{self, parse_lb_range};
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

fn controller(client: &Client, range: &str) -> JoinHandle<()> {
    let range = parse_lb_range(range).expect("test range");
    tokio::spawn(loadbalancer::run(client.clone(), range))
}

async fn start(range: &str) -> (InProcess, Client, JoinHandle<()>) {
    let server = InProcess::start().await.expect("API server starts");
    let client = server.client.clone();
    let handle = controller(&client, range);
    (server, client, handle)
}

fn services(client: &Client) -> Api<Service> {
    Api::namespaced(client.clone(), "default")
}

async fn create_lb(client: &Client, name: &str, extra_spec: Value) -> Service {
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("svc");
    services(client).create(&PostParams::default(), &svc).await.expect("create service")
}

fn ingress_ips(svc: &Service) -> Vec<(String, Option<String>)> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip.unwrap_or_default(), i.ip_mode))
        .collect()
}

/// Waits until the Service's status shows an address, and returns it.
async fn address(client: &Client, name: &str) -> Ipv4Addr {
    eventually(&format!("an address for {name}"), || async {
        let svc = services(client).get(name).await.map_err(|e| e.to_string())?;
        match ingress_ips(&svc).as_slice() {
            [(ip, Some(mode))] if mode == "VIP" => ip.parse().map_err(|e| format!("{ip}: {e}")),
            other => Err(format!("ingress {other:?}")),
        }
    })
    .await
}

async fn events_for(client: &Client, object: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={object}")))
        .await
        .expect("list events");
    list.items
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn wait_event(client: &Client, object: &str, reason: &str) -> Vec<(String, String, String)> {
    eventually(&format!("a {reason} event for {object}"), || async {
        let e = events_for(client, object).await;
        if e.iter().any(|(_, r, _)| r == reason) {
            Ok(e)
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await
}

/// What `kubectl get svc <name>` prints in the EXTERNAL-IP column.
async fn kubectl_external_ip(server: &InProcess, name: &str) -> String {
    let dir = pier_testkit::tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &server.server.kubeconfig).expect("write kubeconfig");
    let name = name.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["get", "svc", &name]).output()
    })
    .await
    .expect("join kubectl")
    .expect("run kubectl (is it installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kubectl get svc: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header.get(3), Some(&"EXTERNAL-IP"), "{stdout}");
    row.get(3).map(|s| s.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn a_load_balancer_service_gets_the_lowest_address_with_an_event_and_kubectl_shows_it() {
    let (server, client, _c) = start("172.30.0.200-172.30.0.202").await;
    create_lb(&client, "kubia", json!({})).await;
    assert_eq!(address(&client, "kubia").await, Ipv4Addr::new(172, 30, 0, 200));
    let events = wait_event(&client, "kubia", "IPAllocated").await;
    assert_eq!(
        events,
        [("Normal".to_string(), "IPAllocated".to_string(), r#"Assigned IP ["172.30.0.200"]"#.to_string())]
    );
    assert_eq!(kubectl_external_ip(&server, "kubia").await, "172.30.0.200");

    // Services of other types, and ones naming another implementation, are left alone.
    let cip: Service =
        serde_json::from_value(json!({"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}}))
            .expect("svc");
    services(&client).create(&PostParams::default(), &cip).await.expect("create");
    create_lb(&client, "classed", json!({"loadBalancerClass": "example.com/other"})).await;
    create_lb(&client, "second", json!({})).await;
    assert_eq!(address(&client, "second").await, Ipv4Addr::new(172, 30, 0, 201));
    for name in ["plain", "classed"] {
        let svc = services(&client).get(name).await.expect("get");
        assert_eq!(ingress_ips(&svc), [], "{name}");
        assert!(events_for(&client, name).await.is_empty(), "{name}");
    }
    assert_eq!(kubectl_external_ip(&server, "classed").await, "<pending>");
}

#[tokio::test]
async fn a_requested_address_is_honoured_when_in_the_pool_and_free() {
    let (_server, client, _c) = start("172.30.0.200-172.30.0.210").await;
    create_lb(&client, "wants", json!({"loadBalancerIP": "172.30.0.205"})).await;
    assert_eq!(address(&client, "wants").await, Ipv4Addr::new(172, 30, 0, 205));

    create_lb(&client, "clash", json!({"loadBalancerIP": "172.30.0.205"})).await;
    let events = wait_event(&client, "clash", "AllocationFailed").await;
    assert_eq!(
        events,
        [(
            "Warning".to_string(),
            "AllocationFailed".to_string(),
            r#"Failed to allocate IP for "default/clash": "172.30.0.205" is already in use by default/wants"#
                .to_string()
        )]
    );
    create_lb(&client, "outside", json!({"loadBalancerIP": "10.9.9.9"})).await;
    let events = wait_event(&client, "outside", "AllocationFailed").await;
    assert_eq!(
        events[0].2,
        r#"Failed to allocate IP for "default/outside": "10.9.9.9" is not in the load balancer pool 172.30.0.200-172.30.0.210"#
    );
    for name in ["clash", "outside"] {
        let svc = services(&client).get(name).await.expect("get");
        assert_eq!(ingress_ips(&svc), [], "{name}");
    }

    // Once the holder is gone, the Service that asked for its address gets it.
    services(&client).delete("wants", &DeleteParams::default()).await.expect("delete");
    assert_eq!(address(&client, "clash").await, Ipv4Addr::new(172, 30, 0, 205));
}

#[tokio::test]
async fn an_exhausted_pool_leaves_services_pending_until_an_address_is_released() {
    let (server, client, _c) = start("172.30.0.200/31").await;
    create_lb(&client, "a", json!({})).await;
    assert_eq!(address(&client, "a").await, Ipv4Addr::new(172, 30, 0, 200));
    create_lb(&client, "b", json!({})).await;
    assert_eq!(address(&client, "b").await, Ipv4Addr::new(172, 30, 0, 201));
    create_lb(&client, "c", json!({})).await;
    let events = wait_event(&client, "c", "AllocationFailed").await;
    assert_eq!(
        events,
        [(
            "Warning".to_string(),
            "AllocationFailed".to_string(),
            r#"Failed to allocate IP for "default/c": no available IPs"#.to_string()
        )]
    );
    assert_eq!(kubectl_external_ip(&server, "c").await, "<pending>");

    // Changing a Service away from LoadBalancer gives its address back: the pending
    // one gets it, and the changed one shows no load balancer.
    let to_cluster_ip = json!({"spec": {"type": "ClusterIP"}});
    services(&client).patch("a", &PatchParams::default(), &Patch::Merge(to_cluster_ip)).await.expect("patch");
    assert_eq!(address(&client, "c").await, Ipv4Addr::new(172, 30, 0, 200));
    let a = services(&client).get("a").await.expect("get");
    assert_eq!(ingress_ips(&a), []);

    // Deleting one gives its address back for reuse too.
    services(&client).delete("b", &DeleteParams::default()).await.expect("delete");
    create_lb(&client, "d", json!({})).await;
    assert_eq!(address(&client, "d").await, Ipv4Addr::new(172, 30, 0, 201));
    // An unchanged failure is reported once, not on every update of the Service.
    let c_failures =
        events_for(&client, "c").await.into_iter().filter(|(_, r, _)| r == "AllocationFailed").count();
    assert_eq!(c_failures, 1);
}

#[tokio::test]
async fn a_restarted_controller_rebuilds_allocations_from_the_statuses() {
    let (_server, client, first) = start("172.30.0.200-172.30.0.203").await;
    create_lb(&client, "a", json!({})).await;
    create_lb(&client, "b", json!({})).await;
    create_lb(&client, "c", json!({})).await;
    assert_eq!(address(&client, "a").await, Ipv4Addr::new(172, 30, 0, 200));
    assert_eq!(address(&client, "b").await, Ipv4Addr::new(172, 30, 0, 201));
    assert_eq!(address(&client, "c").await, Ipv4Addr::new(172, 30, 0, 202));
    first.abort();
    let _ = first.await;

    // While it is down, one Service goes and another comes.
    services(&client).delete("a", &DeleteParams::default()).await.expect("delete");
    create_lb(&client, "d", json!({})).await;
    let _second = controller(&client, "172.30.0.200-172.30.0.203");
    // The newcomer gets the freed address, nobody is moved, nothing is given twice.
    assert_eq!(address(&client, "d").await, Ipv4Addr::new(172, 30, 0, 200));
    create_lb(&client, "e", json!({})).await;
    assert_eq!(address(&client, "e").await, Ipv4Addr::new(172, 30, 0, 203));
    assert_eq!(address(&client, "b").await, Ipv4Addr::new(172, 30, 0, 201));
    assert_eq!(address(&client, "c").await, Ipv4Addr::new(172, 30, 0, 202));
    for name in ["b", "c"] {
        let allocated =
            events_for(&client, name).await.into_iter().filter(|(_, r, _)| r == "IPAllocated").count();
        assert_eq!(allocated, 1, "{name} was allocated once, before the restart");
    }
}
