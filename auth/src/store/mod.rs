//! The persistence seam: accounts and signing keys behind traits, so the service does not know
//! which database it talks to. [`MySqlStore`] is the implementation today; a SQLite one can be
//! added for the all-in-one mode (the queries stick to portable SQL for that reason).

mod mysql;

pub use mysql::MySqlStore;

use crate::domain::EmailAddress;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// An account as stored.
#[derive(Debug, Clone)]
pub struct User {
    /// UUID, in its hyphenated text form.
    pub id: String,
    pub email: EmailAddress,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored signing key. Generations only grow; the newest one signs.
#[derive(Clone)]
pub struct NewSigningKey {
    pub generation: i64,
    pub kid: String,
    pub algorithm: String,
    pub private_key_pem: SecretString,
    pub public_key_pem: String,
    pub created_at: DateTime<Utc>,
}

pub type StoredSigningKey = NewSigningKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the row: the email is taken, or the key generation exists.
    #[error("a row with the same unique value already exists")]
    Conflict,
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(error),
        }
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts the account; [`StoreError::Conflict`] when the email is already registered.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    async fn find_user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every stored key, any order.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Inserts the key; [`StoreError::Conflict`] when its generation (or kid) already exists.
    async fn insert_signing_key(&self, key: &NewSigningKey) -> Result<(), StoreError>;
}
