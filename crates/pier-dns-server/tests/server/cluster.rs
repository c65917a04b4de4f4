//! The whole server against an in-process API server: objects created through
//! kube become names, queried over UDP and TCP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType as HType;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use pier_dns::{Config, Index};
use pier_dns_server::{watch_index, Server};
use pier_testkit::in_process::{eventually, InProcess};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::support::*;

struct Cluster {
    _api: InProcess,
    client: Client,
    dns: std::net::SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// An API server, and a DNS server watching it, synced.
async fn start() -> Cluster {
    let api = InProcess::start().await.expect("the API server starts");
    let client = api.client.clone();
    let index = Arc::new(ArcSwap::from_pointee(Index::unsynced(Config::default()).expect("a zone")));
    let (server, addrs) = Server::bind(config(), Arc::clone(&index)).expect("bound");
    let serve = tokio::spawn(async move { server.serve().await.expect("serves") });
    let watch_client = client.clone();
    let watch = tokio::spawn(async move { watch_index(watch_client, index).await.expect("watches") });
    let dns = addrs[0];
    // `kubernetes.default` exists from the start; it answers once synced.
    eventually("the dns server to sync", || async {
        let msg = ask(dns, "kubernetes.default.svc.cluster.local.", HType::A).await;
        match rcode(&msg) {
            ResponseCode::NoError => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    Cluster { _api: api, client, dns, tasks: vec![serve, watch] }
}

async fn create<K>(api: Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(value).expect("an object");
    api.create(&PostParams::default(), &object).await.expect("created")
}

fn shop<K>(c: &Cluster) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(c.client.clone(), "shop")
}

/// Polls `name` until `check` accepts the reply.
async fn until(
    dns: std::net::SocketAddr,
    name: &str,
    qtype: HType,
    check: impl Fn(&Message) -> bool,
) -> Message {
    eventually(&format!("{name} {qtype:?}"), || async {
        let msg = ask(dns, name, qtype).await;
        if check(&msg) {
            Ok(msg)
        } else {
            Err(format!("{:?} {:?}", rcode(&msg), answers(&msg)))
        }
    })
    .await
}

#[tokio::test]
async fn services_slices_and_pods_from_the_api_server_resolve() {
    let c = start().await;
    create::<Namespace>(Api::all(c.client.clone()), json!({"metadata": {"name": "shop"}})).await;
    let web: Service = create(
        shop(&c),
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let cluster_ip = web.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
    create::<Service>(shop(&c),
        json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    create::<EndpointSlice>(
        shop(&c),
        json!({"metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.3.7"], "hostname": "db-0", "conditions": {"ready": true}}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
    )
    .await;

    let msg = until(c.dns, "web.shop.svc.cluster.local.", HType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(answers(&msg), [format!("web.shop.svc.cluster.local. 5 IN A {cluster_ip}")]);
    let msg =
        until(c.dns, "_pg._tcp.db.shop.svc.cluster.local.", HType::SRV, |m| !m.answers.is_empty()).await;
    assert_eq!(
        answers(&msg),
        ["_pg._tcp.db.shop.svc.cluster.local. 5 IN SRV 0 100 5432 db-0.db.shop.svc.cluster.local."]
    );
    let msg = ask(c.dns, "db-0.db.shop.svc.cluster.local.", HType::A).await;
    assert_eq!(answers(&msg), ["db-0.db.shop.svc.cluster.local. 5 IN A 10.244.3.7"]);
    let reverse = {
        let octets: Vec<&str> = cluster_ip.split('.').rev().collect();
        format!("{}.in-addr.arpa.", octets.join("."))
    };
    let msg = ask(c.dns, &reverse, HType::PTR).await;
    assert_eq!(answers(&msg), [format!("{reverse} 5 IN PTR web.shop.svc.cluster.local.")]);
    let msg = ask(c.dns, "nope.shop.svc.cluster.local.", HType::A).await;
    assert_eq!(rcode(&msg), ResponseCode::NXDomain);
    // The namespace exists without Services of that name: NXDOMAIN; an unknown
    // namespace: NXDOMAIN too.
    assert_eq!(rcode(&ask(c.dns, "x.nowhere.svc.cluster.local.", HType::A).await), ResponseCode::NXDomain);

    // Over TCP, several on one connection.
    let replies = tcp_exchange(
        c.dns,
        &[
            query(1, "web.shop.svc.cluster.local.", HType::A, None),
            query(2, "db-0.db.shop.svc.cluster.local.", HType::A, None),
        ],
    )
    .await;
    assert_eq!(parse(&replies[0]).answers.len(), 1);
    assert_eq!(parse(&replies[1]).answers.len(), 1);

    // A pod with hostname and subdomain `db` answers under the headless Service.
    create::<Pod>(
        shop(&c),
        json!({"metadata": {"name": "replica"}, "spec": {"hostname": "replica", "subdomain": "db",
            "nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]}}),
    )
    .await;
    Api::<Pod>::namespaced(c.client.clone(), "shop")
        .patch_status(
            "replica",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.244.3.9",
                "podIPs": [{"ip": "10.244.3.9"}], "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .expect("pod status");
    let msg = until(c.dns, "replica.db.shop.svc.cluster.local.", HType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(answers(&msg), ["replica.db.shop.svc.cluster.local. 5 IN A 10.244.3.9"]);

    // Deleting the slice empties the headless Service (NXDOMAIN, §2.4.1); deleting
    // the Service removes it.
    Api::<EndpointSlice>::namespaced(c.client.clone(), "shop")
        .delete("db-1", &DeleteParams::default())
        .await
        .expect("delete slice");
    until(c.dns, "_pg._tcp.db.shop.svc.cluster.local.", HType::SRV, |m| m.answers.is_empty()).await;
    Api::<Service>::namespaced(c.client.clone(), "shop")
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    until(c.dns, "web.shop.svc.cluster.local.", HType::A, |m| rcode(m) == ResponseCode::NXDomain).await;
}

#[tokio::test]
async fn a_new_service_resolves_within_a_second() {
    let c = start().await;
    let name = "fresh.default.svc.cluster.local.";
    assert_eq!(rcode(&ask(c.dns, name, HType::A).await), ResponseCode::NXDomain);
    let created = Instant::now();
    let svc: Service = create(
        Api::namespaced(c.client.clone(), "default"),
        json!({"metadata": {"name": "fresh"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let api_took = created.elapsed();
    // Poll as fast as a client would retry, without sleeping.
    let deadline = created + Duration::from_secs(5);
    let msg = loop {
        let msg = ask(c.dns, name, HType::A).await;
        if !msg.answers.is_empty() || Instant::now() > deadline {
            break msg;
        }
    };
    let took = created.elapsed();
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
    assert_eq!(answers(&msg), [format!("{name} 5 IN A {ip}")]);
    println!(
        "a new Service resolved {took:?} after the create call started (the create itself took {api_took:?})"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
