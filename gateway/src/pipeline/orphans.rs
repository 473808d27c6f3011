//! Nothing orphaned: files no job accounts for are deleted. A video whose upload finished but
//! whose job was never recorded (a crash between the GridFS write and the outbox), and an MP3 or
//! video of a job that was deleted or expired (a conversion that raced the deletion, a delete
//! that failed half-way), are found by walking the blob store a page at a time and deleted by
//! the [`FileJanitor`] (metric reason `orphaned`).
//!
//! Only files older than `ORPHAN_GRACE` are looked at: an upload in flight, or one whose
//! submission is still on its way to the event store, is younger than that. Deleting is
//! idempotent, so several replicas may sweep at once without claims.

use super::{DeleteReason, FileJanitor};
use crate::store::EventStore;
use chrono::Utc;
use contracts::JobStatus;
use platform::blob::{BlobInfo, BlobStore, Bucket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Files looked at per bucket in one sweep; the next sweep continues after the last one.
const PAGE: usize = 200;

pub struct OrphanSweeper {
    blobs: Arc<dyn BlobStore>,
    store: Arc<dyn EventStore>,
    janitor: FileJanitor,
    /// `ORPHAN_GRACE`.
    grace: Duration,
    /// Where the next sweep of each bucket continues (`None`: from the start).
    cursors: Mutex<[Option<String>; 2]>,
}

/// Why a file is kept or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Orphaned,
}

impl OrphanSweeper {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        store: Arc<dyn EventStore>,
        janitor: FileJanitor,
        grace: Duration,
    ) -> Self {
        Self {
            blobs,
            store,
            janitor,
            grace,
            cursors: Mutex::new([None, None]),
        }
    }

    /// Looks at one page of each bucket; returns how many files it deleted.
    pub async fn sweep_once(&self) -> anyhow::Result<u32> {
        let before = chrono::Duration::from_std(self.grace)
            .ok()
            .and_then(|grace| Utc::now().checked_sub_signed(grace))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut deleted = 0;
        for (slot, bucket) in [Bucket::Videos, Bucket::Mp3s].into_iter().enumerate() {
            let after = self.cursors.lock().expect("not poisoned")[slot].clone();
            let page = self
                .blobs
                .list_older_than(bucket, before, after.as_deref(), PAGE)
                .await?;
            // A short page is the end of the bucket: the next sweep starts over.
            let next = (page.len() == PAGE)
                .then(|| page.last().map(|file| file.id.clone()))
                .flatten();
            for file in &page {
                if self.verdict(file).await? == Verdict::Orphaned
                    && self
                        .janitor
                        .delete_file(bucket, &file.id, DeleteReason::Orphaned)
                        .await?
                {
                    tracing::info!(bucket = bucket.database(), file_id = %file.id, job_id = ?file.metadata.get("job_id"), "deleted an orphaned file");
                    deleted += 1;
                }
            }
            self.cursors.lock().expect("not poisoned")[slot] = next;
        }
        Ok(deleted)
    }

    /// A file is orphaned when its job is unknown to the event store, or deleted or expired.
    async fn verdict(&self, file: &BlobInfo) -> anyhow::Result<Verdict> {
        let Some(job_id) = file
            .metadata
            .get("job_id")
            .and_then(|id| id.as_str())
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            // Every file this system writes names its job; one that does not is no job's.
            return Ok(Verdict::Orphaned);
        };
        Ok(match self.store.job_state(job_id).await? {
            None => Verdict::Orphaned,
            Some(job) if matches!(job.status, JobStatus::Deleted | JobStatus::Expired) => {
                Verdict::Orphaned
            }
            Some(_) => Verdict::Keep,
        })
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            let sweep = tokio::select! {
                result = self.sweep_once() => result,
                _ = shutdown.cancelled() => return,
            };
            match sweep {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "orphan sweep deleted files"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "orphan sweep failed; retrying next interval"
                ),
            }
        }
    }
}
