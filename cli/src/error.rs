//! What can go wrong in a command, and the exit code each failure maps to.

use crate::client::ClientError;

/// Exit code of a command line the CLI cannot act on.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a failure: a job that failed, a server error, a network problem.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// No usable session and no way to log in without asking.
    #[error("{0}")]
    NotLoggedIn(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A job ended badly; the message is the server's reason.
    #[error("{0}")]
    JobFailed(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// Machine-readable code for `--json`.
    pub fn code(&self) -> &str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::NotLoggedIn(_) => "not_logged_in",
            CliError::Client(e) => e.code(),
            CliError::JobFailed(_) => "job_failed",
            CliError::Other(_) => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_usage_errors_exit_with_2() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::JobFailed("no audio".into()).exit_code(), 1);
        assert_eq!(CliError::NotLoggedIn("run mp3 login".into()).exit_code(), 1);
        let server = crate::client::api_error(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"error":"not_found","message":"no such job"}"#,
            None,
        );
        let error = CliError::from(server);
        assert_eq!(error.exit_code(), 1);
        assert_eq!(error.code(), "not_found");
        assert_eq!(error.to_string(), "no such job");
    }
}
