//! `POST /upload`: a video streamed into blob storage as it arrives, then a `JobSubmitted` event.
//!
//! Memory stays flat whatever the size: each multipart chunk is written to the blob store before
//! the next is read. A file over `MAX_UPLOAD_BYTES`, a second file part or a malformed body aborts
//! the stored upload, so nothing of a refused request stays behind. The multipart parser reads
//! the body through a [`FormGuard`], which bounds what it can be made to buffer (part headers,
//! part count, the whole body, chunked or not) and answers a stalled body with 408.
//!
//! Each user has at most `MAX_CONCURRENT_UPLOADS` uploads in progress and may start
//! `UPLOADS_PER_MINUTE`; the `JobSubmitted` event carries the request's trace context.

use super::form_guard::{
    self, FormGuard, MAX_BOUNDARY_BYTES, MAX_PART_HEADER_BYTES, MAX_PARTS, Refusal,
};
use super::{AppState, CurrentUser};
use crate::error::ApiError;
use crate::filenames::SafeFilename;
use crate::observability;
use api::quality::{BITRATE_PARAM, QUALITY_PARAM};
use axum::Json;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contracts::events::{JobSubmitted, Quality};
use contracts::{Envelope, JobEvent};
use percent_encoding::percent_decode;
use platform::blob::{BlobError, BlobUpload, Bucket, Metadata};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Room for multipart boundaries, part headers and the small option fields around the file.
const MULTIPART_OVERHEAD: u64 = 1024 * 1024;
/// Largest accepted option field (`quality`, `bitrate`) and total of ignored fields.
const MAX_OPTION_FIELD_BYTES: usize = 64;
const MAX_IGNORED_FIELD_BYTES: u64 = 64 * 1024;
/// After refusing an upload, read (and discard, after answering) this long at most so the client
/// gets the answer instead of a connection reset while it is still sending.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    quality: Option<String>,
    bitrate: Option<String>,
}

/// The requested quality, from the query string and/or form fields.
#[derive(Debug, Default)]
struct QualityChoice {
    vbr: Option<String>,
    cbr: Option<String>,
}

impl QualityChoice {
    fn set(&mut self, field: &str, value: String) -> Result<(), ApiError> {
        let slot = match field {
            QUALITY_PARAM => &mut self.vbr,
            _ => &mut self.cbr,
        };
        if slot.is_some() {
            return Err(ApiError::Unprocessable(format!(
                "{field} was given more than once"
            )));
        }
        *slot = Some(value);
        Ok(())
    }

    /// `None`: no preference (the converter's default, V2). The rule is the API contract's,
    /// shared with the CLI so both refuse the same values.
    fn resolve(&self) -> Result<Option<Quality>, ApiError> {
        Quality::from_request(self.vbr.as_deref(), self.cbr.as_deref())
            .map_err(|e| ApiError::Unprocessable(e.0))
    }
}

/// The file part being (or having been) written.
struct PendingFile {
    upload: Box<dyn BlobUpload>,
    filename: SafeFilename,
    content_type: Option<String>,
    size: u64,
}

#[derive(Default)]
struct Received {
    file: Option<PendingFile>,
    quality: QualityChoice,
    ignored_bytes: u64,
}

/// The answer to a multipart error: the guard's reason when it stopped the body, else the
/// parser's.
fn multipart_error(error: MultipartError, guard: &FormGuard, limit: u64) -> ApiError {
    if let Some(refusal) = guard.refusal() {
        return refusal_error(refusal, limit);
    }
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BadRequest("the form is too large".into())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", error.body_text()))
    }
}

fn refusal_error(refusal: Refusal, limit: u64) -> ApiError {
    match refusal {
        Refusal::PartHeaderTooLarge => ApiError::FormRefused {
            code: "part_header_too_large",
            message: format!(
                "a part header (or the preamble) of the form is longer than {MAX_PART_HEADER_BYTES} bytes"
            ),
        },
        Refusal::TooManyParts => ApiError::FormRefused {
            code: "too_many_parts",
            message: format!("the form has more than {MAX_PARTS} parts"),
        },
        Refusal::BodyTooLarge => ApiError::PayloadTooLarge { limit },
        Refusal::MalformedBoundary => {
            ApiError::BadRequest("malformed multipart body: a boundary line is malformed".into())
        }
        Refusal::BodyTimedOut => ApiError::RequestTimeout(
            "the request body stalled: nothing arrived for too long".into(),
        ),
    }
}

/// Reads and discards the rest of a refused body in the background, within limits, so the answer
/// goes out at once and the client reads it instead of a connection reset while it still sends.
fn linger(state: &AppState, guard: &FormGuard) {
    let guard = guard.clone();
    let shutdown = state.shutdown.clone();
    state.background.spawn(async move {
        tokio::select! {
            _ = guard.drain(DRAIN_LIMIT, DRAIN_MAX_BYTES) => {}
            _ = shutdown.cancelled() => {}
        }
    });
}

/// The multipart parser behind a [`FormGuard`] that bounds what it may buffer.
async fn guarded_multipart(
    request: Request,
    max_total: u64,
) -> Result<(Multipart, FormGuard), ApiError> {
    let not_multipart = |detail: String| {
        ApiError::BadRequest(format!(
            "expected a multipart/form-data body with one file part: {detail}"
        ))
    };
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(form_guard::boundary_of);
    let Some(boundary) = boundary else {
        let detail = match Multipart::from_request(request, &()).await {
            Err(rejection) => rejection.body_text(),
            Ok(_) => "no multipart boundary".into(),
        };
        return Err(not_multipart(detail));
    };
    if boundary.len() > MAX_BOUNDARY_BYTES {
        return Err(not_multipart(format!(
            "the boundary is longer than {MAX_BOUNDARY_BYTES} bytes"
        )));
    }
    let (parts, body) = request.into_parts();
    let (guard, body) = FormGuard::new(body, &boundary, max_total);
    let multipart = Multipart::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|e| not_multipart(e.body_text()))?;
    Ok((multipart, guard))
}

fn blob_error(error: BlobError) -> ApiError {
    ApiError::unavailable("file storage", error)
}

pub async fn upload(
    state: State<AppState>,
    user: CurrentUser,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let result = accept(state, user, query, headers, request).await;
    observability::upload_outcome(match &result {
        Ok(_) => "accepted",
        Err(ApiError::PayloadTooLarge { .. }) => "too_large",
        Err(ApiError::RateLimited { .. }) => "rate_limited",
        Err(ApiError::Unavailable { .. } | ApiError::Internal(_)) => "unavailable",
        Err(_) => "rejected",
    });
    result
}

async fn accept(
    State(state): State<AppState>,
    user: CurrentUser,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let mut received = Received::default();
    if let Some(quality) = query.quality {
        received.quality.set(QUALITY_PARAM, quality)?;
    }
    if let Some(bitrate) = query.bitrate {
        received.quality.set(BITRATE_PARAM, bitrate)?;
    }
    received.quality.resolve()?;
    let (mut multipart, guard) =
        guarded_multipart(request, state.max_upload_bytes + MULTIPART_OVERHEAD).await?;
    // Held until the response is ready: the upload's slot among the user's concurrent ones.
    let _slot = match state.limits.admit_upload(&user.id) {
        Ok(slot) => slot,
        Err(refused) => {
            linger(&state, &guard);
            return Err(refused);
        }
    };
    // A declared length far over the limit is refused before a byte is stored (what is drained
    // is discarded unread).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_upload_bytes + MULTIPART_OVERHEAD) {
        linger(&state, &guard);
        return Err(ApiError::PayloadTooLarge {
            limit: state.max_upload_bytes,
        });
    }

    let job_id = Uuid::now_v7();
    let receiving = receive(&state, &user, job_id, &mut multipart, &guard, &mut received).await;
    if let Err(error) = receiving {
        if let Some(pending) = received.file.take()
            && let Err(e) = pending.upload.abort().await
        {
            tracing::warn!(error = %e, "could not discard a refused upload");
        }
        if matches!(
            error,
            ApiError::PayloadTooLarge { .. }
                | ApiError::BadRequest(_)
                | ApiError::FormRefused { .. }
                | ApiError::Unprocessable(_)
        ) {
            linger(&state, &guard);
        }
        return Err(error);
    }

    let quality = match received.quality.resolve() {
        Ok(quality) => quality,
        Err(error) => {
            if let Some(pending) = received.file.take() {
                let _ = pending.upload.abort().await;
            }
            return Err(error);
        }
    };
    let Some(pending) = received.file.take() else {
        return Err(ApiError::BadRequest(
            "no file part: send the video as a multipart file field, e.g. -F 'file=@video.mp4'"
                .into(),
        ));
    };
    if pending.size == 0 {
        let _ = pending.upload.abort().await;
        return Err(ApiError::BadRequest("the file is empty".into()));
    }
    let (filename, content_type, size) = (pending.filename, pending.content_type, pending.size);
    let stored = pending.upload.finish().await.map_err(blob_error)?;

    let event = Envelope::new(
        job_id,
        "gateway",
        JobEvent::JobSubmitted(JobSubmitted {
            owner_id: user.id.clone(),
            owner_email: user.email.clone(),
            video_file_id: stored.id.clone(),
            original_filename: filename.to_string(),
            content_type: content_type.clone(),
            size_bytes: size,
            quality,
        }),
    )
    .with_traceparent(Some(observability::downstream_traceparent()));
    if let Err(e) = state.publisher.publish(&event).await {
        // Without the outbox entry nobody would ever convert the file: refuse and clean up.
        if let Err(cleanup) = state.blobs.delete(Bucket::Videos, &stored.id).await {
            tracing::warn!(error = %cleanup, video_file_id = %stored.id, "could not remove an unaccepted upload");
        }
        return Err(ApiError::unavailable("job store", e));
    }
    observability::upload_bytes(size);
    tracing::info!(%job_id, owner_id = %user.id, size, "video accepted");

    let status_link = state.link(&format!("/jobs/{job_id}"));
    let body = api::UploadAccepted {
        job_id: job_id.to_string(),
        video_file_id: stored.id,
        status: api::JobStatus::Submitted,
        original_filename: filename.to_string(),
        size_bytes: size,
        content_type,
        quality: quality.map(|q| q.to_string()),
        links: state.job_links(job_id),
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_link)],
        Json(body),
    )
        .into_response())
}

/// Reads every part: the one file streams into the blob store, options are collected.
async fn receive(
    state: &AppState,
    user: &CurrentUser,
    job_id: Uuid,
    multipart: &mut Multipart,
    guard: &FormGuard,
    received: &mut Received,
) -> Result<(), ApiError> {
    let limit = state.max_upload_bytes;
    let multipart_error = |error| multipart_error(error, guard, limit);
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if let Some(filename) = file_name(&field) {
            if received.file.is_some() {
                return Err(ApiError::BadRequest(
                    "send exactly one file part per upload".into(),
                ));
            }
            let content_type = field.content_type().map(str::to_owned);
            let mut metadata = Metadata::new();
            metadata.insert("owner_id".into(), json!(user.id));
            metadata.insert("job_id".into(), json!(job_id.to_string()));
            metadata.insert("original_filename".into(), json!(filename.as_str()));
            metadata.insert("content_type".into(), json!(content_type));
            let upload = state
                .blobs
                .create(Bucket::Videos, filename.as_str(), metadata)
                .await
                .map_err(blob_error)?;
            let pending = received.file.insert(PendingFile {
                upload,
                filename,
                content_type,
                size: 0,
            });
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                pending.size += chunk.len() as u64;
                if pending.size > state.max_upload_bytes {
                    return Err(ApiError::PayloadTooLarge {
                        limit: state.max_upload_bytes,
                    });
                }
                pending.upload.write(&chunk).await.map_err(blob_error)?;
            }
            continue;
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == QUALITY_PARAM || name == BITRATE_PARAM {
            let value = small_text(&mut field, MAX_OPTION_FIELD_BYTES, &name)
                .await
                .map_err(|e| e.into_api_error(guard, limit))?;
            received.quality.set(&name, value)?;
        } else {
            // Unknown fields are tolerated (clients add their own), but only small ones.
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                received.ignored_bytes += chunk.len() as u64;
                if received.ignored_bytes > MAX_IGNORED_FIELD_BYTES {
                    return Err(ApiError::BadRequest(
                        "form fields besides the file must be small".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Why a small text field could not be read.
enum TextError {
    Multipart(MultipartError),
    Refused(ApiError),
}

impl TextError {
    fn into_api_error(self, guard: &FormGuard, limit: u64) -> ApiError {
        match self {
            TextError::Multipart(error) => multipart_error(error, guard, limit),
            TextError::Refused(error) => error,
        }
    }
}

async fn small_text(field: &mut Field<'_>, limit: usize, name: &str) -> Result<String, TextError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(TextError::Multipart)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            return Err(TextError::Refused(ApiError::Unprocessable(format!(
                "{name} is too long"
            ))));
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| TextError::Refused(ApiError::Unprocessable(format!("{name} is not text"))))
}

/// The file name of a file part, or `None` for a plain form field. Read from the raw
/// `Content-Disposition` so `filename*` (RFC 5987) and names that are not valid UTF-8 (which
/// the multipart parser drops) still mark a file part.
fn file_name(field: &Field<'_>) -> Option<SafeFilename> {
    let raw = field.headers().get(header::CONTENT_DISPOSITION)?.as_bytes();
    filename_from_disposition(raw)
}

fn filename_from_disposition(raw: &[u8]) -> Option<SafeFilename> {
    let mut extended = None;
    let mut plain = None;
    for parameter in split_parameters(raw).into_iter().skip(1) {
        let Some(eq) = parameter.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = parameter[..eq].trim_ascii().to_ascii_lowercase();
        let value = parameter[eq + 1..].trim_ascii();
        match key.as_slice() {
            b"filename*" => {
                // charset'language'percent-encoded
                let encoded = value.splitn(3, |&b| b == b'\'').nth(2).unwrap_or(value);
                let decoded: Vec<u8> = percent_decode(encoded).collect();
                extended = Some(SafeFilename::parse_bytes(&decoded));
            }
            b"filename" => plain = Some(SafeFilename::parse_bytes(&unquote(value))),
            _ => {}
        }
    }
    extended.or(plain)
}

/// Splits a header value at `;` outside quoted strings.
fn split_parameters(raw: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in raw.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&raw[start..]);
    parts
}

fn unquote(value: &[u8]) -> Vec<u8> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return value.to_vec();
    };
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &[u8]) -> Option<String> {
        filename_from_disposition(raw).map(|n| n.to_string())
    }

    #[test]
    fn file_parts_are_recognised_by_their_filename_parameter() {
        assert_eq!(
            name(br#"form-data; name="file"; filename="clip.mp4""#).as_deref(),
            Some("clip.mp4")
        );
        assert_eq!(
            name(br#"form-data; name="video"; filename=clip.mp4"#).as_deref(),
            Some("clip.mp4")
        );
        assert_eq!(name(br#"form-data; name="quality""#), None);
        assert_eq!(
            name(br#"form-data; name="file"; filename="""#).as_deref(),
            Some("upload")
        );
    }

    #[test]
    fn quoted_semicolons_escapes_and_extended_names_are_understood() {
        assert_eq!(
            name(br#"form-data; name="f"; filename="a;b \"c\".mp4""#).as_deref(),
            Some("a;b _c_.mp4")
        );
        assert_eq!(
            name(b"form-data; name=\"f\"; filename=\"x.mp4\"; filename*=UTF-8''%C3%A9t%C3%A9.mp4")
                .as_deref(),
            Some("été.mp4")
        );
    }

    #[test]
    fn hostile_names_are_sanitised() {
        assert_eq!(
            name(br#"form-data; name="f"; filename="../../etc/passwd""#).as_deref(),
            Some("passwd")
        );
        assert_eq!(
            name(b"form-data; name=\"f\"; filename=\"caf\xe9.mp4\"").as_deref(),
            Some("caf\u{fffd}.mp4")
        );
    }

    #[test]
    fn quality_is_one_of_vbr_or_cbr() {
        let mut choice = QualityChoice::default();
        assert_eq!(choice.resolve().unwrap(), None);
        choice.set("quality", "v0".into()).unwrap();
        assert_eq!(choice.resolve().unwrap(), Some(Quality::Vbr { level: 0 }));
        assert!(choice.set("quality", "V3".into()).is_err());
        choice.set("bitrate", "192".into()).unwrap();
        assert!(matches!(choice.resolve(), Err(ApiError::Unprocessable(_))));

        let mut cbr = QualityChoice::default();
        cbr.set("bitrate", "192".into()).unwrap();
        assert_eq!(cbr.resolve().unwrap(), Some(Quality::Cbr { kbps: 192 }));
        let mut bad = QualityChoice::default();
        bad.set("bitrate", "500".into()).unwrap();
        assert!(matches!(bad.resolve(), Err(ApiError::Unprocessable(_))));
    }
}
