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
        Ok(Pki { ca, server, admin })
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
- name: {cluster_name}-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster_name}
  context:
    cluster: {cluster_name}
    user: {cluster_name}-admin
    namespace: default
current-context: {cluster_name}
preferences: {{}}
",
        ca = b64(&pki.ca.cert_pem),
        cert = b64(&pki.admin.cert_pem),
        key = b64(&pki.admin.key_pem),
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
}
