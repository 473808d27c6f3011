//! The worker's backing services, chosen in one place: the event bus, the blob store and the
//! conversion leases. [`Backends::connect`] is production (RabbitMQ; GridFS and the leases on a
//! MongoDB client of its own); [`Backends::embedded`] takes the bus and blob store the process's
//! services share, with leases in memory (its one worker is the only one).

use super::Settings;
use super::lease::{Leases, LocalLeases, MongoLeases};
use anyhow::Context;
use platform::blob::{BlobStore, GridFsStore};
use platform::bus::EventBus;
use platform::rabbit::RabbitBus;
use std::sync::Arc;

pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub blobs: Arc<dyn BlobStore>,
    pub leases: Arc<dyn Leases>,
    /// The MongoDB client this value opened and so closes ([`Backends::close`]).
    owned_mongo: Option<platform::mongo::Client>,
}

impl Backends {
    /// RabbitMQ at `AMQP_URL`, GridFS at `MONGODB_URI`. Connects lazily: an absent service
    /// shows in `/readyz` and is retried, it never fails this call.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let mongo = platform::mongo::connect(&settings.mongodb_uri, "converter")
            .await
            .context("invalid MONGODB_URI")?;
        Ok(Self {
            bus: Arc::new(RabbitBus::new(&settings.amqp_url)),
            blobs: Arc::new(GridFsStore::new(&mongo)),
            leases: Arc::new(MongoLeases::new(&mongo)),
            owned_mongo: Some(mongo),
        })
    }

    /// The bus and blob store of the process (the all-in-one shares them between services).
    pub fn embedded(bus: Arc<dyn EventBus>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            bus,
            blobs,
            leases: Arc::new(LocalLeases::default()),
            owned_mongo: None,
        }
    }

    /// The same with other leases (several workers sharing [`MongoLeases`] in tests).
    pub fn with_leases(mut self, leases: Arc<dyn Leases>) -> Self {
        self.leases = leases;
        self
    }

    /// Closes what this value opened, after the worker's last operation.
    pub async fn close(self) {
        if let Some(mongo) = self.owned_mongo {
            mongo.shutdown().await;
        }
    }
}
