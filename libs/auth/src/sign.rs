//! Signing tokens: what an identity provider does, for development (`circle dev` makes
//! an Ed25519 key, `circle token` signs with it) and for tests. Production tokens come
//! from the network's own identity provider; Circle only verifies them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde::Serialize;

use crate::jwks::Algorithm;

/// The claims of a token to sign (see the README's token format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub issuer: String,
    pub audience: Vec<String>,
    pub subject: String,
    pub network: String,
    pub roles: Vec<String>,
    pub clinics: Vec<String>,
    pub issued_at: i64,
    pub not_before: Option<i64>,
    pub expires_at: i64,
}

#[derive(Serialize)]
struct Wire<'a> {
    iss: &'a str,
    aud: &'a [String],
    sub: &'a str,
    network: &'a str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    clinics: &'a [String],
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the private key is not a valid PKCS#8 key for {0}")]
    Invalid(&'static str),
    #[error("the private key file is not PEM (\"-----BEGIN PRIVATE KEY-----\")")]
    NotPem,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// A private signing key with its key id.
pub struct SigningKey {
    kid: String,
    pair: Pair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    /// A new Ed25519 key.
    pub fn generate_ed25519(kid: &str) -> Result<Self, KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError::Invalid("EdDSA"))?;
        Self::from_pkcs8(Algorithm::EdDsa, kid, document.as_ref())
    }

    /// A new ECDSA P-256 key.
    pub fn generate_es256(kid: &str) -> Result<Self, KeyError> {
        let document = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| KeyError::Invalid("ES256"))?;
        Self::from_pkcs8(Algorithm::Es256, kid, document.as_ref())
    }

    pub fn from_pkcs8(algorithm: Algorithm, kid: &str, der: &[u8]) -> Result<Self, KeyError> {
        let invalid = |_| KeyError::Invalid(algorithm.as_str());
        let pair = match algorithm {
            Algorithm::EdDsa => {
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(invalid)?)
            }
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(invalid)?,
            ),
            Algorithm::Rs256 => Pair::Rs256(RsaKeyPair::from_pkcs8(der).map_err(invalid)?),
        };
        Ok(Self {
            kid: kid.to_owned(),
            pair,
            pkcs8: der.to_vec(),
        })
    }

    pub fn from_pkcs8_pem(algorithm: Algorithm, kid: &str, pem: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8(algorithm, kid, &pem_decode(pem)?)
    }

    /// The private key as PKCS#8 PEM (to keep it in a file only its owner reads).
    pub fn to_pkcs8_pem(&self) -> String {
        pem_encode(&self.pkcs8)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Ed25519(_) => Algorithm::EdDsa,
            Pair::Es256(_) => Algorithm::Es256,
            Pair::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> serde_json::Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.pair {
            Pair::Ed25519(pair) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
            }),
            Pair::Es256(pair) => {
                let point = pair.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
            Pair::Rs256(pair) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                serde_json::json!({ "kty": "RSA", "n": b64(&public.n), "e": b64(&public.e) })
            }
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.algorithm().as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// A JWKS document holding the public halves of `keys`.
    pub fn jwks(keys: &[&SigningKey]) -> String {
        serde_json::json!({ "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>() })
            .to_string()
    }

    /// A signed compact token.
    pub fn sign(&self, claims: &TokenClaims) -> String {
        let header = serde_json::json!({
            "alg": self.algorithm().as_str(), "kid": self.kid, "typ": "JWT",
        });
        let payload = serde_json::to_vec(&Wire {
            iss: &claims.issuer,
            aud: &claims.audience,
            sub: &claims.subject,
            network: &claims.network,
            roles: &claims.roles,
            clinics: &claims.clinics,
            iat: claims.issued_at,
            nbf: claims.not_before,
            exp: claims.expires_at,
        })
        .unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self.signature(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Es256(pair) => pair
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .unwrap_or_default(),
            Pair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                match pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature) {
                    Ok(()) => signature,
                    Err(_) => Vec::new(),
                }
            }
        }
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn pem_encode(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from(PEM_BEGIN);
    pem.push('\n');
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
}

fn pem_decode(pem: &str) -> Result<Vec<u8>, KeyError> {
    let body = pem
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or(KeyError::NotPem)?;
    let body: String = body.split_whitespace().collect();
    STANDARD.decode(body).map_err(|_| KeyError::NotPem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_pem() {
        let key = SigningKey::generate_ed25519("dev").expect("key");
        let again = SigningKey::from_pkcs8_pem(Algorithm::EdDsa, "dev", &key.to_pkcs8_pem())
            .expect("round trip");
        assert_eq!(key.public_jwk(), again.public_jwk());
    }
}
