//! One event-store reader per job for all of its live SSE streams.
//!
//! Each stream used to re-read the job's whole history on every wake-up and every poll: a
//! thousand streams on one job were a thousand reads a second. Now the streams of a job share a
//! [`JobFeed`]: a read serves every stream that asks for data at least as fresh as the read's
//! start, and reads past a cursor (the newest event time known, minus [`LATE_EVENT_WINDOW`] for
//! events that reach the store after newer ones) instead of from the start. A full read now and
//! then ([`FULL_READ_EVERY`]) picks up events that arrived later than that window.

use crate::store::{EventStore, StoreError};
use contracts::Envelope;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How far before the newest known event a cursor read starts: events produced by different
/// services (other clocks, bus delays) may be stored after events that occurred later.
pub const LATE_EVENT_WINDOW: Duration = Duration::from_secs(60);
/// How often a feed reads its job's whole history anyway.
pub const FULL_READ_EVERY: Duration = Duration::from_secs(60);

/// The feeds of the jobs that have live streams; a feed lives while a stream holds it.
#[derive(Default)]
pub struct JobFeeds {
    feeds: Mutex<Feeds>,
}

#[derive(Default)]
struct Feeds {
    by_job: HashMap<Uuid, Weak<JobFeed>>,
    /// Size at which the map is next swept of dead feeds (amortised: doubles after a sweep).
    sweep_at: usize,
}

impl JobFeeds {
    /// The feed of `job_id`, shared with the job's other live streams.
    pub fn feed(&self, job_id: Uuid) -> Arc<JobFeed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(feed) = feeds.by_job.get(&job_id).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = Arc::new(JobFeed {
            job_id,
            state: tokio::sync::Mutex::default(),
        });
        feeds.by_job.insert(job_id, Arc::downgrade(&feed));
        if feeds.by_job.len() >= feeds.sweep_at {
            feeds.by_job.retain(|_, feed| feed.strong_count() > 0);
            feeds.sweep_at = (feeds.by_job.len() * 2).max(64);
        }
        feed
    }
}

pub struct JobFeed {
    job_id: Uuid,
    /// Held across a read, so concurrent askers wait for it and share its result.
    state: tokio::sync::Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    /// Every event of the job read so far, in `(occurred_at, event_id)` order.
    events: Arc<Vec<Envelope>>,
    ids: HashSet<Uuid>,
    /// When the newest successful read started (everything stored before it is in `events`).
    read_started: Option<Instant>,
    full_read_started: Option<Instant>,
}

impl JobFeed {
    /// The job's events as a store read that started at or after `not_before` saw them; reads
    /// the store only when no such read exists yet.
    pub async fn events(
        &self,
        store: &dyn EventStore,
        not_before: Instant,
    ) -> Result<Arc<Vec<Envelope>>, StoreError> {
        let mut state = self.state.lock().await;
        if state
            .read_started
            .is_some_and(|started| started >= not_before)
        {
            return Ok(state.events.clone());
        }
        let started = Instant::now();
        let full = state
            .full_read_started
            .is_none_or(|full| started.duration_since(full) >= FULL_READ_EVERY);
        let fresh = match state.events.last() {
            Some(newest) if !full => {
                let window = chrono::Duration::from_std(LATE_EVENT_WINDOW)
                    .expect("the window fits a chrono duration");
                let since = newest.occurred_at - window;
                metrics::counter!("event_store_reads_total", "reader" => "job_stream", "read" => "since")
                    .increment(1);
                store.events_of_job_since(self.job_id, since).await?
            }
            _ => {
                metrics::counter!("event_store_reads_total", "reader" => "job_stream", "read" => "full")
                    .increment(1);
                store.events_of_job(self.job_id).await?
            }
        };
        let state = &mut *state;
        let unseen: Vec<Envelope> = fresh
            .into_iter()
            .filter(|event| state.ids.insert(event.event_id))
            .collect();
        if !unseen.is_empty() {
            let mut events = Vec::with_capacity(state.events.len() + unseen.len());
            events.extend(state.events.iter().cloned());
            events.extend(unseen);
            events.sort_by_key(|e| (e.occurred_at, e.event_id));
            state.events = Arc::new(events);
        }
        state.read_started = Some(started);
        if full {
            state.full_read_started = Some(started);
        }
        Ok(state.events.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalEventStore;
    use contracts::JobEvent;
    use contracts::events::{ConversionProgress, ConversionStarted};

    fn event(job_id: Uuid, seconds_ago: i64) -> Envelope {
        Envelope {
            occurred_at: chrono::Utc::now() - chrono::Duration::seconds(seconds_ago),
            ..Envelope::new(
                job_id,
                "converter",
                JobEvent::ConversionProgress(ConversionProgress { percent: 1 }),
            )
        }
    }

    #[tokio::test]
    async fn streams_of_a_job_share_reads_and_see_late_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalEventStore::open(dir.path()).await.unwrap();
        let job_id = Uuid::now_v7();
        let first = Envelope::new(
            job_id,
            "converter",
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        );
        store.append(&first).await.unwrap();
        let feeds = JobFeeds::default();
        let feed = feeds.feed(job_id);
        assert!(Arc::ptr_eq(&feed, &feeds.feed(job_id)));
        let asked = Instant::now();
        assert_eq!(feed.events(&store, asked).await.unwrap().len(), 1);
        // A second stream asking for data as fresh is served from that read.
        store.append(&event(job_id, 0)).await.unwrap();
        assert_eq!(feed.events(&store, asked).await.unwrap().len(), 1);
        // Fresher data needs a read: it sees the new event, and one stored late within the window.
        store.append(&event(job_id, 30)).await.unwrap();
        let events = feed.events(&store, Instant::now()).await.unwrap();
        assert_eq!(events.len(), 3);
        assert!(
            events
                .windows(2)
                .all(|w| w[0].occurred_at <= w[1].occurred_at)
        );
        // A dropped feed is forgotten.
        drop(feed);
        let other = feeds.feed(job_id);
        assert_eq!(other.events(&store, Instant::now()).await.unwrap().len(), 3);
    }
}
