//! The event store in MongoDB: collection `events`, one document per event with `_id` = event id,
//! so appending twice is a no-op and neither duplicated nor out-of-order deliveries can corrupt a
//! job (the fold in [`contracts::job`] is order-insensitive).

use super::is_duplicate_key;
use crate::store::{EventStore, JobPage, StoreError, owner_of};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use uuid::Uuid;

#[derive(Clone)]
pub struct MongoEventStore {
    events: Collection<Document>,
}

impl MongoEventStore {
    pub fn new(client: &mongodb::Client, database: &str) -> Self {
        Self {
            events: client.database(database).collection("events"),
        }
    }

    /// Creates the indexes listings and folds use (idempotent).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.events
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! {"job_id": 1, "occurred_at": 1})
                    .options(IndexOptions::builder().name("by_job".to_owned()).build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! {"owner_id": 1, "event_type": 1, "job_id": -1})
                    .options(IndexOptions::builder().name("by_owner".to_owned()).build())
                    .build(),
            ])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for MongoEventStore {
    async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await
    }

    async fn append(&self, event: &Envelope) -> Result<bool, StoreError> {
        let json = String::from_utf8(event.to_json()).expect("JSON is UTF-8");
        let mut document = doc! {
            "_id": event.event_id.to_string(),
            "job_id": event.job_id.to_string(),
            "event_type": event.event_type(),
            "occurred_at": bson::DateTime::from_millis(event.occurred_at.timestamp_millis()),
            "envelope": json,
        };
        if let Some(owner) = owner_of(&event.event) {
            document.insert("owner_id", owner);
        }
        match self.events.insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn events_of_job(&self, job_id: Uuid) -> Result<Vec<Envelope>, StoreError> {
        self.events_of_jobs(&[job_id]).await
    }

    async fn events_of_jobs(&self, job_ids: &[Uuid]) -> Result<Vec<Envelope>, StoreError> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = job_ids.iter().map(Uuid::to_string).collect();
        let documents: Vec<Document> = self
            .events
            .find(doc! {"job_id": {"$in": ids}})
            .sort(doc! {"occurred_at": 1, "_id": 1})
            .await?
            .try_collect()
            .await?;
        let mut events: Vec<Envelope> = documents.iter().filter_map(super::stored_event).collect();
        events.sort_by_key(|e| (e.occurred_at, e.event_id));
        Ok(events)
    }

    async fn events_of_job_since(
        &self,
        job_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<Envelope>, StoreError> {
        // Stored times are whole milliseconds (floored), so flooring `since` misses nothing.
        let filter = doc! {
            "job_id": job_id.to_string(),
            "occurred_at": {"$gte": bson::DateTime::from_millis(since.timestamp_millis())},
        };
        let documents: Vec<Document> = self
            .events
            .find(filter)
            .sort(doc! {"occurred_at": 1, "_id": 1})
            .await?
            .try_collect()
            .await?;
        let mut events = Vec::with_capacity(documents.len());
        for document in &documents {
            match super::envelope_of(document) {
                Ok(event) => events.push(event),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable stored event"),
            }
        }
        events.sort_by_key(|e| (e.occurred_at, e.event_id));
        Ok(events)
    }

    async fn jobs_of_owner(&self, owner_id: &str, page: JobPage) -> Result<Vec<Uuid>, StoreError> {
        let mut filter = doc! {"owner_id": owner_id, "event_type": "job.submitted"};
        if let Some(before) = page.before {
            filter.insert("job_id", doc! {"$lt": before.to_string()});
        }
        let documents: Vec<Document> = self
            .events
            .find(filter)
            .sort(doc! {"job_id": -1})
            .limit(i64::from(page.limit))
            .projection(doc! {"job_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(super::job_ids(&documents))
    }

    async fn submitted_jobs(&self) -> Result<Vec<Uuid>, StoreError> {
        let documents: Vec<Document> = self
            .events
            .find(doc! {"event_type": "job.submitted"})
            .sort(doc! {"job_id": 1})
            .projection(doc! {"job_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(super::job_ids(&documents))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.events
            .client()
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }
}
