//! The mail-sending seam, and its SMTP implementation on lettre's pooled async transport.
//!
//! A send either succeeds, fails for now (worth retrying later) or fails for good (retrying
//! cannot help). That split decides between a redelivery and a `notification.failed` event.

use crate::configuration::SmtpUrl;
use async_trait::async_trait;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server is unreachable, slow, or answered 4xx: a later attempt may succeed.
    #[error("{0}")]
    Transient(String),
    /// The server refused this mail for good (5xx, e.g. no such mailbox).
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, message: Message) -> Result<(), SendError>;

    /// Readiness: `Ok` when the mail server answers.
    async fn check(&self) -> Result<(), String>;
}

/// SMTP through one pooled lettre transport, built once: connections are reused across mails.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl SmtpMailer {
    /// A mailer for `url`. Connects lazily: building it never fails on an absent server.
    pub fn new(url: &SmtpUrl, timeout: Duration) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| format!("invalid SMTP_URL {url}: {e}"))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(8))
            .build();
        Ok(Self { transport, timeout })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: Message) -> Result<(), SendError> {
        // lettre's timeout bounds each command; this bounds the whole conversation.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::Transient(format!(
                "the mail server did not finish within {:?}",
                self.timeout
            ))),
        }
    }

    async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the mail server did not answer NOOP".into()),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// Permanent only when the server said so about this mail. Connection, TLS and protocol errors
/// and 4xx replies are transient; so are authentication refusals (530, 534, 535, 538): those are
/// our configuration's fault, and the mail should wait for an operator rather than be dropped.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let code = error.status().map(|code| code.to_string());
    if is_permanent_refusal(error.is_permanent(), code.as_deref()) {
        SendError::Permanent(describe(error))
    } else {
        SendError::Transient(describe(error))
    }
}

fn is_permanent_refusal(permanent: bool, code: Option<&str>) -> bool {
    const AUTHENTICATION_REFUSALS: [&str; 4] = ["530", "534", "535", "538"];
    permanent && !code.is_some_and(|code| AUTHENTICATION_REFUSALS.contains(&code))
}

/// The error with its causes, e.g. `permanent error (550): mailbox unavailable`.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_mail_itself_are_permanent() {
        assert!(is_permanent_refusal(true, Some("550")));
        assert!(is_permanent_refusal(true, Some("553")));
        assert!(
            !is_permanent_refusal(true, Some("535")),
            "bad credentials wait for an operator"
        );
        assert!(!is_permanent_refusal(false, Some("451")));
        assert!(
            !is_permanent_refusal(false, None),
            "connection errors are transient"
        );
    }
}
