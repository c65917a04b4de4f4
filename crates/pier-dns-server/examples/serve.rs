//! A load-test target: serves a generated cluster (`svc-<i>.bench-<i % 10>`, one
//! ClusterIP Service each) on an address until stdin closes, either with
//! [`pier_dns_server::Server`] (`threads`, the real thing) or with a bare Tokio
//! `UdpSocket` loop doing the same parse/answer/encode (`tokio`), to compare the
//! two ways of driving UDP. Prints a dnsperf query file to `--queries`.
//!
//! ```text
//! cargo run --release -p pier-dns-server --example serve -- 127.0.0.1:5353 threads 1 10000 /tmp/q.txt
//! taskset -c 1 <that> & taskset -c 0 dnsperf -s 127.0.0.1 -p 5353 -d /tmp/q.txt -l 10 -c 4 -q 200
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pier_dns::{answer, Config, Index, Query};
use pier_dns_server::{DnsConfig, Server};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, mode, workers, services, queries] = &args[..] else {
        anyhow::bail!("usage: serve ADDR threads|tokio WORKERS SERVICES QUERY_FILE");
    };
    let addr: SocketAddr = addr.parse()?;
    let workers: usize = workers.parse()?;
    let count: usize = services.parse()?;
    let services: Vec<Service> = (0..count)
        .map(|i| Service {
            metadata: ObjectMeta {
                namespace: Some(format!("bench-{}", i % 10)),
                name: Some(format!("svc-{i}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let index = Index::builder(Config::default())?.services(&services).build();
    let lines: Vec<String> =
        (0..count).map(|i| format!("svc-{i}.bench-{}.svc.cluster.local A", i % 10)).collect();
    std::fs::write(queries, lines.join("\n") + "\n")?;
    let index = Arc::new(ArcSwap::from_pointee(index));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match mode.as_str() {
            "threads" => {
                let config = DnsConfig { listen: vec![addr], udp_workers: workers, ..DnsConfig::default() };
                let (server, addrs) = Server::bind(config, index)?;
                println!("ready {}", addrs[0]);
                tokio::spawn(server.serve());
            }
            "tokio" => {
                let socket = Arc::new(tokio::net::UdpSocket::bind(addr).await?);
                println!("ready {}", socket.local_addr()?);
                tokio::spawn(tokio_loop(socket, index));
            }
            other => anyhow::bail!("unknown mode {other}"),
        }
        // Until stdin closes.
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        Ok(())
    })
}

/// The same work as a UDP worker, on a Tokio socket.
async fn tokio_loop(socket: Arc<tokio::net::UdpSocket>, index: Arc<ArcSwap<Index>>) {
    let mut packet = [0u8; 4096];
    let mut out = Vec::with_capacity(4096);
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut packet).await else { continue };
        out.clear();
        let Ok(query) = Query::parse(&packet[..len]) else { continue };
        let index = index.load();
        let outcome = answer(&index, &query, Some(peer.ip()));
        if outcome.encode(&index, &query, &mut out, query.max_udp_response_len()).is_some() {
            let _ = socket.send_to(&out, peer).await;
        }
    }
}
