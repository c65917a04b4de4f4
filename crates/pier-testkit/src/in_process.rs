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
