//! `/jobs`: the caller's jobs, each one's state (the fold of its events), a live event stream,
//! and deletion. A job of someone else is answered exactly like a job that does not exist.
//! A finished job shows when it expires (`expires_at` = finished + `RETENTION`).

use super::{AppState, CurrentUser, parse_job_id};
use crate::error::ApiError;
use crate::observability;
use crate::pipeline::{DeleteReason, expires_at};
use crate::store::JobPage;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use contracts::events::{FailureKind, JobDeleted, JobEvent};
use contracts::job::NotificationState;
use contracts::{Envelope, JobState, JobStatus};
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The public view of a job, built field by field from its fold: a field of the internal
/// state reaches clients only when it is named here (`owner_id` is not: the caller is the owner).
fn view(state: &AppState, job: JobState) -> api::JobView {
    let mut links = state.job_links(job.job_id);
    if job.status != JobStatus::Succeeded {
        links.download = None;
    }
    let expires_at = match job.status {
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Expired => job
            .finished_at
            .and_then(|finished| expires_at(finished, state.retention)),
        JobStatus::Submitted | JobStatus::Converting | JobStatus::Deleted => None,
    };
    api::JobView {
        job_id: job.job_id.to_string(),
        status: public_status(job.status),
        original_filename: job.original_filename,
        video_file_id: job.video_file_id,
        quality: job.quality,
        progress: job.progress,
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        updated_at: job.updated_at,
        attempts: job.attempts,
        resubmissions: job.resubmissions,
        failure_reason: job.failure_reason,
        failure_kind: job.failure_kind.map(|kind| match kind {
            FailureKind::Unconvertible => api::FailureKind::Unconvertible,
            FailureKind::RetriesExhausted => api::FailureKind::RetriesExhausted,
        }),
        mp3_file_id: job.mp3_file_id,
        mp3_size_bytes: job.mp3_size_bytes,
        duration_seconds: job.duration_seconds,
        bitrate_kbps: job.bitrate_kbps,
        notification: job.notification.map(|outcome| match outcome {
            NotificationState::Sent { at } => api::Notification {
                status: api::NotificationStatus::Sent,
                at: Some(at),
                reason: None,
            },
            NotificationState::Failed { at, reason } => api::Notification {
                status: api::NotificationStatus::Failed,
                at: Some(at),
                reason: Some(reason),
            },
        }),
        quality_label: job.quality.map(|q| q.to_string()),
        expires_at,
        links,
    }
}

/// Exhaustive on purpose: a new internal status must be given a public name before it builds.
fn public_status(status: JobStatus) -> api::JobStatus {
    match status {
        JobStatus::Submitted => api::JobStatus::Submitted,
        JobStatus::Converting => api::JobStatus::Converting,
        JobStatus::Succeeded => api::JobStatus::Succeeded,
        JobStatus::Failed => api::JobStatus::Failed,
        JobStatus::Deleted => api::JobStatus::Deleted,
        JobStatus::Expired => api::JobStatus::Expired,
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such job".into())
}

fn store_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("job store", e)
}

/// The job's state when it exists and belongs to `user`; 404 otherwise.
pub async fn owned_job(
    state: &AppState,
    user: &CurrentUser,
    job_id: Uuid,
) -> Result<JobState, ApiError> {
    let job = state
        .store
        .job_state(job_id)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(not_found)?;
    if job.owner_id.as_deref() != Some(user.id.as_str()) {
        return Err(not_found());
    }
    Ok(job)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    before: Option<String>,
}

/// `GET /jobs?limit=&before=`: the caller's jobs, newest first.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<api::JobList>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let before = query.before.as_deref().map(parse_job_id).transpose()?;
    let ids = state
        .store
        .jobs_of_owner(&user.id, JobPage { limit, before })
        .await
        .map_err(store_unavailable)?;
    let events = state
        .store
        .events_of_jobs(&ids)
        .await
        .map_err(store_unavailable)?;
    let jobs: Vec<api::JobView> = ids
        .iter()
        .filter_map(|id| JobState::fold(*id, &events))
        .map(|job| view(&state, job))
        .collect();
    let next = (ids.len() == limit as usize)
        .then(|| ids.last())
        .flatten()
        .map(|last| state.link(&format!("/jobs?limit={limit}&before={last}")));
    Ok(Json(api::JobList { jobs, next }))
}

/// `GET /jobs/{id}`.
pub async fn status(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<api::JobView>, ApiError> {
    let job_id = parse_job_id(&id)?;
    let job = owned_job(&state, &user, job_id).await?;
    Ok(Json(view(&state, job)))
}

/// `DELETE /jobs/{id}`: removes the video and the MP3 and records `JobDeleted`.
///
/// A conversion may still be running: an MP3 stored before `JobDeleted` is in the store is
/// found by the second pass below, one stored after it by the event-store consumer when the
/// success event arrives (it sees the job deleted), so none outlives its job.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job_id = parse_job_id(&id)?;
    let job = owned_job(&state, &user, job_id).await?;
    let files_unavailable = |e| ApiError::unavailable("file storage", e);
    state
        .janitor
        .delete_videos(
            job_id,
            &[job.video_file_id.as_deref()],
            DeleteReason::Deleted,
        )
        .await
        .map_err(files_unavailable)?;
    state
        .janitor
        .delete_mp3s(job_id, &[job.mp3_file_id.as_deref()], DeleteReason::Deleted)
        .await
        .map_err(files_unavailable)?;
    if job.status != JobStatus::Deleted {
        let event = Envelope::new(
            job_id,
            "gateway",
            JobEvent::JobDeleted(JobDeleted {
                owner_id: user.id.clone(),
            }),
        )
        .with_traceparent(Some(observability::downstream_traceparent()));
        state
            .publisher
            .publish(&event)
            .await
            .map_err(store_unavailable)?;
        tracing::info!(%job_id, owner_id = %user.id, "job deleted");
        state
            .janitor
            .delete_mp3s(job_id, &[], DeleteReason::Deleted)
            .await
            .map_err(files_unavailable)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /jobs/{id}/events`: Server-Sent Events, one per job event (with the job's state after
/// it), live until the job reaches a terminal state; then the stream ends. Each open stream holds
/// a slot of `SSE_STREAMS_PER_USER` (429 beyond) and `SSE_STREAMS_MAX` (503 beyond) until it ends.
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&id)?;
    // Subscribe before the first read so no wake-up between the two is lost.
    let wake = state.updates.subscribe();
    owned_job(&state, &user, job_id).await?;
    let slot = state.streams.admit(&user.id)?;
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok());
    let (sender, receiver) = mpsc::channel(32);
    let background = state.background.clone();
    background.spawn(async move {
        stream_job(state, job_id, resume_after, wake, sender).await;
        drop(slot);
    });
    Ok(Sse::new(ReceiverStream::new(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Feeds one SSE connection until the job is terminal, the client leaves or the server stops.
/// The store is read through the job's shared [`JobFeed`](super::job_feeds::JobFeed).
async fn stream_job(
    state: AppState,
    job_id: Uuid,
    resume_after: Option<Uuid>,
    mut wake: broadcast::Receiver<Uuid>,
    sender: mpsc::Sender<Result<Event, Infallible>>,
) {
    let feed = state.feeds.feed(job_id);
    let mut sent: HashSet<Uuid> = HashSet::new();
    let mut resume_after = resume_after;
    // Subscribed to wake-ups before this point: a read that starts now misses nothing.
    let mut fresh_since = Instant::now();
    loop {
        let events = match feed.events(state.store.as_ref(), fresh_since).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "job stream cannot read the store");
                let body = api::ErrorBody::new(
                    "service_unavailable",
                    "the job store is unavailable, reconnect later",
                );
                let event = Event::default()
                    .event(api::events::ERROR)
                    .json_data(body)
                    .expect("an error body serialises");
                let _ = sender.send(Ok(event)).await;
                return;
            }
        };
        // A reconnecting client has seen everything up to its Last-Event-ID.
        if let Some(last) = resume_after.take()
            && let Some(position) = events.iter().position(|e| e.event_id == last)
        {
            sent.extend(events[..=position].iter().map(|e| e.event_id));
        }
        let mut job = JobState::empty(job_id);
        for event in events.iter() {
            job.apply(event);
            if !sent.insert(event.event_id) {
                continue;
            }
            let message = api::events::JobEventMessage {
                event: serde_json::to_value(event).expect("events serialise"),
                job: view(&state, job.clone()),
            };
            let sse = Event::default()
                .event(event.event_type())
                .id(event.event_id.to_string())
                .json_data(message)
                .expect("a job event message serialises");
            if sender.send(Ok(sse)).await.is_err() {
                return;
            }
        }
        if !events.is_empty() && job.status.is_terminal() {
            return;
        }
        // Sleep until this process stores an event of the job (then the next read must start
        // after the wake-up), the poll interval passes (the event may have been consumed by
        // another replica; a read another stream of the job started in the last half interval
        // will do), the client leaves or we shut down.
        let poll = tokio::time::sleep(state.sse_poll_interval);
        tokio::pin!(poll);
        fresh_since = loop {
            tokio::select! {
                _ = &mut poll => {
                    let now = Instant::now();
                    break now.checked_sub(state.sse_poll_interval / 2).unwrap_or(now);
                }
                _ = sender.closed() => return,
                _ = state.shutdown.cancelled() => return,
                woken = wake.recv() => match woken {
                    Ok(id) if id == job_id => break Instant::now(),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => break Instant::now(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        };
    }
}
