//! The gateway re-drives its own dead letters: an event that died in the gateway's queue (a
//! MongoDB outage longer than its retries) is moved back after `DEAD_LETTER_REDRIVE_AFTER` and
//! reaches the event store.

use crate::helpers::{Options, spawn_app_with};
use contracts::events::ConversionProgress;
use contracts::{Envelope, JobEvent};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use platform::bus::AutoRedrive;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dead_lettered_from_the_gateways_queue_comes_back_into_the_store() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|settings| {
            settings.dead_letter_redrive = AutoRedrive {
                cool_down: Duration::from_secs(1),
                max_redrives: 3,
            };
        })),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let job = app.submit(&user, "lost-progress.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let lost = Envelope::new(
        Uuid::parse_str(&job_id).unwrap(),
        "converter",
        JobEvent::ConversionProgress(ConversionProgress { percent: 40 }),
    );

    // As RabbitMQ leaves a message the gateway's consumer rejected for the last time.
    let topology = app.bus.topology().clone();
    let mut headers = FieldTable::default();
    headers.insert(
        "x-first-death-queue".into(),
        AMQPValue::LongString(topology.queue(gateway::pipeline::QUEUE).as_str().into()),
    );
    headers.insert(
        "x-first-death-reason".into(),
        AMQPValue::LongString("rejected".into()),
    );
    let connection = app
        .bus
        .open_connection()
        .await
        .expect("RabbitMQ at AMQP_URL");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            "".into(),
            topology.dead_letter_queue.as_str().into(),
            BasicPublishOptions::default(),
            &lost.to_json(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    connection.close(200, "dead-lettered".into()).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .stored_events(&job_id)
        .await
        .iter()
        .any(|e| e.event_id == lost.event_id)
    {
        assert!(
            Instant::now() < deadline,
            "the dead-lettered event never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.job(&user, &job_id).await["progress"], 40);
    app.stop().await;
}
