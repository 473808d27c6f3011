//! The outbox in MongoDB: collection `outbox`, one document per event; leases are conditional
//! updates, so only one replica publishes an entry at a time.

use super::is_duplicate_key;
use crate::store::{Outbox, StoreError};
use async_trait::async_trait;
use chrono::Utc;
use contracts::Envelope;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use std::time::Duration;
use uuid::Uuid;

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
    async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await
    }

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
        super::envelope_of(&document).map(Some)
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .entries
            .count_documents(doc! {"status": PENDING})
            .await?)
    }
}
