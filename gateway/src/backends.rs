//! The gateway's backing services, chosen in one place.
//!
//! [`Backends::connect`] is production: RabbitMQ, and one MongoDB client for GridFS, the event
//! store, the outbox and the retention ledger. [`Backends::embedded`] keeps the stores in a
//! directory (the all-in-one mode), on a bus and blob store the process's services share. Either
//! way auth is reached over gRPC at `AUTH_GRPC_URL`. Tests swap single fields (an isolated bus).

use crate::auth_client::{Accounts, GrpcAccounts};
use crate::configuration::Settings;
use crate::store::{
    EventStore, JobWatch, LocalEventStore, LocalOutbox, LocalRetentionLedger, MemoryJobWatch,
    MongoEventStore, MongoJobWatch, MongoOutbox, MongoRetentionLedger, Outbox, RetentionLedger,
};
use anyhow::Context;
use platform::blob::{BlobStore, GridFsStore};
use platform::bus::EventBus;
use platform::rabbit::RabbitBus;
use std::path::Path;
use std::sync::Arc;

pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub blobs: Arc<dyn BlobStore>,
    pub events: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub ledger: Arc<dyn RetentionLedger>,
    /// When each unfinished job last moved (the watchdog's).
    pub watch: Arc<dyn JobWatch>,
    pub accounts: Arc<dyn Accounts>,
    /// The MongoDB client this value opened and so closes ([`Backends::close`]); a client lent
    /// by the caller ([`Backends::on_mongo`]) stays the caller's to close.
    owned_mongo: Option<mongodb::Client>,
}

impl Backends {
    /// RabbitMQ at `AMQP_URL`, MongoDB at `MONGODB_URI`, auth at `AUTH_GRPC_URL`. Connects
    /// lazily: an absent service shows in `/readyz` and is retried, it never fails this call.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let mongo = platform::mongo::connect(&settings.mongodb_uri, "gateway")
            .await
            .context("invalid MONGODB_URI")?;
        let bus = Arc::new(RabbitBus::new(&settings.amqp_url));
        let mut backends = Self::on_mongo(settings, &mongo, bus)?;
        backends.owned_mongo = Some(mongo);
        Ok(backends)
    }

    /// The MongoDB backends on a client the caller owns (the all-in-one shares one), with `bus`.
    pub fn on_mongo(
        settings: &Settings,
        mongo: &mongodb::Client,
        bus: Arc<dyn EventBus>,
    ) -> anyhow::Result<Self> {
        let database = &settings.jobs_database;
        Ok(Self {
            bus,
            blobs: Arc::new(GridFsStore::new(mongo)),
            events: Arc::new(MongoEventStore::new(mongo, database)),
            outbox: Arc::new(MongoOutbox::new(mongo, database)),
            ledger: Arc::new(MongoRetentionLedger::new(mongo, database)),
            watch: Arc::new(MongoJobWatch::new(mongo, database)),
            accounts: grpc_accounts(settings)?,
            owned_mongo: None,
        })
    }

    /// The event log, outbox and retention ledger as files in `dir`, on the process's shared
    /// `bus` and `blobs`.
    pub async fn embedded(
        dir: &Path,
        settings: &Settings,
        bus: Arc<dyn EventBus>,
        blobs: Arc<dyn BlobStore>,
    ) -> anyhow::Result<Self> {
        let opened = |what: &str| format!("cannot open the {what} in {}", dir.display());
        Ok(Self {
            bus,
            blobs,
            events: Arc::new(
                LocalEventStore::open(dir)
                    .await
                    .with_context(|| opened("event log"))?,
            ),
            outbox: Arc::new(
                LocalOutbox::open(dir)
                    .await
                    .with_context(|| opened("outbox"))?,
            ),
            ledger: Arc::new(
                LocalRetentionLedger::open(dir)
                    .await
                    .with_context(|| opened("retention ledger"))?,
            ),
            // One process: the watch lives in memory (see MemoryJobWatch).
            watch: Arc::new(MemoryJobWatch::default()),
            accounts: grpc_accounts(settings)?,
            owned_mongo: None,
        })
    }

    /// Closes what this value opened, after the service's last operation: MongoDB's pool stops
    /// once in-flight operations finish, so none of them dies with the runtime.
    pub async fn close(self) {
        if let Some(mongo) = self.owned_mongo {
            mongo.shutdown().await;
        }
    }
}

/// Auth over gRPC, behind the circuit breaker.
fn grpc_accounts(settings: &Settings) -> anyhow::Result<Arc<dyn Accounts>> {
    Ok(Arc::new(
        GrpcAccounts::new(&settings.auth_grpc_url, settings.auth_timeout)
            .context("invalid AUTH_GRPC_URL")?
            .with_circuit_breaker(settings.auth_breaker),
    ))
}
