//! `POST /login` (HTTP Basic → a JWT), `POST /signup` (create an account) and `GET /me` (whom a
//! token belongs to: a cheap way for clients to check that their token still works).

use super::{AppState, ClientAddress, CurrentUser};
use crate::auth_client::AccountsError;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headers::authorization::Basic;
use headers::{Authorization, HeaderMapExt};
use serde::Deserialize;
use std::time::Duration;

/// Wait suggested when auth rate-limits without saying how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

impl From<AccountsError> for ApiError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::InvalidCredentials(_) => {
                ApiError::InvalidCredentials("invalid email or password".into())
            }
            AccountsError::InvalidInput(message) => ApiError::Unprocessable(message),
            AccountsError::AlreadyExists(_) => {
                ApiError::Conflict("an account with this email already exists".into())
            }
            AccountsError::RateLimited {
                retry_after,
                message,
            } => ApiError::RateLimited {
                retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                message: if message.is_empty() {
                    "too many attempts, try again later".into()
                } else {
                    message
                },
            },
            AccountsError::Unavailable(detail) => {
                ApiError::unavailable("authentication service", detail)
            }
            error @ AccountsError::CircuitOpen { retry_after } => {
                ApiError::unavailable_for("authentication service", error, retry_after)
            }
            AccountsError::Internal(detail) => {
                ApiError::Internal(anyhow::anyhow!("auth service: {detail}"))
            }
        }
    }
}

/// HTTP Basic credentials when the request carries an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Basic>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let is_basic = value
        .as_bytes()
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "));
    if !is_basic {
        return Ok(None);
    }
    match headers.typed_try_get::<Authorization<Basic>>() {
        Ok(Some(Authorization(basic))) => Ok(Some(basic)),
        _ => Err(ApiError::InvalidCredentials(
            "malformed HTTP Basic credentials".into(),
        )),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

/// Exchanges HTTP Basic credentials for a token: plain text by default (as the original
/// service answered), `{token, expires_at}` with `Accept: application/json`. Attempts are
/// limited per client address (`LOGINS_PER_MINUTE`) before auth is asked.
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client_address): ClientAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.limits.admit_login(&client_address)?;
    let basic = basic_credentials(&headers)?.ok_or_else(|| {
        ApiError::InvalidCredentials(
            "send the email and password with HTTP Basic authentication".into(),
        )
    })?;
    let issued = state
        .accounts
        .login(basic.username(), basic.password(), &client_address)
        .await?;
    if wants_json(&headers) {
        Ok(Json(api::LoginToken {
            token: issued.token,
            expires_at: chrono::DateTime::from_timestamp(issued.expires_at, 0),
        })
        .into_response())
    } else {
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            issued.token,
        )
            .into_response())
    }
}

#[derive(Deserialize)]
struct SignupBody {
    email: String,
    password: String,
}

/// Creates an account from JSON `{email, password}` or HTTP Basic credentials.
pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let (email, password) = match basic_credentials(&headers)? {
        Some(basic) => (basic.username().to_owned(), basic.password().to_owned()),
        None => {
            let is_json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
            if !is_json {
                return Err(ApiError::UnsupportedMediaType(
                    "send JSON {\"email\", \"password\"} with Content-Type: application/json, or HTTP Basic credentials".into(),
                ));
            }
            let parsed: SignupBody = match serde_json::from_slice(&body) {
                Ok(parsed) => parsed,
                Err(e) if e.is_data() => {
                    return Err(ApiError::Unprocessable(format!(
                        "expected {{\"email\": string, \"password\": string}}: {e}"
                    )));
                }
                Err(e) => return Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
            };
            (parsed.email, parsed.password)
        }
    };
    let user = state.accounts.register(&email, &password).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::Account {
            user_id: user.user_id,
            email: user.email,
        }),
    )
        .into_response())
}

/// `GET /me`: the caller's account, from the token alone (no backing service is asked).
pub async fn me(user: CurrentUser) -> Json<api::Account> {
    Json(api::Account {
        user_id: user.id,
        email: user.email,
    })
}
