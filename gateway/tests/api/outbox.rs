//! A real broker outage: the gateway reaches RabbitMQ through a TCP proxy the test closes and
//! reopens. Uploads stay accepted while it is closed; the relay publishes each pending event
//! exactly once when it opens.

use crate::helpers::{Options, spawn_app_with};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards 127.0.0.1:`port` to the real broker while open; refuses connections when closed
/// (and cuts the ones it carried).
struct BrokerProxy {
    port: u16,
    target: u16,
    open: Option<CancellationToken>,
}

impl BrokerProxy {
    fn closed(target: u16) -> Self {
        Self {
            port: platform::testing::free_port(),
            target,
            open: None,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn open(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], self.port).into()).unwrap();
        let listener = socket.listen(64).unwrap();
        let token = CancellationToken::new();
        let target = self.target;
        let accept_token = token.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => return,
                    },
                    _ = accept_token.cancelled() => return,
                };
                let cut = accept_token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        self.open = Some(token);
    }

    fn close(&mut self) {
        if let Some(token) = self.open.take() {
            token.cancel();
        }
    }
}

fn broker_port() -> u16 {
    let url = platform::testing::required_env("AMQP_URL");
    let authority = url.split('@').next_back().unwrap();
    let host_port = authority.split('/').next().unwrap();
    host_port
        .rsplit_once(':')
        .map(|(_, p)| p.parse().unwrap())
        .unwrap_or(5672)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_during_a_broker_outage_are_accepted_and_published_exactly_once_later() {
    let mut proxy = BrokerProxy::closed(broker_port());
    let app = spawn_app_with(Options {
        amqp_url: Some(proxy.url()),
        ..Options::default()
    })
    .await;
    let observed = app.observe().await;
    let user = app.new_user().await;

    let mut job_ids = Vec::new();
    for i in 0..3 {
        let started = std::time::Instant::now();
        let response = app
            .upload(&user, &format!("outage-{i}.mp4"), vec![i as u8; 50_000], "")
            .await;
        assert_eq!(response.status(), 202, "accepted while the broker is down");
        assert!(started.elapsed() < Duration::from_secs(10));
        let body: Value = response.json().await.unwrap();
        job_ids.push(body["job_id"].as_str().unwrap().to_owned());
    }
    // Status works meanwhile, from the event store.
    for id in &job_ids {
        assert_eq!(app.job(&user, id).await["status"], "submitted");
    }
    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["event_bus"]["status"], "unavailable");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        observed.all().is_empty(),
        "nothing can have been published yet"
    );
    assert_eq!(app.outbox_pending().await, 3);

    // The broker comes back.
    proxy.open();
    observed
        .wait_until(
            "the three pending events",
            Duration::from_secs(30),
            |events| {
                events
                    .iter()
                    .filter(|e| e.event_type() == "job.submitted")
                    .count()
                    >= 3
            },
        )
        .await;
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_event: HashMap<uuid::Uuid, usize> = HashMap::new();
    for event in observed.of_type("job.submitted") {
        *per_event.entry(event.event_id).or_default() += 1;
    }
    assert_eq!(per_event.len(), 3);
    assert!(
        per_event.values().all(|&n| n == 1),
        "exactly once: {per_event:?}"
    );
    let published_jobs: Vec<String> = observed
        .of_type("job.submitted")
        .iter()
        .map(|e| e.job_id.to_string())
        .collect();
    for id in &job_ids {
        assert!(published_jobs.contains(id), "{id} was published");
    }
    assert_eq!(app.outbox_pending().await, 0);

    // With the broker back, a new upload is published inline.
    let response = app.upload(&user, "after.mp4", vec![9u8; 1000], "").await;
    assert_eq!(response.status(), 202);
    observed
        .wait_until("the fourth event", Duration::from_secs(10), |events| {
            events.len() >= 4
        })
        .await;
    assert_eq!(app.outbox_pending().await, 0);

    // A second outage in the middle of operation: connections are cut, uploads still accepted.
    proxy.close();
    let response = app
        .upload(&user, "second-outage.mp4", vec![8u8; 1000], "")
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(app.outbox_pending().await, 1);
    proxy.open();
    observed
        .wait_until("the fifth event", Duration::from_secs(30), |events| {
            events.len() >= 5
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(observed.of_type("job.submitted").len(), 5);
    assert_eq!(app.outbox_pending().await, 0);
    app.stop().await;
}
