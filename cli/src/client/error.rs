//! What a call can fail with: the server's own `{error, message}` ([`api::ErrorBody`]), an
//! unreachable server, a broken connection, an answer outside the contract, a local file.

use api::ErrorBody;
use reqwest::header::{self, HeaderMap};
use reqwest::{Response, StatusCode};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; `message` is its explanation for humans.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        /// The server's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("the connection to the server failed: {0}")]
    Transport(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid server URL (expected e.g. http://127.0.0.1:8080)")]
    InvalidServer(String),
}

impl ClientError {
    /// The bearer token was refused: logging in again may help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Api { status, code, .. }
            if *status == StatusCode::UNAUTHORIZED && code != "invalid_credentials")
    }

    /// Worth trying again later (network trouble, overloaded or restarting server).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// How long the server asks us to wait before trying again (429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api {
                status,
                retry_after: Some(seconds),
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS => Some(Duration::from_secs(*seconds)),
            _ => None,
        }
    }

    /// The server's machine-readable code, or a local one.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Transport(_) => "transport_error",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::File { .. } => "file_error",
            ClientError::InvalidServer(_) => "invalid_server",
        }
    }

    pub(crate) fn file(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::File {
            path: path.to_owned(),
            source,
        }
    }
}

/// The error with its causes, which reqwest keeps in the source chain.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Fails with the server's `{error, message}` unless the status is a success.
pub(crate) async fn check(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(api_error(status, &body, retry_after))
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The error for a non-success answer; the server's message when it sent the JSON shape.
pub fn api_error(status: StatusCode, body: &str, retry_after: Option<u64>) -> ClientError {
    // Not JSON (e.g. a proxy's HTML page) reads as an empty body: the status speaks instead.
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_else(|_| ErrorBody::new("", ""));
    let code = Some(parsed.error)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| status.as_str().to_owned());
    let mut message = Some(parsed.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error");
            format!("the server answered {} {reason}", status.as_u16())
        });
    if let Some(seconds) = retry_after
        && status == StatusCode::TOO_MANY_REQUESTS
    {
        message.push_str(&format!(" (retry in {seconds} s)"));
    }
    ClientError::Api {
        status,
        code,
        message,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_the_servers_message() {
        let error = api_error(
            StatusCode::CONFLICT,
            r#"{"error":"conflict","message":"the conversion failed: the file has no audio track"}"#,
            None,
        );
        assert_eq!(error.code(), "conflict");
        assert_eq!(
            error.to_string(),
            "the conversion failed: the file has no audio track"
        );
        assert!(!error.is_unauthorized());

        let limited = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":"too_many_requests","message":"too many attempts"}"#,
            Some(30),
        );
        assert_eq!(limited.to_string(), "too many attempts (retry in 30 s)");
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
        assert!(limited.is_transient());

        let bare = api_error(StatusCode::BAD_GATEWAY, "<html>proxy</html>", None);
        assert_eq!(bare.to_string(), "the server answered 502 Bad Gateway");
        assert_eq!(bare.code(), "502");
    }

    #[test]
    fn only_refused_tokens_count_as_unauthorized() {
        let expired = api_error(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized","message":"token expired"}"#,
            None,
        );
        assert!(expired.is_unauthorized());
        let wrong_password = api_error(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_credentials","message":"invalid email or password"}"#,
            None,
        );
        assert!(!wrong_password.is_unauthorized());
    }
}
