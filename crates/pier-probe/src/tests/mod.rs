//! Tests against real loopback servers and, for timing, tokio's paused clock.

mod grpc;
mod http;
mod lifecycle;
mod support;
mod tcp;
mod worker;
