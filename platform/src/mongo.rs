//! The one MongoDB client of a process.
//!
//! Every MongoDB adapter — GridFS, the gateway's event store, outbox and retention ledger, the
//! notification sent log — is built on a client made here, so a process (the all-in-one too)
//! holds one connection pool, and shuts it down once, after its last operation.

use crate::config::SecretUrl;
pub use mongodb::Client;
use mongodb::options::ClientOptions;
use std::time::Duration;

/// How long an operation waits for a server while MongoDB is away: requests get a 503 in seconds
/// instead of hanging for the driver's default 30 s.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `uri`, named `app_name` in the server's logs. Connects lazily: an unreachable
/// server fails the operations (fast), never this call; only a malformed URI does.
pub async fn connect(uri: &SecretUrl, app_name: &str) -> Result<Client, mongodb::error::Error> {
    let mut options = ClientOptions::parse(uri.expose()).await?;
    options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout = Some(CONNECT_TIMEOUT);
    options.app_name.get_or_insert_with(|| app_name.to_owned());
    Client::with_options(options)
}
