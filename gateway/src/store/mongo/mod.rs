//! The MongoDB adapters: one collection each in the jobs database, shared by every gateway replica
//! (leases and conditional updates keep replicas from doing the same work twice).

mod events;
mod outbox;
mod retention;
mod watch;

pub use events::MongoEventStore;
pub use outbox::MongoOutbox;
pub use retention::MongoRetentionLedger;
pub use watch::MongoJobWatch;

use super::StoreError;
use contracts::Envelope;
use contracts::events::DecodeError;
use mongodb::bson::Document;
use mongodb::error::{ErrorKind, WriteFailure};
use uuid::Uuid;

/// The envelope kept as JSON text in a document's `envelope` field (events and outbox entries).
fn envelope_of(document: &Document) -> Result<Envelope, StoreError> {
    decode(document).map_err(|e| StoreError::Corrupt {
        id: document.get_str("_id").unwrap_or("?").to_owned(),
        reason: e.to_string(),
    })
}

/// A stored event for folding: `None` when this build cannot read it (see
/// [`super::readable_event`]).
fn stored_event(document: &Document) -> Option<Envelope> {
    super::readable_event(document.get_str("_id").unwrap_or("?"), decode(document))
}

fn decode(document: &Document) -> Result<Envelope, DecodeError> {
    let json = document
        .get_str("envelope")
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Envelope::from_json(json.as_bytes())
}

/// The distinct job ids of documents projected to `job_id`, in the order found.
fn job_ids(documents: &[Document]) -> Vec<Uuid> {
    let mut jobs: Vec<Uuid> = documents
        .iter()
        .filter_map(|d| d.get_str("job_id").ok())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    jobs.dedup();
    jobs
}

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
