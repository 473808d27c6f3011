//! Observability: the caller's trace id in every log line of a call, and Prometheus metrics of
//! calls, logins and registrations on `/metrics`.

use crate::helpers::{PASSWORD, TestApp, expect_code, spawn_app, unique_email};
use contracts::auth::v1::{LoginRequest, RegisterRequest};
use platform::trace::TraceContext;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tonic::Code;

/// Log output captured in memory.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

/// The service's log lines are captured through a subscriber that is the default on this thread
/// only. That suffices because `#[tokio::test]` runs on a current-thread runtime: the server's
/// connection and request tasks run on this same thread.
#[tokio::test]
async fn every_log_line_of_a_call_carries_the_callers_trace_id() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let trace = TraceContext::new_root();
    let traceparent = trace.to_traceparent();
    let trace_id = trace.trace_id_hex();
    let email = unique_email("traced");

    app.client
        .clone()
        .register(with_traceparent(
            RegisterRequest {
                email: email.clone(),
                password: PASSWORD.to_owned(),
            },
            &traceparent,
        ))
        .await
        .unwrap();
    let token = app
        .client
        .clone()
        .login(with_traceparent(
            LoginRequest {
                email: email.clone(),
                password: PASSWORD.to_owned(),
                client_address: "192.0.2.1".to_owned(),
            },
            &traceparent,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;

    let registered = logs.lines_containing("account registered");
    assert_eq!(registered.len(), 1, "{}", logs.text());
    assert!(
        registered[0].contains(&format!("trace_id={trace_id}"))
            && registered[0].contains("rpc=auth.v1.Auth/Register"),
        "{}",
        registered[0]
    );
    let logged_in = logs.lines_containing("login succeeded");
    assert_eq!(logged_in.len(), 1, "{}", logs.text());
    assert!(
        logged_in[0].contains(&format!("trace_id={trace_id}"))
            && logged_in[0].contains("rpc=auth.v1.Auth/Login"),
        "{}",
        logged_in[0]
    );

    // Without a traceparent the call starts its own trace: its lines carry another id.
    expect_code(
        app.login(&email, "not the password").await,
        Code::Unauthenticated,
    );
    let failed = logs.lines_containing("login failed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert!(
        failed[0].contains("trace_id=") && !failed[0].contains(&trace_id),
        "{}",
        failed[0]
    );

    // Neither the password nor the token ever reaches the log.
    let text = logs.text();
    assert!(!text.contains(PASSWORD) && !text.contains("not the password"));
    assert!(!text.contains(&token));
    app.stop().await;
}

/// The value of the sample `name{labels}` in a Prometheus text exposition, if present.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let mut found: Vec<&str> = series_labels.split(',').filter(|l| !l.is_empty()).collect();
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        found.sort_unstable();
        wanted.sort_unstable();
        (series_name == name && found == wanted).then(|| value.parse().ok())?
    })
}

async fn scrape(app: &TestApp) -> String {
    let response = reqwest::get(format!("http://{}/metrics", app.http_addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_calls_logins_and_registrations() {
    let app = spawn_app().await;
    let login_ok = [("method", "auth.v1.Auth/Login"), ("code", "OK")];
    let login_refused = [
        ("method", "auth.v1.Auth/Login"),
        ("code", "Unauthenticated"),
    ];
    let login_duration = [("method", "auth.v1.Auth/Login")];
    let logins = |outcome| [("outcome", outcome)];

    // The outcome counters exist from the start, at zero.
    let before = scrape(&app).await;
    assert_eq!(
        sample(&before, "auth_logins_total", &logins("success")),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "auth_logins_total", &logins("invalid")),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "auth_logins_total", &logins("rate_limited")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &before,
            "auth_registrations_total",
            &[("outcome", "success")]
        ),
        Some(0.0)
    );

    let email = unique_email("counted");
    app.register(&email, PASSWORD).await.unwrap();
    expect_code(app.register(&email, PASSWORD).await, Code::AlreadyExists);
    app.login(&email, PASSWORD).await.unwrap();
    expect_code(
        app.login(&email, "wrong password").await,
        Code::Unauthenticated,
    );

    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, "auth_logins_total", &logins("success")),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "auth_logins_total", &logins("invalid")),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "auth_logins_total", &logins("rate_limited")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &after,
            "auth_registrations_total",
            &[("outcome", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "auth_registrations_total", &[("outcome", "taken")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "grpc_server_requests_total", &login_ok),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "grpc_server_requests_total", &login_refused),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "grpc_server_requests_total",
            &[
                ("method", "auth.v1.Auth/Register"),
                ("code", "AlreadyExists")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "grpc_server_request_duration_seconds_count",
            &login_duration
        ),
        Some(2.0)
    );

    // Another login moves the counters on.
    app.login(&email, PASSWORD).await.unwrap();
    let later = scrape(&app).await;
    assert_eq!(
        sample(&later, "auth_logins_total", &logins("success")),
        Some(2.0)
    );
    assert_eq!(
        sample(&later, "grpc_server_requests_total", &login_ok),
        Some(2.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn rate_limited_logins_and_unknown_methods_are_labelled() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.login_limits.max_failures_per_email = 1;
    })
    .await;
    let email = unique_email("limited");
    expect_code(app.login(&email, "guess").await, Code::Unauthenticated);
    expect_code(app.login(&email, "guess").await, Code::ResourceExhausted);

    // A method the server does not have is counted under one `unknown` label, whatever its name.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/auth.v1.Auth/NoSuchMethod");
    let unknown = grpc
        .unary(
            tonic::Request::new(RegisterRequest::default()),
            path,
            tonic_prost::ProstCodec::<RegisterRequest, RegisterRequest>::default(),
        )
        .await;
    expect_code(unknown, Code::Unimplemented);

    let exposition = scrape(&app).await;
    assert_eq!(
        sample(
            &exposition,
            "auth_logins_total",
            &[("outcome", "rate_limited")]
        ),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(
            &exposition,
            "grpc_server_requests_total",
            &[
                ("method", "auth.v1.Auth/Login"),
                ("code", "ResourceExhausted")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "grpc_server_requests_total",
            &[("method", "unknown"), ("code", "Unimplemented")]
        ),
        Some(1.0)
    );
    assert!(!exposition.contains("NoSuchMethod"), "{exposition}");
    app.stop().await;
}
