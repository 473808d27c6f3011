//! The MongoDB adapters: one collection each in the jobs database, shared by every gateway replica
//! (leases and conditional updates keep replicas from doing the same work twice).

mod events;
mod outbox;
mod retention;

pub use events::MongoEventStore;
pub use outbox::MongoOutbox;
pub use retention::MongoRetentionLedger;

use mongodb::error::{ErrorKind, WriteFailure};

/// True when MongoDB refused a write because the `_id` (or another unique key) already exists.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

impl From<mongodb::error::Error> for super::StoreError {
    fn from(e: mongodb::error::Error) -> Self {
        super::StoreError::Unavailable(e.to_string())
    }
}
