//! The persistence seam: accounts and signing keys behind traits, so the service does not know
//! which database it talks to. [`MySqlStore`] serves deployments; [`SqliteStore`] serves the
//! all-in-one mode. [`open`] picks one by the scheme of `DATABASE_URL`.

mod mysql;
mod sqlite;

pub use mysql::MySqlStore;
pub use sqlite::SqliteStore;

use crate::domain::EmailAddress;
use async_trait::async_trait;
use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::sync::Arc;

/// The database engines `DATABASE_URL` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `mysql://` or `mariadb://`: MySQL 8 / MariaDB 10.11.
    MySql,
    /// `sqlite:` (`sqlite://path`, `sqlite:path`, `sqlite::memory:`): a local file.
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
#[error("expected a mysql://, mariadb:// or sqlite: URL")]
pub struct UnsupportedDatabase;

impl DatabaseKind {
    /// The engine named by the URL's scheme.
    pub fn of(url: &str) -> Result<Self, UnsupportedDatabase> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Self::MySql)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(UnsupportedDatabase)
        }
    }
}

/// Both halves of the seam, as one object.
pub trait Store: UserStore + SigningKeyStore {}

impl<T: UserStore + SigningKeyStore> Store for T {}

/// Connects to the database `url` names (waiting for it with `backoff`) and applies the pending
/// migrations of that engine.
pub async fn open(url: &str, backoff: impl BackoffBuilder) -> anyhow::Result<Arc<dyn Store>> {
    match DatabaseKind::of(url)? {
        DatabaseKind::MySql => {
            let store = MySqlStore::connect(url, backoff).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        DatabaseKind::Sqlite => {
            let store = SqliteStore::connect(url, backoff).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
    }
}

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

/// The signing-key queries, identical on MySQL and SQLite.
const SELECT_SIGNING_KEYS: &str = "SELECT generation, kid, algorithm, private_key_pem, public_key_pem, created_at FROM signing_keys";
const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (generation, kid, algorithm, private_key_pem, public_key_pem, created_at) \
     VALUES (?, ?, ?, ?, ?, ?)";

/// A `signing_keys` row of either engine.
fn signing_key_from_row<'r, R>(row: &'r R) -> Result<StoredSigningKey, sqlx::Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredSigningKey {
        generation: row.try_get("generation")?,
        kid: row.try_get("kid")?,
        algorithm: row.try_get("algorithm")?,
        private_key_pem: SecretString::from(row.try_get::<String, _>("private_key_pem")?),
        public_key_pem: row.try_get("public_key_pem")?,
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_scheme_chooses_the_engine() {
        for url in ["mysql://root@db:3306/auth", "mariadb://auth:pw@db/auth"] {
            assert_eq!(DatabaseKind::of(url).unwrap(), DatabaseKind::MySql, "{url}");
        }
        for url in [
            "sqlite://data/auth.db",
            "sqlite:///var/lib/auth.db?mode=rwc",
            "sqlite:auth.db",
            "sqlite::memory:",
        ] {
            assert_eq!(
                DatabaseKind::of(url).unwrap(),
                DatabaseKind::Sqlite,
                "{url}"
            );
        }
        for url in ["postgres://db/auth", "mysql:db", "auth.db", ""] {
            assert!(DatabaseKind::of(url).is_err(), "{url}");
        }
    }
}
