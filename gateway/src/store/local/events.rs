//! The event store in `events.jsonl`.

use super::super::{EventStore, JobPage, StoreError, owner_of, readable_event};
use super::{EVENTS_FILE, append_line, complete_lines, io_error, open_for_append};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{Envelope, JobEvent};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use tokio::fs::File;
use tokio::sync::Mutex;
use uuid::Uuid;

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
            // Skipped lines stay in the file: a later build may read them.
            let place = format!("{}:{}", path.display(), number + 1);
            match readable_event(&place, Envelope::from_json(line)) {
                Some(event) => {
                    index.insert(event);
                }
                None => unreadable += 1,
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

    async fn events_of_job_since(
        &self,
        job_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let index = self.read_index();
        let Some(events) = index.by_job.get(&job_id) else {
            return Ok(Vec::new());
        };
        let from = events.partition_point(|e| e.occurred_at < since);
        Ok(events[from..].to_vec())
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
