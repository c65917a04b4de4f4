//! The HTTPS listener: TLS with optional client certificates (verified against the
//! cluster CA), HTTP/1.1 and HTTP/2, and authentication before any handler runs.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::handlers::{error_response, Api, Body};
use crate::pki::Pki;
use crate::status::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bad PEM in {what}")]
    Pem { what: &'static str },
    #[error("configuring TLS")]
    Tls(#[from] rustls::Error),
    #[error("configuring client certificate verification")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

pub(crate) fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ServeError::Pem { what })
}

pub(crate) fn key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, ServeError> {
    rustls_pemfile::private_key(&mut pem.as_bytes()).ok().flatten().ok_or(ServeError::Pem { what })
}

/// TLS for the API server: its certificate, and client certificates checked against
/// the cluster CA when offered (tokens are the other way in).
pub fn tls_acceptor(pki: &Pki) -> Result<TlsAcceptor, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&pki.ca.cert_pem, "ca certificate")? {
        roots.add(c)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&pki.server.cert_pem, "server certificate")?,
            key(&pki.server.key_pem, "server key")?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Who may call the API.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// Bearer tokens accepted besides client certificates.
    pub tokens: Vec<String>,
}

/// Paths upstream serves to anyone (`system:public-info-viewer`).
fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

impl Authenticator {
    fn allows(&self, has_client_cert: bool, req: &Request<Incoming>) -> bool {
        if has_client_cert || is_public(req.uri().path()) {
            return true;
        }
        let Some(auth) = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        match auth.strip_prefix("Bearer ") {
            Some(t) => self.tokens.iter().any(|k| k == t.trim()),
            None => false,
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    auth: Authenticator,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let auth = auth.clone();
        tokio::spawn(async move { serve_connection(tcp, peer, acceptor, api, auth).await });
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    auth: Authenticator,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let has_client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let service = service_fn(move |req: Request<Incoming>| {
        let api = api.clone();
        let allowed = auth.allows(has_client_cert, &req);
        async move {
            let resp: Response<Body> =
                if allowed { api.handle(req).await } else { error_response(&ApiError::unauthorized()) };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
