//! Nothing orphaned: files no job accounts for are deleted. A video whose upload finished but
//! whose job was never recorded (a crash between the GridFS write and the outbox), and an MP3 or
//! video of a job that was deleted or expired (a conversion that raced the deletion, a delete
//! that failed half-way), are found by walking the blob store a page at a time and deleted by
//! the [`FileJanitor`] (metric reason `orphaned`).
//!
//! Only files older than `ORPHAN_GRACE` are looked at: an upload in flight, or one whose
//! submission is still on its way to the event store, is younger than that. A file whose job is
//! unknown is kept while any event still waits in the outbox: a submission the event store
//! missed and the broker could not take yet (an outage longer than the grace) names that job,
//! and deleting its video would lose an accepted job. Deleting is idempotent, so several
//! replicas may sweep at once without claims.

use super::{DeleteReason, FileJanitor};
use crate::store::{EventStore, Outbox};
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
    outbox: Arc<dyn Outbox>,
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
        outbox: Arc<dyn Outbox>,
        janitor: FileJanitor,
        grace: Duration,
    ) -> Self {
        Self {
            blobs,
            store,
            outbox,
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
        // Read before the pages: an event added later names a file younger than the grace.
        let outbox_empty = self.outbox.pending().await? == 0;
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
                if self.verdict(file, outbox_empty).await? == Verdict::Orphaned
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

    /// A file is orphaned when its job is deleted or expired, or unknown to the event store
    /// while nothing waits in the outbox (`outbox_empty`).
    async fn verdict(&self, file: &BlobInfo, outbox_empty: bool) -> anyhow::Result<Verdict> {
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
            None if outbox_empty => Verdict::Orphaned,
            None => Verdict::Keep,
            Some(job) if matches!(job.status, JobStatus::Deleted | JobStatus::Expired) => {
                Verdict::Orphaned
            }
            Some(_) => Verdict::Keep,
        })
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        super::every(
            interval,
            &shutdown,
            || self.sweep_once(),
            |sweep| match sweep {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "orphan sweep deleted files"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "orphan sweep failed; retrying next interval"
                ),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalEventStore, LocalOutbox};
    use contracts::events::JobSubmitted;
    use contracts::{Envelope, JobEvent};
    use platform::blob::Metadata;
    use platform::local_blob::DiskStore;

    /// A video whose submission the event store missed while the broker was down longer than
    /// the grace: its event still waits in the outbox, so the video must stay.
    #[tokio::test]
    async fn a_video_of_a_submission_still_in_the_outbox_is_kept_until_the_outbox_drains() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(DiskStore::new(dir.path().join("blobs")).await.unwrap());
        let store: Arc<dyn EventStore> = Arc::new(
            LocalEventStore::open(dir.path().join("events"))
                .await
                .unwrap(),
        );
        let outbox: Arc<dyn Outbox> =
            Arc::new(LocalOutbox::open(dir.path().join("outbox")).await.unwrap());
        let job_id = Uuid::now_v7();
        let mut metadata = Metadata::new();
        metadata.insert("job_id".into(), job_id.to_string().into());
        let mut upload = blobs
            .create(Bucket::Videos, "held.mp4", metadata)
            .await
            .unwrap();
        upload.write(b"a video").await.unwrap();
        let video = upload.finish().await.unwrap().id;
        let submitted = Envelope::new(
            job_id,
            "gateway",
            JobEvent::JobSubmitted(JobSubmitted {
                owner_id: "u1".into(),
                owner_email: "u1@example.com".into(),
                video_file_id: video.clone(),
                original_filename: "held.mp4".into(),
                content_type: Some("video/mp4".into()),
                size_bytes: 7,
                quality: None,
            }),
        );
        outbox.add(&submitted, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sweeper = OrphanSweeper::new(
            blobs.clone(),
            store,
            outbox.clone(),
            FileJanitor::new(blobs.clone()),
            Duration::ZERO,
        );

        assert_eq!(sweeper.sweep_once().await.unwrap(), 0);
        assert!(blobs.info(Bucket::Videos, &video).await.unwrap().is_some());

        // Published (and, in this test, never stored: the job stays unknown) — now it is no job's.
        outbox.mark_published(submitted.event_id).await.unwrap();
        assert_eq!(sweeper.sweep_once().await.unwrap(), 1);
        assert!(blobs.info(Bucket::Videos, &video).await.unwrap().is_none());
    }
}
