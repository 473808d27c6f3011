//! The token cache: one small JSON file per server in the user's config directory
//! (`MP3_CONFIG_DIR` overrides it, which tests use), readable by the user only.

use chrono::{DateTime, Duration, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Overrides the configuration directory.
pub const CONFIG_DIR_ENV: &str = "MP3_CONFIG_DIR";
/// A token this close to its expiry is renewed before use rather than refused mid-upload.
const EXPIRY_MARGIN: Duration = Duration::seconds(30);
/// Characters kept as-is in file names; everything else is percent-encoded, so every server
/// URL maps to its own file and no URL can climb out of the directory.
const FILE_NAME_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// A remembered session for one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedToken {
    pub server: String,
    /// Who logged in: the email to log in again with.
    pub email: Option<String>,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl CachedToken {
    /// Usable now (an unknown expiry counts as usable; the server has the last word).
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at - EXPIRY_MARGIN > now)
    }
}

#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
}

impl TokenCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `MP3_CONFIG_DIR`, else the platform's config directory for `mp3`.
    pub fn locate() -> anyhow::Result<Self> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::new(dir));
        }
        let dirs = directories::ProjectDirs::from("", "", "mp3").ok_or_else(|| {
            anyhow::anyhow!("cannot find your home directory: set {CONFIG_DIR_ENV}")
        })?;
        Ok(Self::new(dirs.config_dir()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the session for `server`.
    pub fn path_for(&self, server: &str) -> PathBuf {
        let name = utf8_percent_encode(server, FILE_NAME_ESCAPES).to_string();
        self.dir.join("sessions").join(format!("{name}.json"))
    }

    /// The session for `server`; a missing or unreadable file is no session.
    pub fn load(&self, server: &str) -> Option<CachedToken> {
        let bytes = std::fs::read(self.path_for(server)).ok()?;
        serde_json::from_slice::<CachedToken>(&bytes)
            .ok()
            .filter(|cached| cached.server == server)
    }

    /// Saves the session, readable and writable by the user only. Written to a temporary file
    /// that replaces the old one, so a crash never leaves half a file.
    pub fn store(&self, cached: &CachedToken) -> std::io::Result<PathBuf> {
        let path = self.path_for(&cached.server);
        let dir = path.parent().expect("session files live in a directory");
        create_private_dir(dir)?;
        let temporary = dir.join(format!(".{}.tmp", std::process::id()));
        let mut file = private_file(&temporary)?;
        let json = serde_json::to_vec_pretty(cached).map_err(std::io::Error::other)?;
        let written = file
            .write_all(&json)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map(|()| path)
    }

    /// Forgets the session for `server`; `false` when there was none.
    pub fn remove(&self, server: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path_for(server)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(server: &str, expires_at: Option<DateTime<Utc>>) -> CachedToken {
        CachedToken {
            server: server.into(),
            email: Some("a@example.com".into()),
            token: "header.claims.signature".into(),
            expires_at,
        }
    }

    #[test]
    fn sessions_round_trip_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        let one = token("http://127.0.0.1:8080", None);
        let two = token("https://mp3.example.org/api", Some(Utc::now()));
        cache.store(&one).unwrap();
        cache.store(&two).unwrap();
        assert_eq!(cache.load(&one.server), Some(one.clone()));
        assert_eq!(cache.load(&two.server), Some(two.clone()));
        assert_eq!(cache.load("http://127.0.0.1:9999"), None);
        assert_ne!(cache.path_for(&one.server), cache.path_for(&two.server));

        assert!(cache.remove(&one.server).unwrap());
        assert!(!cache.remove(&one.server).unwrap());
        assert_eq!(cache.load(&one.server), None);
    }

    #[test]
    fn file_names_cannot_escape_the_directory() {
        let cache = TokenCache::new("/cfg");
        let path = cache.path_for("http://h/../../etc");
        assert_eq!(path.parent().unwrap(), Path::new("/cfg/sessions"));
        assert!(!path.file_name().unwrap().to_string_lossy().contains('/'));
    }

    #[cfg(unix)]
    #[test]
    fn session_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("nested"));
        let path = cache.store(&token("http://h:1", None)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn corrupt_files_are_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        let path = cache.path_for("http://h:1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(cache.load("http://h:1"), None);
    }

    #[test]
    fn tokens_near_their_expiry_are_stale() {
        let now = Utc::now();
        assert!(token("s", None).is_fresh(now));
        assert!(token("s", Some(now + Duration::hours(1))).is_fresh(now));
        assert!(!token("s", Some(now + Duration::seconds(10))).is_fresh(now));
        assert!(!token("s", Some(now - Duration::hours(1))).is_fresh(now));
    }
}
