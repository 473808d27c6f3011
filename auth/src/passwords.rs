//! Password hashing with argon2id, off the async runtime.
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the blocking pool behind a
//! semaphore: a burst of logins queues instead of allocating `memory_kib` per request without bound.
//! Logins for unknown emails verify against a dummy hash so they take as long as a wrong password.

use crate::domain::Password;
use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashingParams {
    /// OWASP's recommended minimum for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashingParams {
    /// Cheap parameters for test suites only: still argon2id, just fast in a debug build.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests() -> Self {
        Self {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Builds the hasher and computes the dummy hash (one full hash, done on the blocking pool).
    pub async fn new(params: HashingParams) -> anyhow::Result<Self> {
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                None,
            )
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters {params:?}: {e}"))?,
        );
        // Two concurrent hashes per core keeps the cores busy without unbounded memory.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut hasher = Self {
            argon2,
            permits: Arc::new(Semaphore::new(cores * 2)),
            dummy_hash: Arc::from(""),
        };
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let dummy_password = SecretString::from(base64_of(&random));
        hasher.dummy_hash = Arc::from(hasher.hash_secret(dummy_password).await?);
        Ok(hasher)
    }

    /// The PHC string (`$argon2id$v=19$m=...`) to store for `password`.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        self.hash_secret(SecretString::from(password.expose()))
            .await
    }

    /// Whether `password` matches `stored` (a PHC string). With no stored hash (unknown account)
    /// it verifies against the dummy hash and returns `false`, taking the same time.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<&str>,
    ) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let argon2 = self.argon2.clone();
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let matched = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let parsed = PasswordHash::new(&hash).context("stored password hash is malformed")?;
            Ok(argon2
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .context("password verification task failed")??;
        Ok(known && matched)
    }

    async fn hash_secret(&self, password: SecretString) -> anyhow::Result<String> {
        let argon2 = self.argon2.clone();
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            let hash = argon2
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
            Ok(hash.to_string())
        })
        .await
        .context("password hashing task failed")?
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(text: &str) -> Password {
        Password::parse(SecretString::from(text)).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = PasswordHasher::new(HashingParams::for_tests())
            .await
            .unwrap();
        let first = hasher.hash(&password("correct horse")).await.unwrap();
        let second = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(
            first.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{first}"
        );
        assert_ne!(first, second, "salt must differ per hash");
        assert!(
            hasher
                .verify(SecretString::from("correct horse"), Some(&first))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(SecretString::from("wrong horse"), Some(&first))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let hasher = PasswordHasher::new(HashingParams::for_tests())
            .await
            .unwrap();
        assert!(hasher.dummy_hash.starts_with("$argon2id$"));
        assert!(
            !hasher
                .verify(SecretString::from("anything"), None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn production_parameters_follow_owasp() {
        let params = HashingParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19456, 2, 1)
        );
    }
}
