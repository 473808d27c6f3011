//! Being logged in: where credentials come from (flags, environment, standard input, a
//! prompt), the cached token for the server, and logging in again once when the server
//! refuses a token.

use crate::client::{ApiClient, ClientError};
use crate::config::{CachedToken, TokenCache};
use crate::error::CliError;
use chrono::Utc;
use indicatif::MultiProgress;
use std::io::{BufRead, IsTerminal};
use tokio::sync::Mutex;

/// The password for scripts that cannot pipe it in.
pub const PASSWORD_ENV: &str = "MP3_PASSWORD";

/// What the user gave us to log in with; the rest is prompted for in a terminal.
#[derive(Clone, Default)]
pub struct Credentials {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Standard input is a terminal: missing credentials can be asked for.
    pub interactive: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("interactive", &self.interactive)
            .finish()
    }
}

impl Credentials {
    /// From `--email`/`MP3_EMAIL`, then `--password-stdin` or `MP3_PASSWORD`.
    pub fn gather(email: Option<String>, password_stdin: bool) -> Result<Self, CliError> {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        let password = if password_stdin {
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Usage(format!("--password-stdin: {e}")))?;
            let password = line.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                return Err(CliError::Usage(
                    "--password-stdin: standard input holds no password".into(),
                ));
            }
            Some(password)
        } else {
            std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
        };
        Ok(Self {
            email: email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
            password,
            // Prompts read the terminal; with --password-stdin the input is the password.
            interactive: interactive && !password_stdin,
        })
    }

    /// Email and password, asking for what is missing when possible. `None`: not enough to
    /// log in without a human.
    fn complete(
        &self,
        remembered_email: Option<&str>,
        confirm_password: bool,
    ) -> std::io::Result<Option<(String, String)>> {
        let email = match self.email.clone().or(remembered_email.map(str::to_owned)) {
            Some(email) => email,
            None if self.interactive => prompt_line("Email: ")?,
            None => return Ok(None),
        };
        let password = match self.password.clone() {
            Some(password) => password,
            None if self.interactive => {
                let password = rpassword::prompt_password(format!("Password for {email}: "))?;
                if confirm_password {
                    let again = rpassword::prompt_password("Repeat the password: ")?;
                    if again != password {
                        return Err(std::io::Error::other("the passwords differ"));
                    }
                }
                password
            }
            None => return Ok(None),
        };
        if email.is_empty() || password.is_empty() {
            return Ok(None);
        }
        Ok(Some((email, password)))
    }
}

fn prompt_line(prompt: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// How a login came about, to explain a missing one well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NoSession,
    Expired,
    Refused,
}

struct State {
    /// The cache file has been read.
    loaded: bool,
    current: Option<CachedToken>,
    /// Credentials completed once (maybe by a prompt), reused for later logins.
    known: Option<(String, String)>,
}

/// The client plus a token that stays valid for the whole command.
pub struct Session {
    client: ApiClient,
    cache: TokenCache,
    credentials: Credentials,
    state: Mutex<State>,
    /// Progress bars to hide while prompting.
    bars: MultiProgress,
}

impl Session {
    pub fn new(
        client: ApiClient,
        cache: TokenCache,
        credentials: Credentials,
        bars: MultiProgress,
    ) -> Self {
        Self {
            client,
            cache,
            credentials,
            state: Mutex::new(State {
                loaded: false,
                current: None,
                known: None,
            }),
            bars,
        }
    }

    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// A token believed valid: the cached one while fresh, else a new login.
    pub async fn token(&self) -> Result<String, CliError> {
        let mut state = self.state.lock().await;
        if !state.loaded {
            state.current = self.cache.load(self.client.server());
            state.loaded = true;
        }
        let why = match &state.current {
            Some(cached) if cached.is_fresh(Utc::now()) => return Ok(cached.token.clone()),
            Some(_) => Why::Expired,
            None => Why::NoSession,
        };
        Ok(self.login_locked(&mut state, why, None).await?.token)
    }

    /// After the server refused `rejected`: a new token, logging in at most once however many
    /// tasks saw the refusal.
    pub async fn refresh(&self, rejected: &str, server_reason: &str) -> Result<String, CliError> {
        let mut state = self.state.lock().await;
        if let Some(current) = &state.current
            && current.token != rejected
        {
            return Ok(current.token.clone());
        }
        let token = self
            .login_locked(&mut state, Why::Refused, Some(server_reason))
            .await?;
        Ok(token.token)
    }

    /// Runs `call` with a token; when the server refuses the token, logs in again and retries
    /// once.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, CliError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let token = self.token().await?;
        match call(token.clone()).await {
            Err(e) if e.is_unauthorized() => {
                let token = self.refresh(&token, &e.to_string()).await?;
                Ok(call(token).await?)
            }
            other => Ok(other?),
        }
    }

    /// Makes sure the server accepts our token before a long upload starts, so a stale token
    /// is replaced (or the user told) before gigabytes are sent.
    pub async fn ensure_accepted(&self) -> Result<(), CliError> {
        self.call(|token| async move { self.client.jobs(&token, 1, None).await.map(drop) })
            .await
    }

    /// `mp3 login`: always a new login with the user's credentials.
    pub async fn login(&self) -> Result<CachedToken, CliError> {
        let mut state = self.state.lock().await;
        state.loaded = true;
        let remembered = self
            .cache
            .load(self.client.server())
            .and_then(|cached| cached.email);
        let Some((email, password)) = self.complete(remembered, false).await? else {
            return Err(CliError::Usage(missing_credentials()));
        };
        self.login_with(&mut state, email, password).await
    }

    /// Logs in with these credentials (right after `mp3 signup`).
    pub async fn login_as(&self, email: String, password: String) -> Result<CachedToken, CliError> {
        let mut state = self.state.lock().await;
        state.loaded = true;
        self.login_with(&mut state, email, password).await
    }

    /// Email and password from what the user gave, prompting (bars hidden) if need be.
    pub async fn complete(
        &self,
        remembered_email: Option<String>,
        confirm_password: bool,
    ) -> Result<Option<(String, String)>, CliError> {
        let credentials = self.credentials.clone();
        let bars = self.bars.clone();
        tokio::task::spawn_blocking(move || {
            bars.suspend(|| credentials.complete(remembered_email.as_deref(), confirm_password))
        })
        .await
        .map_err(|e| CliError::Other(e.into()))?
        .map_err(|e| CliError::Usage(format!("cannot read the credentials: {e}")))
    }

    async fn login_locked(
        &self,
        state: &mut State,
        why: Why,
        server_reason: Option<&str>,
    ) -> Result<CachedToken, CliError> {
        let (email, password) = match state.known.clone() {
            Some(known) => known,
            None => {
                let remembered = state.current.as_ref().and_then(|c| c.email.clone());
                match self.complete(remembered, false).await? {
                    Some(known) => known,
                    None => return Err(self.not_logged_in(why, server_reason)),
                }
            }
        };
        self.login_with(state, email, password).await
    }

    async fn login_with(
        &self,
        state: &mut State,
        email: String,
        password: String,
    ) -> Result<CachedToken, CliError> {
        let issued = self.client.login(&email, &password).await?;
        state.known = Some((email.clone(), password));
        let cached = CachedToken {
            server: self.client.server().to_owned(),
            email: Some(email),
            token: issued.token,
            expires_at: issued.expires_at,
        };
        if let Err(e) = self.cache.store(&cached) {
            // The command can still go on; only the next one will have to log in again.
            self.bars.suspend(|| {
                eprintln!(
                    "warning: cannot remember the session in {}: {e}",
                    self.cache.dir().display()
                )
            });
        }
        state.current = Some(cached.clone());
        Ok(cached)
    }

    fn not_logged_in(&self, why: Why, server_reason: Option<&str>) -> CliError {
        let server = self.client.server();
        let what = match why {
            Why::NoSession => format!("you are not logged in to {server}"),
            Why::Expired => format!("your session on {server} has expired"),
            Why::Refused => format!(
                "{server} refused your session ({})",
                server_reason.unwrap_or("invalid token")
            ),
        };
        CliError::NotLoggedIn(format!(
            "{what}: run `mp3 login` (or set MP3_EMAIL and MP3_PASSWORD)"
        ))
    }
}

pub fn missing_credentials() -> String {
    "no credentials: give --email (or MP3_EMAIL) and the password with --password-stdin or \
     MP3_PASSWORD, or run in a terminal to be asked"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(email: Option<&str>, password: Option<&str>) -> Credentials {
        Credentials {
            email: email.map(str::to_owned),
            password: password.map(str::to_owned),
            interactive: false,
        }
    }

    #[test]
    fn without_a_terminal_missing_credentials_are_not_guessed() {
        let full = credentials(Some("a@b.c"), Some("pw"));
        assert_eq!(
            full.complete(None, false).unwrap(),
            Some(("a@b.c".into(), "pw".into()))
        );
        let remembered = credentials(None, Some("pw"));
        assert_eq!(
            remembered.complete(Some("r@b.c"), false).unwrap(),
            Some(("r@b.c".into(), "pw".into()))
        );
        assert_eq!(
            credentials(None, Some("pw")).complete(None, false).unwrap(),
            None
        );
        assert_eq!(
            credentials(Some("a@b.c"), None)
                .complete(None, false)
                .unwrap(),
            None
        );
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let shown = format!("{:?}", credentials(Some("a@b.c"), Some("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<hidden>"));
    }

    #[tokio::test]
    async fn without_credentials_the_user_is_told_to_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        // Nothing listens there: no request may be needed to reach the verdict.
        let client = ApiClient::new("http://127.0.0.1:9").unwrap();
        cache
            .store(&CachedToken {
                server: client.server().into(),
                email: Some("a@b.c".into()),
                token: "old".into(),
                expires_at: Some(Utc::now() - chrono::Duration::hours(1)),
            })
            .unwrap();
        let session = Session::new(
            client,
            cache,
            credentials(None, None),
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()),
        );
        let error = session.token().await.unwrap_err();
        assert!(matches!(error, CliError::NotLoggedIn(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("expired") && message.contains("mp3 login"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn fresh_cached_tokens_are_used_without_a_login() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path());
        let client = ApiClient::new("http://127.0.0.1:9").unwrap();
        cache
            .store(&CachedToken {
                server: client.server().into(),
                email: None,
                token: "still-good".into(),
                expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
            })
            .unwrap();
        let session = Session::new(
            client,
            cache,
            credentials(None, None),
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()),
        );
        assert_eq!(session.token().await.unwrap(), "still-good");
    }
}
