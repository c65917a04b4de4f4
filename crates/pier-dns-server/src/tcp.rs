//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): a 2-octet length before each
//! message, any number of queries per connection, answered in order. A connection
//! is closed after [`crate::DnsConfig::tcp_idle_timeout`] without a query, and at
//! most [`crate::DnsConfig::tcp_connections`] are served at once (more are closed
//! as soon as they are accepted).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_dns::encode_parse_error;
use pier_dns::wire::{Query, MAX_TCP_MESSAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{Proto, Shard};
use crate::query::{answer_fast, answer_slow, Fast, Shared};
use crate::udp::client_ip;

/// Accepts connections until the task is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shard: Arc<Shard>,
    connections: Arc<Semaphore>,
    idle: Duration,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::debug!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "dns tcp: too many connections, closing");
            continue;
        };
        let (shared, shard) = (Arc::clone(&shared), Arc::clone(&shard));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, &shared, &shard, idle).await {
                tracing::trace!(error = %e, %peer, "dns tcp connection");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    shared: &Shared,
    shard: &Shard,
    idle: Duration,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let client = client_ip(stream.peer_addr()?);
    let mut packet = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            // Idle, or closed by the client between messages: done.
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
        }
        packet.resize(usize::from(u16::from_be_bytes(len)), 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut packet)).await {
            Ok(result) => result?,
            Err(_) => return Ok(()),
        };
        let received = Instant::now();
        // The length goes in front once the message is written.
        out.clear();
        out.extend_from_slice(&[0, 0]);
        match Query::parse(&packet) {
            Err(error) => {
                if encode_parse_error(&error, &mut out).is_none() {
                    continue;
                }
                shard.unparsed_response(1);
            }
            Ok(query) => {
                shard.request(Proto::Tcp, client.is_ipv6(), query.qtype);
                let index = shared.index.load();
                let rcode =
                    match answer_fast(shared, &index, &query, client, &mut out, MAX_TCP_MESSAGE, shard) {
                        Fast::Done(rcode) => rcode,
                        Fast::Slow => {
                            drop(index);
                            match shared.forwarder.permit() {
                                Some(_permit) => {
                                    answer_slow(shared, &query, client, &mut out, MAX_TCP_MESSAGE, shard)
                                        .await
                                }
                                None => {
                                    let index = shared.index.load();
                                    pier_dns::Answer::ServFail.encode(
                                        &index,
                                        &query,
                                        &mut out,
                                        MAX_TCP_MESSAGE,
                                    );
                                    2
                                }
                            }
                        }
                    };
                shard.response(query.qtype, rcode, received.elapsed());
            }
        }
        let len = u16::try_from(out.len() - 2).unwrap_or(u16::MAX);
        out[..2].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&out).await?;
    }
}
