//! End to end: outcome events on a real RabbitMQ, the sent log on a real MongoDB-wire server and
//! mail through a real SMTP server, read back from the files it writes.

mod common;

use common::*;
use contracts::events::{FailureKind, JobEvent};
use mail_parser::MessageParser;
use notification::sent_log::{ClaimResult, MongoSentLog, SentLog};
use platform::rabbit::retry_queue_name;
use platform::testing::{mail_dir, private_smtp};
use std::time::{Duration, Instant};

const MAIL_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn a_success_mail_arrives_with_every_detail_and_is_announced() {
    let harness = Harness::new().await;
    let app = harness.start(test_settings()).await;
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "holiday.mp4").with_traceparent(Some(TRACEPARENT.into()));

    harness.publish(&outcome).await;

    let raw = mail_to(&mail_dir(), &recipient, MAIL_TIMEOUT).await;
    let mail = MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parsable mail");
    assert_eq!(mail.subject(), Some("Your MP3 of \"holiday.mp4\" is ready"));
    assert_eq!(
        mail.to()
            .and_then(|to| to.first())
            .and_then(|a| a.address()),
        Some(recipient.as_str())
    );
    let from = mail
        .from()
        .and_then(|from| from.first())
        .expect("a From header");
    assert_eq!(from.address(), Some("no-reply@mp3converter.com"));
    assert_eq!(from.name(), Some("MP3 Converter"));
    assert_eq!(
        mail.message_id(),
        Some(format!("notification.{}@mp3converter.com", outcome.event_id).as_str())
    );
    assert_eq!(mail.text_body_count(), 1, "one text/plain part");
    assert_eq!(mail.html_body_count(), 1, "one text/html part");
    let text = mail.body_text(0).expect("a text part");
    let html = mail.body_html(0).expect("an HTML part");
    let command = "curl -o \"holiday.mp3\" -H \"Authorization: Bearer $TOKEN\" \
                   \"https://mp3.example.com/download?fid=65f0c0ffee0000000000beef\"";
    assert!(text.contains(command), "{text}");
    assert!(
        html.contains(&command.replace('"', "&quot;")),
        "the HTML part holds the escaped command: {html}"
    );
    for part in [&text, &html] {
        assert!(part.contains(&outcome.job_id.to_string()), "{part}");
        assert!(part.contains("holiday.mp4"));
        assert!(part.contains("65f0c0ffee0000000000beef"));
        assert!(part.contains("4.2 MB"));
        assert!(part.contains("3:05"));
    }

    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert_eq!(announced.job_id, outcome.job_id);
    assert_eq!(announced.producer, "notification");
    assert_eq!(announced.traceparent.as_deref(), Some(TRACEPARENT));
    match announced.event {
        JobEvent::NotificationSent(sent) => {
            assert_eq!(sent.recipient, recipient);
            assert_eq!(sent.about_event_id, outcome.event_id);
        }
        other => panic!("expected notification.sent, got {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn failure_mails_give_the_reason_and_what_to_do() {
    let harness = Harness::new().await;
    let app = harness.start(test_settings()).await;
    let unconvertible_to = unique_recipient("user");
    let unconvertible = failed(
        &unconvertible_to,
        "x.avi",
        FailureKind::Unconvertible,
        "the file has no audio track",
    );
    let exhausted_to = unique_recipient("user");
    let exhausted = failed(
        &exhausted_to,
        "talk.mkv",
        FailureKind::RetriesExhausted,
        "reading or writing a file failed",
    );

    harness.publish(&unconvertible).await;
    harness.publish(&exhausted).await;

    let raw = mail_to(&mail_dir(), &unconvertible_to, MAIL_TIMEOUT).await;
    let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(mail.subject(), Some("We could not convert \"x.avi\""));
    let text = mail.body_text(0).unwrap();
    let html = mail.body_html(0).unwrap();
    for part in [&text, &html] {
        assert!(part.contains("the file has no audio track"), "{part}");
        assert!(part.contains("audio track (check that it plays"), "{part}");
        assert!(part.contains(&unconvertible.job_id.to_string()));
    }

    let raw = mail_to(&mail_dir(), &exhausted_to, MAIL_TIMEOUT).await;
    let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(mail.subject(), Some("We could not convert \"talk.mkv\""));
    let text = mail.body_text(0).unwrap();
    assert!(text.contains("try again later"), "{text}");
    assert!(text.contains("not with your file"), "{text}");

    let mut announced = [
        harness.next_announcement(EVENT_TIMEOUT).await,
        harness.next_announcement(EVENT_TIMEOUT).await,
    ];
    announced.sort_by_key(|e| about(e) != Some(unconvertible.event_id));
    assert!(matches!(announced[0].event, JobEvent::NotificationSent(_)));
    assert_eq!(about(&announced[0]), Some(unconvertible.event_id));
    assert_eq!(about(&announced[1]), Some(exhausted.event_id));
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_outcome_sends_no_second_mail() {
    let harness = Harness::new().await;
    // One delivery at a time: the queue is worked in order, so once the marker is done, both
    // copies of the outcome are too.
    let app = harness
        .start(notification::Settings {
            prefetch: 1,
            ..test_settings()
        })
        .await;
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "twice.mp4");
    let marker = succeeded(&recipient, "marker.mp4");

    harness.publish(&outcome).await;
    harness.publish(&outcome).await;
    harness.publish(&marker).await;

    let announced = harness
        .announcements_until(marker.event_id, EVENT_TIMEOUT)
        .await;
    let about_outcome = announced
        .iter()
        .filter(|e| about(e) == Some(outcome.event_id))
        .count();
    assert_eq!(
        about_outcome, 1,
        "one announcement per outcome: {announced:?}"
    );
    mail_about(&mail_dir(), &recipient, "marker.mp4", MAIL_TIMEOUT).await;
    let mails = mails_to(&mail_dir(), &recipient);
    assert_eq!(
        mails.len(),
        2,
        "one mail for the outcome, one for the marker"
    );
    assert_eq!(count_mails_about(&mail_dir(), &recipient, "twice.mp4"), 1);
    app.stop().await;
}

#[tokio::test]
async fn duplicates_handled_at_the_same_time_send_one_mail() {
    let harness = Harness::new().await;
    let app = harness
        .start(notification::Settings {
            prefetch: 4,
            ..test_settings()
        })
        .await;
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "concurrent.mp4");

    for _ in 0..3 {
        harness.publish(&outcome).await;
    }

    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert_eq!(about(&announced), Some(outcome.event_id));
    mail_to(&mail_dir(), &recipient, MAIL_TIMEOUT).await;
    // The other copies wait on the claim and then find the mail sent: nothing more happens.
    harness.assert_no_announcement(Duration::from_secs(3)).await;
    assert_eq!(mails_to(&mail_dir(), &recipient).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_service_does_not_mail_an_outcome_again() {
    let harness = Harness::new().await;
    let settings = notification::Settings {
        prefetch: 1,
        ..test_settings()
    };
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "restart.mp4");

    let first = harness.start(settings.clone()).await;
    harness.publish(&outcome).await;
    harness
        .announcements_until(outcome.event_id, EVENT_TIMEOUT)
        .await;
    first.stop().await;

    // Same queue and sent log, new process: the outcome arrives again (a producer's resend).
    let second = harness.start(settings).await;
    let marker = succeeded(&recipient, "marker.mp4");
    harness.publish(&outcome).await;
    harness.publish(&marker).await;
    let announced = harness
        .announcements_until(marker.event_id, EVENT_TIMEOUT)
        .await;
    assert!(
        announced.iter().all(|e| about(e) != Some(outcome.event_id)),
        "the outcome is not announced again: {announced:?}"
    );
    mail_about(&mail_dir(), &recipient, "marker.mp4", MAIL_TIMEOUT).await;
    assert_eq!(count_mails_about(&mail_dir(), &recipient, "restart.mp4"), 1);
    second.stop().await;
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_taken_over_once_it_lapses() {
    let harness = Harness::new().await;
    let lease = Duration::from_secs(2);
    let settings = notification::Settings {
        claim_timeout: lease,
        smtp_timeout: Duration::from_secs(1),
        ..test_settings()
    };
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "crash.mp4");
    // A worker claimed the outcome, then died before sending.
    let client = platform::testing::mongo_client(settings.mongodb_uri.expose()).await;
    let crashed = MongoSentLog::new(&client, &settings.mongodb_database, lease);
    let claim = crashed
        .claim(outcome.event_id, outcome.job_id)
        .await
        .unwrap();
    assert!(matches!(claim, ClaimResult::Granted(_)), "{claim:?}");
    let claimed_at = Instant::now();

    let app = harness.start(settings).await;
    harness.publish(&outcome).await;

    mail_to(&mail_dir(), &recipient, MAIL_TIMEOUT).await;
    assert!(
        claimed_at.elapsed() >= lease,
        "the mail waited for the claim to lapse"
    );
    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert!(matches!(announced.event, JobEvent::NotificationSent(_)));
    assert_eq!(mails_to(&mail_dir(), &recipient).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_smtp_outage_delays_the_mail_without_losing_it() {
    let harness = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = private_smtp(dir.path()).await;
    let settings = notification::Settings {
        smtp_url: format!("smtp://127.0.0.1:{}", smtp.port).parse().unwrap(),
        retry_delays: [200, 400, 800, 1600, 3200, 6400]
            .map(Duration::from_millis)
            .to_vec(),
        ..test_settings()
    };
    let app = harness.start(settings).await;
    let recipient = unique_recipient("user");
    let outcome = succeeded(&recipient, "outage.mp4");

    smtp.stop();
    harness.publish(&outcome).await;
    harness
        .assert_no_announcement(Duration::from_millis(1500))
        .await;
    assert!(mails_to(dir.path(), &recipient).is_empty());
    smtp.restart().await;

    mail_to(dir.path(), &recipient, MAIL_TIMEOUT).await;
    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert!(
        matches!(announced.event, JobEvent::NotificationSent(_)),
        "{announced:?}"
    );
    assert_eq!(mails_to(dir.path(), &recipient).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_address_ends_as_notification_failed_without_retries() {
    let harness = Harness::new().await;
    let retry_delay = Duration::from_secs(30);
    let settings = notification::Settings {
        retry_delays: vec![retry_delay],
        ..test_settings()
    };
    let app = harness.start(settings).await;
    let recipient = unique_recipient("reject");
    let outcome = succeeded(&recipient, "rejected.mp4");

    let started = Instant::now();
    harness.publish(&outcome).await;

    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert!(
        started.elapsed() < retry_delay,
        "failed at once, not after a retry"
    );
    match &announced.event {
        JobEvent::NotificationFailed(failed) => {
            assert_eq!(failed.about_event_id, outcome.event_id);
            assert_eq!(failed.recipient, recipient);
            // The owner sees the reply code, never the server's text.
            assert_eq!(failed.reason, "the mail server refused the mail (SMTP 550)");
        }
        other => panic!("expected notification.failed, got {other:?}"),
    }
    let queue = harness.topology.queue(notification::startup::QUEUE);
    assert_eq!(
        harness
            .queue_depth(&retry_queue_name(&queue, retry_delay))
            .await,
        0
    );
    assert_eq!(
        harness
            .queue_depth(&harness.topology.dead_letter_queue)
            .await,
        0
    );
    assert!(mails_to(&mail_dir(), &recipient).is_empty());

    // A redelivery neither retries the mail nor announces the failure again.
    harness.publish(&outcome).await;
    harness.assert_no_announcement(Duration::from_secs(2)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_mailbox_that_stays_busy_is_given_up_after_the_last_retry() {
    let harness = Harness::new().await;
    let app = harness.start(test_settings()).await; // 2 retries: 3 attempts
    let recipient = unique_recipient("busy");
    let outcome = succeeded(&recipient, "busy.mp4");

    harness.publish(&outcome).await;

    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    match &announced.event {
        JobEvent::NotificationFailed(failed) => {
            assert_eq!(failed.about_event_id, outcome.event_id);
            assert!(
                failed.reason.starts_with("gave up after 3 attempts"),
                "{}",
                failed.reason
            );
            assert!(failed.reason.contains("(SMTP 451)"), "{}", failed.reason);
            assert!(!failed.reason.contains("try again"), "{}", failed.reason);
        }
        other => panic!("expected notification.failed, got {other:?}"),
    }
    // The bus dead-letters the delivery right after the handler's last word.
    let deadline = Instant::now() + Duration::from_secs(10);
    while harness
        .queue_depth(&harness.topology.dead_letter_queue)
        .await
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the delivery was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mails_to(&mail_dir(), &recipient).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_owner_address_fails_without_mail_or_retries() {
    let harness = Harness::new().await;
    let app = harness
        .start(notification::Settings {
            retry_delays: vec![Duration::from_secs(30)],
            ..test_settings()
        })
        .await;
    let outcome = succeeded("not an address", "bad.mp4");

    harness.publish(&outcome).await;

    let announced = harness.next_announcement(Duration::from_secs(10)).await;
    match &announced.event {
        JobEvent::NotificationFailed(failed) => {
            assert_eq!(failed.about_event_id, outcome.event_id);
            assert_eq!(failed.reason, "the owner's address is invalid");
        }
        other => panic!("expected notification.failed, got {other:?}"),
    }
    app.stop().await;
}

/// An owner who deleted a job gets no mail about it, even when the conversion ends afterwards
/// (it was already running, or failed on the deleted video).
#[tokio::test]
async fn no_mail_goes_out_about_a_job_its_owner_deleted() {
    let harness = Harness::new().await;
    let settings = test_settings();
    let app = harness.start(settings.clone()).await;
    let recipient = unique_recipient("deleted");
    let outcome = succeeded(&recipient, "deleted.mp4");
    let deleted = contracts::Envelope::new(
        outcome.job_id,
        "gateway",
        JobEvent::JobDeleted(contracts::events::JobDeleted {
            owner_id: "42".into(),
        }),
    );
    harness.publish(&deleted).await;
    // The deletion is recorded first; then the outcome arrives. (Published back to back, both
    // may be handled at once with a prefetch above 1: an outcome racing its job's deletion by
    // milliseconds can still be mailed.)
    let client = platform::testing::mongo_client(settings.mongodb_uri.expose()).await;
    let log = MongoSentLog::new(&client, &settings.mongodb_database, settings.claim_timeout);
    let recorded = Instant::now();
    while !log.is_deleted(outcome.job_id).await.unwrap() {
        assert!(
            recorded.elapsed() < EVENT_TIMEOUT,
            "the deletion was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    harness.publish(&outcome).await;
    harness.assert_no_announcement(Duration::from_secs(3)).await;
    assert!(mails_to(&mail_dir(), &recipient).is_empty());

    // Another job of the same owner is still mailed.
    let other = succeeded(&recipient, "kept.mp4");
    harness.publish(&other).await;
    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    assert!(matches!(announced.event, JobEvent::NotificationSent(_)));
    assert_eq!(mails_to(&mail_dir(), &recipient).len(), 1);
    app.stop().await;
}

/// An outcome the service dies on every time it holds it (as an out-of-memory kill would): the
/// broker counts the deaths, gives the event up past `DELIVERY_LIMIT`, and the mail ends failed
/// with a reason instead of killing the service again and again.
#[tokio::test]
async fn an_outcome_the_service_dies_on_every_time_ends_notification_failed() {
    let harness = Harness::new().await;
    let settings = notification::Settings {
        delivery_limit: 1,
        ..test_settings()
    };
    let recipient = unique_recipient("poison");
    let outcome = succeeded(&recipient, "poison.mp4");
    let app = harness.start(settings.clone()).await;
    app.stop().await;
    harness.publish(&outcome).await;
    let queue = harness.topology.queue(notification::startup::QUEUE);
    // Delivered and lost twice: more than the limit of 1.
    platform::testing::die_holding_the_next_delivery(&harness.bus, &queue, 2).await;

    let app = harness.start(settings).await;
    let announced = harness.next_announcement(EVENT_TIMEOUT).await;
    match &announced.event {
        JobEvent::NotificationFailed(failed) => {
            assert_eq!(failed.about_event_id, outcome.event_id);
            assert_eq!(
                failed.reason,
                "the mail could not be sent: the notification service stopped 2 times while preparing it"
            );
        }
        other => panic!("expected notification.failed, got {other:?}"),
    }
    assert!(mails_to(&mail_dir(), &recipient).is_empty());
    app.stop().await;
}
