//! `Password`: a candidate password whose length is acceptable, kept in a secret wrapper so it
//! cannot end up in a log line by accident.

use secrecy::{ExposeSecret, SecretString};

/// NIST SP 800-63B: at least 8 characters.
pub const MIN_BYTES: usize = 8;
/// Bounds the work a single request can ask of the hasher.
pub const MAX_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Password(SecretString);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_BYTES} bytes long")]
    TooShort,
    #[error("password must be at most {MAX_BYTES} bytes long")]
    TooLong,
}

impl Password {
    /// Takes ownership so the plaintext is not left behind in an unzeroised `String`.
    pub fn parse(raw: SecretString) -> Result<Self, PasswordError> {
        let length = raw.expose_secret().len();
        if length < MIN_BYTES {
            return Err(PasswordError::TooShort);
        }
        if length > MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Password, PasswordError> {
        Password::parse(SecretString::from(raw))
    }

    #[test]
    fn length_is_bounded_in_bytes() {
        assert_eq!(parse("1234567").unwrap_err(), PasswordError::TooShort);
        assert!(parse("12345678").is_ok());
        assert!(parse(&"x".repeat(MAX_BYTES)).is_ok());
        assert_eq!(
            parse(&"x".repeat(MAX_BYTES + 1)).unwrap_err(),
            PasswordError::TooLong
        );
        // Four two-byte characters are eight bytes.
        assert!(parse("éééé").is_ok());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password = parse("correct horse battery staple").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
