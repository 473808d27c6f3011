//! The retention ledger and the job watch in memory.

use super::{ExpiryClaim, FinishedJob, JobWatch, RetentionLedger, StalledJob, StoreError, later};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// The ledger in memory, for a single-process mode without MongoDB (and for tests): it forgets
/// everything on restart, so jobs finished before a restart never expire.
#[derive(Default)]
pub struct MemoryRetentionLedger {
    jobs: Mutex<HashMap<Uuid, MemoryEntry>>,
}

struct MemoryEntry {
    job: FinishedJob,
    expiry_event_id: Uuid,
    claimed_until: DateTime<Utc>,
    done: bool,
}

#[async_trait]
impl RetentionLedger for MemoryRetentionLedger {
    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let entry = jobs.entry(job.job_id).or_insert_with(|| MemoryEntry {
            job: job.clone(),
            expiry_event_id: Uuid::now_v7(),
            claimed_until: DateTime::<Utc>::MIN_UTC,
            done: false,
        });
        if entry.job.mp3_file_id.is_none() {
            entry.job.mp3_file_id.clone_from(&job.mp3_file_id);
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError> {
        let now = Utc::now();
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let due = jobs
            .values_mut()
            .filter(|e| !e.done && e.job.finished_at <= cutoff && e.claimed_until <= now)
            .min_by_key(|e| e.job.finished_at);
        Ok(due.map(|entry| {
            entry.claimed_until = later(lease);
            ExpiryClaim {
                job_id: entry.job.job_id,
                owner_id: entry.job.owner_id.clone(),
                mp3_file_id: entry.job.mp3_file_id.clone(),
                expiry_event_id: entry.expiry_event_id,
            }
        }))
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get_mut(&job_id) {
            entry.claimed_until = DateTime::<Utc>::MIN_UTC;
        }
        Ok(())
    }

    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError> {
        if let Some(entry) = self.jobs.lock().expect("not poisoned").get_mut(&job_id) {
            entry.done = true;
        }
        Ok(())
    }

    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .jobs
            .lock()
            .expect("not poisoned")
            .values()
            .find(|e| e.job.mp3_file_id.as_deref() == Some(mp3_file_id))
            .map(|e| e.job.job_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RetentionLedger;

    fn finished(job_id: Uuid, seconds_ago: i64) -> FinishedJob {
        FinishedJob {
            job_id,
            owner_id: "user-1".into(),
            finished_at: Utc::now() - chrono::Duration::seconds(seconds_ago),
            mp3_file_id: None,
        }
    }

    #[tokio::test]
    async fn the_memory_ledger_claims_each_due_job_once_per_lease() {
        let ledger = MemoryRetentionLedger::default();
        let (old, fresh) = (Uuid::now_v7(), Uuid::now_v7());
        ledger.record_finished(&finished(old, 100)).await.unwrap();
        ledger.record_finished(&finished(fresh, 1)).await.unwrap();
        let mut with_mp3 = finished(old, 100);
        with_mp3.mp3_file_id = Some("m1".into());
        ledger.record_finished(&with_mp3).await.unwrap();

        let cutoff = Utc::now() - chrono::Duration::seconds(10);
        let claim = ledger
            .claim_due(cutoff, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.job_id, old);
        assert_eq!(claim.mp3_file_id.as_deref(), Some("m1"));
        // Leased: nobody else gets it; the fresh job is not due.
        assert!(
            ledger
                .claim_due(cutoff, Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        // Released: claimable again, with the same event id.
        ledger.release(old).await.unwrap();
        let again = ledger
            .claim_due(cutoff, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.expiry_event_id, claim.expiry_event_id);
        ledger.complete(old).await.unwrap();
        ledger.release(old).await.unwrap();
        assert!(
            ledger
                .claim_due(Utc::now(), Duration::from_secs(60))
                .await
                .unwrap()
                .is_some_and(|c| c.job_id == fresh)
        );
        assert_eq!(ledger.job_of_mp3("m1").await.unwrap(), Some(old));
        assert_eq!(ledger.job_of_mp3("m2").await.unwrap(), None);
    }
}

/// The job watch in memory (the all-in-one mode: one process). It forgets on restart; the
/// all-in-one's replay then re-sends every unfinished job, and their events fill it again.
#[derive(Default)]
pub struct MemoryJobWatch {
    jobs: Mutex<HashMap<Uuid, Watched>>,
}

struct Watched {
    last_activity: DateTime<Utc>,
    claimed_until: DateTime<Utc>,
    done: bool,
}

#[async_trait]
impl JobWatch for MemoryJobWatch {
    async fn touch(&self, job_id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let watched = jobs.entry(job_id).or_insert_with(|| Watched {
            last_activity: at,
            claimed_until: DateTime::<Utc>::MIN_UTC,
            done: false,
        });
        watched.last_activity = watched.last_activity.max(at);
        Ok(())
    }

    async fn finish(&self, job_id: Uuid) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let watched = jobs.entry(job_id).or_insert_with(|| Watched {
            last_activity: Utc::now(),
            claimed_until: DateTime::<Utc>::MIN_UTC,
            done: true,
        });
        watched.done = true;
        Ok(())
    }

    async fn claim_stalled(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<StalledJob>, StoreError> {
        let now = Utc::now();
        let mut jobs = self.jobs.lock().expect("not poisoned");
        let oldest = jobs
            .iter_mut()
            .filter(|(_, w)| !w.done && w.last_activity <= cutoff && w.claimed_until <= now)
            .min_by_key(|(_, w)| w.last_activity);
        Ok(oldest.map(|(job_id, watched)| {
            watched.claimed_until = later(lease);
            StalledJob { job_id: *job_id }
        }))
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        if let Some(watched) = self.jobs.lock().expect("not poisoned").get_mut(&job_id) {
            watched.claimed_until = DateTime::<Utc>::MIN_UTC;
        }
        Ok(())
    }
}
