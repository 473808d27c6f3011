//! Placeholder for the job worker.
//!
//! The lead replaces this whole file with the RabbitMQ consumer built on [`crate::transcode`].

/// Runs the conversion worker until shutdown.
pub async fn run() -> anyhow::Result<()> {
    Err(anyhow::anyhow!("the worker is not built yet"))
}
