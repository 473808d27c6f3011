//! The REST API client: one method per endpoint, typed answers (the [`api`] contract the gateway
//! serves), and one error type that keeps the server's `{error, message}` so the user sees the
//! server's own reason.
//!
//! This module holds the connection to one server and what every call shares (URLs, sending,
//! reading the answer); the endpoints are grouped by concern: [`account`] (signup, login),
//! [`jobs`] (list, status, delete), [`upload`], [`download`] and [`events`] (the SSE stream).
//! [`error`] turns failures into [`ClientError`].

pub mod account;
pub mod download;
pub mod error;
pub mod events;
pub mod jobs;
pub mod upload;

pub use download::{Download, filename_from_disposition};
pub use error::{ClientError, api_error};
pub use events::{StreamItem, parse_stream_event};
pub use jobs::{Job, JobPage};
pub use upload::{Submitted, media_type};

use error::describe;
use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Silence longer than this on an open connection means the server is gone. SSE streams get a
/// keep-alive every 15 s, so this never cuts a healthy stream.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one server.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
}

impl ApiClient {
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let base = normalize_server(server)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("mp3-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Transport(describe(&e)))?;
        Ok(Self { http, base })
    }

    /// The server's base URL as the user would write it (no trailing slash): the key of the
    /// token cache.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `base` + path segments, each escaped (job ids come from the user).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn sent(&self, error: reqwest::Error) -> ClientError {
        if error.is_connect() {
            ClientError::Unreachable {
                server: self.server().to_owned(),
                detail: describe(&error),
            }
        } else {
            ClientError::Transport(describe(&error))
        }
    }

    /// Sends the request; fails with the server's `{error, message}` unless it succeeded.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.sent(e))?;
        error::check(response).await
    }
}

/// A usable base URL from what the user typed (`http://host:port`, maybe with a path prefix).
pub fn normalize_server(server: &str) -> Result<Url, ClientError> {
    let invalid = || ClientError::InvalidServer(server.to_owned());
    let mut url = Url::parse(server.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::InvalidServer(
            "credentials in the server URL (use --email / MP3_EMAIL instead)".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// The whole body, as JSON.
async fn json_body(response: Response) -> Result<serde_json::Value, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(describe(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("expected JSON: {e}")))
}

/// `value` as one of the contract's types; `what` names it in the error.
fn typed<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T, ClientError> {
    serde_json::from_value(value)
        .map_err(|e| ClientError::Protocol(format!("malformed {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        let url = normalize_server("http://127.0.0.1:8080").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        let url = normalize_server("HTTPS://Example.org/api/?x=1").unwrap();
        assert_eq!(url.as_str(), "https://example.org/api/");
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "not a url",
            "http://user:pw@host",
        ] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_appended_and_escaped() {
        let client = ApiClient::new("http://h:1/api").unwrap();
        assert_eq!(client.server(), "http://h:1/api");
        assert_eq!(
            client.url(&["jobs", "abc"]).as_str(),
            "http://h:1/api/jobs/abc"
        );
        assert_eq!(
            client.url(&["jobs", "../x?y"]).as_str(),
            "http://h:1/api/jobs/..%2Fx%3Fy"
        );
        let root = ApiClient::new("http://h:1").unwrap();
        assert_eq!(root.url(&["login"]).as_str(), "http://h:1/login");
    }
}
