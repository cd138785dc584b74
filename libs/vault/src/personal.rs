//! Personal fields in events, rows and answers, and the sealing and opening of them.
//!
//! - [`Personal`]: a type names its personal fields (whose they are, which field, the
//!   text); the service's events implement it, and the repositories seal every commit
//!   through it ([`crate::store::KeyStore`] is a `circle_eventstore::Seal`).
//! - [`Sealer`] and [`Opener`]: the keys of the participants one command or one answer
//!   is about, fetched once, used synchronously.
//! - [`field`]: the field names a sealed value is bound to. They name the kind of data,
//!   not the service, so a value copied from one service's event into another's (a
//!   name into a roster, a session check-in into a journal) opens there unchanged.

use std::collections::HashMap;

use crate::{Context, DataKey, REDACTED, is_sealed};

/// The field names sealed values are bound to (associated data).
pub mod field {
    pub const GIVEN_NAME: &str = "given-name";
    pub const FAMILY_NAME: &str = "family-name";
    pub const PREFERRED_NAME: &str = "preferred-name";
    pub const EMAIL: &str = "email";
    pub const PHONE: &str = "phone";
    pub const ALIAS: &str = "alias";
    /// Why a membership was put on hold.
    pub const HOLD_REASON: &str = "hold-reason";
    /// A check-in's text: shared in a session, or submitted to the journal.
    pub const CHECK_IN: &str = "check-in";
    /// A facilitator's note about one member.
    pub const MEMBER_NOTE: &str = "member-note";
    pub const GOAL: &str = "goal";
    pub const SETBACK: &str = "setback";
    /// A peer's message of encouragement, sealed with its recipient's key (it is in
    /// their journal).
    pub const ENCOURAGEMENT: &str = "encouragement";
    /// An outcome measure's answers.
    pub const MEASUREMENT: &str = "measurement";
}

/// One personal field: the participant it belongs to, which field, and its text.
#[derive(Debug)]
pub struct Field<'a> {
    pub participant: &'a str,
    pub name: &'static str,
    pub value: &'a mut String,
}

impl<'a> Field<'a> {
    pub fn new(participant: &'a str, name: &'static str, value: &'a mut String) -> Self {
        Self {
            participant,
            name,
            value,
        }
    }
}

/// A value holding personal fields. `owner` is the id of the record it belongs to (an
/// event's aggregate id: a journal's events name no participant, the journal is
/// theirs); types whose fields name their participant ignore it.
pub trait Personal {
    fn personal_fields<'a>(&'a mut self, owner: &'a str) -> Vec<Field<'a>>;

    /// The participants a value records something about without holding text of theirs
    /// (attendance, a mood score, an admission, an encouragement they sent): a commit
    /// about a forgotten one is refused as one with their text is. None by default.
    fn subjects<'a>(&'a self, _owner: &'a str) -> Vec<&'a str> {
        Vec::new()
    }
}

/// The participants `items`' personal fields belong to, each once.
pub fn participants_of<T: Personal>(owner: &str, items: &mut [T]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for item in items.iter_mut() {
        for field in item.personal_fields(owner) {
            if !field.value.is_empty() && !ids.iter().any(|id| id == field.participant) {
                ids.push(field.participant.to_owned());
            }
        }
    }
    ids
}

/// The participants a commit of `items` needs a live key of: those whose text it
/// holds, and its [`Personal::subjects`].
pub fn concerned<T: Personal>(owner: &str, items: &mut [T]) -> Vec<String> {
    let mut ids = participants_of(owner, items);
    for item in items.iter() {
        for subject in item.subjects(owner) {
            if !subject.is_empty() && !ids.iter().any(|id| id == subject) {
                ids.push(subject.to_owned());
            }
        }
    }
    ids
}

/// Why a value could not be sealed (a fault of the code or of a key, never of input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealFailure {
    #[error("no key was fetched for a participant the value names")]
    NoKey,
    #[error(transparent)]
    Vault(#[from] crate::VaultError),
}

/// The sealing keys of the participants one command is about.
pub struct Sealer {
    network: String,
    keys: HashMap<String, DataKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Sealer({} keys)", self.keys.len())
    }
}

impl Sealer {
    pub(crate) fn new(network: &str, keys: HashMap<String, DataKey>) -> Self {
        Self {
            network: network.to_owned(),
            keys,
        }
    }

    /// `text` sealed for `participant`'s `field`. Empty text stays empty; text already
    /// sealed for this participant and field (copied from another event) stays as it
    /// is; anything else is sealed, so no caller can pass plaintext off as sealed.
    pub fn seal(&self, participant: &str, field: &str, text: &str) -> Result<String, SealFailure> {
        if text.is_empty() {
            return Ok(String::new());
        }
        let key = self.keys.get(participant).ok_or(SealFailure::NoKey)?;
        let context = Context {
            network: &self.network,
            participant,
            field,
        };
        if is_sealed(text) && key.open(context, text).is_ok() {
            return Ok(text.to_owned());
        }
        Ok(key.seal(context, text)?)
    }

    /// Seals every personal field of `items` in place.
    pub fn seal_all<T: Personal>(&self, owner: &str, items: &mut [T]) -> Result<(), SealFailure> {
        for item in items.iter_mut() {
            for field in item.personal_fields(owner) {
                let sealed = self.seal(field.participant, field.name, field.value)?;
                *field.value = sealed;
            }
        }
        Ok(())
    }
}

/// The opening keys of the participants one answer shows (none for the forgotten).
pub struct Opener {
    network: String,
    keys: HashMap<String, Option<DataKey>>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Opener({} participants)", self.keys.len())
    }
}

impl Opener {
    pub(crate) fn new(network: &str, keys: HashMap<String, Option<DataKey>>) -> Self {
        Self {
            network: network.to_owned(),
            keys,
        }
    }

    /// The plaintext of `participant`'s `field`: [`REDACTED`] once they are forgotten,
    /// text written before sealing began included (or when the value does not open: it
    /// was moved, or damaged). Empty stays empty; text that was never sealed, of someone
    /// not forgotten, is shown as it is.
    pub fn open(&self, participant: &str, field: &str, text: &str) -> String {
        if text.is_empty() {
            return String::new();
        }
        let key = match self.keys.get(participant) {
            Some(None) => return REDACTED.to_owned(),
            _ if !is_sealed(text) => return text.to_owned(),
            Some(Some(key)) => key,
            None => return REDACTED.to_owned(),
        };
        let context = Context {
            network: &self.network,
            participant,
            field,
        };
        key.open(context, text).unwrap_or_else(|_| {
            tracing::warn!(
                field,
                "a sealed field did not open with its participant's key"
            );
            REDACTED.to_owned()
        })
    }

    /// Opens every personal field of `items` in place.
    pub fn open_all<T: Personal>(&self, owner: &str, items: &mut [T]) {
        for item in items.iter_mut() {
            for field in item.personal_fields(owner) {
                let opened = self.open(field.participant, field.name, field.value);
                *field.value = opened;
            }
        }
    }
}
