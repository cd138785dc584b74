//! The public keys tokens are verified with: a JSON Web Key Set (RFC 7517) read from
//! a file or fetched from a URL, kept fresh in the background.
//!
//! Only signing keys of the three allowed kinds are kept: RSA (RS256), EC P-256
//! (ES256) and OKP Ed25519 (EdDSA), each with a key id (`kid`). Symmetric keys
//! (`kty: oct`), keys for encryption (`use: enc`), other curves and keys without a
//! `kid` are skipped: a token can only ever be checked against an asymmetric public
//! key its header names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The signature algorithms Circle accepts; nothing symmetric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
    EdDsa,
}

impl Algorithm {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// One verification key; its kind fixes the one algorithm it verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point `04 || x || y`.
    P256 {
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl PublicKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa { .. } => Algorithm::Rs256,
            Self::P256 { .. } => Algorithm::Es256,
            Self::Ed25519 { .. } => Algorithm::EdDsa,
        }
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature;
        match self {
            Self::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Self::P256 { point } => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Self::Ed25519 { x } => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// The usable keys of one JWKS, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is not valid JSON: {0}")]
    Json(String),
    #[error("the JWKS holds no usable signing key (RSA, EC P-256 or Ed25519, with a kid)")]
    NoKeys,
    #[error("reading the JWKS from {source_name}: {reason}")]
    Read { source_name: String, reason: String },
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

const MAX_KEYS: usize = 64;
const MAX_JWKS_BYTES: usize = 1 << 20;

impl KeySet {
    /// Parses a JWKS document, keeping the keys Circle can use.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::Json("larger than 1 MiB".to_owned()));
        }
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|error| JwksError::Json(error.to_string()))?;
        let mut keys = HashMap::new();
        for value in raw.keys.into_iter().take(MAX_KEYS) {
            let Ok(key) = serde_json::from_value::<RawKey>(value) else {
                continue;
            };
            if let Some((kid, key)) = usable(key) {
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Self { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn usable(key: RawKey) -> Option<(String, PublicKey)> {
    let kid = key.kid.filter(|kid| !kid.is_empty() && kid.len() <= 256)?;
    if key.use_.as_deref().is_some_and(|use_| use_ != "sig") {
        return None;
    }
    let bytes = |value: Option<String>| URL_SAFE_NO_PAD.decode(value?).ok();
    let public = match (key.kty.as_str(), key.crv.as_deref()) {
        ("RSA", _) => PublicKey::Rsa {
            n: bytes(key.n)?,
            e: bytes(key.e)?,
        },
        ("EC", Some("P-256")) => {
            let (x, y) = (bytes(key.x)?, bytes(key.y)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256 { point }
        }
        ("OKP", Some("Ed25519")) => {
            let x = bytes(key.x)?;
            if x.len() != 32 {
                return None;
            }
            PublicKey::Ed25519 { x }
        }
        _ => return None,
    };
    if let Some(alg) = key.alg.as_deref()
        && Algorithm::parse(alg) != Some(public.algorithm())
    {
        return None;
    }
    Some((kid, public))
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    /// `https://` (verified against the web's root certificates), or `http://` to a
    /// loopback host only.
    Url(String),
}

impl KeySource {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Url(url) => url.clone(),
        }
    }

    async fn read(&self) -> Result<KeySet, JwksError> {
        let read_error = |reason: String| JwksError::Read {
            source_name: self.name(),
            reason,
        };
        let bytes = match self {
            Self::File(path) => tokio::fs::read(path)
                .await
                .map_err(|error| read_error(error.to_string()))?,
            Self::Url(url) => crate::jwks::http::get(url, MAX_JWKS_BYTES)
                .await
                .map_err(read_error)?,
        };
        KeySet::parse(&bytes)
    }
}

/// The live key set: read once at start (a service does not start without keys), then
/// refreshed every `refresh`, and sooner (at most every [`MIN_REFRESH`]) when a token
/// names a key id the set does not hold — a key the issuer has just rotated in. A
/// failed refresh keeps the keys it had and is logged.
#[derive(Clone)]
pub struct Keys {
    current: Arc<RwLock<Arc<KeySet>>>,
    wake: Arc<tokio::sync::Notify>,
}

/// The shortest time between two refreshes asked for by unknown key ids.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

impl Keys {
    /// Reads `source` now and keeps it fresh from a background task (which ends when
    /// the last handle is dropped).
    pub async fn load(source: KeySource, refresh: Duration) -> Result<Self, JwksError> {
        let first = source.read().await?;
        let keys = Self::fixed(first);
        tokio::spawn(refresh_keys(
            source,
            refresh.max(MIN_REFRESH),
            Arc::downgrade(&keys.current),
            keys.wake.clone(),
        ));
        Ok(keys)
    }

    /// A key set that never changes (tests, tools).
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks the background task to read the keys again soon.
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }
}

async fn refresh_keys(
    source: KeySource,
    every: Duration,
    current: Weak<RwLock<Arc<KeySet>>>,
    wake: Arc<tokio::sync::Notify>,
) {
    // The keys were read just now, but a token naming a key id they lack may come at
    // once (a key rotated in as the service started): the first asked-for refresh
    // does not wait.
    let mut last = Instant::now()
        .checked_sub(MIN_REFRESH)
        .unwrap_or_else(Instant::now);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {
                let since = last.elapsed();
                if since < MIN_REFRESH {
                    tokio::time::sleep(MIN_REFRESH - since).await;
                }
            }
        }
        last = Instant::now();
        let Some(current) = current.upgrade() else {
            return;
        };
        match source.read().await {
            Ok(keys) => {
                let mut slot = match current.write() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if **slot != keys {
                    tracing::info!(keys = keys.len(), "token verification keys refreshed");
                    *slot = Arc::new(keys);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "token verification keys not refreshed; keeping the last ones");
            }
        }
    }
}

/// Whether `host` (a name or an address, without brackets) is this machine.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// A minimal HTTP/1.1 GET for the JWKS URL (plain or TLS with the web's roots).
mod http {
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::{BodyExt as _, Empty, Limited};
    use hyper_util::rt::TokioIo;

    const TIMEOUT: Duration = Duration::from_secs(10);

    pub async fn get(url: &str, limit: usize) -> Result<Vec<u8>, String> {
        tokio::time::timeout(TIMEOUT, fetch(url, limit))
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    async fn fetch(url: &str, limit: usize) -> Result<Vec<u8>, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let host = uri
            .host()
            .ok_or("the URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = match uri.scheme_str() {
            Some("https") => true,
            // Keys fetched in the clear could be swapped by anyone on the path: plain
            // HTTP only from this machine (tests, a local identity provider).
            Some("http") if crate::jwks::is_loopback(&host) => false,
            _ => return Err("the URL must be https:// (http:// only for loopback)".to_owned()),
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |authority| authority.as_str().to_owned());
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| error.to_string())?;
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|error| error.to_string())?;
        if tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|error| error.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, stream)
                .await
                .map_err(|error| error.to_string())?;
            send(TokioIo::new(stream), request, limit).await
        } else {
            send(TokioIo::new(stream), request, limit).await
        }
    }

    async fn send<T>(
        io: T,
        request: hyper::Request<Empty<bytes::Bytes>>,
        limit: usize,
    ) -> Result<Vec<u8>, String>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| error.to_string())?;
        Ok(body.to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_signing_keys_with_an_id_are_kept() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let json = format!(
            r#"{{"keys":[
                {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{x}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"{x}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"wrong-alg","alg":"RS256","x":"{x}"}},
                {{"kty":"OKP","crv":"X25519","kid":"ecdh","x":"{x}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"good","alg":"EdDSA","x":"{x}"}}
            ]}}"#
        );
        let keys = KeySet::parse(json.as_bytes()).expect("one usable key");
        assert_eq!(keys.len(), 1);
        assert!(keys.get("good").is_some());
        assert!(keys.get("hmac").is_none());
        assert_eq!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#),
            Err(JwksError::NoKeys)
        );
        assert!(matches!(KeySet::parse(b"{"), Err(JwksError::Json(_))));
    }
}
