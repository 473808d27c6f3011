//! MySQL 8 / MariaDB 10.11 implementation of the store, with runtime-checked queries (there is no
//! database at build time) and the schema from `auth/migrations/mysql/`.

use super::{NewSigningKey, SigningKeyStore, StoreError, StoredSigningKey, User, UserStore};
use crate::domain::EmailAddress;
use anyhow::Context;
use async_trait::async_trait;
use backon::{BackoffBuilder, Retryable};
use secrecy::ExposeSecret;
use sqlx::Row;
use sqlx::migrate::MigrateDatabase;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use std::time::Duration;

/// MySQL's "Unknown database" error number.
const ER_BAD_DB_ERROR: u16 = 1049;
/// How long a starting instance waits for another one's migrations.
const MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
}

impl MySqlStore {
    /// Connects to `url`, retrying with `backoff` while the server is not reachable yet (each
    /// failure is logged). A missing database is created when the account is allowed to.
    pub async fn connect(url: &str, backoff: impl BackoffBuilder) -> anyhow::Result<Self> {
        let options: MySqlConnectOptions = url
            .parse()
            .context("DATABASE_URL is not a valid MySQL URL")?;
        let pool_options = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5));
        let attempt = || async {
            match pool_options.clone().connect_with(options.clone()).await {
                Err(sqlx::Error::Database(error))
                    if error
                        .try_downcast_ref::<MySqlDatabaseError>()
                        .is_some_and(|e| e.number() == ER_BAD_DB_ERROR) =>
                {
                    tracing::info!("the database does not exist yet; creating it");
                    sqlx::MySql::create_database(url).await?;
                    pool_options.clone().connect_with(options.clone()).await
                }
                other => other,
            }
        };
        let pool = attempt
            .retry(backoff)
            .notify(|error, delay| {
                tracing::warn!(%error, retry_in = ?delay, "database not reachable yet; retrying");
            })
            .await
            .context("connecting to the database")?;
        Ok(Self { pool })
    }

    /// Applies the pending migrations. Replicas starting together take turns: sqlx's own lock
    /// (`GET_LOCK(name, -1)`) is a no-op on MariaDB, which returns NULL for a negative timeout,
    /// so a named lock with a finite timeout is held around the run.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut lock = self.pool.acquire().await.context("connecting to migrate")?;
        let acquired: Option<i64> =
            sqlx::query_scalar("SELECT GET_LOCK(CONCAT('auth-migrate:', LEFT(DATABASE(), 48)), ?)")
                .bind(MIGRATION_LOCK_TIMEOUT.as_secs())
                .fetch_one(&mut *lock)
                .await
                .context("taking the migration lock")?;
        if acquired != Some(1) {
            anyhow::bail!(
                "another instance held the migration lock for over {MIGRATION_LOCK_TIMEOUT:?}"
            );
        }
        let result = sqlx::migrate!("migrations/mysql")
            .run(&self.pool)
            .await
            .context("applying database migrations");
        // Released explicitly; the server would also drop it with the connection.
        let _ = sqlx::query("SELECT RELEASE_LOCK(CONCAT('auth-migrate:', LEFT(DATABASE(), 48)))")
            .execute(&mut *lock)
            .await;
        result
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

#[async_trait]
impl UserStore for MySqlStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, created_at, updated_at FROM users WHERE email = ?",
        )
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(User {
                id: row.try_get("id")?,
                email: EmailAddress::from_stored(decode_utf8(row.try_get("email")?)?),
                password_hash: row.try_get("password_hash")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A binary-collated text column (MySQL reports those as bytes) back to text.
fn decode_utf8(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("stored email is not UTF-8".into()))
}

#[async_trait]
impl SigningKeyStore for MySqlStore {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows = sqlx::query(super::SELECT_SIGNING_KEYS)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(super::signing_key_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn insert_signing_key(&self, key: &NewSigningKey) -> Result<(), StoreError> {
        sqlx::query(super::INSERT_SIGNING_KEY)
            .bind(key.generation)
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(key.private_key_pem.expose_secret())
            .bind(&key.public_key_pem)
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
