//! Verifying a bearer token (a compact JWS, RFC 7515/7519) into [`Claims`].
//!
//! The order is fixed and every step refuses on doubt: size; three base64url parts;
//! a header whose `alg` is RS256, ES256 or EdDSA, with a `kid` and no `crit`; the key
//! of that id, whose kind must be that algorithm's; the signature; then the claims —
//! issuer, audience (this service's), expiry and not-before (with a small leeway),
//! subject, network, roles and clinics, each bounded. Nothing of the payload is read
//! before the signature holds.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::jwks::{Algorithm, Keys};
use crate::{Caller, Role};

/// The largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The most clinics a token may list.
pub const MAX_CLINICS: usize = 256;
/// The most roles a token may list.
pub const MAX_ROLES: usize = 8;

/// Why a token was refused. Every one is `UNAUTHENTICATED`; [`AuthError::reason`] is
/// the stable `ErrorInfo` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the call carries no bearer token (metadata `authorization: Bearer <token>`)")]
    Missing,
    #[error("the bearer token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed (RS256, ES256 or EdDSA only)")]
    AlgorithmNotAllowed,
    #[error("the token's key id is not among the trusted keys")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was not issued by the trusted issuer")]
    WrongIssuer,
    #[error("the token is not meant for this service (audience)")]
    WrongAudience,
    #[error("the token's claims are not valid: {0}")]
    Claims(&'static str),
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Malformed => "TOKEN_MALFORMED",
            Self::AlgorithmNotAllowed => "TOKEN_ALGORITHM_NOT_ALLOWED",
            Self::UnknownKey => "TOKEN_KEY_UNKNOWN",
            Self::BadSignature => "TOKEN_SIGNATURE_INVALID",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::WrongIssuer => "TOKEN_ISSUER_WRONG",
            Self::WrongAudience => "TOKEN_AUDIENCE_WRONG",
            Self::Claims(_) => "TOKEN_CLAIMS_INVALID",
        }
    }
}

/// What a verifier checks besides the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierSettings {
    /// The one issuer (`iss`) trusted.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// A verified token's claims, bounded and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub network: String,
    pub roles: Vec<Role>,
    pub clinics: Vec<String>,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

impl Claims {
    pub fn caller(&self) -> Caller {
        let clinics: Vec<&str> = self.clinics.iter().map(String::as_str).collect();
        Caller {
            expires_at: Some(self.expires_at),
            ..Caller::new(&self.network, &self.subject, &self.roles, &clinics)
        }
    }
}

#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    settings: VerifierSettings,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    network: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    clinics: Vec<String>,
}

impl Verifier {
    pub fn new(keys: Keys, settings: VerifierSettings) -> Self {
        Self { keys, settings }
    }

    /// Verifies `token` for a service whose audience is `audience`, at `now` (seconds
    /// since the epoch).
    pub fn verify(&self, token: &str, audience: &str, now: i64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| AuthError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| AuthError::Malformed)?;
        let algorithm = Algorithm::parse(&header.alg).ok_or(AuthError::AlgorithmNotAllowed)?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
            && !typ.eq_ignore_ascii_case("at+jwt")
        {
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let keys = self.keys.current();
        let Some(key) = keys.get(&kid) else {
            self.keys.request_refresh();
            return Err(AuthError::UnknownKey);
        };
        if key.algorithm() != algorithm {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let signature = decode(signature_b64)?;
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !key.verifies(signed.as_bytes(), &signature) {
            return Err(AuthError::BadSignature);
        }
        let claims: RawClaims =
            serde_json::from_slice(&decode(payload_b64)?).map_err(|_| AuthError::Malformed)?;
        self.check(claims, audience, now)
    }

    fn check(&self, claims: RawClaims, audience: &str, now: i64) -> Result<Claims, AuthError> {
        if claims.iss.as_deref() != Some(self.settings.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        let for_us = match &claims.aud {
            Some(Audience::One(one)) => one == audience,
            Some(Audience::Many(many)) => many.iter().any(|one| one == audience),
            None => false,
        };
        if !for_us {
            return Err(AuthError::WrongAudience);
        }
        let leeway = i64::try_from(self.settings.leeway.as_secs()).unwrap_or(i64::MAX);
        let seconds = |value: f64| -> Result<i64, AuthError> {
            if value.is_finite() && (0.0..4.0e12).contains(&value) {
                // Within range, so the conversion is exact up to the fraction dropped.
                #[allow(clippy::cast_possible_truncation)]
                Ok(value.floor() as i64)
            } else {
                Err(AuthError::Claims("exp/nbf out of range"))
            }
        };
        let expires_at = seconds(claims.exp.ok_or(AuthError::Claims("exp is required"))?)?;
        if now.saturating_sub(leeway) >= expires_at {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && seconds(nbf)? > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid);
        }
        let subject = claims.sub.ok_or(AuthError::Claims("sub is required"))?;
        id(&subject).ok_or(AuthError::Claims("sub is not an id"))?;
        let network = claims
            .network
            .ok_or(AuthError::Claims("network is required"))?;
        id(&network).ok_or(AuthError::Claims("network is not an id"))?;
        if claims.roles.is_empty() || claims.roles.len() > MAX_ROLES {
            return Err(AuthError::Claims("roles must list 1 to 8 roles"));
        }
        let mut roles = Vec::with_capacity(claims.roles.len());
        for role in &claims.roles {
            roles.push(Role::parse_claimed(role).ok_or(AuthError::Claims("unknown role"))?);
        }
        roles.sort();
        roles.dedup();
        let alone = |role: Role| roles.contains(&role) && roles.len() > 1;
        if alone(Role::Participant) || alone(Role::Service) {
            return Err(AuthError::Claims(
                "participant and service tokens hold no other role",
            ));
        }
        if claims.clinics.len() > MAX_CLINICS {
            return Err(AuthError::Claims("too many clinics"));
        }
        for clinic in &claims.clinics {
            id(clinic).ok_or(AuthError::Claims("a clinic is not an id"))?;
        }
        Ok(Claims {
            subject,
            network,
            roles,
            clinics: claims.clinics,
            expires_at,
        })
    }
}

/// Circle's id syntax (`circle-names`): lowercase letters, digits and '-', 1–63.
fn id(value: &str) -> Option<()> {
    circle_names::Id::parse(value).ok().map(|_| ())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::jwks::KeySet;
    use crate::sign::{SigningKey, TokenClaims};

    const NOW: i64 = 1_800_000_000;

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::generate_ed25519("k1").expect("key");
        let keys = KeySet::parse(SigningKey::jwks(&[&key]).as_bytes()).expect("jwks");
        let verifier = Verifier::new(
            Keys::fixed(keys),
            VerifierSettings {
                issuer: "https://idp.example".to_owned(),
                leeway: Duration::from_secs(30),
            },
        );
        (key, verifier)
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            issuer: "https://idp.example".to_owned(),
            audience: vec!["circle-enrollment".to_owned()],
            subject: "staff-7".to_owned(),
            network: "acme".to_owned(),
            roles: vec!["facilitator".to_owned()],
            clinics: vec!["north".to_owned()],
            issued_at: NOW - 60,
            not_before: Some(NOW - 60),
            expires_at: NOW + 600,
        }
    }

    #[test]
    fn a_good_token_reads_as_its_caller() {
        let (key, verifier) = setup();
        let token = key.sign(&claims());
        let verified = verifier
            .verify(&token, "circle-enrollment", NOW)
            .expect("valid");
        let caller = verified.caller();
        assert_eq!(caller.network, "acme");
        assert_eq!(caller.actor_id, "staff-7");
        assert_eq!(caller.roles, vec![Role::Facilitator]);
        assert_eq!(caller.clinics, vec!["north"]);
    }

    #[test]
    fn time_audience_issuer_and_claims_are_checked() {
        let (key, verifier) = setup();
        let check =
            |claims: TokenClaims| verifier.verify(&key.sign(&claims), "circle-enrollment", NOW);
        assert_eq!(
            check(TokenClaims {
                expires_at: NOW - 31,
                ..claims()
            }),
            Err(AuthError::Expired)
        );
        assert!(
            check(TokenClaims {
                expires_at: NOW - 29,
                ..claims()
            })
            .is_ok(),
            "within leeway"
        );
        assert_eq!(
            check(TokenClaims {
                not_before: Some(NOW + 31),
                ..claims()
            }),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check(TokenClaims {
                audience: vec!["circle-sessions".to_owned()],
                ..claims()
            }),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check(TokenClaims {
                issuer: "https://evil.example".to_owned(),
                ..claims()
            }),
            Err(AuthError::WrongIssuer)
        );
        for roles in [
            vec![],
            vec!["root".to_owned()],
            vec!["process-manager".to_owned()],
            vec!["participant".to_owned(), "facilitator".to_owned()],
            vec!["service".to_owned(), "network-admin".to_owned()],
        ] {
            assert_eq!(
                check(TokenClaims {
                    roles: roles.clone(),
                    ..claims()
                })
                .map_err(|e| e.reason()),
                Err("TOKEN_CLAIMS_INVALID"),
                "{roles:?}"
            );
        }
        assert_eq!(
            check(TokenClaims {
                network: "Acme Corp".to_owned(),
                ..claims()
            })
            .map_err(|e| e.reason()),
            Err("TOKEN_CLAIMS_INVALID")
        );
        assert_eq!(
            check(TokenClaims {
                roles: vec!["network-admin".to_owned()],
                clinics: vec![],
                ..claims()
            })
            .map(|claims| claims.roles),
            Ok(vec![Role::NetworkAdmin])
        );
    }

    fn forge(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn forged_tokens_are_refused() {
        let (key, verifier) = setup();
        let good = key.sign(&claims());
        let payload_b64 = good.split('.').nth(1).expect("payload");
        let payload =
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload_b64).expect("b64")).expect("utf8");
        let verify = |token: &str| verifier.verify(token, "circle-enrollment", NOW);
        assert_eq!(verify(""), Err(AuthError::Missing));
        assert_eq!(verify("abc"), Err(AuthError::Malformed));
        assert_eq!(verify(&format!("{good}.x")), Err(AuthError::Malformed));
        assert_eq!(
            verify(&forge(r#"{"alg":"none","kid":"k1"}"#, &payload, b"")),
            Err(AuthError::AlgorithmNotAllowed)
        );
        // HS256 keyed with the public key: there is no HMAC path to try it on.
        let public = SigningKey::jwks(&[&key]);
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public.as_bytes()),
            b"whatever",
        );
        assert_eq!(
            verify(&forge(
                r#"{"alg":"HS256","kid":"k1"}"#,
                &payload,
                mac.as_ref()
            )),
            Err(AuthError::AlgorithmNotAllowed)
        );
        assert_eq!(
            verify(&forge(r#"{"alg":"RS256","kid":"k1"}"#, &payload, b"sig")),
            Err(AuthError::AlgorithmNotAllowed),
            "an Ed25519 key never verifies another algorithm"
        );
        assert_eq!(
            verify(&forge(r#"{"alg":"EdDSA","kid":"k9"}"#, &payload, b"sig")),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&forge(r#"{"alg":"EdDSA"}"#, &payload, b"sig")),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&forge(
                r#"{"alg":"EdDSA","kid":"k1","crit":["exp"]}"#,
                &payload,
                b"sig"
            )),
            Err(AuthError::Malformed)
        );
        let other = SigningKey::generate_ed25519("k1").expect("key");
        assert_eq!(verify(&other.sign(&claims())), Err(AuthError::BadSignature));
        // The payload changed after signing.
        let mut parts: Vec<&str> = good.split('.').collect();
        let tampered = URL_SAFE_NO_PAD.encode(payload.replace("facilitator", "network-admin"));
        parts[1] = &tampered;
        assert_eq!(verify(&parts.join(".")), Err(AuthError::BadSignature));
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn es256_and_rs256_tokens_verify_with_their_keys() {
        let es = SigningKey::generate_es256("ec").expect("key");
        let rs = SigningKey::from_pkcs8_pem(
            crate::jwks::Algorithm::Rs256,
            "rsa",
            include_str!("../tests/fixtures/rsa-2048-test-only.pem"),
        )
        .expect("the test RSA key");
        let keys = KeySet::parse(SigningKey::jwks(&[&es, &rs]).as_bytes()).expect("jwks");
        let verifier = Verifier::new(
            Keys::fixed(keys),
            VerifierSettings {
                issuer: "https://idp.example".to_owned(),
                leeway: Duration::from_secs(30),
            },
        );
        for key in [&es, &rs] {
            assert!(
                verifier
                    .verify(&key.sign(&claims()), "circle-enrollment", NOW)
                    .is_ok()
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(token in ".{0,600}") {
            let (_, verifier) = setup();
            let _ = verifier.verify(&token, "circle-enrollment", NOW);
        }

        #[test]
        fn mutated_tokens_never_verify_or_panic(position in 0usize..400, byte in any::<u8>()) {
            let (key, verifier) = setup();
            let good = key.sign(&claims());
            let mut bytes = good.clone().into_bytes();
            let position = position % bytes.len();
            prop_assume!(bytes[position] != byte);
            bytes[position] = byte;
            if let Ok(token) = String::from_utf8(bytes) {
                let result = verifier.verify(&token, "circle-enrollment", NOW);
                // A changed token may still decode to the same bytes (base64's spare
                // bits are refused, so it cannot): it never verifies.
                prop_assert!(result.is_err(), "{token}");
            }
        }
    }
}
