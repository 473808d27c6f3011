//! The body of every error answer: `{error, message}`.

use serde::{Deserialize, Serialize};

/// `error` is a stable machine-readable code (`not_found`, `too_many_requests`, ...); `message`
/// explains it to a person. A client that gets a non-JSON error (a proxy's HTML page) has no
/// body to parse and falls back to the HTTP status, so both fields default to empty on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}
