//! Helpers for integration tests against real services (enabled by the `testing` feature).
//!
//! `scripts/test.sh` starts or locates the services and exports their addresses. A test whose
//! service is missing fails with a message naming it; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable's value; panics naming the service when unset.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        let service = match name {
            "DATABASE_URL" => "MySQL/MariaDB",
            "AMQP_URL" => "RabbitMQ",
            "MONGODB_URI" => "MongoDB (wire protocol)",
            "SMTP_URL" | "SMTP_SINK_DIR" => "the SMTP test server",
            _ => "a backing service",
        };
        panic!("{name} is not set: {service} is needed. Run the tests with scripts/test.sh, which starts it.")
    })
}

/// A short unique name for queues, databases and users of one test.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Creates a fresh database on the `DATABASE_URL` server and returns a URL pointing at it.
pub async fn fresh_mysql_database() -> String {
    use sqlx::Connection;
    let server = required_env("DATABASE_URL");
    let server = server.trim_end_matches('/');
    // DATABASE_URL may already name a database: keep scheme, credentials and host only.
    let base = match server.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, _)) => format!("{scheme}://{authority}"),
            None => server.to_owned(),
        },
        None => panic!("DATABASE_URL is not a URL: {server}"),
    };
    let name = unique_name("test");
    let mut connection = sqlx::MySqlConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("MySQL/MariaDB at DATABASE_URL is unreachable: {e}"));
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&mut connection)
        .await
        .expect("create test database");
    format!("{base}/{name}")
}

/// A RabbitMQ topology no other test shares.
pub fn isolated_topology() -> crate::rabbit::Topology {
    crate::rabbit::Topology::isolated(&unique_name("test"))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Waits until something listens on `port` on 127.0.0.1.
pub async fn wait_for_port(port: u16, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not start listening on 127.0.0.1:{port} within {timeout:?}");
}

/// A child process killed when dropped: private servers that a test may stop and restart.
pub struct PrivateServer {
    child: Option<Child>,
    pub port: u16,
    command: Vec<String>,
    what: String,
}

impl PrivateServer {
    /// Starts `command` (whose arguments may contain `{port}`) on a fresh port and waits for it.
    pub async fn start(what: &str, command: &[String]) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            command: command.to_vec(),
            what: what.to_owned(),
        };
        server.restart().await;
        server
    }

    /// (Re)starts the process on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let args: Vec<String> = self
            .command
            .iter()
            .map(|a| a.replace("{port}", &self.port.to_string()))
            .collect();
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.what, args[0]));
        self.child = Some(child);
        wait_for_port(self.port, &self.what, Duration::from_secs(60)).await;
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private in-memory SecantusDB (MongoDB wire protocol) that the test may stop and restart.
/// Returns the server; its URI is `mongodb://127.0.0.1:{port}`.
pub async fn private_mongodb() -> PrivateServer {
    let binary = required_env("SECANTUSD");
    PrivateServer::start(
        "SecantusDB (MongoDB wire)",
        &[
            binary,
            "--port".into(),
            "{port}".into(),
            "--storage-path".into(),
            ":memory:".into(),
        ],
    )
    .await
}

/// A private SMTP sink writing mail into `dir`; its URL is `smtp://127.0.0.1:{port}`.
pub async fn private_smtp(dir: &Path) -> PrivateServer {
    let sink = required_env("SMTP_SINK");
    let mut command: Vec<String> = sink.split_whitespace().map(str::to_owned).collect();
    command.extend([
        "--port".into(),
        "{port}".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]);
    PrivateServer::start("SMTP sink", &command).await
}

/// The directory where the shared SMTP sink writes mail.
pub fn mail_dir() -> PathBuf {
    PathBuf::from(required_env("SMTP_SINK_DIR"))
}

/// Every message in `dir` whose raw text satisfies `matches`.
pub fn mails_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|text| matches(text))
        .collect()
}

/// Waits until a message satisfying `matches` arrives in `dir`, and returns it.
pub async fn wait_for_mail(
    dir: &Path,
    matches: impl Fn(&str) -> bool,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(mail) = mails_matching(dir, &matches).into_iter().next() {
            return mail;
        }
        if Instant::now() > deadline {
            panic!(
                "no matching mail arrived in {} within {timeout:?}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A MongoDB client of the test's own for `uri`.
pub async fn mongo_client(uri: &str) -> mongodb::Client {
    crate::mongo::connect(&uri.into(), "test")
        .await
        .expect("a valid MongoDB URI")
}

/// GridFS on a client of its own for `uri` (a test's view of the store its services use).
pub async fn gridfs(uri: &str) -> crate::blob::GridFsStore {
    crate::blob::GridFsStore::new(&mongo_client(uri).await)
}

/// A RabbitMQ node of the test's own (never the machine's shared one), for broker configuration
/// a test needs (e.g. a short `consumer_timeout`): own AMQP and distribution ports, data
/// directory and node name, killed with its process group and its directory removed when dropped.
pub struct PrivateRabbit {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PrivateRabbit {
    /// Starts a node with `conf` added to its `rabbitmq.conf` and `advanced` (Erlang terms, e.g.
    /// `[{rabbit, [{channel_tick_interval, 1000}]}].`) as its `advanced.config`; waits until it
    /// accepts AMQP connections. Panics naming RabbitMQ when `rabbitmq-server` is missing.
    pub async fn start(conf: &str, advanced: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let executable = [
            "/usr/lib/rabbitmq/bin/rabbitmq-server",
            "/usr/sbin/rabbitmq-server",
        ]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("rabbitmq-server is not installed: RabbitMQ is needed for a private node");
        let name = unique_name("qtest");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("private RabbitMQ directory");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("loopback_users = none\n{conf}\n"),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(dir.join("advanced.config"), advanced).expect("write advanced.config");
        let port = free_port();
        let dist_port = free_port();
        let path = |name: &str| dir.join(name).display().to_string();
        let child = Command::new(executable)
            .env("HOME", &dir)
            .env("RABBITMQ_NODENAME", format!("{name}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: dropping it kills the node and its helpers, nothing else.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start RabbitMQ ({executable}): {e}"));
        let node = Self { child, dir, port };
        wait_for_port(port, "private RabbitMQ", Duration::from_secs(180)).await;
        node
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        // The process group this value started (its pid is the group id), and only that.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Takes the next message of `queue` and drops the connection without an ack, `times` times: a
/// consumer that died holding the delivery, as far as the broker can tell (a quorum queue counts
/// each one towards its delivery limit).
pub async fn die_holding_the_next_delivery(
    bus: &crate::rabbit::RabbitBus,
    queue: &str,
    times: u32,
) {
    for _ in 0..times {
        let mut taken = None;
        for _ in 0..100 {
            let connection = bus.open_connection().await.unwrap();
            let channel = connection.create_channel().await.unwrap();
            if let Some(message) = channel
                .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
                .await
                .unwrap()
            {
                taken = Some(message);
                // Closed without an ack: the broker takes the message back and counts it.
                connection.close(200, "dying".into()).await.unwrap();
                break;
            }
            connection.close(200, "empty".into()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(taken.is_some(), "the message came back to {queue}");
    }
}
