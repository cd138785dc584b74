use std::fmt;

/// Identifies one aggregate: its subject is `<root>.<network>.<aggregate_type>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateKey {
    network: String,
    aggregate_type: &'static str,
    id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{part} must be 1 to 63 characters of lowercase letters, digits and '-'")]
    InvalidToken { part: &'static str },
}

impl AggregateKey {
    /// Ids become subject tokens, so they are restricted to `[a-z0-9-]{1,63}` (no dots,
    /// wildcards or spaces) — the same rule resource names use.
    pub fn new(
        network: impl Into<String>,
        aggregate_type: &'static str,
        id: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let network = network.into();
        let id = id.into();
        if !is_token(&network) {
            return Err(KeyError::InvalidToken { part: "network" });
        }
        if !is_token(aggregate_type) {
            return Err(KeyError::InvalidToken {
                part: "aggregate type",
            });
        }
        if !is_token(&id) {
            return Err(KeyError::InvalidToken { part: "id" });
        }
        Ok(Self {
            network,
            aggregate_type,
            id,
        })
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn aggregate_type(&self) -> &'static str {
        self.aggregate_type
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn subject(&self, root: &str) -> String {
        format!(
            "{root}.{}.{}.{}",
            self.network, self.aggregate_type, self.id
        )
    }
}

impl fmt::Display for AggregateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.aggregate_type, self.id)
    }
}

/// A subject token and resource id: 1–63 of `[a-z0-9-]`, starting with a letter or digit.
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_puts_the_tenant_first() {
        let key = AggregateKey::new("acme", "group", "g-1").expect("valid key");
        assert_eq!(key.subject("enrollment"), "enrollment.acme.group.g-1");
    }

    #[test]
    fn ids_that_would_split_or_widen_a_subject_are_refused() {
        for bad in ["", "a.b", "a*", ">", "a b", "A", "-x", &"x".repeat(64)] {
            assert!(
                AggregateKey::new("acme", "group", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
