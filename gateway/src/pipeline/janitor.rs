//! Deleting a job's files, idempotently.

use platform::blob::{BlobError, BlobStore, Bucket};
use std::sync::Arc;
use uuid::Uuid;

/// Why files are deleted (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The MP3 exists; the source is no longer needed.
    Converted,
    /// The owner deleted the job.
    Deleted,
    /// A second conversion of a job whose first MP3 is kept.
    Duplicate,
    /// The job outlived `RETENTION`.
    Expired,
    /// A conversion finished after its job was deleted or expired, or the orphan sweeper found a
    /// file no job accounts for.
    Orphaned,
}

impl DeleteReason {
    fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Converted => "converted",
            DeleteReason::Deleted => "deleted",
            DeleteReason::Expired => "expired",
            DeleteReason::Orphaned => "orphaned",
            DeleteReason::Duplicate => "duplicate",
        }
    }
}

/// At most this many files of one job are looked up by metadata (normally one or two).
const MAX_FILES_PER_JOB: usize = 16;

/// Deletes a job's files, idempotently: the ids it knows and any file whose metadata names the
/// job (one stored while its event was still on the way). The blob store removes chunks with
/// their file.
#[derive(Clone)]
pub struct FileJanitor {
    blobs: Arc<dyn BlobStore>,
}

impl FileJanitor {
    pub fn new(blobs: Arc<dyn BlobStore>) -> Self {
        Self { blobs }
    }

    /// Deletes every video of the job; returns how many files were removed.
    pub async fn delete_videos(
        &self,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        self.delete_all(Bucket::Videos, job_id, known, reason).await
    }

    /// Deletes every MP3 of the job; returns how many files were removed.
    pub async fn delete_mp3s(
        &self,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        self.delete_all(Bucket::Mp3s, job_id, known, reason).await
    }

    /// Deletes one MP3 and nothing else of its job (a duplicate conversion's, beside the kept
    /// one); `true` when it existed.
    pub async fn delete_mp3(&self, file_id: &str, reason: DeleteReason) -> Result<bool, BlobError> {
        self.delete_one(Bucket::Mp3s, file_id, reason).await
    }

    /// Deletes one file of either bucket (the orphan sweeper's); `true` when it existed.
    pub async fn delete_file(
        &self,
        bucket: Bucket,
        file_id: &str,
        reason: DeleteReason,
    ) -> Result<bool, BlobError> {
        self.delete_one(bucket, file_id, reason).await
    }

    async fn delete_one(
        &self,
        bucket: Bucket,
        file_id: &str,
        reason: DeleteReason,
    ) -> Result<bool, BlobError> {
        match self.blobs.delete(bucket, file_id).await {
            Ok(true) => {
                metrics::counter!(
                    "retention_files_deleted_total",
                    "bucket" => bucket.database(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                Ok(true)
            }
            Ok(false) | Err(BlobError::NotFound) | Err(BlobError::InvalidId(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete_all(
        &self,
        bucket: Bucket,
        job_id: Uuid,
        known: &[Option<&str>],
        reason: DeleteReason,
    ) -> Result<u32, BlobError> {
        let mut removed = 0;
        for file_id in known.iter().flatten() {
            removed += u32::from(self.delete_one(bucket, file_id, reason).await?);
        }
        let job = job_id.to_string();
        let mut last = None;
        for _ in 0..MAX_FILES_PER_JOB {
            let Some(file) = self.blobs.find_by_metadata(bucket, "job_id", &job).await? else {
                break;
            };
            if last.as_ref() == Some(&file.id) {
                // Deleting it did not make it disappear: do not spin.
                return Err(BlobError::Unavailable(format!(
                    "file {} of job {job} survives deletion",
                    file.id
                )));
            }
            removed += u32::from(self.delete_one(bucket, &file.id, reason).await?);
            last = Some(file.id);
        }
        if removed > 0 {
            tracing::info!(%job_id, bucket = bucket.database(), removed, reason = reason.as_str(), "deleted job files");
        }
        Ok(removed)
    }
}
