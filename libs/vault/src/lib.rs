//! Crypto-shredding's keys and seals. Personal fields (names, alias, contact details,
//! free text written by or about a participant) are sealed in events with that
//! participant's data key; data keys are kept only wrapped by a master key from
//! configuration; forgetting a participant destroys their data key, after which every
//! copy of their sealed fields — in the log, dead letters, backups — stays unreadable.
//!
//! - [`MasterKeys`]: the master keys, newest first (rotation: a new key is added in
//!   front and wraps every new data key; older ones only unwrap, until every data key
//!   has been re-wrapped and they can be removed).
//! - [`DataKey`]: one participant's AES-256-GCM key; [`DataKey::seal`] and
//!   [`DataKey::open`] for a field, bound (as associated data) to the network,
//!   participant and field it belongs to, so a sealed value cannot be moved to another
//!   participant or field (within one participant's field it is only the value).
//! - [`Sealed`]: a sealed field as text, `v1.<base64url of nonce || ciphertext>`.
//!
//! AEAD: ring's AES-256-GCM with random 96-bit nonces (ring is the crypto of the TLS
//! stack already; a participant's key seals far fewer than the 2^32 values after which
//! random nonces would be a concern).

pub mod personal;
pub mod store;

pub use personal::{Field, Opener, Personal, Sealer, field};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

/// What a reader shows where a forgotten participant's field was.
pub const REDACTED: &str = "[redacted]";

const SEALED_PREFIX: &str = "v1.";
const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("a master key must be 32 bytes, base64 encoded, with an id: {0}")]
    MasterKey(String),
    #[error("no master key {0} to unwrap with")]
    UnknownMasterKey(String),
    #[error("a wrapped data key did not unwrap (wrong master key or damaged)")]
    Unwrap,
    #[error("a sealed value did not open (wrong key, wrong record or damaged)")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("the system's random source failed")]
    Random,
}

/// One participant's data key.
pub struct DataKey {
    key: LessSafeKey,
    raw: [u8; KEY_LEN],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DataKey(..)")
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self::from_raw(self.raw)
    }
}

/// Where a sealed field belongs: its network, its participant and which field it is.
/// Opening with another context fails.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub network: &'a str,
    pub participant: &'a str,
    pub field: &'a str,
}

impl Context<'_> {
    fn aad(&self) -> Vec<u8> {
        // Lengths first, so no two contexts give the same bytes.
        let mut aad = Vec::new();
        for part in [self.network, self.participant, self.field] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| VaultError::Random)?;
    Ok(bytes)
}

fn aes(raw: &[u8; KEY_LEN]) -> LessSafeKey {
    // 32 bytes is AES-256's key length, so this cannot fail.
    match UnboundKey::new(&AES_256_GCM, raw) {
        Ok(key) => LessSafeKey::new(key),
        Err(_) => unreachable!("AES-256 takes a 32-byte key"),
    }
}

fn seal_bytes(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce = random::<NONCE_LEN>()?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut in_out,
    )
    .map_err(|_| VaultError::Seal)?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&in_out);
    Ok(sealed)
}

fn open_bytes(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_LEN {
        return Err(VaultError::Open);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Open)?;
    let mut in_out = ciphertext.to_vec();
    let plaintext = key
        .open_in_place(nonce, Aad::from(aad), &mut in_out)
        .map_err(|_| VaultError::Open)?;
    Ok(plaintext.to_vec())
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Result<Self, VaultError> {
        Ok(Self::from_raw(random::<KEY_LEN>()?))
    }

    fn from_raw(raw: [u8; KEY_LEN]) -> Self {
        Self {
            key: aes(&raw),
            raw,
        }
    }

    /// `plaintext` sealed for `context`. Empty text stays empty (nothing to hide, and
    /// "not set" keeps meaning "not set").
    pub fn seal(&self, context: Context<'_>, plaintext: &str) -> Result<String, VaultError> {
        if plaintext.is_empty() {
            return Ok(String::new());
        }
        let sealed = seal_bytes(&self.key, &context.aad(), plaintext.as_bytes())?;
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// The plaintext of a value [`DataKey::seal`] made for `context`.
    pub fn open(&self, context: Context<'_>, sealed: &str) -> Result<String, VaultError> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or(VaultError::Open)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| VaultError::Open)?;
        let plaintext = open_bytes(&self.key, &context.aad(), &bytes)?;
        String::from_utf8(plaintext).map_err(|_| VaultError::Open)
    }
}

/// Whether a field's text is sealed (as opposed to written before sealing began).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// A data key wrapped by a master key: what the key store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub master_key_id: String,
    pub bytes: Vec<u8>,
}

/// The master keys, newest (the one that wraps) first.
pub struct MasterKeys {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(formatter, "MasterKeys({ids:?})")
    }
}

impl MasterKeys {
    /// Parses `id:base64key` entries separated by commas or newlines, newest first
    /// (the form of the configured master key file or variable).
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let mut keys = Vec::new();
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty() && !entry.starts_with('#'))
        {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| VaultError::MasterKey("expected id:key".to_owned()))?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(VaultError::MasterKey(format!("bad key id {id:?}")));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| VaultError::MasterKey(format!("key {id} is not base64")))?;
            let raw: [u8; KEY_LEN] = raw
                .try_into()
                .map_err(|_| VaultError::MasterKey(format!("key {id} is not 32 bytes")))?;
            if keys.iter().any(|(known, _)| known == id) {
                return Err(VaultError::MasterKey(format!("key id {id} appears twice")));
            }
            keys.push((id.to_owned(), aes(&raw)));
        }
        if keys.is_empty() {
            return Err(VaultError::MasterKey("no key given".to_owned()));
        }
        Ok(Self { keys })
    }

    /// A new master key entry (`id:base64key`), for `circle dev` and operators.
    pub fn generate_entry(id: &str) -> Result<String, VaultError> {
        Ok(format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(random::<KEY_LEN>()?)
        ))
    }

    /// The id of the key new data keys are wrapped with.
    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// `data` wrapped by the current master key for (network, participant).
    pub fn wrap(
        &self,
        data: &DataKey,
        network: &str,
        participant: &str,
    ) -> Result<Wrapped, VaultError> {
        let (id, key) = self
            .keys
            .first()
            .ok_or_else(|| VaultError::MasterKey("no key".to_owned()))?;
        let aad = wrap_aad(network, participant);
        Ok(Wrapped {
            master_key_id: id.clone(),
            bytes: seal_bytes(key, &aad, &data.raw)?,
        })
    }

    /// The data key `wrapped` holds for (network, participant).
    pub fn unwrap(
        &self,
        wrapped: &Wrapped,
        network: &str,
        participant: &str,
    ) -> Result<DataKey, VaultError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| *id == wrapped.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(wrapped.master_key_id.clone()))?;
        let raw = open_bytes(key, &wrap_aad(network, participant), &wrapped.bytes)
            .map_err(|_| VaultError::Unwrap)?;
        let raw: [u8; KEY_LEN] = raw.try_into().map_err(|_| VaultError::Unwrap)?;
        Ok(DataKey::from_raw(raw))
    }
}

fn wrap_aad(network: &str, participant: &str) -> Vec<u8> {
    Context {
        network,
        participant,
        field: "data-key",
    }
    .aad()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAM: Context<'static> = Context {
        network: "acme",
        participant: "sam",
        field: "check-in.text",
    };

    #[test]
    fn a_sealed_field_opens_only_with_its_key_and_for_its_record() {
        let key = DataKey::generate().expect("key");
        let sealed = key.seal(SAM, "Called my sponsor").expect("sealed");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("sponsor"));
        assert_eq!(key.open(SAM, &sealed).as_deref(), Ok("Called my sponsor"));
        let other = DataKey::generate().expect("key");
        assert_eq!(other.open(SAM, &sealed), Err(VaultError::Open));
        for moved in [
            Context {
                participant: "pat",
                ..SAM
            },
            Context {
                network: "other",
                ..SAM
            },
            Context {
                field: "goal.text",
                ..SAM
            },
        ] {
            assert_eq!(key.open(moved, &sealed), Err(VaultError::Open));
        }
        assert_eq!(key.seal(SAM, "").as_deref(), Ok(""));
        assert_eq!(key.open(SAM, "not sealed"), Err(VaultError::Open));
        // The same text seals differently each time (random nonces).
        assert_ne!(key.seal(SAM, "x").ok(), key.seal(SAM, "x").ok());
    }

    #[test]
    fn data_keys_unwrap_with_the_master_key_that_wrapped_them_after_a_rotation() {
        let first = MasterKeys::generate_entry("k1").expect("entry");
        let second = MasterKeys::generate_entry("k2").expect("entry");
        let old = MasterKeys::parse(&first).expect("keys");
        let data = DataKey::generate().expect("key");
        let sealed = data.seal(SAM, "Sunny").expect("sealed");
        let wrapped = old.wrap(&data, "acme", "sam").expect("wrapped");
        assert_eq!(wrapped.master_key_id, "k1");
        // Rotation: the new key in front wraps; the old one still unwraps.
        let rotated = MasterKeys::parse(&format!("{second}\n{first}")).expect("keys");
        assert_eq!(rotated.current_id(), "k2");
        let unwrapped = rotated.unwrap(&wrapped, "acme", "sam").expect("unwraps");
        assert_eq!(unwrapped.open(SAM, &sealed).as_deref(), Ok("Sunny"));
        let rewrapped = rotated.wrap(&unwrapped, "acme", "sam").expect("rewrapped");
        assert_eq!(rewrapped.master_key_id, "k2");
        // Once k1 is retired, only re-wrapped keys open.
        let retired = MasterKeys::parse(&second).expect("keys");
        assert_eq!(
            retired.unwrap(&wrapped, "acme", "sam").err(),
            Some(VaultError::UnknownMasterKey("k1".to_owned()))
        );
        assert!(retired.unwrap(&rewrapped, "acme", "sam").is_ok());
        assert_eq!(
            rotated.unwrap(&wrapped, "acme", "pat").err(),
            Some(VaultError::Unwrap),
            "a wrapped key is bound to its participant"
        );
    }

    #[test]
    fn master_keys_are_checked_when_read() {
        assert!(MasterKeys::parse("").is_err());
        assert!(MasterKeys::parse("k1:short").is_err());
        assert!(MasterKeys::parse("no-colon").is_err());
        let entry = MasterKeys::generate_entry("k1").expect("entry");
        assert!(
            MasterKeys::parse(&format!("{entry},{entry}")).is_err(),
            "repeated id"
        );
        assert_eq!(
            MasterKeys::parse(&entry).map(|keys| keys.current_id().to_owned()),
            Ok("k1".to_owned())
        );
    }
}
