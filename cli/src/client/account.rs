//! Accounts: `POST /signup` and `POST /login` (HTTP Basic credentials for a bearer token).

use super::{ApiClient, ClientError, json_body, typed};
use api::{Account, LoginToken};
use reqwest::header;

impl ApiClient {
    /// `POST /signup`: the account created.
    pub async fn signup(&self, email: &str, password: &str) -> Result<Account, ClientError> {
        let request = self
            .http
            .post(self.url(&["signup"]))
            .json(&serde_json::json!({"email": email, "password": password}));
        typed(json_body(self.send(request).await?).await?, "signup answer")
    }

    /// `POST /login` with HTTP Basic credentials; asks for the JSON answer, which says when
    /// the token expires.
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginToken, ClientError> {
        let request = self
            .http
            .post(self.url(&["login"]))
            .basic_auth(email, Some(password))
            .header(header::ACCEPT, "application/json");
        let value = json_body(self.send(request).await?).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(format!("login: {e}")))
    }
}
