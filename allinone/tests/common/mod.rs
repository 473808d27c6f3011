//! Test harness: the all-in-one composed in this process, and a small client of its REST API.

#![allow(dead_code)] // each test binary uses its own subset

use allinone::{AllInOne, Settings};
use platform::testing::{fresh_mysql_database, isolated_topology, mails_matching, required_env};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../converter/tests/fixtures/mp4_aac_moov_start.mp4"
);
pub const PASSWORD: &str = "a long enough password";

static TRACING: Once = Once::new();

fn init_tracing() {
    // Logs only when asked for (TEST_LOG=1), to keep test output readable.
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            platform::telemetry::init("mp3converter-tests");
        }
    });
}

/// Settings with every backend switched to the real services of the test harness: a fresh
/// MySQL database, RabbitMQ with a topology of its own, SecantusDB and the SMTP sink.
pub async fn real_services(data_dir: &Path) -> Settings {
    let mut settings = Settings::for_tests(data_dir);
    settings.database_url = Some(fresh_mysql_database().await.into());
    settings.mongodb_uri = Some(required_env("MONGODB_URI").into());
    settings.amqp_url = Some(required_env("AMQP_URL").into());
    settings.topology = Some(isolated_topology());
    settings.smtp_url = Some(required_env("SMTP_URL").parse().expect("SMTP_URL parses"));
    settings
}

/// A running all-in-one.
pub struct Running {
    pub base_url: String,
    /// The internal listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin_url: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Builds, runs, and waits until `/readyz` says every dependency answers.
    pub async fn start(settings: Settings) -> Self {
        init_tracing();
        let app = AllInOne::build(settings)
            .await
            .expect("the all-in-one builds");
        let base_url = format!("http://{}", app.address());
        let admin_url = format!("http://{}", app.admin_address());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let running = Self {
            base_url,
            admin_url,
            shutdown,
            task: Some(task),
        };
        running.wait_until_ready().await;
        running
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            match reqwest::get(format!("{}/readyz", self.admin_url)).await {
                Ok(response) if response.status() == 200 => return,
                Ok(response) => last = response.text().await.unwrap_or_default(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the all-in-one did not become ready: {last}");
    }

    /// Stops it gracefully; it must stop cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the all-in-one stops within a minute")
            .expect("the task did not panic")
            .expect("the all-in-one stopped without error");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-in user of one all-in-one.
#[derive(Clone)]
pub struct User {
    pub base_url: String,
    pub email: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl User {
    /// Signs a fresh user up and logs in.
    pub async fn sign_up(base_url: &str) -> Self {
        let client = reqwest::Client::new();
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let signup = client
            .post(format!("{base_url}/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201, "{}", signup.text().await.unwrap());
        let login = client
            .post(format!("{base_url}/login"))
            .basic_auth(&email, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "{}", login.text().await.unwrap());
        let token = login.text().await.unwrap();
        Self {
            base_url: base_url.to_owned(),
            email,
            token,
            client,
        }
    }

    /// The same user against another (restarted) all-in-one.
    pub fn at(&self, base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Uploads the fixture as `filename`; returns the 202 body.
    pub async fn upload(&self, filename: &str) -> Value {
        let video = std::fs::read(FIXTURE).expect("the fixture exists");
        let form = Form::new().part(
            "file",
            Part::bytes(video)
                .file_name(filename.to_owned())
                .mime_str("video/mp4")
                .unwrap(),
        );
        let response = self
            .client
            .post(self.url("/upload"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        body
    }

    pub async fn job(&self, job_id: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/jobs/{job_id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls the job until `done` holds for it.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.job(job_id).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every mail in `dir` addressed to this user.
    pub fn mails(&self, dir: &Path) -> Vec<String> {
        mails_matching(dir, |mail| mail.contains(&self.email))
    }
}
