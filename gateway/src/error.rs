//! The one error type of the HTTP edge: every failure becomes JSON `{error, message}` with the
//! right status. Internal details are logged here and never sent to the client.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad multipart, bad id, bad query string, ...).
    #[error("{0}")]
    BadRequest(String),
    /// No usable bearer token: missing, malformed, expired or badly signed.
    #[error("{0}")]
    Unauthorized(String),
    /// HTTP Basic credentials were missing or refused.
    #[error("{0}")]
    InvalidCredentials(String),
    /// Unknown resource, or one the caller does not own (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The resource existed but is gone for good (an expired MP3).
    #[error("{0}")]
    Gone(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// A multipart form over one of the limits of its shape (400 with its own `code`:
    /// `part_header_too_large`, `too_many_parts`).
    #[error("{message}")]
    FormRefused { code: &'static str, message: String },
    /// The client stopped sending its request (`BODY_IDLE_TIMEOUT`).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A Range that no byte of the file satisfies.
    #[error("the requested range is outside the file of {length} bytes")]
    RangeNotSatisfiable { length: u64 },
    /// Well-formed but invalid input (bad email, bad quality, ...).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    RateLimited {
        retry_after: Duration,
        message: String,
    },
    /// A dependency is down: the client may retry later (`Retry-After`: `retry_after`, or
    /// [`DEFAULT_UNAVAILABLE_RETRY_AFTER`]). `detail` is logged, not sent.
    #[error("the {dependency} is unavailable, try again later")]
    Unavailable {
        dependency: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A bug or an unexpected failure: logged, answered with a generic message.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unavailable(dependency: &'static str, detail: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            dependency,
            detail: detail.to_string(),
            retry_after: None,
        }
    }

    /// Like [`ApiError::unavailable`], when it is known how long the dependency stays away.
    pub fn unavailable_for(
        dependency: &'static str,
        detail: impl std::fmt::Display,
        retry_after: Duration,
    ) -> Self {
        ApiError::Unavailable {
            dependency,
            detail: detail.to_string(),
            retry_after: Some(retry_after),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::FormRefused { .. } => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code sent as `error`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials(_) => "invalid_credentials",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::FormRefused { code, .. } => code,
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Unprocessable(_) => "unprocessable_entity",
            ApiError::RateLimited { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
            }
            ApiError::Unavailable {
                dependency, detail, ..
            } => {
                tracing::warn!(dependency, %detail, "dependency unavailable");
            }
            _ => {}
        }
        let status = self.status();
        let body = Json(api::ErrorBody::new(self.code(), self.to_string()));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(reason) => {
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::InvalidCredentials(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"mp3converter\", charset=\"UTF-8\""),
                );
            }
            ApiError::RateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, retry_after_seconds(*retry_after));
            }
            ApiError::Unavailable { retry_after, .. } => {
                let wait = retry_after.unwrap_or(DEFAULT_UNAVAILABLE_RETRY_AFTER);
                headers.insert(header::RETRY_AFTER, retry_after_seconds(wait));
            }
            ApiError::RangeNotSatisfiable { length } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// `Retry-After` suggested with a 503 when nobody knows how long the dependency stays away.
pub const DEFAULT_UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whole seconds, rounded up: "Retry-After: 0" would invite an immediate retry.
fn retry_after_seconds(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if caused_by_timeout(&rejection) {
            ApiError::RequestTimeout(
                "the request body stalled: nothing arrived for too long".into(),
            )
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BadRequest("the request body is too large".into())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

/// Whether `error` comes from the idle-body timeout (`BODY_IDLE_TIMEOUT`).
fn caused_by_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = error.source();
    }
    false
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// Answer for unknown routes, in the same JSON shape as every other error.
pub async fn route_not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Answer for a known route called with the wrong method.
pub async fn method_not_allowed() -> Response {
    let body = Json(api::ErrorBody::new(
        "method_not_allowed",
        "this route does not accept that method",
    ));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_of(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_cause() {
        let (status, _, body) = body_of(ApiError::Internal(anyhow::anyhow!(
            "password=hunter2 in query"
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn unavailable_dependencies_hide_the_detail() {
        let (status, _, body) = body_of(ApiError::unavailable(
            "authentication service",
            "tcp connect 10.0.0.3",
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body["message"].as_str().unwrap().contains("10.0.0.3"));
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after_rounded_up() {
        let (status, headers, body) = body_of(ApiError::RateLimited {
            retry_after: Duration::from_millis(1500),
            message: "too many attempts".into(),
        })
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(body["error"], "too_many_requests");
    }

    #[tokio::test]
    async fn unavailable_dependencies_suggest_when_to_retry() {
        let (_, headers, _) = body_of(ApiError::unavailable("job store", "down")).await;
        assert_eq!(headers[header::RETRY_AFTER], "5");
        let (status, headers, body) = body_of(ApiError::unavailable_for(
            "authentication service",
            "circuit open",
            Duration::from_millis(2100),
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "3");
        assert_eq!(body["error"], "service_unavailable");
    }

    #[tokio::test]
    async fn gone_resources_answer_410() {
        let (status, _, body) = body_of(ApiError::Gone("the MP3 expired".into())).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(body["error"], "gone");
        assert_eq!(body["message"], "the MP3 expired");
    }

    #[tokio::test]
    async fn unsatisfiable_ranges_name_the_length() {
        let (status, headers, _) = body_of(ApiError::RangeNotSatisfiable { length: 42 }).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(headers[header::CONTENT_RANGE], "bytes */42");
    }

    #[tokio::test]
    async fn token_problems_challenge_for_a_bearer_token() {
        let (status, headers, body) = body_of(ApiError::Unauthorized("token expired".into())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(body["message"], "token expired");
    }
}
