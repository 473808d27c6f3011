//! A [`SentLog`] in a local JSON-lines file, for the all-in-one mode.
//!
//! Only results are written (`sent.jsonl`, one line per change, the last line of an event id
//! wins), fsynced before the call returns; the file is compacted at start. Claims live in memory:
//! one process owns the file (the all-in-one mode locks its data directory), so a claim found
//! after a restart would belong to a dead process and is void, and the outcome is mailed by the
//! next delivery, exactly as a lapsed claim is taken over in the MongoDB log.

use crate::sent_log::{Claim, ClaimResult, Delivery, Finished, SentLog, SentLogError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use uuid::Uuid;

/// File name of the log inside its directory.
pub const SENT_FILE: &str = "sent.jsonl";
/// The jobs their owners deleted: one JSON job id per line, appended and fsynced.
pub const DELETED_FILE: &str = "deleted.jsonl";

/// One line of the file: the whole row after a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    event_id: Uuid,
    job_id: Uuid,
    /// `None` when the mail was sent.
    failure: Option<String>,
    announced: bool,
}

impl Row {
    fn finished(&self) -> Finished {
        Finished {
            delivery: match &self.failure {
                None => Delivery::Sent,
                Some(reason) => Delivery::Failed {
                    reason: reason.clone(),
                },
            },
            announced: self.announced,
        }
    }
}

struct State {
    file: File,
    rows: HashMap<Uuid, Row>,
    deleted_file: File,
    deleted: HashSet<Uuid>,
    /// Claims in progress: event id → (job id, token, when).
    claims: HashMap<Uuid, (Uuid, Uuid, Instant)>,
}

pub struct LocalSentLog {
    dir: PathBuf,
    path: PathBuf,
    lease: Duration,
    state: Mutex<State>,
}

fn unavailable(path: &Path, error: impl std::fmt::Display) -> SentLogError {
    SentLogError(format!("{}: {error}", path.display()))
}

impl LocalSentLog {
    /// Opens (or creates) the log in `dir`; a claim older than `lease` is taken over.
    pub async fn open(dir: impl Into<PathBuf>, lease: Duration) -> Result<Self, SentLogError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| unavailable(&dir, e))?;
        let path = dir.join(SENT_FILE);
        let text = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(unavailable(&path, e)),
        };
        let mut rows: HashMap<Uuid, Row> = HashMap::new();
        for line in text.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Row>(line) {
                Ok(row) => {
                    rows.insert(row.event_id, row);
                }
                // An unfinished last line (a crash while writing it): that result was never
                // acknowledged, so the outcome is mailed again, as after any crash mid-send.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable sent-log line")
                }
            }
        }
        // Compact: one line per event, written aside then renamed over the old file.
        let compacted = dir.join(format!("{SENT_FILE}.tmp"));
        let mut contents = Vec::new();
        for row in rows.values() {
            contents.extend(serde_json::to_vec(row).expect("a row always serialises"));
            contents.push(b'\n');
        }
        let mut file = File::create(&compacted)
            .await
            .map_err(|e| unavailable(&compacted, e))?;
        file.write_all(&contents)
            .await
            .map_err(|e| unavailable(&compacted, e))?;
        file.sync_all()
            .await
            .map_err(|e| unavailable(&compacted, e))?;
        drop(file);
        tokio::fs::rename(&compacted, &path)
            .await
            .map_err(|e| unavailable(&path, e))?;
        // The rename is durable once the directory is.
        File::open(&dir)
            .await
            .map_err(|e| unavailable(&dir, e))?
            .sync_all()
            .await
            .map_err(|e| unavailable(&dir, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|e| unavailable(&path, e))?;
        let deleted_path = dir.join(DELETED_FILE);
        let deleted = match tokio::fs::read(&deleted_path).await {
            Ok(bytes) => bytes
                .split(|b| *b == b'\n')
                // An unfinished last line was never acknowledged: its deletion is delivered again.
                .filter_map(|line| serde_json::from_slice::<Uuid>(line).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(unavailable(&deleted_path, e)),
        };
        let deleted_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&deleted_path)
            .await
            .map_err(|e| unavailable(&deleted_path, e))?;
        Ok(Self {
            dir,
            path,
            lease,
            state: Mutex::new(State {
                file,
                rows,
                deleted_file,
                deleted,
                claims: HashMap::new(),
            }),
        })
    }

    async fn write(&self, state: &mut State, row: Row) -> Result<(), SentLogError> {
        let mut line = serde_json::to_vec(&row).expect("a row always serialises");
        line.push(b'\n');
        state
            .file
            .write_all(&line)
            .await
            .map_err(|e| unavailable(&self.path, e))?;
        state
            .file
            .sync_data()
            .await
            .map_err(|e| unavailable(&self.path, e))?;
        state.rows.insert(row.event_id, row);
        Ok(())
    }
}

#[async_trait]
impl SentLog for LocalSentLog {
    async fn record_deleted(&self, job_id: Uuid) -> Result<(), SentLogError> {
        let mut state = self.state.lock().await;
        if state.deleted.contains(&job_id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&job_id).expect("a UUID serialises");
        line.push(b'\n');
        let path = self.dir.join(DELETED_FILE);
        state
            .deleted_file
            .write_all(&line)
            .await
            .map_err(|e| unavailable(&path, e))?;
        state
            .deleted_file
            .sync_data()
            .await
            .map_err(|e| unavailable(&path, e))?;
        state.deleted.insert(job_id);
        Ok(())
    }

    async fn is_deleted(&self, job_id: Uuid) -> Result<bool, SentLogError> {
        Ok(self.state.lock().await.deleted.contains(&job_id))
    }

    async fn claim(&self, event_id: Uuid, job_id: Uuid) -> Result<ClaimResult, SentLogError> {
        let mut state = self.state.lock().await;
        if let Some(row) = state.rows.get(&event_id) {
            return Ok(ClaimResult::Finished(row.finished()));
        }
        if let Some((_, _, since)) = state.claims.get(&event_id) {
            let age = since.elapsed();
            if age < self.lease {
                return Ok(ClaimResult::HeldElsewhere);
            }
            tracing::warn!(%event_id, ?age, "taking over a lapsed claim");
        }
        let token = Uuid::new_v4();
        state
            .claims
            .insert(event_id, (job_id, token, Instant::now()));
        Ok(ClaimResult::Granted(Claim::new(event_id, token)))
    }

    async fn finish(&self, claim: &Claim, delivery: &Delivery) -> Result<(), SentLogError> {
        let mut state = self.state.lock().await;
        // Keyed by the event only: the result stands even if our claim lapsed meanwhile.
        let job_id = match state.claims.remove(&claim.event_id) {
            Some((job_id, _, _)) => job_id,
            None => state
                .rows
                .get(&claim.event_id)
                .map(|row| row.job_id)
                .unwrap_or_default(),
        };
        let row = Row {
            event_id: claim.event_id,
            job_id,
            failure: match delivery {
                Delivery::Sent => None,
                Delivery::Failed { reason } => Some(reason.clone()),
            },
            announced: false,
        };
        self.write(&mut state, row).await
    }

    async fn release(&self, claim: &Claim) -> Result<(), SentLogError> {
        let mut state = self.state.lock().await;
        if state
            .claims
            .get(&claim.event_id)
            .is_some_and(|(_, token, _)| claim.token() == *token)
        {
            state.claims.remove(&claim.event_id);
        }
        Ok(())
    }

    async fn mark_announced(&self, event_id: Uuid) -> Result<(), SentLogError> {
        let mut state = self.state.lock().await;
        let Some(row) = state.rows.get(&event_id).cloned() else {
            return Ok(());
        };
        if row.announced {
            return Ok(());
        }
        self.write(
            &mut state,
            Row {
                announced: true,
                ..row
            },
        )
        .await
    }

    async fn check(&self) -> Result<(), SentLogError> {
        tokio::fs::metadata(&self.dir)
            .await
            .map(drop)
            .map_err(|e| unavailable(&self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deletions_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (deleted, kept) = (Uuid::now_v7(), Uuid::now_v7());
        {
            let log = LocalSentLog::open(dir.path(), Duration::from_secs(60))
                .await
                .unwrap();
            log.record_deleted(deleted).await.unwrap();
            log.record_deleted(deleted).await.unwrap();
        }
        let log = LocalSentLog::open(dir.path(), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(log.is_deleted(deleted).await.unwrap());
        assert!(!log.is_deleted(kept).await.unwrap());
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn an_outcome_is_claimed_once_and_its_result_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (sent, failed, pending) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let job = Uuid::now_v7();
        {
            let log = LocalSentLog::open(dir.path(), LEASE).await.unwrap();
            let ClaimResult::Granted(claim) = log.claim(sent, job).await.unwrap() else {
                panic!("the first claim is granted");
            };
            assert_eq!(
                log.claim(sent, job).await.unwrap(),
                ClaimResult::HeldElsewhere
            );
            log.finish(&claim, &Delivery::Sent).await.unwrap();
            log.mark_announced(sent).await.unwrap();

            let ClaimResult::Granted(claim) = log.claim(failed, job).await.unwrap() else {
                panic!("granted");
            };
            let refused = Delivery::Failed {
                reason: "no such mailbox".into(),
            };
            log.finish(&claim, &refused).await.unwrap();

            let ClaimResult::Granted(claim) = log.claim(pending, job).await.unwrap() else {
                panic!("granted");
            };
            log.release(&claim).await.unwrap();
            assert!(matches!(
                log.claim(pending, job).await.unwrap(),
                ClaimResult::Granted(_)
            ));
            // Still claimed when the process stops.
        }
        let log = LocalSentLog::open(dir.path(), LEASE).await.unwrap();
        log.check().await.unwrap();
        assert_eq!(
            log.claim(sent, job).await.unwrap(),
            ClaimResult::Finished(Finished {
                delivery: Delivery::Sent,
                announced: true
            })
        );
        assert_eq!(
            log.claim(failed, job).await.unwrap(),
            ClaimResult::Finished(Finished {
                delivery: Delivery::Failed {
                    reason: "no such mailbox".into()
                },
                announced: false
            })
        );
        assert!(
            matches!(
                log.claim(pending, job).await.unwrap(),
                ClaimResult::Granted(_)
            ),
            "a claim of a stopped process is void"
        );
        let lines = std::fs::read_to_string(dir.path().join(SENT_FILE)).unwrap();
        assert_eq!(lines.lines().count(), 2, "compacted: {lines}");
    }

    #[tokio::test]
    async fn a_lapsed_claim_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalSentLog::open(dir.path(), Duration::from_millis(50))
            .await
            .unwrap();
        let event = Uuid::now_v7();
        let ClaimResult::Granted(first) = log.claim(event, Uuid::nil()).await.unwrap() else {
            panic!("granted");
        };
        assert_eq!(
            log.claim(event, Uuid::nil()).await.unwrap(),
            ClaimResult::HeldElsewhere
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        let ClaimResult::Granted(second) = log.claim(event, Uuid::nil()).await.unwrap() else {
            panic!("taken over");
        };
        assert_ne!(first, second);
        // The old holder's release no longer removes the new claim.
        log.release(&first).await.unwrap();
        assert_eq!(
            log.claim(event, Uuid::nil()).await.unwrap(),
            ClaimResult::HeldElsewhere
        );
    }
}
