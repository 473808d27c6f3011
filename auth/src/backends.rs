//! The backing service of auth, chosen in one place: the store of accounts and signing keys.
//! [`Backends::connect`] opens the database `DATABASE_URL` names; [`Backends::embedded`] keeps
//! everything in one SQLite file of a directory (the all-in-one mode).

use crate::configuration::Settings;
use crate::store::{self, Store};
use backon::BackoffBuilder;
use platform::SecretUrl;
use std::path::Path;
use std::sync::Arc;

/// The file [`Backends::embedded`] keeps accounts and keys in.
pub const EMBEDDED_DATABASE: &str = "auth.db";

pub struct Backends {
    pub store: Arc<dyn Store>,
}

impl Backends {
    /// The database of `settings` (MySQL/MariaDB or SQLite, by the URL's scheme), waited for while
    /// unreachable and migrated.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        Self::connect_with(&settings.database_url, platform::retry::reconnect()).await
    }

    /// As [`Backends::connect`], giving up as `backoff` says (an operator's command waits less).
    pub async fn connect_with(
        database_url: &SecretUrl,
        backoff: impl BackoffBuilder,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store: store::open(database_url.expose(), backoff).await?,
        })
    }

    /// Accounts and keys in `dir`/[`EMBEDDED_DATABASE`], created on first use.
    pub async fn embedded(dir: &Path) -> anyhow::Result<Self> {
        Self::connect_with(&embedded_url(dir), platform::retry::reconnect()).await
    }
}

/// `sqlite://<dir>/auth.db?mode=rwc`, the path percent-encoded where SQLite URLs need it.
pub fn embedded_url(dir: &Path) -> SecretUrl {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const SPECIAL: &AsciiSet = &CONTROLS.add(b'%').add(b'?').add(b'#').add(b' ');
    let path = dir.join(EMBEDDED_DATABASE);
    let text = path.to_string_lossy();
    SecretUrl::new(format!(
        "sqlite://{}?mode=rwc",
        utf8_percent_encode(&text, SPECIAL)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_urls_point_into_the_directory_and_survive_odd_paths() {
        assert_eq!(
            embedded_url(Path::new("./data")).expose(),
            "sqlite://./data/auth.db?mode=rwc"
        );
        let odd = embedded_url(Path::new("/tmp/my data?#%"));
        assert_eq!(
            odd.expose(),
            "sqlite:///tmp/my%20data%3F%23%25/auth.db?mode=rwc"
        );
        let options: sqlx::sqlite::SqliteConnectOptions = odd.expose().parse().unwrap();
        assert_eq!(options.get_filename(), Path::new("/tmp/my data?#%/auth.db"));
    }
}
