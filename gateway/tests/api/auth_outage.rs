//! Auth stops and comes back under traffic: no request hangs past its deadline, logins answer
//! 503 with `Retry-After` (failing fast once the circuit is open), uploads with a valid token
//! keep working on the cached keys, and the gateway recovers by itself.

use crate::helpers::{Options, TestApp, assert_error, spawn_app_with};
use gateway::circuit_breaker::BreakerConfig;
use platform::testing::{free_port, fresh_mysql_database, wait_for_port};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const AUTH_TIMEOUT: Duration = Duration::from_secs(1);
const OPEN_FOR: Duration = Duration::from_secs(1);
/// A request may take its deadline plus this much (scheduling, the HTTP round trip).
const SLACK: Duration = Duration::from_millis(1500);

/// An auth service on a fixed port, stoppable.
struct PrivateAuth {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl PrivateAuth {
    async fn start(database_url: &str, port: u16) -> Self {
        let mut settings = auth::Settings::for_tests(database_url);
        settings.grpc_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let application = auth::Application::connect(settings)
            .await
            .expect("auth builds on its fixed port");
        let stop = CancellationToken::new();
        let task = tokio::spawn(application.run_until_stopped(stop.clone()));
        wait_for_port(port, "auth", Duration::from_secs(10)).await;
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("auth stops")
            .unwrap()
            .unwrap();
    }
}

/// One login; asserts it finished within its deadline. Returns status and `Retry-After`.
async fn timed_login(app: &TestApp, email: &str, password: &str) -> (u16, Option<u64>) {
    let started = Instant::now();
    let response = app.login(email, password).await;
    let took = started.elapsed();
    assert!(took < AUTH_TIMEOUT + SLACK, "a login took {took:?}");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("whole seconds"));
    if status == 503 {
        assert_error(response, 503, "service_unavailable").await;
    }
    (status, retry_after)
}

fn breaker_transitions(metrics: &str, to: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("circuit_breaker_transitions_total{")
                && line.contains(r#"breaker="auth""#)
                && line.contains(&format!(r#"to="{to}""#))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_outage_fails_fast_with_503_and_recovers_without_a_restart() {
    let database_url = fresh_mysql_database().await;
    let port = free_port();
    let first = PrivateAuth::start(&database_url, port).await;
    let app = spawn_app_with(Options {
        auth_grpc_url: Some(format!("http://127.0.0.1:{port}")),
        configure: Some(Box::new(|settings| {
            settings.auth_timeout = AUTH_TIMEOUT;
            // This test logs in often; the gateway's own login limit is another test's subject.
            settings.rate_limits.logins_per_minute = 0;
            settings.auth_breaker = BreakerConfig {
                failure_threshold: 3,
                open_for: OPEN_FOR,
            };
        })),
        ..Options::default()
    })
    .await;
    let user = app.new_user().await;
    // Verifying a token caches auth's keys.
    app.submit(&user, "before.mp4").await;

    first.stop().await;

    // Traffic while auth is away: every login ends within its deadline with a 503 that says when
    // to retry, and once the circuit is open, without waiting for auth at all.
    let mut fast_failures = 0;
    for _ in 0..4 {
        let round = futures::future::join_all(
            (0..3).map(|_| timed_login(&app, &user.email, &user.password)),
        )
        .await;
        for (status, retry_after) in round {
            assert_eq!(status, 503);
            let retry_after = retry_after.expect("Retry-After on every 503");
            assert!(retry_after >= 1);
            if retry_after <= OPEN_FOR.as_secs() {
                fast_failures += 1;
            }
        }
        // Uploads need no auth call: the cached keys verify the token.
        let upload = app.upload(&user, "during.mp4", vec![1; 1000], "").await;
        assert_eq!(upload.status(), 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fast_failures > 0, "the circuit never opened");
    let ready = app
        .client
        .get(app.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = app
        .client
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(breaker_transitions(&metrics, "open") >= 1.0, "{metrics}");

    // Auth returns on the same port (same database, so same users and keys).
    let second = PrivateAuth::start(&database_url, port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = timed_login(&app, &user.email, &user.password).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "the gateway did not notice auth's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Recovered for good: logins and signups work, the old token too.
    for _ in 0..3 {
        assert_eq!(timed_login(&app, &user.email, &user.password).await.0, 200);
    }
    let fresh = app.new_user().await;
    app.submit(&fresh, "after.mp4").await;
    app.submit(&user, "after.mp4").await;
    let metrics = app
        .client
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(breaker_transitions(&metrics, "closed") >= 1.0, "{metrics}");
    second.stop().await;
}
