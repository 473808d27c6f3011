//! The REST API: one module per resource, the shared state and the caller's identity.

mod accounts;
mod download;
mod form_guard;
mod job_feeds;
mod jobs;
mod upload;

use crate::auth_client::Accounts;
use crate::error::{self, ApiError};
use crate::observability::RequestRecord;
use crate::pipeline::{EventPublisher, FileJanitor, JobUpdates};
use crate::rate_limit::{RateLimits, StreamLimits};
use crate::store::EventStore;
use crate::store::RetentionLedger;
use crate::token_verifier::{TokenError, TokenVerifier};
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{get, post};
pub use job_feeds::JobFeeds;
use platform::blob::BlobStore;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    pub accounts: Arc<dyn Accounts>,
    pub tokens: Arc<TokenVerifier>,
    pub blobs: Arc<dyn BlobStore>,
    pub store: Arc<dyn EventStore>,
    pub publisher: EventPublisher,
    pub updates: JobUpdates,
    pub max_upload_bytes: u64,
    pub public_base_url: Arc<str>,
    pub sse_poll_interval: Duration,
    /// Fires on shutdown so long-lived responses (SSE) end and the server can stop.
    pub shutdown: CancellationToken,
    pub limits: Arc<RateLimits>,
    /// `SSE_STREAMS_PER_USER` and `SSE_STREAMS_MAX`.
    pub streams: Arc<StreamLimits>,
    /// One store reader per job with live SSE streams.
    pub feeds: Arc<JobFeeds>,
    /// `RETENTION`: a finished job expires this long after it finished.
    pub retention: Duration,
    /// Finished jobs awaiting expiry (to recognise the file id of an expired MP3).
    pub ledger: Arc<dyn RetentionLedger>,
    pub janitor: FileJanitor,
    /// `TRUST_FORWARDED_FOR`.
    pub trust_forwarded_for: bool,
    /// Tasks that requests leave running (SSE feeds): awaited at shutdown so none is cut off
    /// in the middle of a store query when the runtime stops.
    pub background: TaskTracker,
}

impl AppState {
    /// Absolute URL of `path` for clients.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url)
    }

    /// The job's links, `download` included (callers drop it while there is no MP3).
    pub fn job_links(&self, job_id: Uuid) -> api::JobLinks {
        api::JobLinks {
            status: self.link(&format!("/jobs/{job_id}")),
            events: self.link(&format!("/jobs/{job_id}/events")),
            download: Some(self.link(&format!("/jobs/{job_id}/mp3"))),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::web::router())
        .route("/login", post(accounts::login))
        .route("/signup", post(accounts::signup))
        .route("/me", get(accounts::me))
        // The upload handler enforces MAX_UPLOAD_BYTES itself while streaming.
        .route(
            "/upload",
            post(upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/download", get(download::download_by_file_id))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::status).delete(jobs::delete))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/mp3", get(download::download_job_mp3))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// The authenticated caller, from a verified bearer token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: String,
    pub email: String,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(ApiError::Unauthorized(
                    "expected Authorization: Bearer <token>".into(),
                ));
            }
        };
        if token.is_empty() {
            return Err(ApiError::Unauthorized("missing bearer token".into()));
        }
        match state.tokens.verify(token).await {
            Ok(claims) => {
                RequestRecord::note_user(&parts.extensions, &claims.sub);
                Ok(CurrentUser {
                    id: claims.sub,
                    email: claims.email,
                })
            }
            Err(TokenError::Rejected(reason)) => Err(ApiError::Unauthorized(reason)),
            Err(TokenError::KeysUnavailable(detail)) => {
                Err(ApiError::unavailable("authentication service", detail))
            }
        }
    }
}

/// The client's address (for per-address rate limits, here and in auth): the socket peer, or,
/// with `TRUST_FORWARDED_FOR` (behind an ingress that sets it), the first `X-Forwarded-For` hop.
pub struct ClientAddress(pub String);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let forwarded = state
            .trust_forwarded_for
            .then(|| first_forwarded_hop(&parts.headers))
            .flatten();
        let address = forwarded
            .or(peer)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        Ok(ClientAddress(address))
    }
}

/// The client as the first proxy saw it: the leftmost `X-Forwarded-For` entry, when it is an IP
/// address (optionally with a port).
fn first_forwarded_hop(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let first = headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Parses a job id from the path; anything but a UUID is a 400, never a 500.
pub fn parse_job_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a job id")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn forwarded(value: &str) -> Option<IpAddr> {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        first_forwarded_hop(&headers)
    }

    #[test]
    fn the_first_forwarded_hop_is_the_client() {
        assert_eq!(
            forwarded("203.0.113.7, 10.0.0.2, 10.0.0.3"),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            forwarded(" 2001:db8::1 "),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            forwarded("203.0.113.7:5123"),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(forwarded("unknown, 10.0.0.2"), None);
        assert_eq!(first_forwarded_hop(&HeaderMap::new()), None);
    }
}
