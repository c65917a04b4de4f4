use std::time::Duration;

use k8s_openapi::api::core::v1::TCPSocketAction;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpListener;

use super::support::{closed_port, target};
use crate::{tcp_socket, Outcome};

#[tokio::test]
async fn open_port_succeeds_and_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let action = TCPSocketAction { port: IntOrString::String("db".into()), host: None };
    let outcome = tcp_socket(&action, &target(&[("db", port)]), Duration::from_secs(1)).await;
    assert_eq!(outcome, Outcome::Success(String::new()));
    let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
    assert!(accepted.unwrap().is_ok());

    let closed = closed_port().await;
    let action = TCPSocketAction { port: IntOrString::Int(i32::from(closed)), host: None };
    let outcome = tcp_socket(&action, &target(&[]), Duration::from_secs(1)).await;
    let expected = format!("dial tcp 127.0.0.1:{closed}: connect: connection refused");
    assert_eq!(outcome, Outcome::Failure(expected));
}
