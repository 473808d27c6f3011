//! The job watch in MongoDB: collection `watchdog`, one document per job (`_id` = job id) with
//! when it last moved, whether it is finished, and the watchdog's lease on it.

use super::is_duplicate_key;
use crate::store::{JobWatch, StalledJob, StoreError, later};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use std::time::Duration;
use uuid::Uuid;

const ACTIVE: &str = "active";
const DONE: &str = "done";

fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

#[derive(Clone)]
pub struct MongoJobWatch {
    jobs: Collection<Document>,
}

impl MongoJobWatch {
    pub fn new(client: &mongodb::Client, database: &str) -> Self {
        Self {
            jobs: client.database(database).collection("watchdog"),
        }
    }
}

#[async_trait]
impl JobWatch for MongoJobWatch {
    async fn prepare(&self) -> Result<(), StoreError> {
        self.jobs
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"state": 1, "last_activity": 1})
                    .options(IndexOptions::builder().name("stalled".to_owned()).build())
                    .build(),
            )
            .await?;
        Ok(())
    }

    async fn touch(&self, job_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        // Upsert on "not done": a finished job's document does not match, and the insert the
        // upsert then tries collides with its `_id`, which is what leaves it finished.
        let touched = self
            .jobs
            .update_one(
                doc! {"_id": job_id.to_string(), "state": {"$ne": DONE}},
                doc! {
                    "$max": {"last_activity": bson_time(at)},
                    "$setOnInsert": {"state": ACTIVE, "claimed_until": bson::DateTime::from_millis(0)},
                },
            )
            .upsert(true)
            .await;
        match touched {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn finish(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string()},
                doc! {"$set": {"state": DONE, "done_at": bson_time(Utc::now())}},
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn claim_stalled(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<StalledJob>, StoreError> {
        // The conditional update is the claim: of several watchdogs, one matches.
        let claimed = self
            .jobs
            .find_one_and_update(
                doc! {
                    "state": ACTIVE,
                    "last_activity": {"$lte": bson_time(cutoff)},
                    "claimed_until": {"$lte": bson_time(Utc::now())},
                },
                doc! {"$set": {"claimed_until": bson_time(later(lease))}},
            )
            .sort(doc! {"last_activity": 1})
            .return_document(ReturnDocument::After)
            .await?;
        let Some(document) = claimed else {
            return Ok(None);
        };
        let id = document.get_str("_id").unwrap_or("?");
        let job_id = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt {
            id: id.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Some(StalledJob { job_id }))
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.jobs
            .update_one(
                doc! {"_id": job_id.to_string(), "state": ACTIVE},
                doc! {"$set": {"claimed_until": bson::DateTime::from_millis(0)}},
            )
            .await?;
        Ok(())
    }
}
