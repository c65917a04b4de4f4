//! An API server in this process on a temporary store, with a `kube` client for it:
//! what integration tests of controllers and of the API itself run against.

use std::sync::Arc;

use anyhow::Context;

/// A running in-process API server. The listeners end with the test's runtime.
pub struct InProcess {
    pub server: pier_apiserver::RunningServer,
    pub client: kube::Client,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts an API server on a free loopback port with a fresh SQLite store.
    pub async fn start() -> anyhow::Result<InProcess> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir =
            tempfile::Builder::new().prefix("pier-api-test-").tempdir().context("making the data dir")?;
        let store = pier_store::SqliteStore::open(dir.path().join("pier.db")).context("opening the store")?;
        let store: Arc<dyn pier_store::Store> = Arc::new(store);
        let config = pier_apiserver::Config::new(dir.path().to_path_buf(), 0);
        let server = pier_apiserver::start(config, store).await.context("starting the API server")?;
        let client = client_for(&server.kubeconfig).await?;
        Ok(InProcess { server, client, _dir: dir })
    }
}

/// A `kube` client from kubeconfig text.
pub async fn client_for(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    kube::Client::try_from(cfg).context("building the client")
}

/// How long [`eventually`] waits by default.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `check` every 20 ms until it returns `Ok`, failing the test at the deadline
/// with the last thing it said (the async twin of [`crate::wait_for`]).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + DEFAULT_DEADLINE;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("timed out after {DEFAULT_DEADLINE:?} waiting for {what}: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}
