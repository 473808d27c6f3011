//! The accounts seam: registering users, logging in and fetching the keys that verify tokens.
//!
//! [`GrpcAccounts`] talks to the auth service over gRPC:
//! - every call has a deadline and the channel connects lazily, so an absent or hung auth service
//!   turns into [`AccountsError::Unavailable`] within the deadline instead of a hanging request;
//! - idempotent calls (`GetVerificationKeys`) are retried a few times with jittered backoff
//!   within that deadline; `Login` and `Register` never are (a retry could count twice);
//! - a [`CircuitBreaker`] makes every call fail fast with [`AccountsError::CircuitOpen`] while auth
//!   is down, and lets one probe through now and then to notice its return;
//! - each call carries the request's `traceparent` in its metadata.

use crate::circuit_breaker::{BreakerConfig, CircuitBreaker};
use async_trait::async_trait;
use backon::Retryable;
use contracts::auth::v1::{
    GetVerificationKeysRequest, LoginRequest, RegisterRequest, auth_client::AuthClient,
};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Retries of an idempotent call after its first attempt.
const IDEMPOTENT_RETRIES: usize = 2;
/// First pause between attempts (doubling, jittered).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

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
    /// Auth failed repeatedly; calls are refused without trying until `retry_after` has passed.
    #[error("auth service unavailable (failing fast for {retry_after:?})")]
    CircuitOpen { retry_after: Duration },
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
    breaker: CircuitBreaker,
}

/// Whether a call may be repeated without changing its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
}

impl GrpcAccounts {
    /// A client for `url` with the default circuit breaker; never fails on an absent server (the
    /// channel connects lazily).
    pub fn new(url: &str, deadline: Duration) -> Result<Self, AccountsError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| AccountsError::Internal(format!("invalid AUTH_GRPC_URL {url:?}: {e}")))?
            .connect_timeout(deadline.min(Duration::from_secs(2)))
            .timeout(deadline)
            .tcp_nodelay(true);
        Ok(Self {
            client: AuthClient::new(endpoint.connect_lazy()),
            deadline,
            breaker: CircuitBreaker::new("auth", BreakerConfig::default()),
        })
    }

    pub fn with_circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = CircuitBreaker::new("auth", config);
        self
    }

    pub fn circuit_breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs a call within the deadline (which covers waiting for a connection and every retry),
    /// through the circuit breaker, retrying idempotent calls while auth is unreachable.
    async fn call<M, T, F, Fut>(
        &self,
        idempotent: Idempotent,
        message: M,
        send: F,
    ) -> Result<T, AccountsError>
    where
        M: Clone,
        F: Fn(AuthClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.deadline;
        // One traceparent for all attempts: they are the same hop, retried.
        let traceparent = crate::observability::downstream_traceparent();
        let attempt = || async {
            let permit = self
                .breaker
                .acquire()
                .map_err(|rejected| AccountsError::CircuitOpen {
                    retry_after: rejected.retry_after,
                })?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                // Nothing was sent: the permit is dropped without an outcome.
                return Err(AccountsError::Unavailable(
                    "no answer before the deadline".into(),
                ));
            }
            let mut request = tonic::Request::new(message.clone());
            if let Ok(value) = MetadataValue::try_from(traceparent.as_str()) {
                request.metadata_mut().insert("traceparent", value);
            }
            let outcome =
                match tokio::time::timeout(remaining, send(self.client.clone(), request)).await {
                    Ok(Ok(response)) => Ok(response.into_inner()),
                    Ok(Err(status)) => Err(from_status(&status)),
                    Err(_) => Err(AccountsError::Unavailable(
                        "no answer before the deadline".into(),
                    )),
                };
            // Only an unreachable or silent auth counts against it: a refused password is
            // a perfectly healthy answer.
            match &outcome {
                Err(AccountsError::Unavailable(_)) => permit.failed(),
                _ => permit.succeeded(),
            }
            outcome
        };
        match idempotent {
            Idempotent::No => attempt().await,
            Idempotent::Yes => {
                let backoff = platform::retry::bounded(FIRST_RETRY_DELAY, IDEMPOTENT_RETRIES);
                let retried = attempt
                    .retry(backoff)
                    .sleep(tokio::time::sleep)
                    .when(|error| {
                        matches!(error, AccountsError::Unavailable(_))
                            && Instant::now() + FIRST_RETRY_DELAY < deadline
                    })
                    .notify(|error, delay| {
                        tracing::debug!(%error, ?delay, "retrying an idempotent auth call");
                    });
                // A pause between attempts must not carry the call past its deadline either.
                tokio::time::timeout_at(deadline.into(), retried)
                    .await
                    .unwrap_or_else(|_| {
                        Err(AccountsError::Unavailable(
                            "no answer before the deadline".into(),
                        ))
                    })
            }
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
        let request = RegisterRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let response = self
            .call(Idempotent::No, request, |mut client, request| async move {
                client.register(request).await
            })
            .await?;
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
        let request = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            client_address: client_address.to_owned(),
        };
        let response = self
            .call(Idempotent::No, request, |mut client, request| async move {
                client.login(request).await
            })
            .await?;
        Ok(IssuedToken {
            token: response.token,
            expires_at: response.expires_at,
        })
    }

    async fn verification_keys(&self) -> Result<VerificationKeys, AccountsError> {
        let response = self
            .call(
                Idempotent::Yes,
                GetVerificationKeysRequest {},
                |mut client, request| async move { client.get_verification_keys(request).await },
            )
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

    /// A stand-in auth server that records each call (method, traceparent) and answers
    /// `unavailable` while `failing`.
    #[derive(Default)]
    struct RecordingAuth {
        calls: std::sync::Mutex<Vec<(&'static str, Option<String>)>>,
        failing: std::sync::atomic::AtomicBool,
    }

    #[derive(Clone)]
    struct Shared(std::sync::Arc<RecordingAuth>);

    impl Shared {
        fn answer<T>(
            &self,
            method: &'static str,
            metadata: &tonic::metadata::MetadataMap,
            ok: T,
        ) -> Result<tonic::Response<T>, tonic::Status> {
            let traceparent = metadata
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.0.calls.lock().unwrap().push((method, traceparent));
            if self.0.failing.load(std::sync::atomic::Ordering::SeqCst) {
                Err(tonic::Status::unavailable("restarting"))
            } else {
                Ok(tonic::Response::new(ok))
            }
        }

        fn calls(&self, method: &str) -> usize {
            self.0
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, _)| *m == method)
                .count()
        }

        fn fail(&self, failing: bool) {
            self.0
                .failing
                .store(failing, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tonic::async_trait]
    impl contracts::auth::v1::auth_server::Auth for Shared {
        async fn register(
            &self,
            request: tonic::Request<RegisterRequest>,
        ) -> Result<tonic::Response<contracts::auth::v1::RegisterResponse>, tonic::Status> {
            let response = contracts::auth::v1::RegisterResponse {
                user_id: "u1".into(),
                email: request.get_ref().email.clone(),
            };
            self.answer("register", request.metadata(), response)
        }
        async fn login(
            &self,
            request: tonic::Request<LoginRequest>,
        ) -> Result<tonic::Response<contracts::auth::v1::LoginResponse>, tonic::Status> {
            let response = contracts::auth::v1::LoginResponse {
                token: "token".into(),
                expires_at: 1,
            };
            if request.get_ref().password == "wrong" {
                self.answer("login", request.metadata(), ())?;
                return Err(tonic::Status::unauthenticated("invalid email or password"));
            }
            self.answer("login", request.metadata(), response)
        }
        async fn validate_token(
            &self,
            _: tonic::Request<contracts::auth::v1::ValidateTokenRequest>,
        ) -> Result<tonic::Response<contracts::auth::v1::Claims>, tonic::Status> {
            Err(tonic::Status::unimplemented("not used by the gateway"))
        }
        async fn get_verification_keys(
            &self,
            request: tonic::Request<GetVerificationKeysRequest>,
        ) -> Result<tonic::Response<contracts::auth::v1::VerificationKeys>, tonic::Status> {
            let response = contracts::auth::v1::VerificationKeys {
                keys: vec![],
                issuer: "auth".into(),
                audience: "gateway".into(),
            };
            self.answer("keys", request.metadata(), response)
        }
    }

    async fn recording_auth() -> (Shared, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let auth = Shared(Default::default());
        let service = contracts::auth::v1::auth_server::AuthServer::new(auth.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (auth, url)
    }

    fn breaker(threshold: u32, open_for: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            open_for,
        }
    }

    #[tokio::test]
    async fn only_idempotent_calls_are_retried() {
        let (auth, url) = recording_auth().await;
        auth.fail(true);
        let accounts = GrpcAccounts::new(&url, Duration::from_secs(2))
            .unwrap()
            .with_circuit_breaker(breaker(100, Duration::from_secs(10)));
        let error = accounts.verification_keys().await.unwrap_err();
        assert!(matches!(error, AccountsError::Unavailable(_)), "{error:?}");
        assert_eq!(auth.calls("keys"), 1 + IDEMPOTENT_RETRIES);
        assert!(accounts.login("a@b.c", "pw", "127.0.0.1").await.is_err());
        assert_eq!(auth.calls("login"), 1);
        assert!(accounts.register("a@b.c", "pw").await.is_err());
        assert_eq!(auth.calls("register"), 1);
        // Once auth answers, a single call does.
        auth.fail(false);
        accounts.verification_keys().await.unwrap();
        assert_eq!(auth.calls("keys"), 2 + IDEMPOTENT_RETRIES);
    }

    #[tokio::test]
    async fn every_call_carries_the_traceparent_of_the_request() {
        let (auth, url) = recording_auth().await;
        let accounts = GrpcAccounts::new(&url, Duration::from_secs(2)).unwrap();
        let trace = platform::trace::TraceContext::new_root();
        crate::observability::in_trace(trace, async {
            accounts.login("a@b.c", "pw", "127.0.0.1").await.unwrap();
            accounts.verification_keys().await.unwrap();
        })
        .await;
        let calls = auth.0.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        for (method, traceparent) in calls {
            let sent = platform::trace::TraceContext::parse(&traceparent.unwrap()).unwrap();
            assert_eq!(sent.trace_id, trace.trace_id, "{method}");
            assert_ne!(sent.span_id, trace.span_id, "{method}: a child span");
        }
    }

    #[tokio::test]
    async fn the_breaker_fails_fast_while_auth_is_down_and_a_probe_closes_it() {
        let (auth, url) = recording_auth().await;
        auth.fail(true);
        let accounts = GrpcAccounts::new(&url, Duration::from_secs(2))
            .unwrap()
            .with_circuit_breaker(breaker(2, Duration::from_millis(400)));
        for _ in 0..2 {
            let error = accounts.login("a@b.c", "pw", "").await.unwrap_err();
            assert!(matches!(error, AccountsError::Unavailable(_)), "{error:?}");
        }
        // Open: nothing reaches auth, not even the retries of an idempotent call.
        let started = std::time::Instant::now();
        let error = accounts.verification_keys().await.unwrap_err();
        assert!(
            matches!(error, AccountsError::CircuitOpen { retry_after } if retry_after <= Duration::from_millis(400)),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(auth.calls("login") + auth.calls("keys"), 2);
        // A failed probe reopens it...
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(matches!(
            accounts.login("a@b.c", "pw", "").await.unwrap_err(),
            AccountsError::Unavailable(_)
        ));
        assert!(matches!(
            accounts.login("a@b.c", "pw", "").await.unwrap_err(),
            AccountsError::CircuitOpen { .. }
        ));
        // ...a successful one closes it.
        auth.fail(false);
        tokio::time::sleep(Duration::from_millis(450)).await;
        accounts.login("a@b.c", "pw", "").await.unwrap();
        assert_eq!(
            accounts.circuit_breaker().state(),
            crate::circuit_breaker::BreakerState::Closed
        );
        accounts.login("a@b.c", "pw", "").await.unwrap();
    }

    #[tokio::test]
    async fn refusals_are_answers_and_never_open_the_breaker() {
        let (auth, url) = recording_auth().await;
        let accounts = GrpcAccounts::new(&url, Duration::from_secs(2))
            .unwrap()
            .with_circuit_breaker(breaker(1, Duration::from_secs(60)));
        for _ in 0..3 {
            let error = accounts.login("a@b.c", "wrong", "").await.unwrap_err();
            assert!(
                matches!(error, AccountsError::InvalidCredentials(_)),
                "{error:?}"
            );
        }
        assert_eq!(
            accounts.circuit_breaker().state(),
            crate::circuit_breaker::BreakerState::Closed
        );
        accounts.login("a@b.c", "pw", "").await.unwrap();
        assert_eq!(auth.calls("login"), 4);
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
