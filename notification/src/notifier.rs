//! The event handler: turns each conversion outcome into exactly one mail and one
//! `notification.sent` / `notification.failed` event.
//!
//! Per delivery: claim the outcome in the sent log, send, record the result, publish the event,
//! mark it announced. Every step is safe to repeat, so a redelivery at any point finishes the
//! work without a second mail: see [`crate::sent_log`].

use crate::mail::{self, Composer};
use crate::mailer::{Mailer, SendError};
use crate::sent_log::{Claim, ClaimResult, Delivery, SentLog};
use async_trait::async_trait;
use backon::Retryable;
use contracts::Envelope;
use contracts::events::{JobEvent, NotificationFailed, NotificationSent};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The `producer` of the events this service publishes.
pub const PRODUCER: &str = "notification";

pub struct Notifier {
    bus: Arc<dyn EventBus>,
    sent_log: Arc<dyn SentLog>,
    mailer: Arc<dyn Mailer>,
    composer: Composer,
    /// How often to look again at a claim another delivery holds.
    claim_poll: Duration,
    /// Stops waiting on claims held elsewhere, so shutdown is not held up by them.
    shutdown: CancellationToken,
}

impl Notifier {
    pub fn new(
        bus: Arc<dyn EventBus>,
        sent_log: Arc<dyn SentLog>,
        mailer: Arc<dyn Mailer>,
        composer: Composer,
        claim_poll: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            bus,
            sent_log,
            mailer,
            composer,
            claim_poll,
            shutdown,
        }
    }

    async fn notify(&self, envelope: &Envelope, outcome: mail::Outcome<'_>) -> Outcome {
        match self.sent_log.is_deleted(envelope.job_id).await {
            Err(e) => return Outcome::Retry(e.to_string()),
            Ok(true) => {
                tracing::info!("the owner deleted the job; no mail about it");
                metrics::counter!("emails_total", "outcome" => "skipped_deleted").increment(1);
                return Outcome::Done;
            }
            Ok(false) => {}
        }
        loop {
            match self
                .sent_log
                .claim(envelope.event_id, envelope.job_id)
                .await
            {
                Err(e) => return Outcome::Retry(e.to_string()),
                Ok(ClaimResult::Granted(claim)) => {
                    return self.send(envelope, outcome, claim).await;
                }
                Ok(ClaimResult::Finished(finished)) if finished.announced => {
                    tracing::info!("already notified; nothing to send");
                    return Outcome::Done;
                }
                Ok(ClaimResult::Finished(finished)) => {
                    tracing::info!("already mailed; announcing the result again");
                    return self.announce(envelope, outcome, &finished.delivery).await;
                }
                Ok(ClaimResult::HeldElsewhere) => {
                    // Another delivery of the same event is sending it, or crashed doing so; in
                    // the second case the claim lapses after the lease and we take over.
                    tracing::debug!("another delivery holds the claim; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(self.claim_poll) => {}
                        _ = self.shutdown.cancelled() => {
                            return Outcome::Retry("shutting down while another delivery held the claim".into());
                        }
                    }
                }
            }
        }
    }

    async fn send(&self, envelope: &Envelope, outcome: mail::Outcome<'_>, claim: Claim) -> Outcome {
        // The reasons recorded in events are shown to the job's owner: our own words only; the
        // library's and the mail server's text goes to the log.
        let message = outcome
            .recipient()
            .map_err(|e| {
                tracing::warn!(error = %e, "not mailing: the owner's address is invalid");
                "the owner's address is invalid".to_owned()
            })
            .and_then(|recipient| {
                self.composer
                    .message(envelope.event_id, envelope.job_id, recipient, outcome)
                    .map_err(|e| {
                        tracing::warn!(error = %e, "not mailing: the mail could not be composed");
                        "the mail could not be composed".to_owned()
                    })
            });
        let message = match message {
            Ok(message) => message,
            Err(reason) => {
                return self
                    .settle(envelope, outcome, &claim, Delivery::Failed { reason })
                    .await;
            }
        };
        match self.mailer.send(message).await {
            Ok(()) => {
                tracing::info!("mail sent");
                metrics::counter!("emails_total", "outcome" => "sent").increment(1);
                self.settle(envelope, outcome, &claim, Delivery::Sent).await
            }
            Err(SendError::Permanent(detail)) => {
                tracing::warn!(%detail, "the mail server refused the mail for good");
                metrics::counter!("emails_total", "outcome" => "failed").increment(1);
                let reason = format!("the mail server refused the mail{}", smtp_code(&detail));
                self.settle(envelope, outcome, &claim, Delivery::Failed { reason })
                    .await
            }
            Err(SendError::Transient(detail)) => {
                metrics::counter!("emails_total", "outcome" => "deferred").increment(1);
                if let Err(e) = self.sent_log.release(&claim).await {
                    tracing::warn!(error = %e, "could not release the claim; the retry waits for it to lapse");
                }
                Outcome::Retry(format!("mail server unavailable: {detail}"))
            }
        }
    }

    /// Records how the send ended, then announces it.
    async fn settle(
        &self,
        envelope: &Envelope,
        outcome: mail::Outcome<'_>,
        claim: &Claim,
        delivery: Delivery,
    ) -> Outcome {
        let record = || self.sent_log.finish(claim, &delivery);
        let recorded = record
            .retry(platform::retry::bounded(Duration::from_millis(200), 5))
            .await;
        if let Err(e) = recorded {
            // The mail is out (or refused for good): going on beats a retry that would send it
            // again. Only a duplicate of this event arriving later could still mail twice.
            tracing::error!(error = %e, ?delivery, "could not record the result in the sent log");
        }
        self.announce(envelope, outcome, &delivery).await
    }

    /// Publishes `notification.sent` or `notification.failed` about `envelope`.
    async fn announce(
        &self,
        envelope: &Envelope,
        outcome: mail::Outcome<'_>,
        delivery: &Delivery,
    ) -> Outcome {
        let event = announcement(envelope, outcome, delivery);
        match self.bus.publish(&event).await {
            Ok(()) => {
                if let Err(e) = self.sent_log.mark_announced(envelope.event_id).await {
                    tracing::warn!(error = %e, "could not mark the result announced; a redelivery would announce it again");
                }
                Outcome::Done
            }
            // The result is recorded: the redelivery skips the mail and retries only this.
            Err(e) => Outcome::Retry(format!("could not publish {}: {e}", event.event_type())),
        }
    }
}

/// The event announcing how the mail about `envelope` ended, in the same trace.
pub fn announcement(
    envelope: &Envelope,
    outcome: mail::Outcome<'_>,
    delivery: &Delivery,
) -> Envelope {
    let recipient = outcome.owner_email().trim().to_owned();
    let about_event_id = envelope.event_id;
    let event = match delivery {
        Delivery::Sent => JobEvent::NotificationSent(NotificationSent {
            recipient,
            about_event_id,
        }),
        Delivery::Failed { reason } => JobEvent::NotificationFailed(NotificationFailed {
            recipient,
            about_event_id,
            reason: reason.clone(),
        }),
    };
    Envelope::new(envelope.job_id, PRODUCER, event).with_traceparent(envelope.traceparent.clone())
}

#[async_trait]
impl EventHandler for Notifier {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        let envelope = &delivery.envelope;
        if let JobEvent::JobDeleted(_) = &envelope.event {
            // Remembered so that an outcome arriving later (a conversion that was already
            // running, or failed on the deleted video) is not mailed to someone who deleted it.
            return match self.sent_log.record_deleted(envelope.job_id).await {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Retry(e.to_string()),
            };
        }
        let Some(outcome) = mail::Outcome::of(&envelope.event) else {
            tracing::debug!(
                event_type = envelope.event_type(),
                "not an outcome; ignored"
            );
            return Outcome::Done;
        };
        let span = tracing::info_span!(
            "notify",
            job_id = %envelope.job_id,
            event_id = %envelope.event_id,
            event_type = envelope.event_type(),
            attempt = delivery.attempt,
        );
        self.notify(envelope, outcome).instrument(span).await
    }

    async fn exhausted(&self, delivery: &Delivered, last_error: &str) {
        let envelope = &delivery.envelope;
        let Some(outcome) = mail::Outcome::of(&envelope.event) else {
            return;
        };
        let span = tracing::info_span!("give_up", job_id = %envelope.job_id, event_id = %envelope.event_id);
        tracing::warn!(error = %last_error, attempts = delivery.attempt, "giving up on the mail");
        let reason = format!(
            "gave up after {} attempts: the mail server was unavailable{}",
            delivery.attempt,
            smtp_code(last_error)
        );
        let result = self
            .give_up(envelope, outcome, reason, false)
            .instrument(span)
            .await;
        if let Outcome::Retry(reason) = result {
            tracing::error!(job_id = %envelope.job_id, %reason, "could not announce the failed notification");
        }
    }

    async fn abandoned(&self, delivery: &Delivered, deliveries: u32) -> Result<(), String> {
        let envelope = &delivery.envelope;
        let Some(outcome) = mail::Outcome::of(&envelope.event) else {
            return Ok(());
        };
        let span = tracing::info_span!("abandon", job_id = %envelope.job_id, event_id = %envelope.event_id);
        tracing::error!(
            deliveries,
            "the notification service died on every delivery of this event; the mail fails"
        );
        metrics::counter!("emails_total", "outcome" => "abandoned").increment(1);
        let reason = format!(
            "the mail could not be sent: the notification service stopped {deliveries} times while preparing it"
        );
        match self
            .give_up(envelope, outcome, reason, true)
            .instrument(span)
            .await
        {
            Outcome::Retry(reason) => Err(reason),
            _ => Ok(()),
        }
    }
}

impl Notifier {
    /// Ends the mail about `envelope` as failed with `reason` and announces it, unless it was
    /// dealt with already. With `dead_holder`, a claim held elsewhere belongs to the consumer
    /// that died holding the event: wait for it to lapse (`Retry`) rather than trust it.
    async fn give_up(
        &self,
        envelope: &Envelope,
        outcome: mail::Outcome<'_>,
        reason: String,
        dead_holder: bool,
    ) -> Outcome {
        let failed = Delivery::Failed { reason };
        match self
            .sent_log
            .claim(envelope.event_id, envelope.job_id)
            .await
        {
            Ok(ClaimResult::Granted(claim)) => self.settle(envelope, outcome, &claim, failed).await,
            Ok(ClaimResult::Finished(finished)) if !finished.announced => {
                self.announce(envelope, outcome, &finished.delivery).await
            }
            Ok(ClaimResult::HeldElsewhere) if dead_holder => {
                Outcome::Retry("the mail's claim is still held by the consumer that died".into())
            }
            // Done already, or another delivery of the same event is on it and will announce.
            Ok(_) => Outcome::Done,
            // Without the log the owner's job must still end: announce the failure anyway.
            Err(_) => self.announce(envelope, outcome, &failed).await,
        }
    }
}

/// ` (SMTP 550)` for a detail that names the server's reply code, else nothing: the code says
/// what happened without repeating the server's own text.
fn smtp_code(detail: &str) -> String {
    let bytes = detail.as_bytes();
    (0..bytes.len().saturating_sub(2))
        .find(|&i| {
            matches!(bytes[i], b'4' | b'5')
                && bytes[i + 1].is_ascii_digit()
                && bytes[i + 2].is_ascii_digit()
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
                && bytes.get(i + 3).is_none_or(|b| !b.is_ascii_alphanumeric())
        })
        .map(|i| format!(" (SMTP {})", &detail[i..i + 3]))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_reasons_keep_the_reply_code_and_drop_the_server_text() {
        assert_eq!(
            smtp_code("permanent error (550): 5.1.1 mailbox unavailable at mx.internal"),
            " (SMTP 550)"
        );
        assert_eq!(smtp_code("451 4.3.0 try again later"), " (SMTP 451)");
        assert_eq!(smtp_code("connection refused"), "");
        assert_eq!(smtp_code("port 45123 closed"), "");
    }
    use contracts::events::ConversionSucceeded;
    use uuid::Uuid;

    #[test]
    fn announcements_are_about_the_outcome_and_keep_its_trace() {
        let incoming = Envelope::new(
            Uuid::now_v7(),
            "converter",
            JobEvent::ConversionSucceeded(ConversionSucceeded {
                owner_id: "1".into(),
                owner_email: " user@example.com ".into(),
                original_filename: "a.mp4".into(),
                mp3_file_id: "f".into(),
                mp3_size_bytes: 1,
                duration_seconds: 1.0,
                bitrate_kbps: 128,
                passthrough: false,
            }),
        )
        .with_traceparent(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ));
        let outcome = mail::Outcome::of(&incoming.event).unwrap();

        let sent = announcement(&incoming, outcome, &Delivery::Sent);
        assert_eq!(sent.job_id, incoming.job_id);
        assert_eq!(sent.producer, "notification");
        assert_eq!(sent.traceparent, incoming.traceparent);
        assert_ne!(sent.event_id, incoming.event_id);
        assert_eq!(
            sent.event,
            JobEvent::NotificationSent(NotificationSent {
                recipient: "user@example.com".into(),
                about_event_id: incoming.event_id,
            })
        );

        let failed = announcement(
            &incoming,
            outcome,
            &Delivery::Failed {
                reason: "no".into(),
            },
        );
        assert_eq!(failed.event_type(), "notification.failed");
    }
}
