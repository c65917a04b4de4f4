//! (being written)

use kube::Client;

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let _ = client;
}
