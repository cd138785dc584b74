//! TLS for a service's gRPC port (rustls, ring): the server's certificate chain and
//! key, and optionally a CA whose client certificates are accepted (mTLS for service
//! callers), either optional (a client without a certificate is served too, and is
//! then identified by its token alone) or required.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a connection may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a client must present a certificate signed by the client CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// Accepted when presented (and then verified), not required.
    Optional,
    /// A connection without one is refused in the handshake.
    Required,
}

/// A server's TLS settings, read and checked before the port is bound.
#[derive(Clone)]
pub struct ServerTls {
    identity: Identity,
    client_ca: Option<(Certificate, ClientCertificates)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{what} in {path} holds no PEM block ({expected})")]
    NotPem {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
}

impl ServerTls {
    /// From PEM: the certificate chain (server first), its private key, and the client
    /// CA with how client certificates are treated.
    pub fn from_pem(
        certificate_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        client_ca: Option<(Vec<u8>, ClientCertificates)>,
    ) -> Self {
        Self {
            identity: Identity::from_pem(certificate_chain, key),
            client_ca: client_ca
                .map(|(pem, certificates)| (Certificate::from_pem(pem), certificates)),
        }
    }

    /// Reads the PEM files. Whether they hold a usable certificate and key is checked
    /// when the host is built ([`crate::host::Host::bind`]), which refuses to start
    /// otherwise.
    pub fn load(
        certificate_chain: &Path,
        key: &Path,
        client_ca: Option<(&Path, ClientCertificates)>,
    ) -> Result<Self, TlsError> {
        let chain = read_pem("the server certificate", certificate_chain, "CERTIFICATE")?;
        let key = read_pem("the server key", key, "PRIVATE KEY")?;
        let client_ca = client_ca
            .map(|(path, certificates)| {
                read_pem("the client CA", path, "CERTIFICATE").map(|pem| (pem, certificates))
            })
            .transpose()?;
        Ok(Self::from_pem(chain, key, client_ca))
    }

    pub(crate) fn config(&self) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new()
            .identity(self.identity.clone())
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some((ca, certificates)) = &self.client_ca {
            config = config
                .client_ca_root(ca.clone())
                .client_auth_optional(*certificates == ClientCertificates::Optional);
        }
        config
    }
}

/// A PEM file's bytes, checked to hold a block whose label ends with `label` (a key
/// may be `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`); never logged.
fn read_pem(what: &'static str, path: &Path, label: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text.lines().any(|line| {
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|found| found.ends_with(label))
    });
    if !has_block {
        return Err(TlsError::NotPem {
            what,
            path: path.display().to_string(),
            expected: label,
        });
    }
    Ok(bytes)
}
