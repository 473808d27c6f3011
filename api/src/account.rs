//! Accounts: `POST /signup`, `GET /me` and the JSON answer of `POST /login`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /signup` (201) and `GET /me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: String,
    pub email: String,
}

/// `POST /login` with `Accept: application/json` (without it the answer is the bare token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token: String,
    /// When the token stops being accepted; `None` if the server did not say (or said it in a
    /// form this build cannot read: the token is still usable until refused).
    #[serde(default, deserialize_with = "crate::lenient::time")]
    pub expires_at: Option<DateTime<Utc>>,
}
