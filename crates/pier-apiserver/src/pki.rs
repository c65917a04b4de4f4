//! The cluster's certificates: a CA made once per data directory, the API server's
//! serving certificate, and the admin client certificate kubectl uses.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("writing {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("reading {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("making certificate {what}")]
    Generate { what: &'static str, source: rcgen::Error },
}

/// PEM files of one certificate and its key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// All certificates of a cluster.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertPair,
    pub server: CertPair,
    pub admin: CertPair,
    /// The API server's client certificate towards nodes (`pods/exec`, `pods/log`...):
    /// nodes accept only clients with a certificate from the cluster CA, and this is
    /// the only one the API server holds for that purpose.
    pub kubelet_client: CertPair,
}

/// What a node needs: a serving certificate for its kubelet endpoint and a client
/// certificate for its own API calls.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    pub node_name: String,
    /// CN `system:node:<name>`, SANs the node's IP and name, server auth only.
    pub serving: CertPair,
    /// CN `system:node:<name>`, O `system:nodes`, client auth only.
    pub client: CertPair,
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| PkiError::Write { path: path.to_path_buf(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_path_buf(), source })
}

fn gen(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "pier-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

impl Pki {
    /// Loads the cluster's certificates from `dir`, making what is missing. The CA is
    /// kept across restarts so existing kubeconfigs stay valid; the serving
    /// certificate is re-issued every start so new addresses are covered.
    pub fn load_or_create(
        dir: &Path,
        server_names: &[String],
        server_ips: &[IpAddr],
    ) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Write { path: dir.to_path_buf(), source })?;
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        if !ca_cert.exists() || !ca_key.exists() {
            let key = KeyPair::generate().map_err(gen("ca key"))?;
            let cert = ca_params().self_signed(&key).map_err(gen("ca"))?;
            write(&ca_key, &key.serialize_pem())?;
            write(&ca_cert, &cert.pem())?;
        }
        let ca = CertPair { cert_pem: read(&ca_cert)?, key_pem: read(&ca_key)? };
        let ca_signing_key = KeyPair::from_pem(&ca.key_pem).map_err(gen("ca key"))?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_signing_key).map_err(gen("ca"))?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = server_names
            .iter()
            .filter_map(|n| n.clone().try_into().ok().map(SanType::DnsName))
            .chain(server_ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate().map_err(gen("server key"))?;
        let cert = params.signed_by(&key, &issuer).map_err(gen("server"))?;
        let server = CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        write(&dir.join("apiserver.crt"), &server.cert_pem)?;
        write(&dir.join("apiserver.key"), &server.key_pem)?;

        let admin_cert = dir.join("admin.crt");
        let admin_key = dir.join("admin.key");
        if !admin_cert.exists() || !admin_key.exists() {
            let pair = client_cert(&issuer, "admin", "system:masters")?;
            write(&admin_key, &pair.key_pem)?;
            write(&admin_cert, &pair.cert_pem)?;
        }
        let admin = CertPair { cert_pem: read(&admin_cert)?, key_pem: read(&admin_key)? };

        // kubeadm's file names for the same certificate.
        let kc_cert = dir.join("apiserver-kubelet-client.crt");
        let kc_key = dir.join("apiserver-kubelet-client.key");
        if !kc_cert.exists() || !kc_key.exists() {
            let pair = client_cert(&issuer, "kube-apiserver-kubelet-client", "system:masters")?;
            write(&kc_key, &pair.key_pem)?;
            write(&kc_cert, &pair.cert_pem)?;
        }
        let kubelet_client = CertPair { cert_pem: read(&kc_cert)?, key_pem: read(&kc_key)? };
        Ok(Pki { ca, server, admin, kubelet_client })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.ca.key_pem).map_err(gen("ca key"))?;
        Issuer::from_ca_cert_pem(&self.ca.cert_pem, key).map_err(gen("ca"))
    }

    /// Issues a node's certificates. Nothing is written: `pier up` puts them in the
    /// node's own directory. Names that are not valid DNS names are left out of the
    /// SANs (the IP still identifies the node, and is what the API server dials).
    pub fn node_credentials(&self, node_name: &str, node_ip: IpAddr) -> Result<NodeCredentials, PkiError> {
        let issuer = self.issuer()?;
        let user = format!("system:node:{node_name}");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user.as_str());
        dn.push(DnType::OrganizationName, "system:nodes");
        params.distinguished_name = dn;
        params.subject_alt_names = std::iter::once(SanType::IpAddress(node_ip))
            .chain(node_name.to_string().try_into().ok().map(SanType::DnsName))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate().map_err(gen("node serving key"))?;
        let cert = params.signed_by(&key, &issuer).map_err(gen("node serving"))?;
        let serving = CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        let client = client_cert(&issuer, &user, "system:nodes")?;
        Ok(NodeCredentials { node_name: node_name.to_string(), serving, client })
    }

    /// A kubeconfig for a node's own API calls, everything embedded, as the kubelet's
    /// `kubelet.conf` is.
    pub fn node_kubeconfig(&self, server_url: &str, cluster_name: &str, creds: &NodeCredentials) -> String {
        let user = format!("system:node:{}", creds.node_name);
        render_kubeconfig(&self.ca.cert_pem, server_url, cluster_name, &user, &creds.client, "default")
    }
}

/// A client certificate for user `cn` in group `org`, as upstream's x509 authenticator reads them.
fn client_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, org: &str) -> Result<CertPair, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().map_err(gen("client key"))?;
    let cert = params.signed_by(&key, issuer).map_err(gen("client"))?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A kubeconfig for the admin user with everything embedded.
pub fn kubeconfig(pki: &Pki, server_url: &str, cluster_name: &str) -> String {
    let user = format!("{cluster_name}-admin");
    render_kubeconfig(&pki.ca.cert_pem, server_url, cluster_name, &user, &pki.admin, "default")
}

fn render_kubeconfig(
    ca_pem: &str,
    server_url: &str,
    cluster_name: &str,
    user: &str,
    pair: &CertPair,
    namespace: &str,
) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster_name}
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster_name}
  context:
    cluster: {cluster_name}
    user: {user}
    namespace: {namespace}
current-context: {cluster_name}
preferences: {{}}
",
        ca = b64(ca_pem),
        cert = b64(&pair.cert_pem),
        key = b64(&pair.key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_survives_reload_and_server_cert_is_reissued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ips = ["127.0.0.1".parse().expect("ip")];
        let a = Pki::load_or_create(dir.path(), &["localhost".into()], &ips).expect("first");
        let b = Pki::load_or_create(dir.path(), &["localhost".into()], &ips).expect("second");
        assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
        assert_eq!(a.admin.cert_pem, b.admin.cert_pem);
        assert_ne!(a.server.cert_pem, b.server.cert_pem);
        let kc = kubeconfig(&a, "https://127.0.0.1:6443", "pier");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
    }

    fn der(pem: &str) -> Vec<u8> {
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().expect("one certificate");
        der.expect("valid PEM").as_ref().to_vec()
    }

    fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).expect("valid DER").1
    }

    fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
        let cn = cert.subject().iter_common_name().filter_map(|a| a.as_str().ok().map(str::to_string));
        let o = cert.subject().iter_organization().filter_map(|a| a.as_str().ok().map(str::to_string));
        (cn.collect(), o.collect())
    }

    fn roots(ca_pem: &str) -> std::sync::Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca_pem).into()).expect("CA cert");
        std::sync::Arc::new(roots)
    }

    /// Chain, SAN and server-auth usage checked as rustls checks them when the API server dials a node.
    fn verify_server(ca_pem: &str, cert: &[u8], ip: IpAddr) {
        use rustls::client::danger::ServerCertVerifier;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca_pem), provider)
            .build()
            .expect("verifier");
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_server_cert(&cert.to_vec().into(), &[], &name, &[], now).expect("valid server cert");
    }

    /// Chain and client-auth usage checked as a node checks the API server's certificate.
    fn verify_client(ca_pem: &str, cert: &[u8]) -> Result<(), rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider)
            .build()
            .expect("verifier");
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&cert.to_vec().into(), &[], now).map(|_| ())
    }

    #[test]
    fn node_credentials_are_signed_by_the_ca_with_names_and_usages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path(), &[], &[]).expect("pki");
        let ip: IpAddr = "172.30.0.10".parse().expect("ip");
        let creds = pki.node_credentials("node-1", ip).expect("node credentials");
        let ca_der = der(&pki.ca.cert_pem);
        let ca = parse(&ca_der);

        let serving_der = der(&creds.serving.cert_pem);
        let serving = parse(&serving_der);
        verify_server(&pki.ca.cert_pem, &serving_der, ip);
        assert_eq!(serving.issuer(), ca.subject());
        assert!(verify_client(&pki.ca.cert_pem, &serving_der).is_err(), "serving cert is no client cert");
        let sans = serving.subject_alternative_name().expect("parses").expect("has SANs");
        let sans: Vec<String> = sans.value.general_names.iter().map(|n| n.to_string()).collect();
        assert!(sans.iter().any(|n| n == "IPAddress(ac:1e:00:0a)"), "{sans:?}");
        assert!(sans.iter().any(|n| n == "DNSName(node-1)"), "{sans:?}");
        let eku = serving.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.server_auth && !eku.client_auth);

        let client_der = der(&creds.client.cert_pem);
        let client = parse(&client_der);
        verify_client(&pki.ca.cert_pem, &client_der).expect("node client cert chains to the CA");
        assert_eq!(
            names(&client),
            (vec!["system:node:node-1".to_string()], vec!["system:nodes".to_string()])
        );
        let eku = client.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.client_auth && !eku.server_auth);

        let kubelet_client_der = der(&pki.kubelet_client.cert_pem);
        let kubelet_client = parse(&kubelet_client_der);
        verify_client(&pki.ca.cert_pem, &kubelet_client_der).expect("kubelet client cert chains to the CA");
        assert_eq!(
            names(&kubelet_client),
            (vec!["kube-apiserver-kubelet-client".to_string()], vec!["system:masters".to_string()])
        );
        let again = Pki::load_or_create(dir.path(), &[], &[]).expect("reload");
        assert_eq!(again.kubelet_client.cert_pem, pki.kubelet_client.cert_pem);

        let kc = pki.node_kubeconfig("https://172.30.0.1:6443", "pier", &creds);
        let doc: serde_yaml::Value = serde_yaml::from_str(&kc).expect("kubeconfig is YAML");
        assert_eq!(doc["users"][0]["name"], "system:node:node-1");
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://172.30.0.1:6443");
        use base64::Engine;
        let cert = doc["users"][0]["user"]["client-certificate-data"].as_str().expect("cert data");
        let cert = base64::engine::general_purpose::STANDARD.decode(cert).expect("base64");
        assert_eq!(cert, creds.client.cert_pem.as_bytes());
    }
}
