//! Ed25519 signing keys: where they come from and how every replica ends up with the same one.
//!
//! An operator may supply the key (`SIGNING_KEY_PEM`, PKCS#8 PEM, e.g. from a Kubernetes Secret);
//! then it is the only key and the database is not consulted. Otherwise keys live in the
//! `signing_keys` table, one row per *generation*: the newest generation signs, every stored
//! generation verifies (so a rotation does not invalidate tokens that are still live). On a fresh
//! database each starting replica generates a candidate and inserts it as generation 1; the primary
//! key lets exactly one insert win, and everyone re-reads the winner.
//!
//! Key ids (`kid`) are RFC 7638 JWK thumbprints of the public key, so the same key always has the
//! same id wherever it is loaded.

use crate::store::{NewSigningKey, SigningKeyStore, StoreError};
use anyhow::Context;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters,
    OctetKeyPairType, ThumbprintHash,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// The JWS algorithm name of every key here.
pub const ALGORITHM: &str = "EdDSA";

/// A private key that signs tokens.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    private_key_pem: SecretString,
    public: VerificationKey,
}

/// A public key that verifies tokens signed by the key with the same `kid`.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    /// SubjectPublicKeyInfo PEM, as published by `GetVerificationKeys`.
    pub public_key_pem: String,
    decoding: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
#[error("not a PKCS#8 PEM Ed25519 private key: {0}")]
pub struct KeyFormatError(String);

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
        rand::rng().fill_bytes(&mut seed);
        Self::from_dalek(&ed25519_dalek::SigningKey::from_bytes(&seed))
            .expect("a freshly generated Ed25519 key encodes")
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519`
    /// writes). Literal `\n` sequences are accepted too, for PEMs squeezed onto one line.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyFormatError> {
        let pem = if pem.contains('\n') {
            pem.trim().to_owned()
        } else {
            pem.trim().replace("\\n", "\n")
        };
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| KeyFormatError(e.to_string()))?;
        Self::from_dalek(&key)
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Result<Self, KeyFormatError> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyFormatError(e.to_string()))?;
        let private_key_pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyFormatError(e.to_string()))?;
        let public = VerificationKey::from_dalek(&key.verifying_key())?;
        Ok(Self {
            kid: public.kid.clone(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            private_key_pem: SecretString::from(private_key_pem.as_str()),
            public,
        })
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn verification_key(&self) -> &VerificationKey {
        &self.public
    }

    pub fn private_key_pem(&self) -> &SecretString {
        &self.private_key_pem
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    fn from_dalek(key: &ed25519_dalek::VerifyingKey) -> Result<Self, KeyFormatError> {
        let public_key_pem = key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyFormatError(e.to_string()))?;
        Ok(Self {
            kid: thumbprint(key)?,
            public_key_pem,
            decoding: DecodingKey::from_ed_der(key.as_bytes()),
        })
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// RFC 7638 thumbprint (SHA-256, base64url) of the key's JWK.
fn thumbprint(key: &ed25519_dalek::VerifyingKey) -> Result<String, KeyFormatError> {
    use base64::Engine;
    let jwk = Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes()),
        }),
    };
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| KeyFormatError(e.to_string()))
}

/// The key that signs plus every key that verifies.
#[derive(Clone, Debug)]
pub struct KeyRing {
    signing: SigningKey,
    verifying: Vec<VerificationKey>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring holding one key, which both signs and verifies.
    pub fn single(key: SigningKey) -> Self {
        Self {
            verifying: vec![key.public.clone()],
            signing: key,
        }
    }

    /// The operator's key when given, else the stored keys (generating the first one if needed).
    pub async fn load(
        store: &dyn SigningKeyStore,
        operator_key: Option<&SigningKey>,
    ) -> anyhow::Result<Self> {
        if let Some(key) = operator_key {
            tracing::info!(kid = %key.kid, "signing with the key from SIGNING_KEY_PEM");
            return Ok(Self::single(key.clone()));
        }
        let mut stored = store.signing_keys().await?;
        if stored.is_empty() {
            let candidate = SigningKey::generate();
            let row = NewSigningKey {
                generation: 1,
                kid: candidate.kid.clone(),
                algorithm: ALGORITHM.to_owned(),
                private_key_pem: candidate.private_key_pem.clone(),
                public_key_pem: candidate.public.public_key_pem.clone(),
                created_at: chrono::Utc::now(),
            };
            match store.insert_signing_key(&row).await {
                Ok(()) => tracing::info!(kid = %candidate.kid, "generated the first signing key"),
                // Another replica started at the same moment and won; its key is the one to use.
                Err(StoreError::Conflict) => {
                    tracing::info!("another instance generated the signing key first")
                }
                Err(other) => return Err(other).context("storing the generated signing key"),
            }
            stored = store.signing_keys().await?;
        }
        let newest = stored
            .iter()
            .max_by_key(|key| key.generation)
            .context("no signing key stored after generating one")?;
        let signing = SigningKey::from_pkcs8_pem(newest.private_key_pem.expose_secret())
            .with_context(|| format!("stored signing key generation {}", newest.generation))?;
        let verifying = stored
            .iter()
            .map(|key| {
                SigningKey::from_pkcs8_pem(key.private_key_pem.expose_secret())
                    .map(|k| k.public)
                    .with_context(|| format!("stored signing key generation {}", key.generation))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(kid = %signing.kid, generation = newest.generation, "signing key loaded");
        Ok(Self { signing, verifying })
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verification_keys(&self) -> &[VerificationKey] {
        &self.verifying
    }

    pub fn verification_key(&self, kid: &str) -> Option<&VerificationKey> {
        self.verifying.iter().find(|key| key.kid == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_pkcs8_pem_with_a_stable_kid() {
        let key = SigningKey::generate();
        let pem = key.private_key_pem().expose_secret().to_owned();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let reloaded = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(reloaded.kid, key.kid);
        assert_eq!(
            reloaded.verification_key().public_key_pem,
            key.verification_key().public_key_pem
        );
        assert!(
            key.verification_key()
                .public_key_pem
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        // A base64url SHA-256 digest.
        assert_eq!(key.kid.len(), 43);
    }

    #[test]
    fn an_openssl_generated_key_is_accepted_even_on_one_line() {
        // `openssl genpkey -algorithm ed25519` output (PKCS#8 v1).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILwOT+DavzBSjqtEFAYwpC0ddvHgzbprT4Mjzz1aK9qW\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pkcs8_pem(pem).unwrap();
        let one_line = pem.replace('\n', "\\n");
        assert_eq!(SigningKey::from_pkcs8_pem(&one_line).unwrap().kid, key.kid);
    }

    /// An in-memory key table where another replica always wins the race for generation 1.
    struct RacingStore {
        rows: std::sync::Mutex<Vec<NewSigningKey>>,
        winner: SigningKey,
    }

    #[async_trait::async_trait]
    impl SigningKeyStore for RacingStore {
        async fn signing_keys(&self) -> Result<Vec<NewSigningKey>, StoreError> {
            Ok(self.rows.lock().unwrap().clone())
        }

        async fn insert_signing_key(&self, key: &NewSigningKey) -> Result<(), StoreError> {
            let mut rows = self.rows.lock().unwrap();
            // The other replica's insert lands between our read and our insert.
            rows.push(NewSigningKey {
                kid: self.winner.kid.clone(),
                private_key_pem: self.winner.private_key_pem.clone(),
                public_key_pem: self.winner.public.public_key_pem.clone(),
                ..key.clone()
            });
            Err(StoreError::Conflict)
        }
    }

    #[tokio::test]
    async fn losing_the_race_for_the_first_key_adopts_the_winners_key() {
        let store = RacingStore {
            rows: std::sync::Mutex::new(Vec::new()),
            winner: SigningKey::generate(),
        };
        let ring = KeyRing::load(&store, None).await.unwrap();
        assert_eq!(ring.signing_key().kid, store.winner.kid);
        assert_eq!(ring.verification_keys().len(), 1);
    }

    #[tokio::test]
    async fn the_newest_generation_signs_and_all_verify() {
        let old = SigningKey::generate();
        let new = SigningKey::generate();
        let row = |generation, key: &SigningKey| NewSigningKey {
            generation,
            kid: key.kid.clone(),
            algorithm: ALGORITHM.to_owned(),
            private_key_pem: key.private_key_pem.clone(),
            public_key_pem: key.public.public_key_pem.clone(),
            created_at: chrono::Utc::now(),
        };
        let store = RacingStore {
            rows: std::sync::Mutex::new(vec![row(2, &new), row(1, &old)]),
            winner: SigningKey::generate(),
        };
        let ring = KeyRing::load(&store, None).await.unwrap();
        assert_eq!(ring.signing_key().kid, new.kid);
        assert!(ring.verification_key(&old.kid).is_some());
        assert!(ring.verification_key(&new.kid).is_some());
    }

    #[tokio::test]
    async fn an_operator_key_bypasses_the_store() {
        let store = RacingStore {
            rows: std::sync::Mutex::new(Vec::new()),
            winner: SigningKey::generate(),
        };
        let operator = SigningKey::generate();
        let ring = KeyRing::load(&store, Some(&operator)).await.unwrap();
        assert_eq!(ring.signing_key().kid, operator.kid);
        assert!(store.rows.lock().unwrap().is_empty());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(SigningKey::from_pkcs8_pem("not a key").is_err());
        // An RSA/EC key or a public key is not an Ed25519 private key.
        let public = SigningKey::generate()
            .verification_key()
            .public_key_pem
            .clone();
        assert!(SigningKey::from_pkcs8_pem(&public).is_err());
    }
}
