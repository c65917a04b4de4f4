//! Built-in demo programs that Pier's image table maps images such as `luksa/kubia` to.
//!
//! The `pier` binary runs them as `pier app <name> [args]` inside a pod's sandbox, calling [`run`] before
//! it starts any async runtime. Each app uses one current-thread tokio runtime, so a pod costs little
//! memory.
//!
//! - `kubia [--version vN] [--port P]`: the book's Node.js app (`luksa/kubia`, chapter 2 and the v1 to v4
//!   images of chapter 9) on port 8080.
//! - `kubia-unhealthy [--port P]`: chapter 4's app that fails from the sixth request on.
//! - `pause`: sleeps until SIGTERM or SIGINT, like the pod sandbox's pause container.
//! - `udp-echo [--port P]`: answers each UDP datagram on `0.0.0.0:P` (default 5353) with
//!   `<hostname> <payload>` (image `pier/udp-echo`, for UDP Services).
//! - `udp-echo --client IP:PORT [--source-port N] [--count K] [--timeout-ms T] [--message M]`: sends
//!   `K` datagrams `M-1`, `M-2`, ... (default one `hi-1`) from local port `N` (default: any), one at a
//!   time, and prints each answer, `timeout` or `refused` on its own line; exits 1 if none was
//!   answered. A fixed source port keeps every query on one conntrack entry.
//!
//! All the servers exit 0 promptly on SIGTERM or SIGINT.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod args;
mod http;
mod kubia;
mod udp;

use std::process::ExitCode;

pub use args::{Options, UdpClient};
pub use kubia::Kubia;

/// The apps [`run`] knows.
pub const APPS: &[&str] = &["kubia", "kubia-unhealthy", "pause", "udp-echo"];

/// Runs the app called `app` with `args` (the words after the app name) until it is told to stop.
///
/// Blocks. Returns success after SIGTERM/SIGINT (the `udp-echo` client: once it is done); a usage error
/// returns 2, a runtime failure (e.g. the port is taken, or no UDP answer came) prints the reason to
/// stderr and returns 1.
pub fn run(app: &str, args: &[String]) -> ExitCode {
    if !APPS.contains(&app) {
        eprintln!("pier app: unknown app {app:?} (known: {})", APPS.join(", "));
        return ExitCode::from(2);
    }
    let options = match args::parse(app, args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{app}: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{app}: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match app {
            "kubia" => http::run(Kubia::new(options.version.clone()), options.port).await,
            "kubia-unhealthy" => http::run(Kubia::unhealthy(), options.port).await,
            "udp-echo" => match &options.client {
                Some(client) => udp::query(client).await,
                None => udp::serve(options.port).await,
            },
            _ => pause().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{app}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn pause() -> Result<(), String> {
    let signal = http::Termination::install()?.wait().await;
    eprintln!("Shutting down, got signal: {signal}");
    Ok(())
}
