//! Issuing and validating EdDSA-signed JWTs.
//!
//! Validation trusts nothing in the token before the signature checks out: the `alg` header must
//! be exactly `EdDSA` (which shuts out `none` and the HS256-with-the-public-key confusion), the
//! `kid` must name one of our keys, and then signature, expiry, issuer and audience are checked.

use crate::domain::EmailAddress;
use crate::keys::{ALGORITHM, KeyRing};
use base64::Engine;
use contracts::claims::Claims;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use std::sync::Arc;
use std::time::Duration;

/// Longer than any token we issue by a wide margin; bounds the work spent on junk.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Tolerated clock difference between the issuing and the validating machine.
const LEEWAY_SECONDS: u64 = 5;

/// Why a token was refused; the text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm {0:?} is not accepted (tokens are signed with EdDSA)")]
    AlgorithmNotAllowed(String),
    #[error("token has no key id (kid)")]
    MissingKeyId,
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing claim {0}")]
    MissingClaim(String),
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

pub struct TokenService {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Validation,
}

impl TokenService {
    pub fn new(keys: Arc<KeyRing>, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            validation,
        }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A token for `user_id`, valid for the configured time-to-live.
    pub fn issue(&self, user_id: &str, email: &EmailAddress) -> anyhow::Result<IssuedToken> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user_id.to_owned(),
            email: email.as_str().to_owned(),
            iat: now,
            exp: now.saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let key = self.keys.signing_key();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding_key())?;
        Ok(IssuedToken { token, claims })
    }

    /// The token's claims when it is ours, intact, current and meant for our audience.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        // Checked on the raw header so that algorithms the JWT library does not even know
        // (such as "none") get a precise reason.
        let algorithm = raw_algorithm(token)?;
        if algorithm != ALGORITHM {
            return Err(TokenError::AlgorithmNotAllowed(algorithm));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self
            .keys
            .verification_key(&kid)
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key.decoding_key(), &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.into_kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
                ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed(algorithm),
                _ => TokenError::Malformed,
            })
    }
}

/// The `alg` of the token's JOSE header, before any other parsing.
fn raw_algorithm(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    header
        .get("alg")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or(TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use contracts::claims::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
    use jsonwebtoken::EncodingKey;

    fn service() -> TokenService {
        let keys = Arc::new(KeyRing::single(SigningKey::generate()));
        TokenService::new(
            keys,
            DEFAULT_ISSUER,
            DEFAULT_AUDIENCE,
            Duration::from_secs(3600),
        )
    }

    fn email() -> EmailAddress {
        EmailAddress::parse("alice@example.com").unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn issued_tokens_validate_and_carry_the_claims() {
        let service = service();
        let issued = service.issue("user-1", &email()).unwrap();
        let claims = service.validate(&issued.token).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.email, "alice@example.com");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.iss, DEFAULT_ISSUER);
        assert_eq!(claims.aud, DEFAULT_AUDIENCE);
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(
            header.kid.as_deref(),
            Some(service.keys().signing_key().kid.as_str())
        );
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let ours = service();
        let theirs = service();
        let token = theirs.issue("user-1", &email()).unwrap().token;
        assert_eq!(ours.validate(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_token_claiming_our_kid_but_signed_elsewhere_has_a_bad_signature() {
        let ours = service();
        let theirs = SigningKey::generate();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ours.keys().signing_key().kid.clone());
        let claims = ours.issue("user-1", &email()).unwrap().claims;
        let token = jsonwebtoken::encode(&header, &claims, theirs.encoding_key()).unwrap();
        assert_eq!(ours.validate(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn unsigned_and_symmetric_tokens_are_refused() {
        let service = service();
        let claims = service.issue("user-1", &email()).unwrap().claims;
        let payload = b64(&serde_json::to_vec(&claims).unwrap());
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(
            service.validate(&none),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );
        let public_pem = &service
            .keys()
            .signing_key()
            .verification_key()
            .public_key_pem;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(service.keys().signing_key().kid.clone());
        let hs256 = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            service.validate(&hs256),
            Err(TokenError::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn junk_is_malformed() {
        let service = service();
        for junk in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "###.###.###"] {
            assert_eq!(service.validate(junk), Err(TokenError::Malformed), "{junk}");
        }
        assert_eq!(
            service.validate(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_token_without_kid_is_refused() {
        let service = service();
        let claims = service.issue("user-1", &email()).unwrap().claims;
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            service.keys().signing_key().encoding_key(),
        )
        .unwrap();
        assert_eq!(service.validate(&token), Err(TokenError::MissingKeyId));
    }
}
