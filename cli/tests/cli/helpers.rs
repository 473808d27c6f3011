//! The harness: the whole service stack in-process, and a way to run the real `mp3` binary
//! against it with a private config directory (never the user's).

use converter::worker::{
    Application as Converter, Backends as ConverterBackends, Settings as ConverterSettings,
};
use gateway::{Application as Gateway, Backends as GatewayBackends, Settings as GatewaySettings};
use platform::blob::BlobStore;
use platform::bus::{EventBus, Subscription};
use platform::rabbit::RabbitBus;
use platform::testing::{fresh_mysql_database, isolated_topology, required_env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Once};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest a single `mp3` invocation may take in a test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

static TRACING: Once = Once::new();

fn init_tracing() {
    // Service logs only when asked for (TEST_LOG=1), to keep test output readable.
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            platform::telemetry::init("mp3-cli-tests");
        }
    });
}

/// A running stack plus a private config directory and a scratch directory for media.
pub struct Stack {
    pub server: String,
    pub config: TempDir,
    pub work: TempDir,
    shutdown: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Declares a subscription's queue so events published before its consumer runs are kept.
async fn declare(bus: &RabbitBus, subscription: &Subscription) {
    let connection = bus.open_connection().await.expect("RabbitMQ at AMQP_URL");
    let channel = connection.create_channel().await.expect("channel");
    bus.declare_subscription(&channel, subscription)
        .await
        .expect("declare queue");
    let _ = connection.close(200, "declared".into()).await;
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// A stack whose gateway settings are adjusted by `configure` (limits, ...).
    pub async fn start_with(configure: impl FnOnce(&mut GatewaySettings)) -> Stack {
        init_tracing();
        let shutdown = CancellationToken::new();
        let amqp_url = required_env("AMQP_URL");
        let mongodb_uri = required_env("MONGODB_URI");

        let database_url = fresh_mysql_database().await;
        let auth = auth::Application::connect(auth::Settings::for_tests(&database_url))
            .await
            .expect("auth builds");
        let auth_grpc_url = format!("http://{}", auth.grpc_addr());
        tokio::spawn(auth.run_until_stopped(shutdown.clone()));

        let bus = Arc::new(RabbitBus::new(&amqp_url).with_topology(isolated_topology()));
        let blobs = Arc::new(platform::testing::gridfs(&mongodb_uri).await);
        let converter_settings = ConverterSettings::for_tests(&amqp_url, &mongodb_uri);
        // Both queues exist before the first upload, so no event is dropped as unroutable.
        declare(
            &bus,
            &gateway::pipeline::subscription(platform::config::DEFAULT_DELIVERY_LIMIT),
        )
        .await;
        declare(&bus, &Converter::subscription(&converter_settings)).await;

        let converter = Converter::build(
            converter_settings,
            ConverterBackends::embedded(
                bus.clone() as Arc<dyn EventBus>,
                blobs.clone() as Arc<dyn BlobStore>,
            ),
        )
        .await
        .expect("the converter builds");
        tokio::spawn(converter.run_until_stopped(shutdown.clone()));

        let mut settings = GatewaySettings::for_tests(&auth_grpc_url, &mongodb_uri, &amqp_url);
        configure(&mut settings);
        let mut backends = GatewayBackends::connect(&settings)
            .await
            .expect("the gateway's backends");
        backends.bus = bus;
        let gateway = Gateway::build(settings, backends)
            .await
            .expect("the gateway builds");
        let server = format!("http://127.0.0.1:{}", gateway.port());
        tokio::spawn(gateway.run_until_stopped(shutdown.clone()));

        Stack {
            server,
            config: tempfile::tempdir().expect("config dir"),
            work: tempfile::tempdir().expect("work dir"),
            shutdown,
        }
    }

    /// Copies a converter fixture into the scratch directory under `name`.
    pub fn media(&self, fixture: &str, name: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../converter/tests/fixtures")
            .join(fixture);
        let target = self.work.path().join(name);
        std::fs::copy(&source, &target)
            .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        target
    }

    /// `mp3 ARGS` with this stack's server and config dir, nothing inherited that could log
    /// in by accident, and `env` on top.
    pub fn mp3(&self) -> Mp3 {
        Mp3 {
            args: Vec::new(),
            env: vec![
                ("MP3_SERVER".into(), self.server.clone()),
                (
                    "MP3_CONFIG_DIR".into(),
                    self.config.path().display().to_string(),
                ),
            ],
            stdin: None,
            dir: self.work.path().to_owned(),
        }
    }

    /// A new account made with `mp3 signup`; returns (email, password).
    pub async fn signed_up(&self) -> (String, String) {
        let email = format!("cli-{}@example.com", Uuid::new_v4().simple());
        let password = "correct horse battery staple".to_owned();
        let run = self
            .mp3()
            .args(["signup", "--email", &email, "--password-stdin"])
            .stdin(&format!("{password}\n"))
            .run()
            .await;
        run.assert_success();
        (email, password)
    }

    /// The session file the CLI keeps for this stack's server.
    pub fn session_file(&self) -> PathBuf {
        cli::config::TokenCache::new(self.config.path()).path_for(&self.server)
    }
}

pub struct Mp3 {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    dir: PathBuf,
}

impl Mp3 {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.args.extend(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn stdin(mut self, input: &str) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub async fn run(self) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mp3"));
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .env_remove("MP3_EMAIL")
            .env_remove("MP3_PASSWORD")
            .env_remove("MP3_SERVER")
            .env_remove("MP3_CONFIG_DIR")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the mp3 binary starts");
        if let Some(input) = &self.stdin {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(input.as_bytes())
                .await
                .expect("write stdin");
            drop(stdin);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`mp3 {}` did not finish in time", self.args.join(" ")))
            .expect("mp3 ran");
        Run {
            command: format!("mp3 {}", self.args.join(" ")),
            output,
        }
    }
}

pub struct Run {
    pub command: String,
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code(),
            Some(0),
            "`{}` failed\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout(),
            self.stderr()
        );
        self
    }

    pub fn assert_failure(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "`{}` should exit with {code}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Every stdout line, each parsed as one JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
            })
            .collect()
    }

    pub fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "expected one JSON line: {}", self.stdout());
        lines.remove(0)
    }
}

/// Asserts that `path` holds a real MP3: an ID3 tag or a frame sync at the start, frame syncs
/// throughout, and more than a trivial size.
pub fn assert_mp3(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 4_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    let audio_start = if bytes.starts_with(b"ID3") {
        // ID3v2 size: 4 bytes of 7 bits each, after the 10-byte header.
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |size, b| (size << 7) | usize::from(b & 0x7f));
        10 + size
    } else {
        0
    };
    let frame = &bytes[audio_start..];
    assert!(
        frame.len() > 2 && frame[0] == 0xFF && frame[1] & 0xE0 == 0xE0,
        "no MPEG frame sync where the audio of {} should start",
        path.display()
    );
    let syncs = bytes
        .windows(2)
        .filter(|w| w[0] == 0xFF && w[1] & 0xE0 == 0xE0)
        .count();
    assert!(
        syncs >= 10,
        "only {syncs} frame syncs in {}",
        path.display()
    );
}
