//! Development keys: `circle dev` signs nothing itself, but the services it starts
//! verify bearer tokens like production ones, so it makes a local Ed25519 signing key
//! (kept in a file only its owner can read) and the JWKS with its public half, and
//! trusts that JWKS under the issuer [`ISSUER`]. `circle token` signs with the same key.
//! It also makes a development master key (`master-keys`, the `vault.master_keys_file`
//! of the services it starts), which wraps the demo participants' data keys.
//!
//! The directory is `$CIRCLE_DEV_DIR`, else `$XDG_DATA_HOME/circle/dev`, else
//! `~/.local/share/circle/dev`. Nothing here is for production: a real deployment
//! configures its identity provider's issuer and JWKS (`auth.issuer`,
//! `auth.jwks_url`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use circle_auth::jwks::Algorithm;
use circle_auth::sign::{SigningKey, TokenClaims};

/// The issuer of development tokens.
pub const ISSUER: &str = "circle-dev";
const KEY_FILE: &str = "signing-key.pem";
const JWKS_FILE: &str = "jwks.json";
const KID: &str = "circle-dev-1";
const MASTER_KEYS_FILE: &str = "master-keys";

pub struct DevKeys {
    key: SigningKey,
    pub jwks_file: PathBuf,
}

/// Where development keys live.
pub fn dev_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CIRCLE_DEV_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(data).join("circle").join("dev"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set CIRCLE_DEV_DIR")?;
    Ok(PathBuf::from(home).join(".local/share/circle/dev"))
}

impl DevKeys {
    /// The development key in `dir`, made there on first use, and its JWKS (written
    /// again each time, so it always matches the key).
    pub fn ensure(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            // The private key's directory is its owner's alone.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", dir.display()))?;
        }
        let key_file = dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&key_file) {
            Ok(pem) => SigningKey::from_pkcs8_pem(Algorithm::EdDsa, KID, &pem)
                .with_context(|| format!("reading {}", key_file.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate_ed25519(KID)?;
                write_private(&key_file, &key.to_pkcs8_pem())?;
                key
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", key_file.display()));
            }
        };
        let jwks_file = dir.join(JWKS_FILE);
        std::fs::write(&jwks_file, SigningKey::jwks(&[&key]))
            .with_context(|| format!("writing {}", jwks_file.display()))?;
        Ok(Self { key, jwks_file })
    }

    /// The development master keys file in `dir` (one key, made on first use, readable
    /// by its owner only): `circle dev` wraps participants' data keys with it.
    pub fn master_keys(dir: &Path) -> anyhow::Result<PathBuf> {
        let file = dir.join(MASTER_KEYS_FILE);
        if !file.exists() {
            let entry = circle_vault::MasterKeys::generate_entry("dev-1")
                .map_err(|error| anyhow::anyhow!("making a development master key: {error}"))?;
            write_private(&file, &format!("{entry}\n"))?;
        }
        Ok(file)
    }

    /// A development token.
    pub fn token(&self, claims: &TokenClaims) -> String {
        self.key.sign(claims)
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    circle_auth::unix_now()
}

/// Claims of a development token for the demo people: `role` with the demo's default
/// subject and clinics unless given.
pub struct TokenRequest {
    pub role: String,
    pub network: String,
    pub subject: Option<String>,
    pub clinics: Vec<String>,
    pub audiences: Vec<String>,
    pub ttl_minutes: i64,
}

pub const ROLES: [&str; 6] = [
    "network-admin",
    "clinic-admin",
    "facilitator",
    "intake-coordinator",
    "participant",
    "service",
];

impl TokenRequest {
    pub fn claims(&self, now: i64) -> anyhow::Result<TokenClaims> {
        anyhow::ensure!(
            ROLES.contains(&self.role.as_str()),
            "unknown role {:?}; one of {}",
            self.role,
            ROLES.join(", ")
        );
        anyhow::ensure!(
            (1..=7 * 24 * 60).contains(&self.ttl_minutes),
            "--ttl-minutes must be between 1 and 10080"
        );
        // The demo's people (`circle_cli::demo`): its admin, Riverside's staff, its
        // first participant.
        let (subject, clinics) = match self.role.as_str() {
            "network-admin" => (crate::demo::ADMIN, None),
            "clinic-admin" => ("demo-clinic-admin", Some("riverside")),
            "facilitator" => ("staff-riverside-lead", Some("riverside")),
            "intake-coordinator" => ("demo-intake", Some("riverside")),
            "participant" => ("participant-01", None),
            _ => ("demo-integration", None),
        };
        let clinics = if self.clinics.is_empty() {
            clinics.map(str::to_owned).into_iter().collect()
        } else {
            self.clinics.clone()
        };
        Ok(TokenClaims {
            issuer: ISSUER.to_owned(),
            audience: self.audiences.clone(),
            subject: self.subject.clone().unwrap_or_else(|| subject.to_owned()),
            network: self.network.clone(),
            roles: vec![self.role.clone()],
            clinics,
            issued_at: now,
            not_before: Some(now),
            expires_at: now + self.ttl_minutes * 60,
        })
    }
}

/// The audiences of the three services in `config`.
pub fn audiences(config: &circle_config::Config) -> Vec<String> {
    vec![
        config.enrollment.audience.clone(),
        config.sessions.audience.clone(),
        config.accountability.audience.clone(),
    ]
}
