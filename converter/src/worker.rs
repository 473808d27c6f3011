//! The conversion worker: consumes `job.submitted`, turns the video's audio into an MP3 stored in
//! GridFS, and publishes the outcome.
//!
//! Per job: publish ConversionStarted, spill the video from the blob store to a temp file (MP4
//! files with their index at the end need a seekable source, and RAM must stay flat), transcode on
//! blocking threads while progress events go out at most once a second, upload the MP3 from its
//! temp file, publish ConversionSucceeded, then ack. Input problems end the job with
//! ConversionFailed and a reason; transient problems go back through the bus's retry queues.
//!
//! Metrics: `jobs_total` [outcome], `conversion_duration_seconds`, `conversion_speed_ratio`
//! (seconds of audio per second of work).
//!
//! Redelivery is safe: the MP3's metadata holds the success event, so a job that was already
//! converted republishes that same event (same event id, deduplicated downstream) instead of
//! converting again.
//!
//! One conversion per job across replicas: a delivery converts only while it holds the job's
//! lease ([`lease`]), renewed by a heartbeat while it converts. A delivery of a job whose lease
//! another holder has waits up to two lease times for it (a dead holder's lease expires by then,
//! and the delivery keeps its place in the broker's count of deaths), then is deferred through
//! the retry queue, never acknowledged and lost. Once it holds the lease it finds the MP3 the
//! other made and re-announces the same success event. This also covers a conversion longer than
//! the broker's consumer timeout: the broker takes the delivery back and redelivers it while the
//! first still converts; the first finishes (its ack fails, which is harmless), the redelivery
//! waits, then re-announces.
//!
//! Poison jobs: the converter's queue has a delivery limit ([`Settings::delivery_limit`]). A job
//! whose conversion kills the process every time (abort, out of memory) is given up by the broker
//! after that many deaths, and the worker then ends it with a failure that says the file could
//! not be processed ([`EventHandler::abandoned`]).

mod backends;
mod configuration;
pub mod lease;
mod spill;

use spill::SpillSpace;

pub use backends::Backends;
pub use configuration::{Settings, limits_from_env};
use lease::Leases;

use crate::transcode::{Limits, TranscodeError, TranscodeOptions, TranscodeReport, transcode};
use async_trait::async_trait;
use contracts::events::{
    ConversionFailed, ConversionProgress, ConversionStarted, ConversionSucceeded, FailureKind,
    JobSubmitted,
};
use contracts::{Envelope, JobEvent};
use futures::StreamExt;
use platform::blob::{BlobError, BlobInfo, BlobStore, Bucket, Metadata};
use platform::bus::{Delivered, EventBus, EventHandler, Outcome, Subscription};
use platform::health::{Health, probe};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "converter";
/// The converter's durable queue: a quorum queue, which counts the deliveries whose consumer died.
pub const QUEUE: &str = "converter.quorum";
/// The classic queue of earlier builds that [`QUEUE`] replaces (migrated at start-up).
pub const REPLACED_QUEUE: &str = "converter";
/// Metadata key under which the MP3 keeps the success event it was announced with.
const SUCCESS_EVENT_KEY: &str = "success_event";
/// Progress events go out at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Size of the reads when uploading the MP3.
const UPLOAD_PIECE: usize = 1024 * 1024;

/// Runs the worker from environment variables until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    platform::telemetry::init(SERVICE);
    let settings = Settings::from_env()?;
    let app = Application::connect(settings).await?;
    tracing::info!(http = %app.http_addr(), "converter worker started");
    app.run_until_stopped(platform::shutdown::on_signal()).await
}

/// The worker composed with its bus and blob store.
pub struct Application {
    settings: Settings,
    backends: Backends,
    bus: Arc<dyn EventBus>,
    handler: Arc<JobHandler>,
    listener: tokio::net::TcpListener,
    health: Health,
}

impl Application {
    /// The production composition: [`Backends::connect`], then [`Application::build`].
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let backends = Backends::connect(&settings).await?;
        Self::build(settings, backends).await
    }

    /// Binds the health listener and wires the job handler; nothing needs to be up yet.
    pub async fn build(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on HTTP_ADDR {}: {e}", settings.http_addr)
            })?;
        let (bus, blobs) = (backends.bus.clone(), backends.blobs.clone());
        let health = Health::new(vec![
            probe(
                "event_bus",
                bus.clone(),
                |bus| async move { bus.check().await },
            ),
            probe("blob_store", blobs.clone(), |blobs| async move {
                blobs.check().await
            }),
        ]);
        let handler = Arc::new(JobHandler {
            bus: bus.clone(),
            blobs,
            spill: SpillSpace::open(settings.temp_dir.as_deref(), settings.temp_budget_bytes)
                .map_err(|e| anyhow::anyhow!("cannot use CONVERTER_TEMP_DIR: {e}"))?,
            limits: settings.limits,
            leases: backends.leases.clone(),
            lease_ttl: settings.lease_ttl,
            instance: format!(
                "pid{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
        });
        Ok(Self {
            settings,
            backends,
            bus,
            handler,
            listener,
            health,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// The subscription this worker consumes.
    pub fn subscription(settings: &Settings) -> Subscription {
        Subscription::new(QUEUE, &["job.submitted"])
            .with_prefetch(settings.concurrency)
            .with_retry_delays(settings.retry_delays.clone())
            .with_delivery_limit(settings.delivery_limit)
            .replacing_queue(REPLACED_QUEUE)
    }

    /// Consumes jobs and serves health until `shutdown`; jobs in flight finish first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = self.health.router();
        let http = tokio::spawn(platform::health::serve(
            self.listener,
            router,
            shutdown.clone(),
        ));
        let subscription = Self::subscription(&self.settings);
        self.bus
            .consume(subscription, self.handler, shutdown.clone())
            .await?;
        shutdown.cancel();
        http.await??;
        self.backends.close().await;
        Ok(())
    }
}

/// Why one attempt at a job did not succeed.
enum JobError {
    /// The input cannot be converted: tell the user, never retry.
    Permanent(String),
    /// Something on our side: retry later.
    Transient(String),
    /// This delivery's lease expired and another delivery of the job holds it now: that one
    /// finishes the job.
    Superseded,
}

impl From<BlobError> for JobError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => {
                JobError::Permanent("the uploaded video no longer exists".into())
            }
            BlobError::InvalidId(id) => {
                JobError::Permanent(format!("the job names an invalid video id {id:?}"))
            }
            BlobError::Unavailable(reason) => JobError::Transient(reason),
        }
    }
}

impl From<TranscodeError> for JobError {
    fn from(e: TranscodeError) -> Self {
        if e.is_permanent() {
            JobError::Permanent(e.to_string())
        } else {
            JobError::Transient(e.to_string())
        }
    }
}

impl From<std::io::Error> for JobError {
    fn from(e: std::io::Error) -> Self {
        JobError::Transient(format!("temporary file: {e}"))
    }
}

struct JobHandler {
    bus: Arc<dyn EventBus>,
    blobs: Arc<dyn BlobStore>,
    spill: SpillSpace,
    limits: Limits,
    /// Who converts which job, across replicas (see [`lease`]).
    leases: Arc<dyn Leases>,
    lease_ttl: Duration,
    /// This process, in the names of the leases it holds (for operators reading the collection).
    instance: String,
}

impl JobHandler {
    /// Takes `job`'s lease for `holder`, waiting up to two lease times for another holder's
    /// (long enough for a dead holder's to expire); `false` when a live holder keeps it.
    async fn wait_for_lease(&self, job: uuid::Uuid, holder: &str) -> Result<bool, JobError> {
        let give_up = Instant::now() + self.lease_ttl * 2;
        let poll = (self.lease_ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let acquired = self
                .leases
                .acquire(job, holder, self.lease_ttl)
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?;
            if acquired {
                return Ok(true);
            }
            if Instant::now() >= give_up {
                return Ok(false);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// [`JobHandler::convert`] while renewing `holder`'s lease every third of the lease time; it
    /// stops (the delivery is superseded) if the lease was lost to another holder.
    async fn convert_holding_lease(
        &self,
        delivery: &Delivered,
        job: &JobSubmitted,
        holder: &str,
    ) -> Result<(), JobError> {
        let job_id = delivery.envelope.job_id;
        let work = self.convert(delivery, job);
        tokio::pin!(work);
        let mut heartbeat = tokio::time::interval(self.lease_ttl / 3);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = heartbeat.tick() => match self.leases.renew(job_id, holder, self.lease_ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%job_id, %holder, "conversion lease lost to another worker; leaving the job to it");
                        return Err(JobError::Superseded);
                    }
                    // The store is away: keep converting; if the lease expires meanwhile and
                    // another takes it, the next renewal says so.
                    Err(e) => tracing::warn!(%job_id, error = %e, "conversion lease not renewed"),
                },
            }
        }
    }
}

impl JobHandler {
    fn event(&self, delivery: &Delivered, event: JobEvent) -> Envelope {
        Envelope::new(delivery.envelope.job_id, SERVICE, event)
            .with_traceparent(delivery.envelope.traceparent.clone())
    }

    fn temp_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        self.spill.file()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), JobError> {
        self.bus
            .publish(envelope)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))
    }

    /// Publishes ConversionFailed for a job that will not be retried.
    async fn publish_failure(
        &self,
        delivery: &Delivered,
        job: &JobSubmitted,
        kind: FailureKind,
        reason: &str,
    ) -> Result<(), JobError> {
        let event_id = failure_event_id(delivery.envelope.event_id, kind);
        self.publish_failure_as(delivery, job, kind, reason, event_id)
            .await
    }

    /// Publishes ConversionFailed with the id `event_id`.
    async fn publish_failure_as(
        &self,
        delivery: &Delivered,
        job: &JobSubmitted,
        kind: FailureKind,
        reason: &str,
        event_id: uuid::Uuid,
    ) -> Result<(), JobError> {
        let mut failed = self.event(
            delivery,
            JobEvent::ConversionFailed(ConversionFailed {
                owner_id: job.owner_id.clone(),
                owner_email: job.owner_email.clone(),
                original_filename: job.original_filename.clone(),
                kind,
                reason: reason.to_owned(),
            }),
        );
        failed.event_id = event_id;
        self.publish(&failed).await
    }

    /// One attempt at the job.
    async fn convert(&self, delivery: &Delivered, job: &JobSubmitted) -> Result<(), JobError> {
        let job_id = delivery.envelope.job_id.to_string();
        if let Some(existing) = self
            .blobs
            .find_by_metadata(Bucket::Mp3s, "job_id", &job_id)
            .await?
            && let Some(announced) = success_event_of(delivery, job, &existing)
        {
            tracing::info!(%job_id, mp3 = %existing.id, "already converted; re-announcing the same success event");
            return self.publish(&announced).await;
        }

        let started = self.event(
            delivery,
            JobEvent::ConversionStarted(ConversionStarted {
                attempt: delivery.attempt,
            }),
        );
        self.publish(&started).await?;

        let clock = Instant::now();
        // Room for the video (its size is in the submission) and the largest MP3 this job may
        // write, held until both are gone.
        let _room = self
            .spill
            .reserve(job.size_bytes.saturating_add(self.limits.max_mp3_bytes))
            .await
            .map_err(|e| {
                JobError::Permanent(format!(
                    "the file is too large for the converter's temporary space ({})",
                    binary_size(e.budget)
                ))
            })?;
        let video = self.download_video(&job.video_file_id).await?;
        let downloaded_in = clock.elapsed();
        let (output, report) = self.transcode_with_progress(delivery, job, video).await?;
        let converted_in = clock.elapsed() - downloaded_in;

        // The success event's id is derived from the submission, as the failure's is: two
        // replicas that both converted the job (a redelivery while the first still ran) announce
        // one event, stored once and mailed once; the gateway removes the second MP3. It is also
        // stored with the MP3, so a redelivery re-announces it instead of converting again.
        let success_event_id = success_event_id(delivery.envelope.event_id);
        let mut metadata = Metadata::new();
        metadata.insert("job_id".into(), json!(job_id));
        metadata.insert("owner_id".into(), json!(job.owner_id));
        metadata.insert("original_filename".into(), json!(job.original_filename));
        metadata.insert("duration_seconds".into(), json!(report.duration_seconds));
        metadata.insert("bitrate_kbps".into(), json!(report.bitrate_kbps));
        metadata.insert("passthrough".into(), json!(report.passthrough));
        metadata.insert("content_type".into(), json!("audio/mpeg"));
        metadata.insert(
            SUCCESS_EVENT_KEY.into(),
            json!(success_event_id.to_string()),
        );
        let stored = self.upload_mp3(job, output, metadata).await?;
        let stored_in = clock.elapsed() - downloaded_in - converted_in;
        tracing::info!(
            %job_id,
            mp3 = %stored.id,
            bytes = stored.length,
            duration_seconds = report.duration_seconds,
            download_ms = downloaded_in.as_millis() as u64,
            convert_ms = converted_in.as_millis() as u64,
            store_ms = stored_in.as_millis() as u64,
            "converted"
        );
        metrics::histogram!("conversion_duration_seconds").record(converted_in.as_secs_f64());
        if converted_in.as_secs_f64() > 0.0 {
            metrics::histogram!("conversion_speed_ratio")
                .record(report.duration_seconds / converted_in.as_secs_f64());
        }
        let announced = success_event_of(delivery, job, &stored)
            .expect("the stored metadata carries the success event id");
        self.publish(&announced).await
    }

    async fn upload_mp3(
        &self,
        job: &JobSubmitted,
        output: tempfile::NamedTempFile,
        metadata: Metadata,
    ) -> Result<BlobInfo, JobError> {
        let filename = format!("{}.mp3", filename_stem(&job.original_filename));
        let mut upload = self.blobs.create(Bucket::Mp3s, &filename, metadata).await?;
        let mut file = tokio::fs::File::from_std(output.reopen()?);
        let mut buffer = vec![0u8; UPLOAD_PIECE];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            if let Err(e) = upload.write(&buffer[..read]).await {
                let _ = upload.abort().await;
                return Err(e.into());
            }
        }
        Ok(upload.finish().await?)
    }

    async fn download_video(&self, video_id: &str) -> Result<tempfile::NamedTempFile, JobError> {
        let spill = self.temp_file()?;
        let mut file = tokio::fs::File::from_std(spill.reopen()?);
        let mut stream = self.blobs.read(Bucket::Videos, video_id, None).await?;
        while let Some(piece) = stream.next().await {
            file.write_all(&piece?).await?;
        }
        file.flush().await?;
        Ok(spill)
    }

    /// Transcodes on blocking threads; progress is published at most once a second meanwhile.
    async fn transcode_with_progress(
        &self,
        delivery: &Delivered,
        job: &JobSubmitted,
        video: tempfile::NamedTempFile,
    ) -> Result<(tempfile::NamedTempFile, TranscodeReport), JobError> {
        let output = self.temp_file()?;
        let options = TranscodeOptions {
            quality: job.quality,
            title: Some(filename_stem(&job.original_filename)),
            limits: self.limits,
        };
        let (percent_tx, mut percent_rx) = tokio::sync::watch::channel(0u8);
        let mut writer = output.reopen()?;
        let input = video.reopen()?;
        let work = tokio::task::spawn_blocking(move || {
            let result = transcode(input, &mut writer, &options, &mut |percent| {
                percent_tx.send_replace(percent);
            });
            drop(video);
            result
        });
        tokio::pin!(work);
        let mut last_sent = 0u8;
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        ticker.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = ticker.tick() => {
                    let percent = *percent_rx.borrow_and_update();
                    if percent > last_sent && percent < 100 {
                        last_sent = percent;
                        let progress = self.event(delivery, JobEvent::ConversionProgress(ConversionProgress { percent }));
                        if let Err(JobError::Transient(e)) = self.publish(&progress).await {
                            // Progress is best effort; the outcome event is what matters.
                            tracing::debug!(error = %e, "progress event not published");
                        }
                    }
                }
            }
        };
        let report = result.map_err(|e| {
            if e.is_panic() {
                // A decoder that panics on this input will panic on every retry: the file is bad.
                tracing::error!(job_id = %delivery.envelope.job_id, "the decoder panicked on this input");
                JobError::Permanent("the file is corrupt: its audio could not be decoded".into())
            } else {
                JobError::Transient(format!("transcode task: {e}"))
            }
        })??;
        Ok((output, report))
    }
}

/// The success event announcing `mp3`, rebuilt from its metadata with the event id stored there.
fn success_event_of(delivery: &Delivered, job: &JobSubmitted, mp3: &BlobInfo) -> Option<Envelope> {
    let event_id = mp3
        .metadata
        .get(SUCCESS_EVENT_KEY)?
        .as_str()?
        .parse::<uuid::Uuid>()
        .ok()?;
    let number = |key: &str| mp3.metadata.get(key).and_then(|v| v.as_f64());
    let mut envelope = Envelope::new(
        delivery.envelope.job_id,
        SERVICE,
        JobEvent::ConversionSucceeded(ConversionSucceeded {
            owner_id: job.owner_id.clone(),
            owner_email: job.owner_email.clone(),
            original_filename: job.original_filename.clone(),
            mp3_file_id: mp3.id.clone(),
            mp3_size_bytes: mp3.length,
            duration_seconds: number("duration_seconds").unwrap_or(0.0),
            bitrate_kbps: number("bitrate_kbps").unwrap_or(0.0) as u32,
            passthrough: mp3
                .metadata
                .get("passthrough")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }),
    )
    .with_traceparent(delivery.envelope.traceparent.clone());
    envelope.event_id = event_id;
    Some(envelope)
}

/// The id of the failure event of one job submission, the same for every delivery of it: a
/// duplicate delivery re-announces the same failure, which is then stored and mailed once.
/// `5 GiB`, `4 MiB`: sizes of configured budgets, as operators write them.
fn binary_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64).replace(".0 ", " ")
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// The id of the success event of the submission `submitted_event_id`.
fn success_event_id(submitted_event_id: uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::new_v5(&submitted_event_id, b"conversion.succeeded")
}

/// The id of the failure event of a submission the broker gave up (the converter died on every
/// delivery of it), distinct from the other failures' so that it reads as its own cause.
fn abandoned_event_id(submitted_event_id: uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::new_v5(&submitted_event_id, b"conversion.failed/delivery_limit")
}

fn failure_event_id(submitted_event_id: uuid::Uuid, kind: FailureKind) -> uuid::Uuid {
    let name = match kind {
        FailureKind::Unconvertible => "conversion.failed/unconvertible",
        FailureKind::RetriesExhausted => "conversion.failed/retries_exhausted",
    };
    uuid::Uuid::new_v5(&submitted_event_id, name.as_bytes())
}

/// `holiday.mp4` → `holiday`; never empty.
fn filename_stem(name: &str) -> String {
    let stem = std::path::Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().trim().to_owned())
        .unwrap_or_default();
    if stem.is_empty() {
        "audio".to_owned()
    } else {
        stem
    }
}

#[async_trait]
impl EventHandler for JobHandler {
    async fn handle(&self, delivery: &Delivered) -> Outcome {
        let JobEvent::JobSubmitted(job) = &delivery.envelope.event else {
            return Outcome::Done;
        };
        let job_id = delivery.envelope.job_id;
        // A name per delivery: a redelivery of a job still converting is another holder.
        let holder = format!("{}/{}", self.instance, uuid::Uuid::new_v4().simple());
        match self.wait_for_lease(job_id, &holder).await {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::Defer(format!("job {job_id} is being converted elsewhere"));
            }
            Err(JobError::Transient(e) | JobError::Permanent(e)) => return Outcome::Retry(e),
            Err(JobError::Superseded) => return Outcome::Done,
        }
        let converted = self.convert_holding_lease(delivery, job, &holder).await;
        if let Err(e) = self.leases.release(job_id, &holder).await {
            // It expires by itself within one lease time.
            tracing::warn!(%job_id, error = %e, "conversion lease not released");
        }
        match converted {
            Ok(()) => {
                metrics::counter!("jobs_total", "outcome" => "succeeded").increment(1);
                Outcome::Done
            }
            Err(JobError::Permanent(reason)) => {
                metrics::counter!("jobs_total", "outcome" => "failed").increment(1);
                tracing::info!(%job_id, %reason, "job cannot be converted");
                match self
                    .publish_failure(delivery, job, FailureKind::Unconvertible, &reason)
                    .await
                {
                    Ok(()) => Outcome::Done,
                    Err(JobError::Transient(e) | JobError::Permanent(e)) => Outcome::Retry(e),
                    Err(JobError::Superseded) => Outcome::Done,
                }
            }
            Err(JobError::Transient(reason)) => Outcome::Retry(reason),
            Err(JobError::Superseded) => Outcome::Done,
        }
    }

    async fn abandoned(&self, delivery: &Delivered, deliveries: u32) -> Result<(), String> {
        let JobEvent::JobSubmitted(job) = &delivery.envelope.event else {
            return Ok(());
        };
        tracing::error!(job_id = %delivery.envelope.job_id, deliveries, "the converter died on every delivery of this job; failing it");
        metrics::counter!("jobs_total", "outcome" => "abandoned").increment(1);
        let reason = format!(
            "the file could not be processed: the converter stopped {deliveries} times while converting it"
        );
        let event_id = abandoned_event_id(delivery.envelope.event_id);
        match self
            .publish_failure_as(delivery, job, FailureKind::Unconvertible, &reason, event_id)
            .await
        {
            Ok(()) => Ok(()),
            Err(JobError::Transient(e) | JobError::Permanent(e)) => Err(e),
            Err(JobError::Superseded) => Ok(()),
        }
    }

    async fn exhausted(&self, delivery: &Delivered, last_error: &str) {
        let JobEvent::JobSubmitted(job) = &delivery.envelope.event else {
            return;
        };
        tracing::error!(job_id = %delivery.envelope.job_id, %last_error, "conversion retries exhausted");
        metrics::counter!("jobs_total", "outcome" => "retries_exhausted").increment(1);
        let reason = "the conversion service could not process the file after several attempts; please try again later";
        if let Err(JobError::Transient(e) | JobError::Permanent(e)) = self
            .publish_failure(delivery, job, FailureKind::RetriesExhausted, reason)
            .await
        {
            tracing::error!(error = %e, "could not publish the failure event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submissions_failure_id_is_stable_and_distinct_per_kind_and_submission() {
        let submitted = uuid::Uuid::now_v7();
        let unconvertible = failure_event_id(submitted, FailureKind::Unconvertible);
        assert_eq!(
            unconvertible,
            failure_event_id(submitted, FailureKind::Unconvertible)
        );
        assert_ne!(
            unconvertible,
            failure_event_id(submitted, FailureKind::RetriesExhausted)
        );
        assert_ne!(
            unconvertible,
            failure_event_id(uuid::Uuid::now_v7(), FailureKind::Unconvertible)
        );
    }
}
