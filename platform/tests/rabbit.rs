//! The RabbitMQ bus against the real broker: confirmed publish, acked consume, delayed retry and
//! dead-lettering through the declared topology.

use async_trait::async_trait;
use lapin::options::BasicGetOptions;
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{isolated_topology, required_env};
use proto::Envelope;
use proto::events::{ConversionProgress, JobEvent};
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
        JobEvent::ConversionFailed(proto::events::ConversionFailed {
            owner_id: "owner".into(),
            owner_email: "owner@example.com".into(),
            original_filename: "video.mp4".into(),
            kind: proto::events::FailureKind::Unconvertible,
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
