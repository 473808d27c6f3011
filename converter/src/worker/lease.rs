//! The conversion lease: one conversion of a job at a time across every replica of the worker.
//!
//! A delivery converts a job only while it holds the job's lease. The lease expires unless its
//! holder renews it (a heartbeat, see [`Leases::renew`]), so a holder that died (killed, out of
//! memory) frees the job for the redelivery after at most one lease time, while a live holder
//! keeps it however long the conversion takes. Each delivery holds the lease under a holder name
//! of its own: a redelivery of a job still converting (after the broker's consumer timeout, or a
//! duplicate copy) waits for it, then finds the MP3 and re-announces its success event.
//!
//! [`MongoLeases`] keeps leases in MongoDB (`converter.conversion_leases`, one document per job:
//! `_id` = job id, `holder`, `expires_at`), taken atomically by an upsert whose filter matches only
//! a free or expired lease: a lease held by another makes the upsert collide on `_id` (duplicate
//! key), which says "held". Expiry compares the replicas' clocks, so they should agree to well
//! within the lease time (NTP). [`LocalLeases`] is the twin in memory for the all-in-one mode,
//! whose single worker is the only one.

use async_trait::async_trait;
use mongodb::bson::{DateTime, doc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The lease store could not be reached or refused the operation.
#[derive(Debug, thiserror::Error)]
#[error("conversion lease store: {0}")]
pub struct LeaseError(String);

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Takes the lease on `job` for `holder` for `ttl` when it is free, expired or `holder`'s
    /// already; `false` when another holder has it.
    async fn acquire(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError>;

    /// Extends `holder`'s lease on `job` to `ttl` from now; `false` when `holder` lost it (it
    /// expired and another took it).
    async fn renew(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError>;

    /// Gives the lease up, if `holder` still has it.
    async fn release(&self, job: Uuid, holder: &str) -> Result<(), LeaseError>;
}

/// Leases in a MongoDB collection, shared by every replica.
pub struct MongoLeases {
    collection: mongodb::Collection<mongodb::bson::Document>,
}

/// The code MongoDB (and its wire-compatible servers) give a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

impl MongoLeases {
    pub fn new(client: &mongodb::Client) -> Self {
        Self {
            collection: client.database("converter").collection("conversion_leases"),
        }
    }
}

fn store_error(e: mongodb::error::Error) -> LeaseError {
    LeaseError(e.to_string())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(error)) => {
            error.code == DUPLICATE_KEY
        }
        mongodb::error::ErrorKind::Command(error) => error.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}

fn expiry(ttl: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + ttl.as_millis() as i64)
}

#[async_trait]
impl Leases for MongoLeases {
    async fn acquire(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError> {
        let filter = doc! {
            "_id": job.to_string(),
            "$or": [{"expires_at": {"$lte": DateTime::now()}}, {"holder": holder}],
        };
        let update = doc! {"$set": {"holder": holder, "expires_at": expiry(ttl)}};
        match self
            .collection
            .update_one(filter, update)
            .upsert(true)
            .await
        {
            Ok(_) => Ok(true),
            // The filter missed a lease that exists: held by another, the upsert collided.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn renew(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError> {
        let result = self
            .collection
            .update_one(
                doc! {"_id": job.to_string(), "holder": holder},
                doc! {"$set": {"expires_at": expiry(ttl)}},
            )
            .await
            .map_err(store_error)?;
        Ok(result.matched_count == 1)
    }

    async fn release(&self, job: Uuid, holder: &str) -> Result<(), LeaseError> {
        self.collection
            .delete_one(doc! {"_id": job.to_string(), "holder": holder})
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// Leases in this process's memory: the all-in-one mode's single worker.
#[derive(Default)]
pub struct LocalLeases {
    held: Mutex<HashMap<Uuid, (String, Instant)>>,
}

#[async_trait]
impl Leases for LocalLeases {
    async fn acquire(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError> {
        let mut held = self.held.lock().expect("not poisoned");
        let now = Instant::now();
        match held.get(&job) {
            Some((other, expires)) if other != holder && *expires > now => Ok(false),
            _ => {
                held.insert(job, (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn renew(&self, job: Uuid, holder: &str, ttl: Duration) -> Result<bool, LeaseError> {
        let mut held = self.held.lock().expect("not poisoned");
        match held.get_mut(&job) {
            Some((current, expires)) if current == holder => {
                *expires = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, job: Uuid, holder: &str) -> Result<(), LeaseError> {
        let mut held = self.held.lock().expect("not poisoned");
        if held.get(&job).is_some_and(|(current, _)| current == holder) {
            held.remove(&job);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_lease_is_held_until_released_or_expired() {
        let leases = LocalLeases::default();
        let job = Uuid::now_v7();
        let ttl = Duration::from_millis(200);
        assert!(leases.acquire(job, "a", ttl).await.unwrap());
        assert!(!leases.acquire(job, "b", ttl).await.unwrap(), "held by a");
        assert!(leases.renew(job, "a", ttl).await.unwrap());
        assert!(!leases.renew(job, "b", ttl).await.unwrap());
        leases.release(job, "b").await.unwrap();
        assert!(
            !leases.acquire(job, "b", ttl).await.unwrap(),
            "b cannot release a's"
        );
        leases.release(job, "a").await.unwrap();
        assert!(leases.acquire(job, "b", ttl).await.unwrap(), "released");
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(leases.acquire(job, "c", ttl).await.unwrap(), "expired");
        assert!(!leases.renew(job, "b", ttl).await.unwrap(), "b lost it");
    }
}
