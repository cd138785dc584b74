//! Certificates made for one test (rcgen, ECDSA P-256): a CA for servers, a server
//! certificate for `localhost` and 127.0.0.1, and a CA for clients with a client
//! certificate. The PEM files live in a directory of the test's own, removed when the
//! `Pki` is dropped; no key is ever committed.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed the server's certificate (PEM), what a client trusts.
    pub server_ca_pem: String,
    pub server_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The CA whose client certificates a server accepts.
    pub client_ca: PathBuf,
    /// A client certificate and key signed by the client CA (PEM).
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate and key signed by a CA the server does not know.
    pub stranger_cert_pem: String,
    pub stranger_key_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A leaf certificate for `names` with `usage`, signed by `issuer`: (cert PEM, key PEM).
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

impl Pki {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("circle-pki-{label}-{}", uuid_like_suffix()));
        std::fs::create_dir_all(&dir)?;
        let write = |name: &str, contents: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            Ok(path)
        };
        let server_ca = ca("Circle test server CA")?;
        let (server_cert_pem, server_key_pem) = leaf(
            &server_ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let client_ca = ca("Circle test client CA")?;
        let (client_cert_pem, client_key_pem) = leaf(
            &client_ca,
            &["circle-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let stranger_ca = ca("Some other CA")?;
        let (stranger_cert_pem, stranger_key_pem) = leaf(
            &stranger_ca,
            &["circle-test-stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            server_ca: write("server-ca.pem", &server_ca.pem())?,
            server_ca_pem: server_ca.pem(),
            server_cert: write("server.pem", &server_cert_pem)?,
            server_key: write("server.key", &server_key_pem)?,
            client_ca: write("client-ca.pem", &client_ca.pem())?,
            client_cert: write("client.pem", &client_cert_pem)?,
            client_key: write("client.key", &client_key_pem)?,
            client_cert_pem,
            client_key_pem,
            stranger_cert_pem,
            stranger_key_pem,
            dir,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn uuid_like_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}
