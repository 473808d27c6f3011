//! The web page in a real browser against the whole stack, all in this process: auth (on a fresh
//! MySQL database), the gateway (with a small upload limit) and a real converter worker, sharing an
//! isolated RabbitMQ topology and the MongoDB-wire server. `gateway/web-tests/run.mjs` drives
//! Debian's headless Chromium through playwright-core (sign up, log in, upload with progress and
//! cancel, live job updates, download, errors, phone layout, expired session) and prints a JSON
//! report; this test checks the report, the downloaded MP3 and the API's view of the same jobs.
//!
//! Needs `node` and `npm` (playwright-core is installed with `npm ci` when missing) and
//! `/usr/bin/chromium` (or `CHROMIUM_PATH`); a missing one fails the test and names it.
//! Screenshots go to `target/web-screenshots/`; with `UPDATE_SCREENSHOTS=1` they replace the
//! committed ones in `docs/screenshots/`.

use converter::worker::{
    Application as Converter, Backends as ConverterBackends, Settings as ConverterSettings,
};
use gateway::configuration::Settings;
use gateway::{Application, Backends};
use platform::blob::BlobStore;
use platform::bus::{EventBus, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{fresh_mysql_database, isolated_topology, required_env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Small enough for the browser to exceed quickly, large enough for the 26 KB fixture.
const MAX_UPLOAD_BYTES: u64 = 1_000_000;
/// The screenshots are committed: each must stay small.
const MAX_SCREENSHOT_BYTES: u64 = 150 * 1024;
const BROWSER_RUN_TIMEOUT: Duration = Duration::from_secs(300);
const SCREENSHOTS: [&str; 6] = [
    "01-login",
    "02-upload-progress",
    "03-job-done",
    "04-error-too-large",
    "05-phone",
    "06-session-expired",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Everything the page talks to, stopped when dropped.
struct Stack {
    base_url: String,
    shutdown: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn declare(bus: &RabbitBus, subscription: &Subscription) {
    let connection = bus.open_connection().await.expect("RabbitMQ reachable");
    let channel = connection.create_channel().await.expect("AMQP channel");
    bus.declare_subscription(&channel, subscription)
        .await
        .expect("declare queue");
    let _ = connection.close(200, "declared".into()).await;
}

impl Stack {
    async fn start() -> Self {
        let shutdown = CancellationToken::new();
        let amqp_url = required_env("AMQP_URL");
        let mongodb_uri = required_env("MONGODB_URI");

        let database_url = fresh_mysql_database().await;
        let auth = auth::Application::connect(auth::Settings::for_tests(&database_url))
            .await
            .expect("auth builds");
        let auth_url = format!("http://{}", auth.grpc_addr());
        tokio::spawn(auth.run_until_stopped(shutdown.clone()));

        let rabbit = RabbitBus::new(amqp_url.clone()).with_topology(isolated_topology());
        let converter_settings = ConverterSettings::for_tests(&amqp_url, &mongodb_uri);
        // Both queues exist before anything is published, so no event goes unrouted.
        declare(
            &rabbit,
            &gateway::pipeline::subscription(platform::config::DEFAULT_DELIVERY_LIMIT),
        )
        .await;
        declare(&rabbit, &Converter::subscription(&converter_settings)).await;
        let bus: Arc<dyn EventBus> = Arc::new(rabbit);
        let blobs: Arc<dyn BlobStore> = Arc::new(platform::testing::gridfs(&mongodb_uri).await);

        let converter = Converter::build(
            converter_settings,
            ConverterBackends::embedded(bus.clone(), blobs.clone()),
        )
        .await
        .expect("the converter builds");
        tokio::spawn(converter.run_until_stopped(shutdown.clone()));

        let mut settings = Settings::for_tests(&auth_url, &mongodb_uri, &amqp_url);
        settings.max_upload_bytes = MAX_UPLOAD_BYTES;
        let mut backends = Backends::connect(&settings)
            .await
            .expect("the gateway's backends");
        backends.bus = bus;
        let gateway = Application::build(settings, backends)
            .await
            .expect("the gateway builds");
        let base_url = format!("http://127.0.0.1:{}", gateway.port());
        tokio::spawn(gateway.run_until_stopped(shutdown.clone()));
        Self { base_url, shutdown }
    }
}

/// Runs `program --version`; fails the test naming what to install when it cannot.
async fn require_program(program: &str, install: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{program}` is needed for the browser test and was not found: {install}"
    );
}

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium is needed for the browser test and {} does not exist: install Debian's \
         package (apt-get install -y chromium) or set CHROMIUM_PATH",
        path.display()
    );
    path
}

/// `npm ci` in gateway/web-tests when playwright-core is not installed yet.
async fn ensure_node_modules(project: &Path) {
    if project
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(project)
        .output()
        .await
        .expect("npm runs");
    assert!(
        output.status.success(),
        "`npm ci` in {} failed:\n{}\n{}",
        project.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        manifest_dir().join("../docs/screenshots")
    } else {
        manifest_dir().join("../target/web-screenshots")
    };
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// The bitrates (kbps) of MPEG-1 Layer III, by the header's index.
const MPEG1_L3_KBPS: [u32; 15] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];

/// Walks the MP3's frames after an optional ID3v2 tag: `(frames, bitrates seen)`. Panics at the
/// first byte that is neither a tag nor a valid MPEG-1 Layer III frame header.
fn mp3_frames(bytes: &[u8]) -> (usize, Vec<u32>) {
    let mut at = 0;
    if bytes.starts_with(b"ID3") {
        assert!(bytes.len() > 10, "truncated ID3 tag");
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |size, b| (size << 7) | usize::from(b & 0x7f));
        at = 10 + size;
    }
    let (mut frames, mut bitrates) = (0, Vec::new());
    while at + 4 <= bytes.len() {
        // An ID3v1 tag closes the file.
        if bytes.len() - at == 128 && bytes[at..].starts_with(b"TAG") {
            break;
        }
        let header = &bytes[at..at + 4];
        assert!(
            header[0] == 0xFF && header[1] & 0xFE == 0xFA,
            "no MPEG-1 Layer III frame sync at byte {at}: {header:02x?}"
        );
        let (bitrate_index, rate_index) = (usize::from(header[2] >> 4), (header[2] >> 2) & 3);
        assert!(
            (1..15).contains(&bitrate_index) && rate_index < 3,
            "invalid frame header at byte {at}: {header:02x?}"
        );
        let kbps = MPEG1_L3_KBPS[bitrate_index];
        let sample_rate = [44_100, 48_000, 32_000][usize::from(rate_index)];
        let padding = usize::from((header[2] >> 1) & 1);
        at += 144 * kbps as usize * 1000 / sample_rate + padding;
        frames += 1;
        bitrates.push(kbps);
    }
    (frames, bitrates)
}

/// A user of the page as the API sees them, to cross-check what the browser reported.
async fn api_jobs(base_url: &str, email: &str, password: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let token = client
        .post(format!("{base_url}/login"))
        .basic_auth(email, Some(password))
        .send()
        .await
        .expect("login request")
        .error_for_status()
        .expect("the page's account logs in")
        .text()
        .await
        .unwrap();
    let jobs: Value = client
        .get(format!("{base_url}/jobs"))
        .bearer_auth(token)
        .send()
        .await
        .expect("jobs request")
        .error_for_status()
        .expect("jobs listed")
        .json()
        .await
        .unwrap();
    jobs["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_converts_a_video_end_to_end_in_headless_chromium() {
    require_program("node", "install Node.js 20 or later, with npm").await;
    require_program("npm", "install npm (it comes with Node.js)").await;
    let chromium = chromium_path();
    let project = manifest_dir().join("web-tests");
    ensure_node_modules(&project).await;

    let stack = Stack::start().await;
    if let Some(seconds) = std::env::var("WEB_TEST_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // For working on the page by hand: the stack stays up this long before the run.
        eprintln!("stack at {} for {seconds} s", stack.base_url);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    let screenshots = screenshot_dir();
    let downloads = tempfile::tempdir().expect("download directory");
    let video = manifest_dir().join("../converter/tests/fixtures/mp4_aac_moov_start.mp4");
    assert!(video.is_file(), "fixture {} is missing", video.display());

    let run = Command::new("node")
        .arg(project.join("run.mjs"))
        .arg(&stack.base_url)
        .arg(&screenshots)
        .env("CHROMIUM_PATH", &chromium)
        .env("VIDEO_FIXTURE", &video)
        .env("DOWNLOAD_DIR", downloads.path())
        .env("MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_RUN_TIMEOUT, run)
        .await
        .expect("the browser run finishes within five minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("no JSON report from run.mjs\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    // Shown by nextest when the test fails, and with --no-capture (without the password).
    let mut shown = report.clone();
    shown["password"] = Value::from("(hidden)");
    eprintln!("{stderr}\nreport: {shown}");
    assert!(
        output.status.success() && report["ok"] == true,
        "the browser run failed (exit {:?}):\n{}\nstderr:\n{stderr}",
        output.status.code(),
        serde_json::to_string_pretty(&shown).unwrap()
    );

    // Every scenario ran and passed.
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    for expected in [
        "security headers",
        "sign up by keyboard",
        "log out",
        "wrong password",
        "rate limited",
        "error messages",
        "log in",
        "upload progress and cancel",
        "upload and live conversion",
        "download",
        "failed conversion",
        "too large",
        "phone layout",
        "delete",
        "reload keeps the session",
        "invalid session",
    ] {
        let scenario = scenarios
            .iter()
            .find(|s| s["name"] == expected)
            .unwrap_or_else(|| panic!("scenario {expected:?} did not run: {report}"));
        assert_eq!(scenario["ok"], true, "{scenario}");
    }

    // The page saw the job queued, then done at 100%.
    let seen = &report["conversion"];
    assert_eq!(seen["final_status"], "succeeded", "{seen}");
    assert_eq!(seen["final_progress"], 100, "{seen}");
    assert!(
        seen["statuses"]
            .as_array()
            .is_some_and(|s| s.first() == Some(&Value::from("submitted"))),
        "the new job did not show as queued first: {seen}"
    );

    // The download is a real MP3 at the bitrate chosen in the page.
    let download = &report["download"];
    assert!(
        download["filename"]
            .as_str()
            .is_some_and(|n| n == "mp4_aac_moov_start.mp3"),
        "{download}"
    );
    let mp3 = std::fs::read(download["path"].as_str().expect("download path")).expect("MP3 saved");
    assert!(mp3.len() > 16 * 1024, "the MP3 is only {} bytes", mp3.len());
    let (frames, bitrates) = mp3_frames(&mp3);
    assert!(frames > 50, "only {frames} MP3 frames");
    assert!(
        bitrates.iter().all(|&kbps| kbps == 192),
        "chose 192 kbps CBR in the page, got {bitrates:?}"
    );

    // The API agrees with what the page showed: the cancelled and the too-large uploads made no
    // job, the converted one is there, the failed one was deleted.
    let email = report["email"].as_str().expect("email");
    let password = report["password"].as_str().expect("password");
    let jobs = api_jobs(&stack.base_url, email, password).await;
    let status_of = |id: &Value| {
        jobs.iter()
            .find(|job| &job["job_id"] == id)
            .map(|job| job["status"].clone())
    };
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(
        status_of(&report["jobs"]["succeeded"]),
        Some(Value::from("succeeded"))
    );
    assert_eq!(
        status_of(&report["jobs"]["failed"]),
        Some(Value::from("deleted"))
    );

    for name in SCREENSHOTS {
        let path = screenshots.join(format!("{name}.png"));
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|_| panic!("screenshot {} missing", path.display()))
            .len();
        assert!(
            size <= MAX_SCREENSHOT_BYTES,
            "{} is {size} bytes",
            path.display()
        );
    }
    stack.shutdown.cancel();
}
