//! The accounts seam: registering users, logging in and fetching the keys that verify tokens.
//!
//! [`GrpcAccounts`] talks to the auth service over gRPC. Every call has a deadline and the channel
//! connects lazily, so an absent or hung auth service turns into [`AccountsError::Unavailable`]
//! within the deadline instead of a hanging request.

use async_trait::async_trait;
use proto::auth::v1::{
    GetVerificationKeysRequest, LoginRequest, RegisterRequest, auth_client::AuthClient,
};
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredUser {
    pub user_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One public key that verifies tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    pub kid: String,
    pub algorithm: String,
    pub public_key_pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKeys {
    pub keys: Vec<VerificationKey>,
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    InvalidCredentials(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
    #[error("auth service failed: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn register(&self, email: &str, password: &str) -> Result<RegisteredUser, AccountsError>;
    async fn login(
        &self,
        email: &str,
        password: &str,
        client_address: &str,
    ) -> Result<IssuedToken, AccountsError>;
    async fn verification_keys(&self) -> Result<VerificationKeys, AccountsError>;
}

/// The auth service over gRPC.
#[derive(Clone)]
pub struct GrpcAccounts {
    client: AuthClient<Channel>,
    deadline: Duration,
}

impl GrpcAccounts {
    /// A client for `url`; never fails on an absent server (the channel connects lazily).
    pub fn new(url: &str, deadline: Duration) -> Result<Self, AccountsError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| AccountsError::Internal(format!("invalid AUTH_GRPC_URL {url:?}: {e}")))?
            .connect_timeout(deadline.min(Duration::from_secs(2)))
            .timeout(deadline)
            .tcp_nodelay(true);
        Ok(Self {
            client: AuthClient::new(endpoint.connect_lazy()),
            deadline,
        })
    }

    /// Runs one call under the deadline; tonic's own timeout covers the request, this one also
    /// covers waiting for a connection.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, AccountsError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(from_status(&status)),
            Err(_) => Err(AccountsError::Unavailable(
                "no answer before the deadline".into(),
            )),
        }
    }
}

/// Maps auth's gRPC status codes to what the gateway can act on.
fn from_status(status: &tonic::Status) -> AccountsError {
    let message = status.message().to_owned();
    match status.code() {
        Code::Unauthenticated => AccountsError::InvalidCredentials(message),
        Code::InvalidArgument => AccountsError::InvalidInput(message),
        Code::AlreadyExists => AccountsError::AlreadyExists(message),
        Code::ResourceExhausted => AccountsError::RateLimited {
            retry_after: retry_after(status.metadata()),
            message,
        },
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            AccountsError::Unavailable(format!("{:?}: {message}", status.code()))
        }
        code => AccountsError::Internal(format!("{code:?}: {message}")),
    }
}

/// Seconds to wait, from a `retry-after` metadata entry when auth sends one.
fn retry_after(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[async_trait]
impl Accounts for GrpcAccounts {
    async fn register(&self, email: &str, password: &str) -> Result<RegisteredUser, AccountsError> {
        let mut client = self.client.clone();
        let request = RegisterRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let response = self.call(client.register(request)).await?;
        Ok(RegisteredUser {
            user_id: response.user_id,
            email: response.email,
        })
    }

    async fn login(
        &self,
        email: &str,
        password: &str,
        client_address: &str,
    ) -> Result<IssuedToken, AccountsError> {
        let mut client = self.client.clone();
        let request = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            client_address: client_address.to_owned(),
        };
        let response = self.call(client.login(request)).await?;
        Ok(IssuedToken {
            token: response.token,
            expires_at: response.expires_at,
        })
    }

    async fn verification_keys(&self) -> Result<VerificationKeys, AccountsError> {
        let mut client = self.client.clone();
        let response = self
            .call(client.get_verification_keys(GetVerificationKeysRequest {}))
            .await?;
        Ok(VerificationKeys {
            keys: response
                .keys
                .into_iter()
                .map(|k| VerificationKey {
                    kid: k.kid,
                    algorithm: k.algorithm,
                    public_key_pem: k.public_key_pem,
                })
                .collect(),
            issuer: response.issuer,
            audience: response.audience,
        })
    }
}

/// Readiness of the auth service: it answers `GetVerificationKeys`.
pub struct AccountsReadiness(pub std::sync::Arc<dyn Accounts>);

#[async_trait]
impl platform::health::ReadinessCheck for AccountsReadiness {
    fn name(&self) -> &'static str {
        "auth"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .verification_keys()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_actionable_errors() {
        assert!(matches!(
            from_status(&tonic::Status::unauthenticated("bad credentials")),
            AccountsError::InvalidCredentials(_)
        ));
        assert!(matches!(
            from_status(&tonic::Status::already_exists("taken")),
            AccountsError::AlreadyExists(_)
        ));
        assert!(matches!(
            from_status(&tonic::Status::invalid_argument("bad email")),
            AccountsError::InvalidInput(_)
        ));
        assert!(matches!(
            from_status(&tonic::Status::deadline_exceeded("slow")),
            AccountsError::Unavailable(_)
        ));
        assert!(matches!(
            from_status(&tonic::Status::internal("boom")),
            AccountsError::Internal(_)
        ));
    }

    #[test]
    fn resource_exhausted_carries_retry_after_from_metadata() {
        let mut status = tonic::Status::resource_exhausted("slow down");
        status
            .metadata_mut()
            .insert("retry-after", "30".parse().unwrap());
        assert_eq!(
            from_status(&status),
            AccountsError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                message: "slow down".into()
            }
        );
    }

    #[tokio::test]
    async fn an_absent_auth_service_is_unavailable_within_the_deadline() {
        // A port nothing listens on: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let accounts =
            GrpcAccounts::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
        let started = std::time::Instant::now();
        let error = accounts
            .login("a@b.c", "pw", "127.0.0.1")
            .await
            .unwrap_err();
        assert!(matches!(error, AccountsError::Unavailable(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_silent_auth_service_is_unavailable_at_the_deadline() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let accounts = GrpcAccounts::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(800),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let error = accounts.verification_keys().await.unwrap_err();
        assert!(matches!(error, AccountsError::Unavailable(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
