//! SQLite implementation of the store, for the all-in-one mode: one local file (WAL journal, so
//! readers never wait for the writer), the schema from `auth/migrations/sqlite/`. Same queries and
//! semantics as the MySQL store: lower-cased unique emails, UTC timestamps written by the service.

use super::{NewSigningKey, SigningKeyStore, StoreError, StoredSigningKey, User, UserStore};
use crate::domain::EmailAddress;
use anyhow::Context;
use async_trait::async_trait;
use backon::{BackoffBuilder, Retryable};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row};
use std::path::Path;
use std::time::Duration;

/// The schema of `auth/migrations/sqlite/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another connection's (or process's) write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file `url` names (`sqlite://path`, `sqlite:path`; `sqlite::memory:` for
    /// a throwaway one). Unless the URL sets `mode=`, a missing file is created, and so is its
    /// directory, as the MySQL store creates a missing database. Failures are retried with
    /// `backoff` (a volume may be mounted late; another process may hold a lock).
    pub async fn connect(url: &str, backoff: impl BackoffBuilder) -> anyhow::Result<Self> {
        let mut options: SqliteConnectOptions = url
            .parse()
            .context("DATABASE_URL is not a valid SQLite URL")?;
        if !sets_mode(url) {
            options = options.create_if_missing(true);
        }
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool_options = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5));
        // Opening a fresh file switches it to WAL, which needs the write lock; SQLite answers
        // "database is locked" at once (without its busy handler) when another process is doing
        // the same, so lock contention is waited out here, within BUSY_TIMEOUT, whatever `backoff`
        // the caller allows for outages.
        let open_waiting_out_locks = || {
            (|| pool_options.clone().connect_with(options.clone()))
                .retry(
                    backon::ConstantBuilder::default()
                        .with_delay(LOCK_RETRY_DELAY)
                        .with_max_times(lock_retries()),
                )
                .when(is_locked)
        };
        let attempt = || async {
            create_parent_directory(options.get_filename())?;
            open_waiting_out_locks().await.map_err(anyhow::Error::from)
        };
        let pool = attempt
            .retry(backoff)
            .notify(|error, delay| {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    retry_in = ?delay,
                    "database not openable yet; retrying"
                );
            })
            .await
            .with_context(|| {
                format!(
                    "opening the SQLite database {}",
                    options.get_filename().display()
                )
            })?;
        Ok(Self { pool })
    }

    /// Applies the pending migrations inside one `BEGIN IMMEDIATE` transaction: SQLite has no
    /// advisory lock (sqlx's is a no-op there), so this write lock is what makes a second
    /// process starting on the same file wait, then find nothing left to do.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut connection = self.pool.acquire().await.context("connecting to migrate")?;
        let mut transaction = connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("taking the migration lock")?;
        // `run_direct` rather than `run`: through `run`'s `Acquire` bound the compiler cannot
        // prove this future `Send` (sqlx's own workaround for that, hidden from its docs).
        MIGRATOR
            .run_direct(&mut *transaction)
            .await
            .context("applying database migrations")?;
        transaction
            .commit()
            .await
            .context("committing database migrations")
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Pause between two tries to open a file another connection holds locked.
const LOCK_RETRY_DELAY: Duration = Duration::from_millis(25);

fn lock_retries() -> usize {
    (BUSY_TIMEOUT.as_millis() / LOCK_RETRY_DELAY.as_millis()) as usize
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included: another connection holds the
/// lock this one needs.
fn is_locked(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    database
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Whether the URL chooses its own open mode (`ro`, `rw`, `rwc`, `memory`).
fn sets_mode(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("mode=")))
}

/// Creates the directory of a database file; in-memory databases have none.
fn create_parent_directory(file: &Path) -> anyhow::Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database directory {}", dir.display())),
        _ => Ok(()),
    }
}

#[async_trait]
impl UserStore for SqliteStore {
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
                email: EmailAddress::from_stored(row.try_get("email")?),
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

#[async_trait]
impl SigningKeyStore for SqliteStore {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_mode_is_left_alone() {
        assert!(!sets_mode("sqlite://data/auth.db"));
        assert!(!sets_mode("sqlite:auth.db?cache=shared"));
        assert!(sets_mode("sqlite://data/auth.db?mode=rwc"));
        assert!(sets_mode("sqlite:auth.db?cache=shared&mode=ro"));
    }
}
