//! The retention ledger in `retention.jsonl`.

use super::super::{ExpiryClaim, FinishedJob, RetentionLedger, StoreError};
use super::{RETENTION_FILE, append_line, complete_lines, io_error, rewrite};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::fs::File;
use tokio::sync::Mutex;
use uuid::Uuid;

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
