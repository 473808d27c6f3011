//! The retention ledger in MongoDB: collection `retention`, one document per finished job.

use crate::store::{ExpiryClaim, FinishedJob, RetentionLedger, StoreError, later};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use std::time::Duration;
use uuid::Uuid;

const PENDING: &str = "pending";
const DONE: &str = "done";

fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

/// The ledger in MongoDB: collection `retention` beside the event store, one document per
/// finished job (`_id` = job id).
#[derive(Clone)]
pub struct MongoRetentionLedger {
    jobs: Collection<Document>,
}

impl MongoRetentionLedger {
    pub fn new(client: &mongodb::Client, database: &str) -> Self {
        Self {
            jobs: client.database(database).collection("retention"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.jobs
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! {"state": 1, "finished_at": 1})
                    .options(IndexOptions::builder().name("due".to_owned()).build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! {"mp3_file_id": 1})
                    .options(IndexOptions::builder().name("by_mp3".to_owned()).build())
                    .build(),
            ])
            .await?;
        Ok(())
    }

    fn claim_of(document: &Document) -> Result<ExpiryClaim, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: document.get_str("_id").unwrap_or("?").to_owned(),
            reason,
        };
        let uuid = |key: &str| {
            document
                .get_str(key)
                .map_err(|e| corrupt(e.to_string()))
                .and_then(|raw| Uuid::parse_str(raw).map_err(|e| corrupt(e.to_string())))
        };
        Ok(ExpiryClaim {
            job_id: uuid("_id")?,
            owner_id: document.get_str("owner_id").unwrap_or_default().to_owned(),
            mp3_file_id: document.get_str("mp3_file_id").ok().map(str::to_owned),
            expiry_event_id: uuid("expiry_event_id")?,
        })
    }
}

#[async_trait]
impl RetentionLedger for MongoRetentionLedger {
    async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await
    }

    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError> {
        let document = doc! {
            "_id": job.job_id.to_string(),
            "owner_id": &job.owner_id,
            "finished_at": bson_time(job.finished_at),
            "mp3_file_id": job.mp3_file_id.as_deref(),
            "expiry_event_id": Uuid::now_v7().to_string(),
            "state": PENDING,
            "claimed_until": bson::DateTime::from_millis(0),
            "claims": 0_i32,
        };
        match self.jobs.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if super::is_duplicate_key(&e) => {
                if let Some(mp3) = &job.mp3_file_id {
                    self.jobs
                        .update_one(
                            doc! {"_id": job.job_id.to_string(), "mp3_file_id": null},
                            doc! {"$set": {"mp3_file_id": mp3}},
                        )
                        .await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError> {
        // The conditional update is the claim: of several sweepers, one matches.
        let claimed = self
            .jobs
            .find_one_and_update(
                doc! {
                    "state": PENDING,
                    "finished_at": {"$lte": bson_time(cutoff)},
                    "claimed_until": {"$lte": bson_time(Utc::now())},
                },
                doc! {"$set": {"claimed_until": bson_time(later(lease))}, "$inc": {"claims": 1}},
            )
            .sort(doc! {"finished_at": 1})
            .return_document(ReturnDocument::After)
            .await?;
        claimed.as_ref().map(Self::claim_of).transpose()
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string(), "state": PENDING},
                doc! {"$set": {"claimed_until": bson::DateTime::from_millis(0)}},
            )
            .await?;
        Ok(())
    }

    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string()},
                doc! {"$set": {"state": DONE, "done_at": bson_time(Utc::now())}},
            )
            .await?;
        Ok(())
    }

    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError> {
        let found = self
            .jobs
            .find_one(doc! {"mp3_file_id": mp3_file_id})
            .projection(doc! {"_id": 1})
            .await?;
        Ok(found
            .as_ref()
            .and_then(|d| d.get_str("_id").ok())
            .and_then(|id| Uuid::parse_str(id).ok()))
    }
}
