//! The RabbitMQ bus against the real broker: confirmed publish, acked consume, delayed retry,
//! dead-lettering, and parking and re-driving events a newer build wrote, through the declared
//! topology.

use async_trait::async_trait;
use contracts::Envelope;
use contracts::events::{ConversionProgress, JobEvent};
use lapin::options::{
    BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{isolated_topology, required_env};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records deliveries; fails the first `failures` attempts of each event.
struct Recorder {
    failures: u32,
    seen: Mutex<Vec<(Uuid, u32)>>,
    exhausted: Mutex<Vec<Uuid>>,
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        self.seen
            .lock()
            .unwrap()
            .push((delivery.envelope.event_id, delivery.attempt));
        if delivery.attempt <= self.failures {
            Outcome::Retry("simulated transient failure".into())
        } else {
            Outcome::Done
        }
    }

    async fn exhausted(&self, delivery: &Delivered, _last_error: &str) {
        self.exhausted
            .lock()
            .unwrap()
            .push(delivery.envelope.event_id);
    }
}

fn progress_event() -> Envelope {
    Envelope::new(
        Uuid::now_v7(),
        "test",
        JobEvent::ConversionProgress(ConversionProgress { percent: 5 }),
    )
    .with_traceparent(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    ))
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(
    bus: &Arc<RabbitBus>,
    subscription: Subscription,
    handler: Arc<Recorder>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let bus = bus.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        bus.consume(subscription, handler, token).await.unwrap();
    });
    (shutdown, task)
}

/// Declares the subscription before publishing so the event is routed to its queue.
async fn declare(bus: &RabbitBus, subscription: &Subscription) {
    let connection = bus.open_connection().await.expect("RabbitMQ at AMQP_URL");
    let channel = connection.create_channel().await.unwrap();
    bus.declare_subscription(&channel, subscription)
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn a_published_event_is_consumed_once_and_acknowledged() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc", &["conversion.progress"]);
    declare(&bus, &subscription).await;
    let event = progress_event();
    bus.publish(&event).await.expect("confirmed publish");

    let handler = Arc::new(Recorder {
        failures: 0,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription.clone(), handler.clone());
    wait_until("the delivery", Duration::from_secs(10), || {
        !handler.seen.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(*handler.seen.lock().unwrap(), vec![(event.event_id, 1)]);

    // Acknowledged: nothing is left in the queue.
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = bus.topology().queue("svc");
    let left = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(left.is_none(), "the event was not acknowledged");
}

#[tokio::test]
async fn a_transient_failure_is_redelivered_after_the_retry_delay() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc", &["conversion.progress"])
        .with_retry_delays(vec![Duration::from_millis(300), Duration::from_millis(300)]);
    declare(&bus, &subscription).await;
    let event = progress_event();
    bus.publish(&event).await.unwrap();

    let handler = Arc::new(Recorder {
        failures: 2,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription, handler.clone());
    wait_until("three attempts", Duration::from_secs(15), || {
        handler.seen.lock().unwrap().len() >= 3
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    let attempts: Vec<u32> = handler
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(handler.exhausted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_delivery_that_exhausts_its_retries_is_dead_lettered() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc", &["conversion.progress"])
        .with_retry_delays(vec![Duration::from_millis(200)]);
    declare(&bus, &subscription).await;
    let event = progress_event();
    bus.publish(&event).await.unwrap();

    let handler = Arc::new(Recorder {
        failures: u32::MAX,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription, handler.clone());
    wait_until("exhaustion", Duration::from_secs(15), || {
        !handler.exhausted.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        handler.seen.lock().unwrap().len(),
        2,
        "first attempt and one retry"
    );

    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dead = channel
        .basic_get(
            bus.topology().dead_letter_queue.as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
        .expect("the event is in the dead-letter queue");
    let body = Envelope::from_json(&dead.delivery.data).unwrap();
    assert_eq!(body.event_id, event.event_id);
    assert_eq!(body.traceparent, event.traceparent);
}

#[tokio::test]
async fn an_undecodable_message_goes_straight_to_the_dead_letter_queue() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc", &["conversion.progress"]);
    declare(&bus, &subscription).await;
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            bus.topology().events_exchange.as_str().into(),
            "conversion.progress".into(),
            Default::default(),
            b"{not json",
            Default::default(),
        )
        .await
        .unwrap();

    let handler = Arc::new(Recorder {
        failures: 0,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription, handler.clone());
    let queue = bus.topology().dead_letter_queue.clone();
    let mut dead = None;
    for _ in 0..100 {
        dead = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(dead.expect("dead-lettered").delivery.data, b"{not json");
    assert!(
        handler.seen.lock().unwrap().is_empty(),
        "the handler never saw it"
    );
}

#[tokio::test]
async fn publishing_to_an_unreachable_broker_fails_fast_with_a_clear_error() {
    let port = platform::testing::free_port();
    let bus = RabbitBus::new(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let started = std::time::Instant::now();
    let err = bus.publish(&progress_event()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(12));
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(bus.check().await.is_err());
}

#[tokio::test]
async fn connections_offer_a_small_frame_size_unless_the_url_sets_one() {
    let url = required_env("AMQP_URL");
    let connection = RabbitBus::new(url.clone())
        .open_connection()
        .await
        .expect("RabbitMQ at AMQP_URL");
    assert_eq!(
        connection.configuration().frame_max(),
        platform::rabbit::DEFAULT_FRAME_MAX
    );
    connection.close(200, "done".into()).await.unwrap();

    let separator = if url.contains('?') { '&' } else { '?' };
    let connection = RabbitBus::new(format!("{url}{separator}frame_max=65536"))
        .open_connection()
        .await
        .unwrap();
    assert_eq!(connection.configuration().frame_max(), 65536);
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn an_event_larger_than_a_frame_arrives_whole() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc", &["conversion.failed"]);
    declare(&bus, &subscription).await;
    let reason = "the reason is long. ".repeat(10_000);
    assert!(reason.len() > 10 * platform::rabbit::DEFAULT_FRAME_MAX as usize);
    let event = Envelope::new(
        Uuid::now_v7(),
        "test",
        JobEvent::ConversionFailed(contracts::events::ConversionFailed {
            owner_id: "owner".into(),
            owner_email: "owner@example.com".into(),
            original_filename: "video.mp4".into(),
            kind: contracts::events::FailureKind::Unconvertible,
            reason,
        }),
    );
    bus.publish(&event).await.expect("confirmed publish");

    let handler = Arc::new(Recorder {
        failures: 0,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription, handler.clone());
    // An undecodable (truncated) body would be dead-lettered, never handled.
    wait_until("the large delivery", Duration::from_secs(10), || {
        !handler.seen.lock().unwrap().is_empty()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(*handler.seen.lock().unwrap(), vec![(event.event_id, 1)]);
}

/// Event types of a newer build, serialised as its producers would: `conversion.succeeded` at
/// schema version 2 with a field this build lacks, and `job.renamed`, a type this build has never
/// heard of. Deserialisable too: they are also the newer build's consumer.
mod newer_build {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Envelope<P> {
        pub event_id: Uuid,
        pub job_id: Uuid,
        pub version: u16,
        pub occurred_at: DateTime<Utc>,
        pub producer: String,
        pub event_type: String,
        pub payload: P,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct ConversionSucceededV2 {
        pub owner_id: String,
        pub owner_email: String,
        pub original_filename: String,
        pub mp3_file_id: String,
        pub mp3_size_bytes: u64,
        pub duration_seconds: f64,
        pub bitrate_kbps: u32,
        pub passthrough: bool,
        /// New in version 2.
        pub loudness_lufs: f64,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct JobRenamedV1 {
        pub owner_id: String,
        pub new_name: String,
    }

    pub fn envelope<P>(event_type: &str, version: u16, payload: P) -> Envelope<P> {
        Envelope {
            event_id: Uuid::now_v7(),
            job_id: Uuid::now_v7(),
            version,
            occurred_at: Utc::now(),
            producer: "converter-next".into(),
            event_type: event_type.into(),
            payload,
        }
    }
}

/// Messages waiting in `queue`, without taking them.
async fn depth(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

fn header(delivery: &lapin::message::Delivery, name: &str) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn events_from_a_newer_build_are_parked_then_redriven_and_nothing_is_lost() {
    use newer_build::{ConversionSucceededV2, JobRenamedV1, envelope};
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    // Every routing key, as the gateway binds: an event type this build does not know arrives too.
    let subscription =
        Subscription::new("svc", &["#"]).with_retry_delays(vec![Duration::from_millis(200)]);
    declare(&bus, &subscription).await;
    let queue = bus.topology().queue("svc");
    let parked = platform::rabbit::parked_queue_name(&queue);

    // A rolling deploy: the newer build's producers publish beside this build's.
    let before = progress_event();
    bus.publish(&before).await.unwrap();
    let succeeded = envelope(
        "conversion.succeeded",
        2,
        ConversionSucceededV2 {
            owner_id: "owner".into(),
            owner_email: "owner@example.com".into(),
            original_filename: "talk.mp4".into(),
            mp3_file_id: "0123456789abcdef01234567".into(),
            mp3_size_bytes: 1234,
            duration_seconds: 1.5,
            bitrate_kbps: 128,
            passthrough: false,
            loudness_lufs: -16.0,
        },
    );
    let renamed = envelope(
        "job.renamed",
        1,
        JobRenamedV1 {
            owner_id: "owner".into(),
            new_name: "keynote.mp3".into(),
        },
    );
    let newer = [
        (
            "conversion.succeeded",
            serde_json::to_vec(&succeeded).unwrap(),
        ),
        ("job.renamed", serde_json::to_vec(&renamed).unwrap()),
    ];
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (event_type, body) in &newer {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        );
        let confirm = channel
            .basic_publish(
                bus.topology().events_exchange.as_str().into(),
                (*event_type).into(),
                Default::default(),
                body,
                lapin::BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }
    let after = progress_event();
    bus.publish(&after).await.unwrap();

    // This build's consumer handles its own events and parks the newer build's.
    let handler = Arc::new(Recorder {
        failures: 0,
        seen: Mutex::default(),
        exhausted: Mutex::default(),
    });
    let (shutdown, task) = start(&bus, subscription.clone(), handler.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while handler.seen.lock().unwrap().len() < 2 || depth(&channel, &parked).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the consumer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        *handler.seen.lock().unwrap(),
        vec![(before.event_id, 1), (after.event_id, 1)],
        "the consumer went on past the events it could not read, and never saw them"
    );
    assert_eq!(depth(&channel, &parked).await, 2);
    assert_eq!(
        depth(&channel, &queue).await,
        0,
        "nothing left unacknowledged"
    );
    assert_eq!(
        depth(&channel, &bus.topology().dead_letter_queue).await,
        0,
        "nothing dead-lettered"
    );
    let retry = platform::rabbit::retry_queue_name(&queue, Duration::from_millis(200));
    assert_eq!(depth(&channel, &retry).await, 0, "nothing retried");

    // A parked message says why; look, and put it back.
    let peek = channel
        .basic_get(parked.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a parked message");
    let reason = header(&peek.delivery, platform::rabbit::PARKED_REASON_HEADER).unwrap();
    assert!(reason.contains("newer"), "{reason}");
    peek.delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .unwrap();

    // Once a build that reads them runs, the operator re-drives them into the service queue.
    let moved = bus.redrive_parked("svc").await.unwrap();
    assert_eq!(moved, 2);
    assert_eq!(depth(&channel, &parked).await, 0);
    let mut bodies = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        let delivery = message.delivery;
        assert_eq!(
            header(&delivery, platform::rabbit::PARKED_REASON_HEADER),
            None
        );
        assert!(header(&delivery, "traceparent").is_some(), "headers kept");
        bodies.push(delivery.data.clone());
        delivery.ack(Default::default()).await.unwrap();
    }
    bodies.sort();
    let mut expected: Vec<Vec<u8>> = newer.iter().map(|(_, body)| body.clone()).collect();
    expected.sort();
    assert_eq!(
        bodies, expected,
        "every parked event is back, byte for byte"
    );
    // ... and the newer build reads what this one could not.
    for body in &bodies {
        let raw: serde_json::Value = serde_json::from_slice(body).unwrap();
        match raw["event_type"].as_str().unwrap() {
            "conversion.succeeded" => {
                let event: newer_build::Envelope<ConversionSucceededV2> =
                    serde_json::from_slice(body).unwrap();
                assert_eq!(event.event_id, succeeded.event_id);
                assert_eq!(event.payload.loudness_lufs, -16.0);
            }
            "job.renamed" => {
                let event: newer_build::Envelope<JobRenamedV1> =
                    serde_json::from_slice(body).unwrap();
                assert_eq!(event.payload.new_name, "keynote.mp3");
            }
            other => panic!("unexpected {other}"),
        }
    }
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn redriving_into_a_missing_queue_is_refused() {
    let bus = RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology());
    let err = bus.redrive_parked("nobody").await.unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
}

/// Operators list the dead-letter queue without changing it, and each service re-drives only what
/// died in its own queue, with its retries counted afresh.
#[tokio::test]
async fn dead_letters_are_listed_in_place_and_re_driven_into_the_queue_they_died_in() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let mine = Subscription::new("svc", &["conversion.progress"]).with_retry_delays(vec![]);
    let theirs = Subscription::new("other", &["conversion.progress"]).with_retry_delays(vec![]);
    declare(&bus, &mine).await;
    declare(&bus, &theirs).await;
    let event = progress_event();
    bus.publish(&event).await.unwrap();

    // Both consumers give up at once: one dead letter from each queue.
    let failing = || {
        Arc::new(Recorder {
            failures: u32::MAX,
            seen: Mutex::default(),
            exhausted: Mutex::default(),
        })
    };
    let (mine_handler, theirs_handler) = (failing(), failing());
    let (stop_mine, mine_task) = start(&bus, mine, mine_handler.clone());
    let (stop_theirs, theirs_task) = start(&bus, theirs, theirs_handler.clone());
    wait_until("both give up", Duration::from_secs(15), || {
        !mine_handler.exhausted.lock().unwrap().is_empty()
            && !theirs_handler.exhausted.lock().unwrap().is_empty()
    })
    .await;
    stop_mine.cancel();
    stop_theirs.cancel();
    mine_task.await.unwrap();
    theirs_task.await.unwrap();
    let mut letters = Vec::new();
    for _ in 0..50 {
        letters = bus.dead_letters(100).await.unwrap();
        if letters.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let topology = bus.topology().clone();
    let mut queues: Vec<_> = letters.iter().filter_map(|l| l.queue.clone()).collect();
    queues.sort();
    assert_eq!(queues, [topology.queue("other"), topology.queue("svc")]);
    for letter in &letters {
        assert_eq!(letter.reason.as_deref(), Some("rejected"));
        assert_eq!(letter.event_type.as_deref(), Some("conversion.progress"));
        assert_eq!(letter.event_id, Some(event.event_id.to_string()));
    }
    let listing = platform::redrive::describe(&letters);
    assert!(listing.starts_with("2 dead letter(s)"), "{listing}");
    assert_eq!(
        bus.dead_letters(100).await.unwrap().len(),
        2,
        "listing took nothing"
    );

    assert_eq!(bus.redrive_dead_letters("svc").await.unwrap(), 1);
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    assert_eq!(depth(&channel, &topology.queue("svc")).await, 1);
    assert_eq!(depth(&channel, &topology.dead_letter_queue).await, 1);
    let remaining = bus.dead_letters(100).await.unwrap();
    assert_eq!(remaining[0].queue, Some(topology.queue("other")));
    let back = channel
        .basic_get(
            topology.queue("svc").as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
        .expect("the re-driven event");
    assert_eq!(
        Envelope::from_json(&back.delivery.data).unwrap().event_id,
        event.event_id
    );
    let headers = back.delivery.properties.headers().clone().unwrap();
    assert!(matches!(
        headers.inner().get("x-attempt"),
        Some(AMQPValue::LongUInt(1))
    ));
    assert!(headers.inner().get("x-death").is_none());
}

/// Records the deliveries it handles and those the broker gave up past their delivery limit.
#[derive(Default)]
struct AbandonRecorder {
    handled: Mutex<Vec<Uuid>>,
    abandoned: Mutex<Vec<(Uuid, u32)>>,
}

#[async_trait]
impl EventHandler for AbandonRecorder {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        self.handled
            .lock()
            .unwrap()
            .push(delivery.envelope.event_id);
        Outcome::Done
    }

    async fn abandoned(&self, delivery: &Delivered, deliveries: u32) -> Result<(), String> {
        self.abandoned
            .lock()
            .unwrap()
            .push((delivery.envelope.event_id, deliveries));
        Ok(())
    }
}

async fn queue_exists(bus: &RabbitBus, queue: &str) -> bool {
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let exists = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok();
    let _ = connection.close(200, "done".into()).await;
    exists
}

/// A consumer that dies holding a delivery, `times` times: takes it and closes its connection
/// without an ack, as a killed process does.
#[tokio::test]
async fn a_delivery_whose_consumer_dies_every_time_is_given_up_past_the_delivery_limit() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let subscription = Subscription::new("svc.quorum", &["conversion.progress"])
        .with_retry_delays(vec![Duration::from_millis(200)])
        .with_delivery_limit(2);
    declare(&bus, &subscription).await;
    let poison = progress_event();
    bus.publish(&poison).await.unwrap();
    let queue = bus.topology().queue("svc.quorum");
    // Delivered and lost three times: more than the limit of 2.
    platform::testing::die_holding_the_next_delivery(&bus, &queue, 3).await;

    let healthy = progress_event();
    bus.publish(&healthy).await.unwrap();
    let handler = Arc::new(AbandonRecorder::default());
    let shutdown = CancellationToken::new();
    let task = {
        let (bus, handler, token) = (bus.clone(), handler.clone(), shutdown.clone());
        tokio::spawn(async move { bus.consume(subscription, handler, token).await.unwrap() })
    };
    wait_until(
        "the abandoned delivery and the healthy one",
        Duration::from_secs(15),
        || {
            !handler.abandoned.lock().unwrap().is_empty()
                && !handler.handled.lock().unwrap().is_empty()
        },
    )
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(*handler.handled.lock().unwrap(), vec![healthy.event_id]);
    assert_eq!(
        *handler.abandoned.lock().unwrap(),
        vec![(poison.event_id, 3)]
    );
    // Operators still see it in the dead-letter queue, with the reason.
    let letters = bus.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason.as_deref(), Some("delivery_limit"));
    assert_eq!(letters[0].queue.as_deref(), Some(queue.as_str()));
}

#[tokio::test]
async fn a_replaced_classic_queue_is_migrated_into_its_quorum_successor_then_deleted() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    let delays = vec![Duration::from_millis(60_000)];
    // What an earlier build declared: a classic queue with a retry queue, holding messages.
    let old = Subscription::new("svc", &["conversion.progress"]).with_retry_delays(delays.clone());
    declare(&bus, &old).await;
    let waiting: Vec<Envelope> = (0..3).map(|_| progress_event()).collect();
    for event in &waiting {
        bus.publish(event).await.unwrap();
    }
    let topology = bus.topology().clone();
    let old_retry = platform::rabbit::retry_queue_name(&topology.queue("svc"), delays[0]);
    {
        let connection = bus.open_connection().await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let retrying = progress_event();
        channel
            .basic_publish(
                "".into(),
                old_retry.as_str().into(),
                Default::default(),
                &retrying.to_json(),
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
        assert_eq!(depth_of(&bus, &old_retry).await, 1);
    }
    assert_eq!(depth_of(&bus, &topology.queue("svc")).await, 3);

    // Two replicas of the new build start at once.
    let new = Subscription::new("svc.quorum", &["conversion.progress"])
        .with_retry_delays(delays.clone())
        .with_delivery_limit(5)
        .replacing_queue("svc");
    let handler = Arc::new(AbandonRecorder::default());
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (bus, handler, token, new) =
            (bus.clone(), handler.clone(), shutdown.clone(), new.clone());
        tasks.push(tokio::spawn(async move {
            bus.consume(new, handler, token).await.unwrap()
        }));
    }
    wait_until(
        "the four migrated messages",
        Duration::from_secs(20),
        || handler.handled.lock().unwrap().len() >= 4,
    )
    .await;
    // A new event reaches the new queue only.
    let fresh = progress_event();
    bus.publish(&fresh).await.unwrap();
    wait_until("the new event", Duration::from_secs(10), || {
        handler.handled.lock().unwrap().contains(&fresh.event_id)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    let handled = handler.handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 5, "each message once: {handled:?}");
    for event in &waiting {
        assert!(handled.contains(&event.event_id));
    }
    assert!(
        !queue_exists(&bus, &topology.queue("svc")).await,
        "old queue deleted"
    );
    assert!(
        !queue_exists(&bus, &old_retry).await,
        "old retry queue deleted"
    );
    assert!(queue_exists(&bus, &topology.queue("svc.quorum")).await);
    // The new queue is a quorum queue: declaring it classic is refused.
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let classic = channel
        .queue_declare(
            topology.queue("svc.quorum").as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await;
    assert!(classic.is_err(), "the new queue is not a classic queue");
}

async fn depth_of(bus: &RabbitBus, queue: &str) -> u32 {
    let connection = bus.open_connection().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let count = depth(&channel, queue).await;
    connection.close(200, "done".into()).await.unwrap();
    count
}
