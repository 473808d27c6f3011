//! The worker's backing services, chosen in one place: the event bus and the blob store.
//! [`Backends::connect`] is production (RabbitMQ, GridFS on a MongoDB client of its own);
//! [`Backends::embedded`] takes the bus and blob store the process's services share.

use super::Settings;
use anyhow::Context;
use platform::blob::{BlobStore, GridFsStore};
use platform::bus::EventBus;
use platform::rabbit::RabbitBus;
use std::sync::Arc;

pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub blobs: Arc<dyn BlobStore>,
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
            owned_mongo: Some(mongo),
        })
    }

    /// The bus and blob store of the process (the all-in-one shares them between services).
    pub fn embedded(bus: Arc<dyn EventBus>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            bus,
            blobs,
            owned_mongo: None,
        }
    }

    /// Closes what this value opened, after the worker's last operation.
    pub async fn close(self) {
        if let Some(mongo) = self.owned_mongo {
            mongo.shutdown().await;
        }
    }
}
