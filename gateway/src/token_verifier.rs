//! Bearer tokens: verified locally with auth's public keys, so no request pays a network hop.
//!
//! The keys come from auth's `GetVerificationKeys` and are cached by `kid`. A token signed with
//! an unknown `kid` (auth rotated its key) triggers one refetch, at most once per
//! `min_refresh_interval` so a flood of forged `kid`s cannot hammer auth. Only EdDSA is accepted,
//! and `iss`, `aud` and `exp` are always checked.
//!
//! A token that verified is remembered for a minute (bounded by count and by its own `exp`), so a
//! client polling with the same token pays a map lookup instead of a signature check each time.
//! Refreshed keys clear that memory, so a withdrawn key stops being honoured at the refresh; a
//! verification that raced the refresh is not remembered (each key set has a generation).
//!
//! While auth is unreachable the cached keys keep verifying, for at most [`KEYS_TRUST_LIMIT`]
//! after they were fetched; past it, requests get 503 until auth answers again. Clocks may differ
//! by [`LEEWAY_SECONDS`] (auth allows the same).

use crate::auth_client::{Accounts, AccountsError, VerificationKeys};
use contracts::claims::Claims;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// After a failed fetch, try again this soon (auth may just be restarting).
const RETRY_AFTER_FAILED_FETCH: Duration = Duration::from_secs(1);
/// Cached keys older than this are refreshed in the background, so revoked keys fade out.
const KEYS_MAX_AGE: Duration = Duration::from_secs(300);
/// How long keys fetched from auth are trusted without a successful refresh (auth unreachable).
pub const KEYS_TRUST_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Clock skew tolerated on `exp` (and `nbf`), as auth tolerates it.
pub const LEEWAY_SECONDS: u64 = 5;
/// How long a verified token is remembered, and how many are (a few hundred bytes each).
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(60);
const VERIFIED_TOKENS_MAX: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is not acceptable; the reason is safe to show the client.
    #[error("{0}")]
    Rejected(String),
    /// No key could be fetched to check the token.
    #[error("verification keys unavailable: {0}")]
    KeysUnavailable(String),
}

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    issuer: String,
    audience: String,
    fetched_at: Instant,
    /// Which fetch this is: a verification remembers its token only if no newer set replaced it.
    generation: u64,
}

pub struct TokenVerifier {
    accounts: Arc<dyn Accounts>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch was attempted and whether it succeeded; held across the fetch so
    /// concurrent requests with an unknown `kid` wait for one fetch instead of each making one.
    last_fetch: Mutex<Option<(Instant, bool)>>,
    min_refresh_interval: Duration,
    /// Tokens that verified recently, by their full text.
    verified: moka::sync::Cache<Box<str>, Claims>,
    generations: std::sync::atomic::AtomicU64,
    trust_limit: Duration,
}

impl TokenVerifier {
    pub fn new(accounts: Arc<dyn Accounts>, min_refresh_interval: Duration) -> Self {
        Self {
            accounts,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            min_refresh_interval,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS_MAX)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build(),
            generations: Default::default(),
            trust_limit: KEYS_TRUST_LIMIT,
        }
    }

    #[cfg(test)]
    fn with_trust_limit(mut self, limit: Duration) -> Self {
        self.trust_limit = limit;
        self
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.keys.read().expect("not poisoned").clone()
    }

    /// The cached keys while they may still be trusted; stale ones are dropped, and with them the
    /// tokens they verified.
    fn trusted(&self) -> Option<Arc<KeySet>> {
        let keys = self.cached()?;
        if keys.fetched_at.elapsed() <= self.trust_limit {
            return Some(keys);
        }
        let mut cached = self.keys.write().expect("not poisoned");
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, &keys)) {
            tracing::warn!(
                limit = ?self.trust_limit,
                "verification keys not refreshed within their trust limit; dropping them"
            );
            *cached = None;
            self.verified.invalidate_all();
        }
        None
    }

    /// Fetches the keys unless a fetch happened too recently. Returns the freshest key set.
    async fn refresh(&self) -> Result<Option<Arc<KeySet>>, TokenError> {
        let mut last = self.last_fetch.lock().await;
        if let Some((at, succeeded)) = *last {
            let wait = if succeeded {
                self.min_refresh_interval
            } else {
                RETRY_AFTER_FAILED_FETCH
            };
            if at.elapsed() < wait {
                return match self.trusted() {
                    Some(keys) => Ok(Some(keys)),
                    None if succeeded => Ok(None),
                    None => Err(TokenError::KeysUnavailable(
                        "the last fetch failed moments ago".into(),
                    )),
                };
            }
        }
        let fetched = self.accounts.verification_keys().await;
        *last = Some((Instant::now(), fetched.is_ok()));
        match fetched {
            Ok(keys) => {
                let generation = self
                    .generations
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                let set = Arc::new(key_set(keys, generation));
                *self.keys.write().expect("not poisoned") = Some(set.clone());
                self.verified.invalidate_all();
                Ok(Some(set))
            }
            Err(
                error @ (AccountsError::Unavailable(_)
                | AccountsError::Internal(_)
                | AccountsError::CircuitOpen { .. }),
            ) => {
                let reason = error.to_string();
                match self.trusted() {
                    // Keep trusting the keys we have while auth is away, within the limit.
                    Some(keys) => {
                        tracing::warn!(%reason, "could not refresh verification keys; keeping the cached ones");
                        Ok(Some(keys))
                    }
                    None => Err(TokenError::KeysUnavailable(reason)),
                }
            }
            Err(other) => Err(TokenError::KeysUnavailable(other.to_string())),
        }
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Claims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            if claims.exp > chrono::Utc::now().timestamp() {
                return Ok(claims);
            }
            self.verified.invalidate(token);
        }
        let (claims, generation) = self.verify_signed(token).await?;
        self.remember(token, &claims, generation);
        Ok(claims)
    }

    /// Remembers a token verified with key set `generation`, unless newer keys replaced that set
    /// meanwhile (the refresh that installed them cleared the memory, perhaps just before this).
    fn remember(&self, token: &str, claims: &Claims, generation: u64) {
        self.verified.insert(token.into(), claims.clone());
        if self.cached().map(|keys| keys.generation) != Some(generation) {
            self.verified.invalidate(token);
        }
    }

    /// Checks the signature and claims; returns the claims and the generation of the keys used.
    async fn verify_signed(self: &Arc<Self>, token: &str) -> Result<(Claims, u64), TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Rejected("malformed token".into()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Rejected(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();

        let mut keys = match self.trusted() {
            Some(keys) => keys,
            None => self.refresh().await?.ok_or_else(|| {
                TokenError::KeysUnavailable("auth published no verification keys".into())
            })?,
        };
        if !keys.keys.contains_key(&kid) && !kid.is_empty() {
            // Possibly a rotated key: look again (rate-limited).
            if let Some(fresh) = self.refresh().await? {
                keys = fresh;
            }
        } else if keys.fetched_at.elapsed() > KEYS_MAX_AGE {
            let verifier = Arc::clone(self);
            tokio::spawn(async move {
                let _ = verifier.refresh().await;
            });
        }
        keys.verify(token, &kid)
            .map(|claims| (claims, keys.generation))
    }
}

fn key_set(fetched: VerificationKeys, generation: u64) -> KeySet {
    let mut keys = HashMap::new();
    for key in fetched.keys {
        if key.algorithm != "EdDSA" {
            tracing::warn!(kid = %key.kid, algorithm = %key.algorithm, "ignoring a verification key of an unsupported algorithm");
            continue;
        }
        match DecodingKey::from_ed_pem(key.public_key_pem.as_bytes()) {
            Ok(decoding) => {
                keys.insert(key.kid, decoding);
            }
            Err(e) => {
                tracing::warn!(kid = %key.kid, error = %e, "ignoring an unreadable verification key")
            }
        }
    }
    let or_default = |value: String, default: &str| {
        if value.is_empty() {
            default.to_owned()
        } else {
            value
        }
    };
    KeySet {
        keys,
        issuer: or_default(fetched.issuer, contracts::claims::DEFAULT_ISSUER),
        audience: or_default(fetched.audience, contracts::claims::DEFAULT_AUDIENCE),
        fetched_at: Instant::now(),
        generation,
    }
}

impl KeySet {
    fn verify(&self, token: &str, kid: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.leeway = LEEWAY_SECONDS;
        // A token without a kid is tried against every key (there is usually one).
        let candidates: Vec<&DecodingKey> = if kid.is_empty() {
            self.keys.values().collect()
        } else {
            self.keys.get(kid).into_iter().collect()
        };
        if candidates.is_empty() {
            return Err(TokenError::Rejected(
                "token signed with an unknown key".into(),
            ));
        }
        let mut last = TokenError::Rejected("invalid token".into());
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = TokenError::Rejected(reason(e.kind()));
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

/// A short reason that is safe to show the client.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidIssuer => "token from an unknown issuer",
        ErrorKind::InvalidAudience => "token meant for another audience",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::InvalidAlgorithm => "token signed with an unaccepted algorithm",
        _ => "malformed token",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_client::{IssuedToken, RegisteredUser, VerificationKey};
    use async_trait::async_trait;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
    use jsonwebtoken::{EncodingKey, Header};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Key {
        kid: String,
        encoding: EncodingKey,
        public_pem: String,
    }

    fn key(kid: &str) -> Key {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let private = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        Key {
            kid: kid.into(),
            encoding: EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            public_pem: signing
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    }

    /// Serves fixed keys and counts how often they were fetched.
    struct FixedKeys {
        published: std::sync::Mutex<Vec<VerificationKey>>,
        fetches: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Accounts for FixedKeys {
        async fn register(&self, _: &str, _: &str) -> Result<RegisteredUser, AccountsError> {
            unreachable!("not used by the verifier")
        }
        async fn login(&self, _: &str, _: &str, _: &str) -> Result<IssuedToken, AccountsError> {
            unreachable!("not used by the verifier")
        }
        async fn verification_keys(&self) -> Result<VerificationKeys, AccountsError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(AccountsError::Unavailable("down".into()));
            }
            Ok(VerificationKeys {
                keys: self.published.lock().unwrap().clone(),
                issuer: contracts::claims::DEFAULT_ISSUER.into(),
                audience: contracts::claims::DEFAULT_AUDIENCE.into(),
            })
        }
    }

    fn published(keys: &[&Key]) -> Vec<VerificationKey> {
        keys.iter()
            .map(|k| VerificationKey {
                kid: k.kid.clone(),
                algorithm: "EdDSA".into(),
                public_key_pem: k.public_pem.clone(),
            })
            .collect()
    }

    fn claims(exp_offset: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "user-1".into(),
            email: "a@example.com".into(),
            iat: now,
            exp: now + exp_offset,
            iss: contracts::claims::DEFAULT_ISSUER.into(),
            aud: contracts::claims::DEFAULT_AUDIENCE.into(),
            jti: "t1".into(),
        }
    }

    fn sign(key: &Key, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn verifier(keys: &[&Key]) -> (Arc<TokenVerifier>, Arc<FixedKeys>) {
        let accounts = Arc::new(FixedKeys {
            published: std::sync::Mutex::new(published(keys)),
            fetches: AtomicUsize::new(0),
            down: Default::default(),
        });
        let verifier = Arc::new(TokenVerifier::new(
            accounts.clone(),
            Duration::from_secs(60),
        ));
        (verifier, accounts)
    }

    #[tokio::test]
    async fn valid_tokens_verify_with_one_fetch_for_many_requests() {
        let k1 = key("k1");
        let (verifier, accounts) = verifier(&[&k1]);
        for _ in 0..5 {
            let got = verifier.verify(&sign(&k1, &claims(600))).await.unwrap();
            assert_eq!(got.sub, "user-1");
        }
        assert_eq!(accounts.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_and_foreign_tokens_are_rejected_with_a_reason() {
        let k1 = key("k1");
        let (verifier, _) = verifier(&[&k1]);
        let expired = verifier
            .verify(&sign(&k1, &claims(-3600)))
            .await
            .unwrap_err();
        assert_eq!(expired, TokenError::Rejected("token expired".into()));

        let mut wrong_audience = claims(600);
        wrong_audience.aud = "someone-else".into();
        let error = verifier
            .verify(&sign(&k1, &wrong_audience))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("token meant for another audience".into())
        );

        let mut wrong_issuer = claims(600);
        wrong_issuer.iss = "evil".into();
        let error = verifier
            .verify(&sign(&k1, &wrong_issuer))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("token from an unknown issuer".into())
        );

        // Signed by a key that claims k1's kid.
        let forger = Key {
            kid: "k1".into(),
            ..key("forger")
        };
        let error = verifier
            .verify(&sign(&forger, &claims(600)))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("invalid token signature".into())
        );

        let error = verifier.verify("not.a.token").await.unwrap_err();
        assert_eq!(error, TokenError::Rejected("malformed token".into()));
    }

    #[tokio::test]
    async fn symmetric_tokens_are_refused_whatever_their_signature() {
        let k1 = key("k1");
        let (verifier, _) = verifier(&[&k1]);
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(600),
            &EncodingKey::from_secret(k1.public_pem.as_bytes()),
        )
        .unwrap();
        let error = verifier.verify(&hs).await.unwrap_err();
        assert!(matches!(error, TokenError::Rejected(r) if r.contains("HS256")));
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_and_learns_a_rotated_key() {
        let k1 = key("k1");
        let k2 = key("k2");
        let (verifier, accounts) = verifier(&[&k1]);
        verifier.verify(&sign(&k1, &claims(600))).await.unwrap();
        *accounts.published.lock().unwrap() = published(&[&k1, &k2]);
        // Within the refresh interval an unknown kid does not refetch...
        let error = verifier.verify(&sign(&k2, &claims(600))).await.unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("token signed with an unknown key".into())
        );
        assert_eq!(accounts.fetches.load(Ordering::SeqCst), 1);

        // ...after it, one refetch learns the new key.
        let fast = Arc::new(TokenVerifier::new(
            accounts.clone(),
            Duration::from_millis(50),
        ));
        fast.verify(&sign(&k1, &claims(600))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let got = fast.verify(&sign(&k2, &claims(600))).await.unwrap();
        assert_eq!(got.jti, "t1");
        // A flood of unknown kids costs at most one fetch per interval.
        let stranger = key("k3");
        for _ in 0..20 {
            assert!(fast.verify(&sign(&stranger, &claims(600))).await.is_err());
        }
        assert!(accounts.fetches.load(Ordering::SeqCst) <= 4);
    }

    #[tokio::test]
    async fn auth_down_without_cached_keys_is_unavailable_not_rejected() {
        let k1 = key("k1");
        let (verifier, accounts) = verifier(&[&k1]);
        accounts.down.store(true, Ordering::SeqCst);
        let error = verifier.verify(&sign(&k1, &claims(600))).await.unwrap_err();
        assert!(matches!(error, TokenError::KeysUnavailable(_)));
        // Auth comes back: after the short failure back-off the keys load.
        accounts.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(RETRY_AFTER_FAILED_FETCH + Duration::from_millis(50)).await;
        verifier.verify(&sign(&k1, &claims(600))).await.unwrap();
    }
    #[tokio::test]
    async fn verified_tokens_are_remembered_and_failures_are_not() {
        let k1 = key("k1");
        let (verifier, _) = verifier(&[&k1]);
        let good = sign(&k1, &claims(600));
        verifier.verify(&good).await.unwrap();
        assert!(verifier.verified.contains_key(good.as_str()));
        let expired = sign(&k1, &claims(-3600));
        assert!(verifier.verify(&expired).await.is_err());
        assert!(!verifier.verified.contains_key(expired.as_str()));
    }

    #[tokio::test]
    async fn a_remembered_token_past_its_expiry_is_checked_again_and_refused() {
        let k1 = key("k1");
        let (verifier, _) = verifier(&[&k1]);
        let stale = claims(-3600);
        let token = sign(&k1, &stale);
        verifier.verified.insert(token.as_str().into(), stale);
        let error = verifier.verify(&token).await.unwrap_err();
        assert_eq!(error, TokenError::Rejected("token expired".into()));
        assert!(!verifier.verified.contains_key(token.as_str()));
    }

    #[tokio::test]
    async fn clocks_may_differ_by_five_seconds_not_a_minute() {
        let k1 = key("k1");
        let (verifier, _) = verifier(&[&k1]);
        verifier.verify(&sign(&k1, &claims(-2))).await.unwrap();
        let error = verifier.verify(&sign(&k1, &claims(-30))).await.unwrap_err();
        assert_eq!(error, TokenError::Rejected("token expired".into()));
    }

    #[tokio::test]
    async fn a_verification_racing_a_key_refresh_is_not_remembered() {
        let k1 = key("k1");
        let k2 = key("k2");
        let (_, accounts) = verifier(&[&k1]);
        let verifier = Arc::new(TokenVerifier::new(
            accounts.clone(),
            Duration::from_millis(50),
        ));
        let old = sign(&k1, &claims(600));
        // The check completes with the old keys...
        let (claims, generation) = verifier.verify_signed(&old).await.unwrap();
        // ...auth withdraws k1 and the keys are refreshed before the token is remembered...
        *accounts.published.lock().unwrap() = published(&[&k2]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        verifier.refresh().await.unwrap();
        verifier.remember(&old, &claims, generation);
        // ...so the token is not put back into the memory the refresh cleared.
        assert!(!verifier.verified.contains_key(old.as_str()));
        let error = verifier.verify(&old).await.unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("token signed with an unknown key".into())
        );
    }

    #[tokio::test]
    async fn cached_keys_stop_verifying_when_auth_stays_down_past_the_trust_limit() {
        let k1 = key("k1");
        let (_, accounts) = verifier(&[&k1]);
        let verifier = Arc::new(
            TokenVerifier::new(accounts.clone(), Duration::from_millis(10))
                .with_trust_limit(Duration::from_millis(200)),
        );
        let token = sign(&k1, &claims(600));
        verifier.verify(&token).await.unwrap();
        accounts.down.store(true, Ordering::SeqCst);
        // Within the limit the cached keys still verify (a fresh token: no remembered result).
        let fresh = sign(
            &k1,
            &Claims {
                jti: "t2".into(),
                ..claims(600)
            },
        );
        verifier.verify(&fresh).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = sign(
            &k1,
            &Claims {
                jti: "t3".into(),
                ..claims(600)
            },
        );
        let error = verifier.verify(&later).await.unwrap_err();
        assert!(matches!(error, TokenError::KeysUnavailable(_)), "{error:?}");
        // Auth is back: keys load again.
        accounts.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(RETRY_AFTER_FAILED_FETCH + Duration::from_millis(50)).await;
        verifier.verify(&later).await.unwrap();
    }

    #[tokio::test]
    async fn refreshed_keys_forget_remembered_tokens_so_a_withdrawn_key_stops_working() {
        let k1 = key("k1");
        let k2 = key("k2");
        let (_, accounts) = verifier(&[&k1]);
        let verifier = Arc::new(TokenVerifier::new(
            accounts.clone(),
            Duration::from_millis(50),
        ));
        let old = sign(&k1, &claims(600));
        verifier.verify(&old).await.unwrap();
        // Auth withdraws k1; a token with the new kid triggers the refresh.
        *accounts.published.lock().unwrap() = published(&[&k2]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        verifier.verify(&sign(&k2, &claims(600))).await.unwrap();
        let error = verifier.verify(&old).await.unwrap_err();
        assert_eq!(
            error,
            TokenError::Rejected("token signed with an unknown key".into())
        );
    }
}
