//! One contract for every adapter of the gateway's store seam: each check below runs against the
//! MongoDB adapters (on the test MongoDB-wire server, a fresh database per test) and against the
//! local JSON-lines adapters of the all-in-one mode (a fresh directory per test), so the two
//! cannot drift apart.

use chrono::Utc;
use contracts::events::{ConversionStarted, JobDeleted, JobSubmitted};
use contracts::{Envelope, JobEvent, JobStatus};
use gateway::store::{
    EventStore, FinishedJob, JobPage, JobWatch, LocalEventStore, LocalOutbox, LocalRetentionLedger,
    MemoryJobWatch, MemoryRetentionLedger, MongoEventStore, MongoJobWatch, MongoOutbox,
    MongoRetentionLedger, Outbox, RetentionLedger,
};
use platform::testing::{required_env, unique_name};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The three stores of one adapter family, fresh and empty.
struct Stores {
    events: Arc<dyn EventStore>,
    outbox: Arc<dyn Outbox>,
    ledger: Arc<dyn RetentionLedger>,
    /// Keeps the local directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

async fn mongo() -> Stores {
    let client = mongodb::Client::with_uri_str(required_env("MONGODB_URI"))
        .await
        .expect("the MongoDB-wire server at MONGODB_URI answers");
    let database = unique_name("contract");
    let events = MongoEventStore::new(&client, &database);
    let outbox = MongoOutbox::new(&client, &database);
    let ledger = MongoRetentionLedger::new(&client, &database);
    events.ensure_indexes().await.expect("event indexes");
    outbox.ensure_indexes().await.expect("outbox indexes");
    ledger.ensure_indexes().await.expect("ledger indexes");
    Stores {
        events: Arc::new(events),
        outbox: Arc::new(outbox),
        ledger: Arc::new(ledger),
        _dir: None,
    }
}

async fn local() -> Stores {
    let dir = tempfile::tempdir().expect("a temporary directory");
    Stores {
        events: Arc::new(LocalEventStore::open(dir.path()).await.expect("events")),
        outbox: Arc::new(LocalOutbox::open(dir.path()).await.expect("outbox")),
        ledger: Arc::new(
            LocalRetentionLedger::open(dir.path())
                .await
                .expect("ledger"),
        ),
        _dir: Some(dir),
    }
}

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

fn started(job: &Envelope) -> Envelope {
    Envelope::new(
        job.job_id,
        "converter",
        JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
    )
}

fn deleted(job: &Envelope, owner: &str) -> Envelope {
    Envelope::new(
        job.job_id,
        "gateway",
        JobEvent::JobDeleted(JobDeleted {
            owner_id: owner.into(),
        }),
    )
}

async fn appends_once_per_event_id_and_folds_a_job(stores: Stores) {
    let job = submitted("alice");
    assert!(stores.events.append(&job).await.unwrap(), "first append");
    assert!(!stores.events.append(&job).await.unwrap(), "same id again");
    stores.events.append(&started(&job)).await.unwrap();
    assert_eq!(
        stores.events.events_of_job(job.job_id).await.unwrap().len(),
        2
    );
    let state = stores.events.job_state(job.job_id).await.unwrap().unwrap();
    assert_eq!(state.status, JobStatus::Converting);
    assert_eq!(stores.events.job_state(Uuid::now_v7()).await.unwrap(), None);
    stores
        .events
        .check()
        .await
        .expect("a healthy store answers its check");
}

async fn reads_a_jobs_events_since_a_cursor(stores: Stores) {
    let base = Utc::now() - chrono::Duration::seconds(60);
    let at = |event: Envelope, seconds: i64| Envelope {
        occurred_at: base + chrono::Duration::seconds(seconds),
        ..event
    };
    let job = at(submitted("carol"), 0);
    let first = at(started(&job), 10);
    let second = at(started(&job), 20);
    let third = at(started(&job), 30);
    let other_job = at(submitted("carol"), 15);
    // Stored out of order: the cursor is the event time, not the arrival order.
    for event in [&third, &job, &other_job, &second, &first] {
        stores.events.append(event).await.unwrap();
    }
    let ids = |events: Vec<Envelope>| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    let since = |seconds: i64| base + chrono::Duration::seconds(seconds);
    let events = &stores.events;
    assert_eq!(
        ids(events
            .events_of_job_since(job.job_id, since(15))
            .await
            .unwrap()),
        [second.event_id, third.event_id]
    );
    // At the cursor's time is included (a reader dedupes by event id).
    assert_eq!(
        ids(events
            .events_of_job_since(job.job_id, since(20))
            .await
            .unwrap()),
        [second.event_id, third.event_id]
    );
    assert_eq!(
        ids(events
            .events_of_job_since(job.job_id, since(-3600))
            .await
            .unwrap()),
        ids(events.events_of_job(job.job_id).await.unwrap())
    );
    assert_eq!(
        events
            .events_of_job_since(job.job_id, since(31))
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        events
            .events_of_job_since(Uuid::now_v7(), since(-3600))
            .await
            .unwrap(),
        []
    );
}

async fn lists_an_owners_jobs_newest_first_in_pages(stores: Stores) {
    let jobs: Vec<Envelope> = (0..3).map(|_| submitted("bob")).collect();
    for job in &jobs {
        stores.events.append(job).await.unwrap();
    }
    stores.events.append(&submitted("carol")).await.unwrap();
    let newest_first: Vec<Uuid> = jobs.iter().rev().map(|job| job.job_id).collect();
    let all = JobPage {
        limit: 10,
        before: None,
    };
    assert_eq!(
        stores.events.jobs_of_owner("bob", all).await.unwrap(),
        newest_first
    );
    let page = JobPage {
        limit: 1,
        before: Some(newest_first[0]),
    };
    assert_eq!(
        stores.events.jobs_of_owner("bob", page).await.unwrap(),
        newest_first[1..2]
    );
    assert!(
        stores
            .events
            .jobs_of_owner("nobody", all)
            .await
            .unwrap()
            .is_empty()
    );
    let both = stores
        .events
        .events_of_jobs(&newest_first[..2])
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
}

async fn lists_every_submitted_job_oldest_first(stores: Stores) {
    let first = submitted("dave");
    let second = submitted("erin");
    stores.events.append(&first).await.unwrap();
    stores.events.append(&second).await.unwrap();
    stores
        .events
        .append(&deleted(&first, "dave"))
        .await
        .unwrap();
    assert_eq!(
        stores.events.submitted_jobs().await.unwrap(),
        vec![first.job_id, second.job_id]
    );
}

async fn the_outbox_leases_each_entry_to_one_claimer(stores: Stores) {
    let first = submitted("frank");
    let second = submitted("frank");
    stores.outbox.add(&first, Duration::ZERO).await.unwrap();
    stores
        .outbox
        .add(&second, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(stores.outbox.pending().await.unwrap(), 2);
    // `second` is leased by its adder: only `first` is claimable, and only once.
    let claimed = stores
        .outbox
        .claim_next(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.map(|e| e.event_id), Some(first.event_id));
    assert!(
        stores
            .outbox
            .claim_next(Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    stores.outbox.release(second.event_id).await.unwrap();
    let claimed = stores
        .outbox
        .claim_next(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.map(|e| e.event_id), Some(second.event_id));
    stores.outbox.mark_published(first.event_id).await.unwrap();
    stores.outbox.mark_published(second.event_id).await.unwrap();
    assert_eq!(stores.outbox.pending().await.unwrap(), 0);
}

async fn the_ledger_claims_each_due_job_once(ledger: Arc<dyn RetentionLedger>) {
    let (old, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    let finished = |job_id, seconds_ago, mp3: Option<&str>| FinishedJob {
        job_id,
        owner_id: "grace".into(),
        finished_at: Utc::now() - chrono::Duration::seconds(seconds_ago),
        mp3_file_id: mp3.map(str::to_owned),
    };
    ledger
        .record_finished(&finished(old, 100, None))
        .await
        .unwrap();
    // A later record may only add the MP3.
    ledger
        .record_finished(&finished(old, 5, Some("m1")))
        .await
        .unwrap();
    ledger
        .record_finished(&finished(fresh, 1, None))
        .await
        .unwrap();
    let cutoff = Utc::now() - chrono::Duration::seconds(50);
    let lease = Duration::from_secs(60);
    let claim = ledger
        .claim_due(cutoff, lease)
        .await
        .unwrap()
        .expect("old is due");
    assert_eq!(claim.job_id, old);
    assert_eq!(claim.mp3_file_id.as_deref(), Some("m1"));
    assert!(
        ledger.claim_due(cutoff, lease).await.unwrap().is_none(),
        "leased"
    );
    ledger.release(old).await.unwrap();
    let again = ledger
        .claim_due(cutoff, lease)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(
        again.expiry_event_id, claim.expiry_event_id,
        "expiry id is fixed"
    );
    ledger.complete(old).await.unwrap();
    ledger.release(old).await.unwrap();
    assert!(
        ledger.claim_due(cutoff, lease).await.unwrap().is_none(),
        "done"
    );
    assert_eq!(ledger.job_of_mp3("m1").await.unwrap(), Some(old));
    assert_eq!(ledger.job_of_mp3("m2").await.unwrap(), None);
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod mongo {
            $(#[tokio::test]
            async fn $check() {
                super::$check(super::mongo().await).await;
            })*
        }
        mod local {
            $(#[tokio::test]
            async fn $check() {
                super::$check(super::local().await).await;
            })*
        }
    };
}

contract!(
    appends_once_per_event_id_and_folds_a_job,
    reads_a_jobs_events_since_a_cursor,
    lists_an_owners_jobs_newest_first_in_pages,
    lists_every_submitted_job_oldest_first,
    the_outbox_leases_each_entry_to_one_claimer,
);

#[tokio::test]
async fn the_mongo_ledger_claims_each_due_job_once() {
    the_ledger_claims_each_due_job_once(mongo().await.ledger).await;
}

#[tokio::test]
async fn the_local_ledger_claims_each_due_job_once() {
    let stores = local().await;
    the_ledger_claims_each_due_job_once(stores.ledger.clone()).await;
}

#[tokio::test]
async fn the_memory_ledger_claims_each_due_job_once() {
    the_ledger_claims_each_due_job_once(Arc::new(MemoryRetentionLedger::default())).await;
}

/// `job_id`'s events as a newer build would store them beside this build's: `conversion.succeeded`
/// at schema version 2 and `job.renamed`, a type this build does not know; and a
/// `conversion.progress` as stored before per-type versions (the same wire form). As JSON text.
fn stored_by_other_builds(job_id: Uuid) -> Vec<(&'static str, String)> {
    let at = Utc::now().to_rfc3339();
    let envelope = |event_type: &str, version: u16, payload: serde_json::Value| {
        serde_json::json!({
            "event_id": Uuid::now_v7(), "job_id": job_id, "version": version,
            "occurred_at": at, "producer": "converter", "event_type": event_type,
            "payload": payload,
        })
        .to_string()
    };
    vec![
        (
            "conversion.progress",
            envelope("conversion.progress", 1, serde_json::json!({"percent": 40})),
        ),
        (
            "conversion.succeeded",
            envelope(
                "conversion.succeeded",
                2,
                serde_json::json!({"owner_id": "carol", "mp3_file_id": "m", "loudness_lufs": -16.0}),
            ),
        ),
        (
            "job.renamed",
            envelope("job.renamed", 1, serde_json::json!({"new_name": "x.mp3"})),
        ),
    ]
}

/// What a job whose stored events include [`stored_by_other_builds`] must fold to: this build's
/// events and the old one, the newer build's skipped (not an error, not a missing job).
async fn folds_past_what_it_cannot_read(events: &dyn EventStore, job: &Envelope) {
    let state = events
        .job_state(job.job_id)
        .await
        .unwrap()
        .expect("the job");
    assert_eq!(state.status, JobStatus::Converting);
    assert_eq!(state.progress, 40, "the old event was read");
    assert_eq!(events.events_of_job(job.job_id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_mongo_event_store_folds_past_events_a_newer_build_stored() {
    let client = mongodb::Client::with_uri_str(required_env("MONGODB_URI"))
        .await
        .unwrap();
    let database = unique_name("newer");
    let events = MongoEventStore::new(&client, &database);
    let job = submitted("carol");
    events.append(&job).await.unwrap();
    events.append(&started(&job)).await.unwrap();
    let collection = client
        .database(&database)
        .collection::<mongodb::bson::Document>("events");
    for (event_type, json) in stored_by_other_builds(job.job_id) {
        collection
            .insert_one(mongodb::bson::doc! {
                "_id": Uuid::now_v7().to_string(),
                "job_id": job.job_id.to_string(),
                "event_type": event_type,
                "occurred_at": mongodb::bson::DateTime::now(),
                "envelope": json,
            })
            .await
            .unwrap();
    }
    folds_past_what_it_cannot_read(&events, &job).await;
}

#[tokio::test]
async fn the_local_event_store_folds_past_events_a_newer_build_stored_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let job = submitted("carol");
    {
        let events = LocalEventStore::open(dir.path()).await.unwrap();
        events.append(&job).await.unwrap();
        events.append(&started(&job)).await.unwrap();
    }
    let path = dir.path().join("events.jsonl");
    let mut log = std::fs::read_to_string(&path).unwrap();
    for (_, json) in stored_by_other_builds(job.job_id) {
        log.push_str(&json);
        log.push('\n');
    }
    std::fs::write(&path, &log).unwrap();
    let events = LocalEventStore::open(dir.path()).await.unwrap();
    folds_past_what_it_cannot_read(&events, &job).await;
    // Still there for the build that reads them.
    let kept = std::fs::read_to_string(&path).unwrap();
    assert!(kept.contains("job.renamed") && kept.contains("loudness_lufs"));
}

/// The job watch: a job is claimed once it has been quiet past the cutoff, by one watchdog at a
/// time; activity moves it forward, a finished job is never claimed again (not even after a late
/// event), and a released job can be claimed at once.
async fn the_watch_claims_each_stalled_job_once(watch: Arc<dyn JobWatch>) {
    watch.prepare().await.unwrap();
    let lease = Duration::from_secs(60);
    let quiet = Uuid::now_v7();
    let busy = Uuid::now_v7();
    let finished = Uuid::now_v7();
    let long_ago = Utc::now() - chrono::Duration::minutes(10);
    watch.touch(quiet, long_ago).await.unwrap();
    watch.touch(busy, long_ago).await.unwrap();
    watch.touch(busy, Utc::now()).await.unwrap();
    watch.touch(finished, long_ago).await.unwrap();
    watch.finish(finished).await.unwrap();
    watch.touch(finished, long_ago).await.unwrap();
    let cutoff = Utc::now() - chrono::Duration::minutes(1);

    let claimed = watch.claim_stalled(cutoff, lease).await.unwrap();
    assert_eq!(claimed.map(|c| c.job_id), Some(quiet));
    assert_eq!(
        watch.claim_stalled(cutoff, lease).await.unwrap(),
        None,
        "leased, and nothing else is quiet"
    );
    watch.release(quiet).await.unwrap();
    assert_eq!(
        watch
            .claim_stalled(cutoff, lease)
            .await
            .unwrap()
            .map(|c| c.job_id),
        Some(quiet),
        "released: claimable again"
    );
    watch.finish(quiet).await.unwrap();
    watch.release(quiet).await.unwrap();
    assert_eq!(watch.claim_stalled(cutoff, lease).await.unwrap(), None);
}

#[tokio::test]
async fn the_mongo_watch_claims_each_stalled_job_once() {
    let client = mongodb::Client::with_uri_str(required_env("MONGODB_URI"))
        .await
        .expect("the MongoDB-wire server at MONGODB_URI answers");
    let watch = MongoJobWatch::new(&client, &unique_name("contract"));
    the_watch_claims_each_stalled_job_once(Arc::new(watch)).await;
}

#[tokio::test]
async fn the_memory_watch_claims_each_stalled_job_once() {
    the_watch_claims_each_stalled_job_once(Arc::new(MemoryJobWatch::default())).await;
}
