//! The outbox in `outbox.jsonl`.

use super::super::{Outbox, StoreError};
use super::{OUTBOX_FILE, append_line, complete_lines, io_error, rewrite};
use async_trait::async_trait;
use contracts::Envelope;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::fs::File;
use tokio::sync::Mutex;
use uuid::Uuid;

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
        // Entries a newer build added (before a roll-back): not published by this build, but kept
        // in the file for the build that can read them.
        let mut unreadable_here: Vec<(Uuid, String)> = Vec::new();
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
                        Err(e) if e.is_from_newer_build() => {
                            tracing::warn!(%event_id, error = %e, "keeping an outbox entry from a newer build, unpublished");
                            unreadable_here.push((event_id, envelope));
                        }
                        Err(e) => {
                            tracing::error!(%event_id, error = %e, "skipping an unreadable outbox entry")
                        }
                    }
                }
                OutboxRecord::Published { event_id } => {
                    pending.retain(|e| e.event_id != event_id);
                    unreadable_here.retain(|(id, _)| *id != event_id);
                }
            }
        }
        // Compact: what was published is forgotten, so the file only ever holds what is owed.
        let file =
            rewrite(
                &path,
                pending
                    .iter()
                    .map(|envelope| {
                        OutboxRecord::Added {
                            event_id: envelope.event_id,
                            envelope: String::from_utf8(envelope.to_json()).expect("JSON is UTF-8"),
                        }
                        .line()
                    })
                    .chain(unreadable_here.into_iter().map(|(event_id, envelope)| {
                        OutboxRecord::Added { event_id, envelope }.line()
                    })),
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
