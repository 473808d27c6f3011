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

use crate::event_store::{EventStore, JobPage, StoreError, owner_of};
use crate::outbox::Outbox;
use crate::retention::{ExpiryClaim, FinishedJob, RetentionLedger};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use proto::{Envelope, JobEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use uuid::Uuid;

/// File name of the event log inside its directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// File name of the outbox inside its directory.
pub const OUTBOX_FILE: &str = "outbox.jsonl";
/// File name of the retention ledger inside its directory.
pub const RETENTION_FILE: &str = "retention.jsonl";

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

/// The complete lines of `bytes`, after cutting an unfinished last line off the file (a crash
/// in the middle of an append: that append was never acknowledged).
async fn complete_lines(path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
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
async fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).await.map_err(|e| io_error(dir, e))?;
    handle.sync_all().await.map_err(|e| io_error(dir, e))
}

async fn open_for_append(path: &Path) -> Result<File, StoreError> {
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
async fn rewrite(
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
async fn append_line(file: &mut File, path: &Path, mut line: Vec<u8>) -> Result<(), StoreError> {
    line.push(b'\n');
    file.write_all(&line).await.map_err(|e| io_error(path, e))?;
    file.sync_data().await.map_err(|e| io_error(path, e))
}

/// What the event log knows, in memory.
#[derive(Default)]
struct EventIndex {
    ids: HashSet<Uuid>,
    /// Each job's events in `(occurred_at, event_id)` order.
    by_job: HashMap<Uuid, Vec<Envelope>>,
    /// The jobs each owner submitted (UUIDv7: ordered by creation time).
    by_owner: HashMap<String, BTreeSet<Uuid>>,
    /// Every job with a stored `JobSubmitted`.
    submitted: BTreeSet<Uuid>,
}

impl EventIndex {
    fn insert(&mut self, event: Envelope) -> bool {
        if !self.ids.insert(event.event_id) {
            return false;
        }
        if let JobEvent::JobSubmitted(_) = &event.event {
            self.submitted.insert(event.job_id);
            if let Some(owner) = owner_of(&event.event) {
                self.by_owner
                    .entry(owner.to_owned())
                    .or_default()
                    .insert(event.job_id);
            }
        }
        let events = self.by_job.entry(event.job_id).or_default();
        let key = (event.occurred_at, event.event_id);
        let at = events.partition_point(|e| (e.occurred_at, e.event_id) < key);
        events.insert(at, event);
        true
    }
}

/// The event store in an append-only file.
pub struct LocalEventStore {
    dir: PathBuf,
    path: PathBuf,
    index: RwLock<EventIndex>,
    /// Serialises appends, so the duplicate check and the write are one step.
    writer: Mutex<File>,
}

impl LocalEventStore {
    /// Opens (or creates) the log in `dir` and rebuilds the index from it.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&dir, e))?;
        let path = dir.join(EVENTS_FILE);
        let mut index = EventIndex::default();
        let mut unreadable = 0usize;
        for (number, line) in complete_lines(&path).await?.iter().enumerate() {
            match Envelope::from_json(line) {
                Ok(event) => {
                    index.insert(event);
                }
                Err(e) => {
                    // One unreadable event must not hide every job.
                    unreadable += 1;
                    tracing::error!(file = %path.display(), line = number + 1, error = %e, "skipping an unreadable stored event");
                }
            }
        }
        tracing::debug!(file = %path.display(), events = index.ids.len(), jobs = index.by_job.len(), unreadable, "event log loaded");
        let writer = open_for_append(&path).await?;
        Ok(Self {
            dir,
            path,
            index: RwLock::new(index),
            writer: Mutex::new(writer),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, EventIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl EventStore for LocalEventStore {
    async fn append(&self, event: &Envelope) -> Result<bool, StoreError> {
        let mut writer = self.writer.lock().await;
        if self.read_index().ids.contains(&event.event_id) {
            return Ok(false);
        }
        append_line(&mut writer, &self.path, event.to_json()).await?;
        // Indexed only once durable: nobody reads an event a crash could still take back.
        let fresh = self
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(event.clone());
        Ok(fresh)
    }

    async fn events_of_job(&self, job_id: Uuid) -> Result<Vec<Envelope>, StoreError> {
        Ok(self
            .read_index()
            .by_job
            .get(&job_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn jobs_of_owner(&self, owner_id: &str, page: JobPage) -> Result<Vec<Uuid>, StoreError> {
        let index = self.read_index();
        let Some(jobs) = index.by_owner.get(owner_id) else {
            return Ok(Vec::new());
        };
        Ok(jobs
            .iter()
            .rev()
            .filter(|job| page.before.is_none_or(|before| **job < before))
            .take(page.limit as usize)
            .copied()
            .collect())
    }

    async fn submitted_jobs(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(self.read_index().submitted.iter().copied().collect())
    }

    async fn check(&self) -> Result<(), StoreError> {
        tokio::fs::metadata(&self.dir)
            .await
            .map(drop)
            .map_err(|e| io_error(&self.dir, e))
    }
}

/// One line of the outbox file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum OutboxRecord {
    /// The envelope as JSON text, decoded (and version-checked) by [`Envelope::from_json`].
    Added {
        event_id: Uuid,
        envelope: String,
    },
    Published {
        event_id: Uuid,
    },
}

impl OutboxRecord {
    fn line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an outbox record always serialises")
    }
}

struct PendingEntry {
    envelope: Envelope,
    leased_until: Instant,
}

struct OutboxState {
    file: File,
    /// Oldest first.
    pending: VecDeque<PendingEntry>,
    /// Published since this process opened the outbox, so a repeated `add` stays a no-op.
    published: HashSet<Uuid>,
}

/// The outbox in a JSON-lines file.
pub struct LocalOutbox {
    path: PathBuf,
    state: Mutex<OutboxState>,
}

impl LocalOutbox {
    /// Opens (or creates) the outbox in `dir`. Entries added and never published are pending
    /// again, claimable at once; the file is rewritten with only them.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&dir, e))?;
        let path = dir.join(OUTBOX_FILE);
        let mut pending: Vec<Envelope> = Vec::new();
        for (number, line) in complete_lines(&path).await?.iter().enumerate() {
            let record: OutboxRecord = match serde_json::from_slice(line) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(file = %path.display(), line = number + 1, error = %e, "skipping an unreadable outbox record");
                    continue;
                }
            };
            match record {
                OutboxRecord::Added { event_id, envelope } => {
                    match Envelope::from_json(envelope.as_bytes()) {
                        Ok(envelope) if !pending.iter().any(|e| e.event_id == event_id) => {
                            pending.push(envelope)
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(%event_id, error = %e, "skipping an unreadable outbox entry")
                        }
                    }
                }
                OutboxRecord::Published { event_id } => pending.retain(|e| e.event_id != event_id),
            }
        }
        // Compact: what was published is forgotten, so the file only ever holds what is owed.
        let file = rewrite(
            &path,
            pending.iter().map(|envelope| {
                OutboxRecord::Added {
                    event_id: envelope.event_id,
                    envelope: String::from_utf8(envelope.to_json()).expect("JSON is UTF-8"),
                }
                .line()
            }),
        )
        .await?;
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "outbox entries from before the restart will be published"
            );
        }
        let now = Instant::now();
        Ok(Self {
            path,
            state: Mutex::new(OutboxState {
                file,
                pending: pending
                    .into_iter()
                    .map(|envelope| PendingEntry {
                        envelope,
                        leased_until: now,
                    })
                    .collect(),
                published: HashSet::new(),
            }),
        })
    }
}

#[async_trait]
impl Outbox for LocalOutbox {
    async fn add(&self, event: &Envelope, lease: Duration) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if state.published.contains(&event.event_id)
            || state
                .pending
                .iter()
                .any(|p| p.envelope.event_id == event.event_id)
        {
            return Ok(());
        }
        let record = OutboxRecord::Added {
            event_id: event.event_id,
            envelope: String::from_utf8(event.to_json()).expect("JSON is UTF-8"),
        };
        append_line(&mut state.file, &self.path, record.line()).await?;
        state.pending.push_back(PendingEntry {
            envelope: event.clone(),
            leased_until: Instant::now() + lease,
        });
        Ok(())
    }

    async fn mark_published(&self, event_id: Uuid) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let Some(position) = state
            .pending
            .iter()
            .position(|p| p.envelope.event_id == event_id)
        else {
            return Ok(());
        };
        let state = &mut *state;
        if state.pending.len() == 1 {
            // Nothing else is owed: start the file afresh instead of letting it grow.
            state
                .file
                .set_len(0)
                .await
                .map_err(|e| io_error(&self.path, e))?;
            state
                .file
                .sync_data()
                .await
                .map_err(|e| io_error(&self.path, e))?;
        } else {
            append_line(
                &mut state.file,
                &self.path,
                OutboxRecord::Published { event_id }.line(),
            )
            .await?;
        }
        state.pending.remove(position);
        state.published.insert(event_id);
        Ok(())
    }

    async fn release(&self, event_id: Uuid) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(entry) = state
            .pending
            .iter_mut()
            .find(|p| p.envelope.event_id == event_id)
        {
            entry.leased_until = now;
        }
        Ok(())
    }

    async fn claim_next(&self, lease: Duration) -> Result<Option<Envelope>, StoreError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        Ok(state
            .pending
            .iter_mut()
            .find(|p| p.leased_until <= now)
            .map(|entry| {
                entry.leased_until = now + lease;
                entry.envelope.clone()
            }))
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().await.pending.len() as u64)
    }
}

/// One line of the retention file: a finished job's whole entry after a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerRow {
    job_id: Uuid,
    owner_id: String,
    finished_at: DateTime<Utc>,
    mp3_file_id: Option<String>,
    /// Fixed when the job finished, so every attempt at its expiry publishes the same event.
    expiry_event_id: Uuid,
    done: bool,
}

struct LedgerState {
    file: File,
    rows: HashMap<Uuid, LedgerRow>,
    /// Claimed jobs and until when.
    claims: HashMap<Uuid, Instant>,
}

/// The retention ledger in a JSON-lines file.
pub struct LocalRetentionLedger {
    path: PathBuf,
    state: Mutex<LedgerState>,
}

impl LocalRetentionLedger {
    /// Opens (or creates) the ledger in `dir`, compacted to one line per job.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(&dir, e))?;
        let path = dir.join(RETENTION_FILE);
        let mut rows: HashMap<Uuid, LedgerRow> = HashMap::new();
        for (number, line) in complete_lines(&path).await?.iter().enumerate() {
            match serde_json::from_slice::<LedgerRow>(line) {
                Ok(row) => {
                    rows.insert(row.job_id, row);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), line = number + 1, error = %e, "skipping an unreadable retention record")
                }
            }
        }
        let file = rewrite(&path, rows.values().map(LedgerRow::line)).await?;
        Ok(Self {
            path,
            state: Mutex::new(LedgerState {
                file,
                rows,
                claims: HashMap::new(),
            }),
        })
    }
}

impl LedgerRow {
    fn line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a retention row always serialises")
    }
}

impl LedgerState {
    async fn save(&mut self, path: &Path, row: LedgerRow) -> Result<(), StoreError> {
        append_line(&mut self.file, path, row.line()).await?;
        self.rows.insert(row.job_id, row);
        Ok(())
    }
}

#[async_trait]
impl RetentionLedger for LocalRetentionLedger {
    async fn record_finished(&self, job: &FinishedJob) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let row = match state.rows.get(&job.job_id) {
            // The first record wins; a later one may only add the MP3 id.
            Some(row) if row.mp3_file_id.is_some() || job.mp3_file_id.is_none() => return Ok(()),
            Some(row) => LedgerRow {
                mp3_file_id: job.mp3_file_id.clone(),
                ..row.clone()
            },
            None => LedgerRow {
                job_id: job.job_id,
                owner_id: job.owner_id.clone(),
                finished_at: job.finished_at,
                mp3_file_id: job.mp3_file_id.clone(),
                expiry_event_id: Uuid::now_v7(),
                done: false,
            },
        };
        state.save(&self.path, row).await
    }

    async fn claim_due(
        &self,
        cutoff: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ExpiryClaim>, StoreError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let due = state
            .rows
            .values()
            .filter(|row| !row.done && row.finished_at <= cutoff)
            .filter(|row| {
                state
                    .claims
                    .get(&row.job_id)
                    .is_none_or(|until| *until <= now)
            })
            .min_by_key(|row| row.finished_at)
            .cloned();
        Ok(due.map(|row| {
            state.claims.insert(row.job_id, now + lease);
            ExpiryClaim {
                job_id: row.job_id,
                owner_id: row.owner_id,
                mp3_file_id: row.mp3_file_id,
                expiry_event_id: row.expiry_event_id,
            }
        }))
    }

    async fn release(&self, job_id: Uuid) -> Result<(), StoreError> {
        self.state.lock().await.claims.remove(&job_id);
        Ok(())
    }

    async fn complete(&self, job_id: Uuid) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.claims.remove(&job_id);
        let Some(row) = state.rows.get(&job_id).filter(|row| !row.done).cloned() else {
            return Ok(());
        };
        state
            .save(&self.path, LedgerRow { done: true, ..row })
            .await
    }

    async fn job_of_mp3(&self, mp3_file_id: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .state
            .lock()
            .await
            .rows
            .values()
            .find(|row| row.mp3_file_id.as_deref() == Some(mp3_file_id))
            .map(|row| row.job_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::events::{ConversionProgress, ConversionStarted, JobSubmitted};

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
