//! Local-disk implementations of the [`EventStore`] and [`Outbox`] seams, for the all-in-one mode.
//!
//! - [`LocalEventStore`]: an append-only JSON-lines log (`events.jsonl`, one envelope a line),
//!   fsynced on every append, with an in-memory index (by job, by owner, by event id) rebuilt
//!   from the log at start. Appending an event id twice is a no-op, as with the MongoDB store.
//! - [`LocalOutbox`]: pending entries in `outbox.jsonl` (an `added` record, later a `published`
//!   one), so an event accepted before a crash is still published after the restart. Leases live
//!   in memory only: after a restart their holder is gone, so every pending entry is claimable.
//! - [`LocalRetentionLedger`]: the finished jobs waiting to expire, in `retention.jsonl` (the
//!   last line of a job wins); claims live in memory for the same reason.
//!
//! Both assume one process owns the directory (the all-in-one mode locks its data directory).

mod events;
mod outbox;
mod retention;

pub use events::LocalEventStore;
pub use outbox::LocalOutbox;
pub use retention::LocalRetentionLedger;

use super::StoreError;
use std::path::Path;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

/// File name of the event log inside its directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// File name of the outbox inside its directory.
pub const OUTBOX_FILE: &str = "outbox.jsonl";
/// File name of the retention ledger inside its directory.
pub const RETENTION_FILE: &str = "retention.jsonl";

pub(super) fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

/// The complete lines of `bytes`, after cutting an unfinished last line off the file (a crash
/// in the middle of an append: that append was never acknowledged).
pub(super) async fn complete_lines(path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(path, e)),
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        tracing::warn!(
            file = %path.display(),
            bytes = bytes.len() - complete,
            "discarding an unfinished last record (the process stopped while writing it)"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .map_err(|e| io_error(path, e))?;
        file.set_len(complete as u64)
            .await
            .map_err(|e| io_error(path, e))?;
        file.sync_all().await.map_err(|e| io_error(path, e))?;
    }
    Ok(bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect())
}

/// Makes a file's creation or renaming durable (the directory entry is data too).
pub(super) async fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).await.map_err(|e| io_error(dir, e))?;
    handle.sync_all().await.map_err(|e| io_error(dir, e))
}

pub(super) async fn open_for_append(path: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| io_error(path, e))?;
    if let Some(dir) = path.parent() {
        sync_directory(dir).await?;
    }
    Ok(file)
}

/// Replaces the file at `path` by `lines` (written aside, synced, renamed over it) and opens it
/// for appending.
pub(super) async fn rewrite(
    path: &Path,
    lines: impl IntoIterator<Item = Vec<u8>>,
) -> Result<File, StoreError> {
    let aside = path.with_extension("jsonl.tmp");
    let mut contents = Vec::new();
    for line in lines {
        contents.extend(line);
        contents.push(b'\n');
    }
    let mut file = File::create(&aside)
        .await
        .map_err(|e| io_error(&aside, e))?;
    file.write_all(&contents)
        .await
        .map_err(|e| io_error(&aside, e))?;
    file.sync_all().await.map_err(|e| io_error(&aside, e))?;
    drop(file);
    tokio::fs::rename(&aside, path)
        .await
        .map_err(|e| io_error(path, e))?;
    open_for_append(path).await
}

/// Appends one line and waits until it is on disk.
pub(super) async fn append_line(
    file: &mut File,
    path: &Path,
    mut line: Vec<u8>,
) -> Result<(), StoreError> {
    line.push(b'\n');
    file.write_all(&line).await.map_err(|e| io_error(path, e))?;
    file.sync_data().await.map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStore, FinishedJob, JobPage, Outbox, RetentionLedger};
    use chrono::Utc;
    use contracts::events::{ConversionProgress, ConversionStarted, JobSubmitted};
    use contracts::{Envelope, JobEvent};
    use std::time::Duration;
    use uuid::Uuid;

    fn submitted(owner: &str) -> Envelope {
        Envelope::new(
            Uuid::now_v7(),
            "gateway",
            JobEvent::JobSubmitted(JobSubmitted {
                owner_id: owner.into(),
                owner_email: format!("{owner}@example.com"),
                video_file_id: "65f0c0ffee0000000000beef".into(),
                original_filename: "a.mp4".into(),
                content_type: Some("video/mp4".into()),
                size_bytes: 10,
                quality: None,
            }),
        )
    }

    fn follow_up(job: &Envelope, event: JobEvent) -> Envelope {
        Envelope::new(job.job_id, "converter", event)
    }

    #[tokio::test]
    async fn events_survive_a_reopen_once_each_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = submitted("alice");
        let second = submitted("alice");
        let other = submitted("bob");
        let started = follow_up(
            &first,
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        );
        let progress = follow_up(
            &first,
            JobEvent::ConversionProgress(ConversionProgress { percent: 40 }),
        );
        {
            let store = LocalEventStore::open(dir.path()).await.unwrap();
            // Out of order and duplicated, as deliveries may come.
            for event in [&progress, &first, &started, &second, &other] {
                assert!(store.append(event).await.unwrap());
            }
            assert!(!store.append(&first).await.unwrap(), "same id twice");
        }
        let store = LocalEventStore::open(dir.path()).await.unwrap();
        assert!(
            !store.append(&started).await.unwrap(),
            "dedup survives a reopen"
        );
        let ids: Vec<Uuid> = store
            .events_of_job(first.job_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(ids, [first.event_id, started.event_id, progress.event_id]);
        let state = store.job_state(first.job_id).await.unwrap().unwrap();
        assert_eq!(state.progress, 40);

        let all = JobPage {
            limit: 10,
            before: None,
        };
        assert_eq!(
            store.jobs_of_owner("alice", all).await.unwrap(),
            [second.job_id, first.job_id],
            "newest first"
        );
        let older = JobPage {
            limit: 10,
            before: Some(second.job_id),
        };
        assert_eq!(
            store.jobs_of_owner("alice", older).await.unwrap(),
            [first.job_id]
        );
        assert!(store.jobs_of_owner("carol", all).await.unwrap().is_empty());
        assert_eq!(
            store.submitted_jobs().await.unwrap(),
            [first.job_id, second.job_id, other.job_id]
        );
        store.check().await.unwrap();
    }

    #[tokio::test]
    async fn an_unfinished_last_line_is_cut_off_and_appends_continue_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let kept = submitted("alice");
        {
            let store = LocalEventStore::open(dir.path()).await.unwrap();
            store.append(&kept).await.unwrap();
        }
        let path = dir.path().join(EVENTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = submitted("bob").to_json();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, bytes).unwrap();

        let store = LocalEventStore::open(dir.path()).await.unwrap();
        assert_eq!(store.submitted_jobs().await.unwrap(), [kept.job_id]);
        let next = submitted("carol");
        store.append(&next).await.unwrap();
        drop(store);
        let store = LocalEventStore::open(dir.path()).await.unwrap();
        assert_eq!(
            store.submitted_jobs().await.unwrap(),
            [kept.job_id, next.job_id]
        );
    }

    #[tokio::test]
    async fn pending_outbox_entries_survive_a_restart_and_published_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let published = submitted("alice");
        let owed = submitted("bob");
        {
            let outbox = LocalOutbox::open(dir.path()).await.unwrap();
            outbox
                .add(&published, Duration::from_secs(30))
                .await
                .unwrap();
            outbox.add(&owed, Duration::from_secs(30)).await.unwrap();
            outbox.add(&owed, Duration::from_secs(30)).await.unwrap();
            assert_eq!(outbox.pending().await.unwrap(), 2);
            // Both are leased by their requests: the relay leaves them alone.
            assert!(
                outbox
                    .claim_next(Duration::from_secs(60))
                    .await
                    .unwrap()
                    .is_none()
            );
            outbox.mark_published(published.event_id).await.unwrap();
            assert_eq!(outbox.pending().await.unwrap(), 1);
        }
        // The holder of the lease is gone: the entry is claimable at once.
        let outbox = LocalOutbox::open(dir.path()).await.unwrap();
        assert_eq!(outbox.pending().await.unwrap(), 1);
        let claimed = outbox
            .claim_next(Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.event_id, owed.event_id);
        assert!(
            outbox
                .claim_next(Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "leased by the claim"
        );
        outbox.release(owed.event_id).await.unwrap();
        assert!(
            outbox
                .claim_next(Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
        outbox.mark_published(owed.event_id).await.unwrap();
        assert_eq!(outbox.pending().await.unwrap(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join(OUTBOX_FILE))
                .unwrap()
                .len(),
            0,
            "nothing owed, nothing kept"
        );
        drop(outbox);
        let outbox = LocalOutbox::open(dir.path()).await.unwrap();
        assert_eq!(outbox.pending().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_outbox_entry_a_newer_build_added_is_kept_for_it_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut newer: serde_json::Value =
            serde_json::from_slice(&submitted("x").to_json()).unwrap();
        newer["version"] = 2.into();
        let event_id = newer["event_id"].as_str().unwrap().to_owned();
        let record = serde_json::json!({"record": "added", "event_id": event_id, "envelope": newer.to_string()});
        std::fs::write(dir.path().join(OUTBOX_FILE), format!("{record}\n")).unwrap();
        for _ in 0..2 {
            let outbox = LocalOutbox::open(dir.path()).await.unwrap();
            assert_eq!(
                outbox.pending().await.unwrap(),
                0,
                "not for this build to publish"
            );
            drop(outbox);
            let kept = std::fs::read_to_string(dir.path().join(OUTBOX_FILE)).unwrap();
            assert!(kept.contains(&event_id), "kept through the compaction");
        }
    }

    fn finished(job_id: Uuid, hours_ago: i64, mp3: Option<&str>) -> FinishedJob {
        FinishedJob {
            job_id,
            owner_id: "alice".into(),
            finished_at: Utc::now() - chrono::Duration::hours(hours_ago),
            mp3_file_id: mp3.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn expiry_schedules_survive_a_restart_with_their_event_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (old, fresh) = (Uuid::now_v7(), Uuid::now_v7());
        let cutoff = Utc::now() - chrono::Duration::hours(24);
        let lease = Duration::from_secs(60);
        let first_claim = {
            let ledger = LocalRetentionLedger::open(dir.path()).await.unwrap();
            ledger
                .record_finished(&finished(old, 48, None))
                .await
                .unwrap();
            ledger
                .record_finished(&finished(old, 1, Some("m1")))
                .await
                .unwrap();
            ledger
                .record_finished(&finished(fresh, 1, Some("m2")))
                .await
                .unwrap();
            let claim = ledger.claim_due(cutoff, lease).await.unwrap().unwrap();
            assert_eq!(claim.job_id, old, "only the old job is due");
            assert_eq!(
                claim.mp3_file_id.as_deref(),
                Some("m1"),
                "the MP3 id was added"
            );
            assert!(
                ledger.claim_due(cutoff, lease).await.unwrap().is_none(),
                "leased"
            );
            claim
        };
        // The claim's holder is gone with the process: claimable again, with the same event id.
        let ledger = LocalRetentionLedger::open(dir.path()).await.unwrap();
        let again = ledger.claim_due(cutoff, lease).await.unwrap().unwrap();
        assert_eq!(again, first_claim);
        assert_eq!(ledger.job_of_mp3("m2").await.unwrap(), Some(fresh));
        ledger.release(old).await.unwrap();
        assert!(ledger.claim_due(cutoff, lease).await.unwrap().is_some());
        ledger.complete(old).await.unwrap();
        drop(ledger);
        let ledger = LocalRetentionLedger::open(dir.path()).await.unwrap();
        assert!(
            ledger
                .claim_due(Utc::now(), lease)
                .await
                .unwrap()
                .unwrap()
                .job_id
                == fresh,
            "the completed job is never claimed again"
        );
        assert_eq!(ledger.job_of_mp3("m1").await.unwrap(), Some(old));
    }
}
