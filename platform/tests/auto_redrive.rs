//! The automatic re-drive of dead letters against the real broker: a dead letter waits out its
//! cool-down, goes back into the queue it died in (its retries counted afresh), and after
//! `max_redrives` automatic re-drives stays in the dead-letter queue for operators; the bound
//! holds through the consumer's retries.

use async_trait::async_trait;
use contracts::Envelope;
use contracts::events::{ConversionProgress, JobEvent};
use platform::bus::{AutoRedrive, Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{isolated_topology, required_env};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Fails every attempt: whatever it gets ends in the dead-letter queue.
#[derive(Default)]
struct AlwaysFails {
    attempts: Mutex<u32>,
}

#[async_trait]
impl EventHandler for AlwaysFails {
    async fn handle(&self, _delivery: &Delivered) -> Outcome {
        *self.attempts.lock().unwrap() += 1;
        Outcome::Retry("the store is still down".into())
    }
}

async fn dead_letters_of(bus: &RabbitBus, queue: &str) -> usize {
    let queue = bus.topology().queue(queue);
    bus.dead_letters(100)
        .await
        .unwrap()
        .iter()
        .filter(|letter| letter.queue.as_deref() == Some(queue.as_str()))
        .count()
}

async fn wait_for_dead_letter(bus: &RabbitBus, queue: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead_letters_of(bus, queue).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was dead-lettered from {queue}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_come_back_after_their_cool_down_a_bounded_number_of_times() {
    let bus = Arc::new(RabbitBus::new(required_env("AMQP_URL")).with_topology(isolated_topology()));
    // One retry: two attempts per trip through the queue.
    let subscription = Subscription::new("svc", &["conversion.progress"])
        .with_retry_delays(vec![Duration::from_millis(100)]);
    let connection = bus.open_connection().await.expect("RabbitMQ at AMQP_URL");
    let channel = connection.create_channel().await.unwrap();
    bus.declare_subscription(&channel, &subscription)
        .await
        .unwrap();
    connection.close(200, "declared".into()).await.unwrap();

    let handler = Arc::new(AlwaysFails::default());
    let shutdown = CancellationToken::new();
    let consumer = {
        let (bus, handler, shutdown) = (bus.clone(), handler.clone(), shutdown.clone());
        tokio::spawn(async move { bus.consume(subscription, handler, shutdown).await.unwrap() })
    };
    let event = Envelope::new(
        uuid::Uuid::now_v7(),
        "test",
        JobEvent::ConversionProgress(ConversionProgress { percent: 1 }),
    );
    bus.publish(&event).await.unwrap();
    wait_for_dead_letter(&bus, "svc").await;
    assert_eq!(*handler.attempts.lock().unwrap(), 2);

    let policy = AutoRedrive {
        cool_down: Duration::from_secs(2),
        max_redrives: 2,
    };
    // Still cooling down: it stays.
    assert_eq!(
        bus.auto_redrive_dead_letters("svc", policy).await.unwrap(),
        0
    );
    for redrive in 1..=2u32 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(
            bus.auto_redrive_dead_letters("svc", policy).await.unwrap(),
            1,
            "re-drive {redrive}"
        );
        wait_for_dead_letter(&bus, "svc").await;
        assert_eq!(*handler.attempts.lock().unwrap(), 2 + 2 * redrive);
    }
    // Twice re-driven already: it is the operators' now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        bus.auto_redrive_dead_letters("svc", policy).await.unwrap(),
        0
    );
    assert_eq!(dead_letters_of(&bus, "svc").await, 1);
    assert_eq!(*handler.attempts.lock().unwrap(), 6);
    shutdown.cancel();
    consumer.await.unwrap();
}
