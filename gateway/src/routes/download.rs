//! MP3 downloads: `GET /download?fid=<mp3 file id>` (the original route) and
//! `GET /jobs/{id}/mp3`. Streamed from blob storage with `Content-Length`, `ETag`,
//! `Content-Disposition` and single byte ranges. Only the owner may download; anyone else gets
//! the same 404 as for a file that does not exist. An MP3 that expired answers 410 Gone.

use super::jobs::owned_job;
use super::{AppState, CurrentUser, parse_job_id};
use crate::error::ApiError;
use crate::filenames::{SafeFilename, content_disposition};
use crate::pipeline::{describe, expires_at};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use contracts::{JobState, JobStatus};
use futures::TryStreamExt;
use platform::blob::{BlobError, BlobInfo, Bucket, parse_id};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    fid: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such file".into())
}

fn storage_error(error: BlobError) -> ApiError {
    match error {
        BlobError::InvalidId(id) => ApiError::BadRequest(format!("{id:?} is not a file id")),
        BlobError::NotFound => not_found(),
        other => ApiError::unavailable("file storage", other),
    }
}

/// `GET /download?fid=`.
pub async fn download_by_file_id(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<DownloadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let fid = query
        .fid
        .ok_or_else(|| ApiError::BadRequest("fid is required: /download?fid=<file id>".into()))?;
    parse_id(&fid).map_err(storage_error)?;
    let Some(info) = state
        .blobs
        .info(Bucket::Mp3s, &fid)
        .await
        .map_err(storage_error)?
    else {
        return Err(missing_mp3(&state, &user, &fid).await);
    };
    if owner_of(&info) != Some(user.id.as_str()) {
        return Err(not_found());
    }
    serve(&state, info, &headers).await
}

/// `GET /jobs/{id}/mp3`.
pub async fn download_job_mp3(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&id)?;
    let job = owned_job(&state, &user, job_id).await?;
    match job.status {
        JobStatus::Succeeded => {}
        JobStatus::Expired => return Err(expired(&state, &job)),
        JobStatus::Deleted => return Err(not_found()),
        JobStatus::Failed => {
            return Err(ApiError::Conflict(format!(
                "the conversion failed: {}",
                job.failure_reason.as_deref().unwrap_or("unknown reason")
            )));
        }
        JobStatus::Submitted | JobStatus::Converting => {
            return Err(ApiError::Conflict(format!(
                "the MP3 is not ready yet ({}% converted)",
                job.progress
            )));
        }
    }
    let info = match &job.mp3_file_id {
        Some(file_id) => state.blobs.info(Bucket::Mp3s, file_id).await,
        None => {
            state
                .blobs
                .find_by_metadata(Bucket::Mp3s, "job_id", &job_id.to_string())
                .await
        }
    }
    .map_err(storage_error)?
    .ok_or_else(not_found)?;
    // The job is the caller's; the file must be too (defence in depth).
    if owner_of(&info) != Some(user.id.as_str()) {
        return Err(not_found());
    }
    serve(&state, info, &headers).await
}

/// 410 for the MP3 of an expired job, saying when and why it went.
fn expired(state: &AppState, job: &JobState) -> ApiError {
    let when = job
        .finished_at
        .and_then(|finished| expires_at(finished, state.retention))
        .map(|at| {
            format!(
                " on {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    ApiError::Gone(format!(
        "this MP3 expired{when} and was deleted: files are kept for {} after conversion",
        describe(state.retention)
    ))
}

/// Why the MP3 with this id is not there: 410 when it belonged to the caller's expired job,
/// else the usual 404.
async fn missing_mp3(state: &AppState, user: &CurrentUser, file_id: &str) -> ApiError {
    let job_id = match state.ledger.job_of_mp3(file_id).await {
        Ok(Some(job_id)) => job_id,
        Ok(None) => return not_found(),
        Err(e) => return ApiError::unavailable("job store", e),
    };
    match owned_job(state, user, job_id).await {
        Ok(job) if job.status == JobStatus::Expired => expired(state, &job),
        _ => not_found(),
    }
}

fn owner_of(info: &BlobInfo) -> Option<&str> {
    info.metadata.get("owner_id").and_then(|v| v.as_str())
}

/// The download name: the original name with `.mp3` (`holiday.mp4` → `holiday.mp3`).
fn download_name(info: &BlobInfo) -> SafeFilename {
    let original = info
        .metadata
        .get("original_filename")
        .and_then(|v| v.as_str())
        .filter(|name| !name.is_empty())
        .unwrap_or(&info.filename);
    SafeFilename::parse(original).with_mp3_extension()
}

/// What to send of a file of `length` bytes given the request's `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Whole,
    /// Bytes `start..=end`.
    Partial {
        start: u64,
        end: u64,
    },
}

/// Resolves a `Range` header against the file length. A syntactically invalid header is
/// ignored (RFC 9110 §14.2); one that no byte satisfies is a 416; several ranges are served
/// whole rather than as multipart/byteranges.
pub fn select(range: Option<&str>, length: u64) -> Result<Selection, ApiError> {
    let Some(range) = range else {
        return Ok(Selection::Whole);
    };
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        return Ok(Selection::Whole);
    };
    let ranges = parsed
        .validate(length)
        .map_err(|_| ApiError::RangeNotSatisfiable { length })?;
    match ranges.as_slice() {
        [single] => Ok(Selection::Partial {
            start: *single.start(),
            end: *single.end(),
        }),
        _ => Ok(Selection::Whole),
    }
}

async fn serve(
    state: &AppState,
    info: BlobInfo,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    // GridFS files never change once written: the id is a strong validator.
    let etag = format!("\"{}\"", info.id);
    let matches_etag = |name: header::HeaderName| {
        request
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|tag| {
                    let tag = tag.trim();
                    tag == "*" || tag.trim_start_matches("W/") == etag
                })
            })
    };
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, max-age=0, must-revalidate");
    if matches_etag(header::IF_NONE_MATCH) {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.into()));
    }
    // A Range for another version of the file (If-Range mismatch) gets the whole file.
    let range_applies = match request.get(header::IF_RANGE) {
        None => true,
        Some(_) => matches_etag(header::IF_RANGE),
    };
    let range = request
        .get(header::RANGE)
        .filter(|_| range_applies)
        .and_then(|v| v.to_str().ok());
    let selection = select(range, info.length)?;
    let (status, read, content_length) = match selection {
        Selection::Whole => (StatusCode::OK, None, info.length),
        Selection::Partial { start, end } => {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{}", info.length),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                Some((start, end + 1)),
                end + 1 - start,
            )
        }
    };
    let stream = state
        .blobs
        .read(Bucket::Mp3s, &info.id, read)
        .await
        .map_err(storage_error)?;
    let disposition = HeaderValue::from_str(&content_disposition(&download_name(&info)))
        .map_err(|e| ApiError::Internal(e.into()))?;
    response
        .status(status)
        .header(header::CONTENT_TYPE, "audio/mpeg")
        .header(header::CONTENT_LENGTH, content_length)
        .header(header::CONTENT_DISPOSITION, disposition)
        .body(Body::from_stream(stream.map_err(|e| {
            tracing::warn!(error = %e, "MP3 stream broke off");
            std::io::Error::other(e)
        })))
        .map_err(|e| ApiError::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_or_invalid_range_means_the_whole_file() {
        assert_eq!(select(None, 100).unwrap(), Selection::Whole);
        assert_eq!(select(Some("pages=1-2"), 100).unwrap(), Selection::Whole);
        assert_eq!(select(Some("bytes=abc"), 100).unwrap(), Selection::Whole);
    }

    #[test]
    fn single_ranges_resolve_against_the_length() {
        assert_eq!(
            select(Some("bytes=0-9"), 100).unwrap(),
            Selection::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            select(Some("bytes=90-"), 100).unwrap(),
            Selection::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            select(Some("bytes=-10"), 100).unwrap(),
            Selection::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            select(Some("bytes=50-500"), 100).unwrap(),
            Selection::Partial { start: 50, end: 99 }
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert!(matches!(
            select(Some("bytes=100-"), 100),
            Err(ApiError::RangeNotSatisfiable { length: 100 })
        ));
        assert!(matches!(
            select(Some("bytes=200-300"), 100),
            Err(ApiError::RangeNotSatisfiable { .. })
        ));
    }

    #[test]
    fn several_ranges_are_served_whole() {
        assert_eq!(
            select(Some("bytes=0-1,5-6"), 100).unwrap(),
            Selection::Whole
        );
    }
}
