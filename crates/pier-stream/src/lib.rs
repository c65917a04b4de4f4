//! Kubernetes streaming protocols on the node: WebSocket channels (v4/v5.channel.k8s.io) and
//! SPDY/3.1 for exec, attach and port-forward, plus port-forward's SPDY-in-WebSocket tunnel.
//!
//! The API server proxies kubectl's upgrade request unchanged, so every protocol kubectl
//! 1.27–1.33 may pick is served here. Callers supply only process plumbing: [`serve_exec`] hands
//! the handler stdin/stdout/stderr/resize, [`serve_port_forward`] asks for a connection per port.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod exec;
pub mod portforward;
pub mod request;
pub mod spdy;
pub mod status;
pub mod upgrade;
mod ws;

pub use exec::{serve_exec, ExecStreams, TerminalSize};
pub use portforward::serve_port_forward;
pub use request::ExecRequest;
pub use status::ExecOutcome;
pub use upgrade::{plain_error, Body};
