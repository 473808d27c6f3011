//! The transactional outbox: an event the gateway accepted is written here before it is published,
//! so a broker outage never loses it.
//!
//! The request that produced an event holds a short lease on its entry while it publishes it
//! inline; when that fails it releases the entry and the [`relay`] publishes it once the broker is
//! back. Leases keep the relay (and other gateway replicas) from publishing an entry that is being
//! published by someone else, so each event goes out once (consumers dedupe on event id anyway,
//! which covers a crash between publishing and marking).

use crate::event_store::{StoreError, is_duplicate_key};
use async_trait::async_trait;
use backon::BackoffBuilder;
use chrono::Utc;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use platform::bus::EventBus;
use proto::Envelope;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Records `event` as pending, leased to the caller for `lease` (the relay leaves it alone
    /// meanwhile). Adding the same event twice is a no-op.
    async fn add(&self, event: &Envelope, lease: Duration) -> Result<(), StoreError>;

    /// The event reached the broker.
    async fn mark_published(&self, event_id: Uuid) -> Result<(), StoreError>;

    /// Ends the caller's lease at once: the relay should publish the event.
    async fn release(&self, event_id: Uuid) -> Result<(), StoreError>;

    /// Leases the oldest pending event whose lease has expired, for `lease`.
    async fn claim_next(&self, lease: Duration) -> Result<Option<Envelope>, StoreError>;

    /// How many events still wait for publication.
    async fn pending(&self) -> Result<u64, StoreError>;
}

const PENDING: &str = "pending";
const PUBLISHED: &str = "published";
/// Published entries are kept this long for inspection, then removed by MongoDB.
const KEEP_PUBLISHED: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone)]
pub struct MongoOutbox {
    entries: Collection<Document>,
}

fn at(offset: Duration) -> bson::DateTime {
    let later = chrono::Duration::from_std(offset)
        .ok()
        .and_then(|offset| Utc::now().checked_add_signed(offset))
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    bson::DateTime::from_millis(later.timestamp_millis())
}

impl MongoOutbox {
    pub fn new(client: &mongodb::Client, database: &str) -> Self {
        Self {
            entries: client.database(database).collection("outbox"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.entries
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! {"status": 1, "leased_until": 1, "created_at": 1})
                    .options(IndexOptions::builder().name("claimable".to_owned()).build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! {"published_at": 1})
                    .options(
                        IndexOptions::builder()
                            .name("forget_published".to_owned())
                            .expire_after(KEEP_PUBLISHED)
                            .build(),
                    )
                    .build(),
            ])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Outbox for MongoOutbox {
    async fn add(&self, event: &Envelope, lease: Duration) -> Result<(), StoreError> {
        let document = doc! {
            "_id": event.event_id.to_string(),
            "job_id": event.job_id.to_string(),
            "event_type": event.event_type(),
            "envelope": String::from_utf8(event.to_json()).expect("JSON is UTF-8"),
            "status": PENDING,
            "created_at": at(Duration::ZERO),
            "leased_until": at(lease),
            "attempts": 0_i32,
        };
        match self.entries.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn mark_published(&self, event_id: Uuid) -> Result<(), StoreError> {
        self.entries
            .update_one(
                doc! {"_id": event_id.to_string()},
                doc! {"$set": {"status": PUBLISHED, "published_at": at(Duration::ZERO)}},
            )
            .await?;
        Ok(())
    }

    async fn release(&self, event_id: Uuid) -> Result<(), StoreError> {
        self.entries
            .update_one(
                doc! {"_id": event_id.to_string(), "status": PENDING},
                doc! {"$set": {"leased_until": at(Duration::ZERO)}},
            )
            .await?;
        Ok(())
    }

    async fn claim_next(&self, lease: Duration) -> Result<Option<Envelope>, StoreError> {
        let claimed = self
            .entries
            .find_one_and_update(
                doc! {"status": PENDING, "leased_until": {"$lte": at(Duration::ZERO)}},
                doc! {"$set": {"leased_until": at(lease)}, "$inc": {"attempts": 1}},
            )
            .sort(doc! {"created_at": 1})
            .return_document(ReturnDocument::After)
            .await?;
        let Some(document) = claimed else {
            return Ok(None);
        };
        let id = document.get_str("_id").unwrap_or("?").to_owned();
        let json = document
            .get_str("envelope")
            .map_err(|e| StoreError::Corrupt {
                id: id.clone(),
                reason: e.to_string(),
            })?;
        Envelope::from_json(json.as_bytes())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                id,
                reason: e.to_string(),
            })
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .entries
            .count_documents(doc! {"status": PENDING})
            .await?)
    }
}

/// How long the relay holds an entry while publishing it: longer than a publish can take
/// (connect 5 s + confirm 10 s, twice), so no other relay publishes it meanwhile.
pub const RELAY_LEASE: Duration = Duration::from_secs(60);

/// Publishes pending outbox entries until `shutdown` fires. Wakes on `wake` (an inline publish
/// failed) or every `poll_interval`; backs off exponentially while the broker stays down.
pub async fn relay(
    outbox: Arc<dyn Outbox>,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    let new_backoff = || {
        platform::retry::reconnect()
            .with_max_delay(Duration::from_secs(5))
            .build()
    };
    let mut backoff = new_backoff();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // Claiming only takes a lease, so abandoning it on shutdown loses nothing.
        let claimed = tokio::select! {
            claimed = outbox.claim_next(RELAY_LEASE) => claimed,
            _ = shutdown.cancelled() => return,
        };
        let pause = match claimed {
            Ok(Some(event)) => {
                let published = tokio::select! {
                    result = bus.publish(&event) => result,
                    _ = shutdown.cancelled() => {
                        let _ = outbox.release(event.event_id).await;
                        return;
                    }
                };
                match published {
                    Ok(()) => {
                        backoff = new_backoff();
                        if let Err(e) = outbox.mark_published(event.event_id).await {
                            // The lease will expire and the event go out again: consumers dedupe.
                            tracing::warn!(event_id = %event.event_id, error = %e, "published but not marked");
                        }
                        tracing::info!(event_id = %event.event_id, job_id = %event.job_id, event_type = event.event_type(), "relayed an outbox event");
                        continue;
                    }
                    Err(e) => {
                        if let Err(release) = outbox.release(event.event_id).await {
                            tracing::warn!(error = %release, "could not release an outbox entry; its lease will expire");
                        }
                        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(error = %e, ?delay, "outbox relay cannot publish; retrying");
                        delay
                    }
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll_interval) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            Err(e) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, ?delay, "outbox unreadable; retrying");
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
