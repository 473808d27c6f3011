//! `EmailAddress`: an account's email, parsed once and normalised to lower case.
//!
//! Emails are unique case-insensitively because the store only ever sees the lower-case form
//! (a plain UNIQUE index then suffices on every engine).

use std::fmt;

/// RFC 5321 caps a forward path at 256 octets including the angle brackets.
const MAX_LENGTH: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email is required")]
    Missing,
    #[error("email is too long (at most {MAX_LENGTH} characters)")]
    TooLong,
    #[error("email is not a valid address ({0})")]
    Invalid(String),
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Missing);
        }
        if trimmed.len() > MAX_LENGTH {
            return Err(EmailError::TooLong);
        }
        let normalised = trimmed.to_lowercase();
        // A plain address at a domain with a dot: no "Name <a@b>" display text, no [1.2.3.4] literals.
        let options = email_address::Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        email_address::EmailAddress::parse_with_options(&normalised, options)
            .map_err(|e| EmailError::Invalid(e.to_string()))?;
        Ok(Self(normalised))
    }

    /// Wraps an address read back from the store, which only ever holds parsed addresses
    /// (re-parsing would lock accounts out if the rules ever tightened).
    pub(crate) fn from_stored(normalised: String) -> Self {
        Self(normalised)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_lower_case_and_trims() {
        let email = EmailAddress::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice.smith@example.com");
    }

    #[test]
    fn accepts_plus_tags_and_apostrophes() {
        assert!(EmailAddress::parse("bob+mp3@example.org").is_ok());
        assert_eq!(
            EmailAddress::parse("o'brien@example.ie").unwrap().as_str(),
            "o'brien@example.ie"
        );
    }

    #[test]
    fn rejects_what_is_not_a_plain_address() {
        for bad in [
            "not-an-email",
            "@example.com",
            "alice@",
            "alice@localhost",
            "alice@[127.0.0.1]",
            "Alice <alice@example.com>",
            "alice@exa mple.com",
            "alice@@example.com",
        ] {
            assert!(
                matches!(EmailAddress::parse(bad), Err(EmailError::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn rejects_empty_and_overlong_addresses() {
        assert_eq!(EmailAddress::parse("   "), Err(EmailError::Missing));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }
}
