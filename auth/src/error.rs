//! `AuthError`: every way a request to the auth service can fail, and the gRPC status each becomes.
//!
//! Messages are written for the caller; internal errors are logged in full and answered with a
//! bare "internal error" so nothing about the database or keys leaks.

use crate::login_limiter::RetryAfter;
use crate::token_issuer::TokenError;
use tonic::{Code, Status};

/// Message of every failed login, whatever the cause, so accounts cannot be enumerated.
pub const INVALID_CREDENTIALS: &str = "invalid email or password";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    #[error("too many failed login attempts; retry in {} seconds", .0.seconds())]
    TooManyFailedLogins(RetryAfter),
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        match error {
            AuthError::InvalidArgument(_) => Status::invalid_argument(message),
            AuthError::EmailTaken => Status::already_exists(message),
            AuthError::InvalidCredentials | AuthError::InvalidToken(_) => {
                Status::unauthenticated(message)
            }
            AuthError::TooManyFailedLogins(retry) => {
                let mut status = Status::new(Code::ResourceExhausted, message);
                // The gateway turns this into an HTTP Retry-After header.
                status
                    .metadata_mut()
                    .insert("retry-after", retry.seconds().into());
                status
            }
            AuthError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                Status::internal(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limit_status_carries_retry_after() {
        let status = Status::from(AuthError::TooManyFailedLogins(RetryAfter(
            Duration::from_millis(41_200),
        )));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "42");
        assert!(status.message().contains("retry in 42 seconds"));
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let status = Status::from(AuthError::Internal(anyhow::anyhow!(
            "connection to mysql://root:hunter2@db failed"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
