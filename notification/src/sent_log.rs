//! The sent log: which outcomes have been mailed, so each is mailed exactly once.
//!
//! Keyed by the outcome event's id. A sender first *claims* the event, sends, then records the
//! result; a redelivery of a finished event sends nothing. A claim whose holder crashed before
//! recording anything is taken over once it is older than the lease. After the result is
//! recorded, the `notification.*` event announcing it is published and the row marked
//! *announced*, so a crash before that publish is repaired by the redelivery.
//!
//! [`MongoSentLog`] keeps it in MongoDB (database `notification`, collection `sent`, the event id
//! as `_id`, which makes it unique). An in-process or file implementation can be added for the
//! all-in-one mode behind the same [`SentLog`] trait.

use async_trait::async_trait;
use mongodb::bson::{self, Document, doc};
use mongodb::error::{ErrorKind, WriteError, WriteFailure};
use mongodb::{Client, Collection};
use std::time::Duration;
use uuid::Uuid;

pub const SENT_COLLECTION: &str = "sent";
/// The collection of deleted jobs (beside [`SENT_COLLECTION`]).
pub const DELETED_COLLECTION: &str = "deleted_jobs";
/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sent log unavailable: {0}")]
pub struct SentLogError(pub String);

/// Proof of holding the claim on one event, required to release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub event_id: Uuid,
    token: Uuid,
}

impl Claim {
    /// For implementations of [`SentLog`] in this crate: the token stays unforgeable outside it.
    pub(crate) fn new(event_id: Uuid, token: Uuid) -> Self {
        Self { event_id, token }
    }

    pub(crate) fn token(&self) -> Uuid {
        self.token
    }
}

/// How the mail about an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Refused for good, or given up on; the reason is for the `notification.failed` event.
    Failed {
        reason: String,
    },
}

/// A recorded end, and whether the event announcing it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub delivery: Delivery,
    pub announced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// Nobody has sent it: send now, then [`SentLog::finish`] or [`SentLog::release`].
    Granted(Claim),
    /// Another delivery claimed it recently and may be sending it right now.
    HeldElsewhere,
    /// It was dealt with already.
    Finished(Finished),
}

#[async_trait]
pub trait SentLog: Send + Sync + 'static {
    /// Claims the mail about `event_id` (an outcome of `job_id`), or says why not.
    async fn claim(&self, event_id: Uuid, job_id: Uuid) -> Result<ClaimResult, SentLogError>;

    /// Records how the send under `claim` ended.
    async fn finish(&self, claim: &Claim, delivery: &Delivery) -> Result<(), SentLogError>;

    /// Gives the claim up without a result (the send failed for now), so the next delivery can
    /// claim at once instead of waiting for the lease to run out.
    async fn release(&self, claim: &Claim) -> Result<(), SentLogError>;

    /// Records that the `notification.*` event about `event_id` was published.
    async fn mark_announced(&self, event_id: Uuid) -> Result<(), SentLogError>;

    /// Readiness: `Ok` when the store answers.
    async fn check(&self) -> Result<(), SentLogError>;

    /// Records that the owner deleted `job_id` (idempotent): no mail about it goes out any more.
    async fn record_deleted(&self, job_id: Uuid) -> Result<(), SentLogError>;

    /// Whether the owner deleted `job_id`.
    async fn is_deleted(&self, job_id: Uuid) -> Result<bool, SentLogError>;
}

/// The sent log in a MongoDB collection.
#[derive(Clone)]
pub struct MongoSentLog {
    client: Client,
    sent: Collection<Document>,
    /// `deleted_jobs`: the jobs their owners deleted, by id.
    deleted: Collection<Document>,
    lease: Duration,
}

impl MongoSentLog {
    /// A log in `database`.`sent` on `client` (see [`platform::mongo::connect`]); claims older
    /// than `lease` are taken over.
    pub fn new(client: &Client, database: &str, lease: Duration) -> Self {
        let sent = client.database(database).collection(SENT_COLLECTION);
        let deleted = client.database(database).collection(DELETED_COLLECTION);
        Self {
            client: client.clone(),
            sent,
            deleted,
            lease,
        }
    }

    async fn try_insert(
        &self,
        event_id: Uuid,
        job_id: Uuid,
        token: Uuid,
    ) -> Result<bool, SentLogError> {
        let row = doc! {
            "_id": event_id.to_string(),
            "job_id": job_id.to_string(),
            "state": "claimed",
            "claim": token.to_string(),
            "claimed_at": bson::DateTime::now(),
            "announced": false,
        };
        match self.sent.insert_one(row).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Replaces a lapsed claim by ours; `false` when someone else changed the row first.
    async fn take_over(
        &self,
        event_id: Uuid,
        lapsed_token: &str,
        token: Uuid,
    ) -> Result<bool, SentLogError> {
        let taken = self
            .sent
            .update_one(
                doc! {"_id": event_id.to_string(), "state": "claimed", "claim": lapsed_token},
                doc! {"$set": {"claim": token.to_string(), "claimed_at": bson::DateTime::now()}},
            )
            .await
            .map_err(unavailable)?;
        Ok(taken.modified_count == 1)
    }
}

#[async_trait]
impl SentLog for MongoSentLog {
    async fn record_deleted(&self, job_id: Uuid) -> Result<(), SentLogError> {
        let row = doc! {"_id": job_id.to_string(), "at": bson::DateTime::now()};
        match self.deleted.insert_one(row).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn is_deleted(&self, job_id: Uuid) -> Result<bool, SentLogError> {
        let found = self
            .deleted
            .find_one(doc! {"_id": job_id.to_string()})
            .await
            .map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn claim(&self, event_id: Uuid, job_id: Uuid) -> Result<ClaimResult, SentLogError> {
        let token = Uuid::new_v4();
        // Each round either decides or saw the row change under it (a release or a takeover
        // racing ours); the next round then sees the new state.
        for _ in 0..3 {
            if self.try_insert(event_id, job_id, token).await? {
                return Ok(ClaimResult::Granted(Claim { event_id, token }));
            }
            let Some(row) = self
                .sent
                .find_one(doc! {"_id": event_id.to_string()})
                .await
                .map_err(unavailable)?
            else {
                continue; // released in between: insert again
            };
            match row.get_str("state").unwrap_or_default() {
                "sent" => return Ok(finished(&row, Delivery::Sent)),
                "failed" => {
                    let reason = row.get_str("reason").unwrap_or("unknown").to_owned();
                    return Ok(finished(&row, Delivery::Failed { reason }));
                }
                _ => {
                    let claimed_at = row
                        .get_datetime("claimed_at")
                        .map(|at| at.to_system_time())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    let age = claimed_at.elapsed().unwrap_or_default();
                    if age < self.lease {
                        return Ok(ClaimResult::HeldElsewhere);
                    }
                    let lapsed = row.get_str("claim").unwrap_or_default();
                    tracing::warn!(%event_id, ?age, "taking over a lapsed claim (its holder likely crashed)");
                    if self.take_over(event_id, lapsed, token).await? {
                        return Ok(ClaimResult::Granted(Claim { event_id, token }));
                    }
                }
            }
        }
        // The row keeps changing under us: someone else is actively working on it.
        Ok(ClaimResult::HeldElsewhere)
    }

    async fn finish(&self, claim: &Claim, delivery: &Delivery) -> Result<(), SentLogError> {
        let mut set = doc! {"finished_at": bson::DateTime::now(), "announced": false};
        match delivery {
            Delivery::Sent => {
                set.insert("state", "sent");
            }
            Delivery::Failed { reason } => {
                set.insert("state", "failed");
                set.insert("reason", reason.as_str());
            }
        }
        // Keyed by the event only: the result stands even if our claim lapsed meanwhile.
        self.sent
            .update_one(doc! {"_id": claim.event_id.to_string()}, doc! {"$set": set})
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<(), SentLogError> {
        self.sent
            .delete_one(doc! {
                "_id": claim.event_id.to_string(),
                "state": "claimed",
                "claim": claim.token.to_string(),
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn mark_announced(&self, event_id: Uuid) -> Result<(), SentLogError> {
        self.sent
            .update_one(
                doc! {"_id": event_id.to_string()},
                doc! {"$set": {"announced": true}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn check(&self) -> Result<(), SentLogError> {
        self.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

fn finished(row: &Document, delivery: Delivery) -> ClaimResult {
    ClaimResult::Finished(Finished {
        delivery,
        announced: row.get_bool("announced").unwrap_or(false),
    })
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        &*error.kind,
        ErrorKind::Write(WriteFailure::WriteError(WriteError {
            code: DUPLICATE_KEY,
            ..
        }))
    )
}

fn unavailable(error: mongodb::error::Error) -> SentLogError {
    SentLogError(error.to_string())
}
