//! Accounts: registering users and exchanging credentials for tokens.

use crate::domain::{EmailAddress, Password};
use crate::error::AuthError;
use crate::login_limiter::LoginLimiter;
use crate::passwords::PasswordHasher;
use crate::store::{StoreError, User, UserStore};
use crate::token_issuer::{IssuedToken, TokenService};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

#[derive(Clone)]
pub struct Accounts {
    users: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    tokens: Arc<TokenService>,
    limiter: LoginLimiter,
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserStore>,
        hasher: PasswordHasher,
        tokens: Arc<TokenService>,
        limiter: LoginLimiter,
    ) -> Self {
        Self {
            users,
            hasher,
            tokens,
            limiter,
        }
    }

    /// Creates an account. The email is stored lower-cased, so it is unique regardless of case.
    pub async fn register(&self, email: &str, password: SecretString) -> Result<User, AuthError> {
        let email =
            EmailAddress::parse(email).map_err(|e| AuthError::InvalidArgument(e.to_string()))?;
        let password =
            Password::parse(password).map_err(|e| AuthError::InvalidArgument(e.to_string()))?;
        let password_hash = self.hasher.hash(&password).await?;
        let now = chrono::Utc::now();
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            password_hash,
            created_at: now,
            updated_at: now,
        };
        match self.users.insert_user(&user).await {
            Ok(()) => {
                tracing::info!(user_id = %user.id, "account registered");
                Ok(user)
            }
            Err(StoreError::Conflict) => Err(AuthError::EmailTaken),
            Err(other) => Err(anyhow::Error::new(other)
                .context("storing a new account")
                .into()),
        }
    }

    /// Creates the account unless the email is already registered (then leaves it untouched).
    /// Returns whether it was created.
    pub async fn ensure_user(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<bool, AuthError> {
        match self.register(email, password).await {
            Ok(_) => Ok(true),
            Err(AuthError::EmailTaken) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// A token for the account when `password` is right. Every credential failure gives the same
    /// error after the same work; failures are throttled per email and per `client_address`.
    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
        client_address: &str,
    ) -> Result<IssuedToken, AuthError> {
        let email = EmailAddress::parse(email).ok();
        let attempt = self
            .limiter
            .begin(email.as_ref().map(EmailAddress::as_str), client_address)
            .map_err(|retry| {
                tracing::warn!(
                    client = client_address,
                    retry_in_s = retry.seconds(),
                    "login refused: too many failures"
                );
                AuthError::TooManyFailedLogins(retry)
            })?;
        // A malformed email cannot belong to an account; the attempt still counts as a failure.
        let Some(email) = email else {
            return Err(AuthError::InvalidCredentials);
        };
        // Longer passwords cannot have been registered; refuse them before spending hashing work.
        if password.expose_secret().len() > crate::domain::MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidCredentials);
        }
        let user = match self.users.find_user_by_email(&email).await {
            Ok(user) => user,
            Err(error) => {
                attempt.forgive();
                return Err(anyhow::Error::new(error)
                    .context("looking up an account")
                    .into());
            }
        };
        let matched = match self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await
        {
            Ok(matched) => matched,
            Err(error) => {
                attempt.forgive();
                return Err(error.context("verifying a password").into());
            }
        };
        let Some(user) = user.filter(|_| matched) else {
            tracing::info!(client = client_address, "login failed: invalid credentials");
            return Err(AuthError::InvalidCredentials);
        };
        attempt.forgive();
        let issued = self.tokens.issue(&user.id, &user.email)?;
        tracing::info!(user_id = %user.id, jti = %issued.claims.jti, "login succeeded");
        Ok(issued)
    }
}
