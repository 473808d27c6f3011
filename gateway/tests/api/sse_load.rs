//! A measurement, not a timed test (ignored; `bench/sse-streams.sh` runs it): MongoDB queries per
//! second while 1,000 SSE streams are open on one job, idle and with events arriving.

use crate::helpers::{Options, TestApp, spawn_app_with};
use contracts::JobEvent;
use contracts::events::{ConversionProgress, ConversionStarted};
use std::time::Duration;
use uuid::Uuid;

const STREAMS: usize = 1000;
const WINDOW: Duration = Duration::from_secs(10);

/// MongoDB's query counter (`serverStatus`) and the gateway's `event_store_reads_total`.
async fn counters(app: &TestApp) -> (i64, f64) {
    let status = app
        .mongo
        .database("admin")
        .run_command(mongodb::bson::doc! {"serverStatus": 1})
        .await
        .expect("serverStatus");
    let opcounters = status.get_document("opcounters").expect("opcounters");
    let count = |name: &str| match opcounters.get(name) {
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        Some(mongodb::bson::Bson::Double(n)) => *n as i64,
        _ => 0,
    };
    let metrics = app
        .client
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reads = metrics
        .lines()
        .filter(|line| line.starts_with("event_store_reads_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (count("query") + count("getmore"), reads)
}

/// Queries and store reads per second over `window`, while `during` runs.
async fn rates(app: &TestApp, during: impl std::future::Future<Output = ()>) -> (f64, f64) {
    let (queries, reads) = counters(app).await;
    let ((), ()) = tokio::join!(during, tokio::time::sleep(WINDOW));
    let (queries_after, reads_after) = counters(app).await;
    let seconds = WINDOW.as_secs_f64();
    (
        (queries_after - queries) as f64 / seconds,
        (reads_after - reads) / seconds,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (bench/sse-streams.sh), not a timed test"]
async fn mongodb_queries_with_a_thousand_streams_on_one_job() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|settings| {
            settings.sse_streams_per_user = 0;
            settings.sse_streams_max = 0;
            settings.sse_poll_interval = Duration::from_secs(1);
        })),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    let job = app.submit(&user, "clip.mp4").await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let job_uuid = Uuid::parse_str(&job_id).unwrap();

    let (base_queries, base_reads) = rates(&app, async {}).await;

    let mut streams = Vec::with_capacity(STREAMS);
    let path = format!("/jobs/{job_id}/events");
    for _ in 0..STREAMS / 100 {
        let batch = futures::future::join_all((0..100).map(|_| app.get(&user, &path))).await;
        for response in batch {
            assert_eq!(response.status(), 200);
            streams.push(response);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_queries, idle_reads) = rates(&app, async {}).await;

    // One event a second while the streams listen: every stream is woken each time.
    let publishing = async {
        app.publish(
            job_uuid,
            JobEvent::ConversionStarted(ConversionStarted { attempt: 1 }),
        )
        .await;
        for percent in 1..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            app.publish(
                job_uuid,
                JobEvent::ConversionProgress(ConversionProgress { percent }),
            )
            .await;
        }
    };
    let (busy_queries, busy_reads) = rates(&app, publishing).await;
    eprintln!(
        "SSE load: {STREAMS} streams on one job, {} s windows, SSE_POLL_INTERVAL 1s\n\
         | phase | MongoDB queries/s (serverStatus query+getmore) | event_store_reads_total/s |\n\
         |---|---|---|\n\
         | no stream open (relay, sweeper) | {base_queries:.1} | {base_reads:.1} |\n\
         | {STREAMS} streams, job idle | {idle_queries:.1} | {idle_reads:.1} |\n\
         | {STREAMS} streams, one event/s | {busy_queries:.1} | {busy_reads:.1} |",
        WINDOW.as_secs()
    );
    assert_eq!(streams.len(), STREAMS);
}
