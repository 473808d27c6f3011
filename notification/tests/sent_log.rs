//! The MongoDB sent log against a real MongoDB-wire server.

use notification::sent_log::{ClaimResult, Delivery, Finished, MongoSentLog, SentLog};
use platform::testing::{free_port, mongo_client, required_env, unique_name};
use std::time::Duration;
use uuid::Uuid;

async fn log(lease: Duration) -> MongoSentLog {
    let client = mongo_client(&required_env("MONGODB_URI")).await;
    MongoSentLog::new(&client, &unique_name("sentlog"), lease)
}

fn granted(result: ClaimResult) -> notification::sent_log::Claim {
    match result {
        ClaimResult::Granted(claim) => claim,
        other => panic!("expected the claim, got {other:?}"),
    }
}

#[tokio::test]
async fn an_outcome_is_claimed_once_and_reported_finished_after() {
    let log = log(Duration::from_secs(60)).await;
    let (event_id, job_id) = (Uuid::now_v7(), Uuid::now_v7());

    let claim = granted(log.claim(event_id, job_id).await.unwrap());
    assert_eq!(claim.event_id, event_id);
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::HeldElsewhere
    );

    log.finish(&claim, &Delivery::Sent).await.unwrap();
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::Finished(Finished {
            delivery: Delivery::Sent,
            announced: false
        })
    );
    log.mark_announced(event_id).await.unwrap();
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::Finished(Finished {
            delivery: Delivery::Sent,
            announced: true
        })
    );
    // Other outcomes are independent.
    granted(log.claim(Uuid::now_v7(), job_id).await.unwrap());
}

#[tokio::test]
async fn a_failure_is_remembered_with_its_reason() {
    let log = log(Duration::from_secs(60)).await;
    let (event_id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
    let claim = granted(log.claim(event_id, job_id).await.unwrap());
    let failed = Delivery::Failed {
        reason: "550 no such mailbox".into(),
    };
    log.finish(&claim, &failed).await.unwrap();
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::Finished(Finished {
            delivery: failed,
            announced: false
        })
    );
}

#[tokio::test]
async fn a_released_claim_can_be_claimed_again_at_once() {
    let log = log(Duration::from_secs(60)).await;
    let (event_id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
    let claim = granted(log.claim(event_id, job_id).await.unwrap());
    log.release(&claim).await.unwrap();
    let again = granted(log.claim(event_id, job_id).await.unwrap());
    assert_ne!(again, claim, "a new claim, not the released one");
    // Releasing the old claim again must not drop the new holder's.
    log.release(&claim).await.unwrap();
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::HeldElsewhere
    );
}

#[tokio::test]
async fn a_lapsed_claim_is_taken_over_by_exactly_one_claimant() {
    let lease = Duration::from_millis(300);
    let log = log(lease).await;
    let (event_id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
    let crashed = granted(log.claim(event_id, job_id).await.unwrap());
    tokio::time::sleep(lease + Duration::from_millis(200)).await;

    let (a, b) = tokio::join!(log.claim(event_id, job_id), log.claim(event_id, job_id));
    let results = [a.unwrap(), b.unwrap()];
    let winners = results
        .iter()
        .filter(|r| matches!(r, ClaimResult::Granted(_)))
        .count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(results.contains(&ClaimResult::HeldElsewhere), "{results:?}");
    // The crashed holder's claim no longer releases anything.
    log.release(&crashed).await.unwrap();
    assert_eq!(
        log.claim(event_id, job_id).await.unwrap(),
        ClaimResult::HeldElsewhere
    );
}

#[tokio::test]
async fn an_unreachable_store_is_reported_not_hidden() {
    let unreachable = mongo_client(&format!("mongodb://127.0.0.1:{}", free_port())).await;
    let log = MongoSentLog::new(&unreachable, "notification", Duration::from_secs(60));
    assert!(log.check().await.is_err());
    assert!(log.claim(Uuid::now_v7(), Uuid::now_v7()).await.is_err());
    let reachable = self::log(Duration::from_secs(60)).await;
    reachable.check().await.unwrap();
}

#[tokio::test]
async fn deleted_jobs_are_remembered_once() {
    let log = log(Duration::from_secs(60)).await;
    let (deleted, kept) = (Uuid::now_v7(), Uuid::now_v7());
    log.record_deleted(deleted).await.unwrap();
    log.record_deleted(deleted).await.unwrap();
    assert!(log.is_deleted(deleted).await.unwrap());
    assert!(!log.is_deleted(kept).await.unwrap());
}
