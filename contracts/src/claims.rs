//! The claims of the JWTs auth signs and the gateway verifies.

use serde::{Deserialize, Serialize};

/// Default issuer (`iss`) of tokens.
pub const DEFAULT_ISSUER: &str = "mp3-converter-auth";
/// Default audience (`aud`) of tokens.
pub const DEFAULT_AUDIENCE: &str = "mp3-converter";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub email: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// Unique token id.
    pub jti: String,
}
