//! The REST API client: one method per endpoint, typed answers, and one error type that keeps
//! the server's `{error, message}` so the user sees the server's own reason.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{self, HeaderMap};
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::io::ReaderStream;

/// Silence longer than this on an open connection means the server is gone. SSE streams get a
/// keep-alive every 15 s, so this never cuts a healthy stream.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const UPLOAD_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; `message` is its explanation for humans.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        /// The server's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("the connection to the server failed: {0}")]
    Transport(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid server URL (expected e.g. http://127.0.0.1:8080)")]
    InvalidServer(String),
}

impl ClientError {
    /// The bearer token was refused: logging in again may help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Api { status, code, .. }
            if *status == StatusCode::UNAUTHORIZED && code != "invalid_credentials")
    }

    /// Worth trying again later (network trouble, overloaded or restarting server).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// How long the server asks us to wait before trying again (429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api {
                status,
                retry_after: Some(seconds),
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS => Some(Duration::from_secs(*seconds)),
            _ => None,
        }
    }

    /// The server's machine-readable code, or a local one.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Transport(_) => "transport_error",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::File { .. } => "file_error",
            ClientError::InvalidServer(_) => "invalid_server",
        }
    }

    fn file(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::File {
            path: path.to_owned(),
            source,
        }
    }
}

/// The error with its causes, which reqwest keeps in the source chain.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A token from `POST /login`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginToken {
    pub token: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expires_at: Option<DateTime<Utc>>,
}

fn lenient_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<String> = Option::deserialize(deserializer)?;
    Ok(raw.and_then(|s| DateTime::parse_from_rfc3339(&s).ok().map(|t| t.to_utc())))
}

/// A job as the server shows it. `raw` keeps every field for `--json`; the typed fields are
/// the ones the CLI acts on.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub progress: u8,
    pub original_filename: Option<String>,
    pub failure_reason: Option<String>,
    pub mp3_size_bytes: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub bitrate_kbps: Option<u32>,
    pub quality_label: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub raw: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Submitted,
    Converting,
    Succeeded,
    Failed,
    Deleted,
    Expired,
    /// A status this CLI does not know yet (a newer server).
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Submitted | JobStatus::Converting)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitted => "submitted",
            JobStatus::Converting => "converting",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Deleted => "deleted",
            JobStatus::Expired => "expired",
            JobStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Job {
    pub fn from_value(raw: Value) -> Result<Self, ClientError> {
        #[derive(Deserialize)]
        struct Fields {
            job_id: String,
            status: JobStatus,
            #[serde(default)]
            progress: u8,
            original_filename: Option<String>,
            failure_reason: Option<String>,
            mp3_size_bytes: Option<u64>,
            duration_seconds: Option<f64>,
            bitrate_kbps: Option<u32>,
            quality_label: Option<String>,
            #[serde(default, deserialize_with = "lenient_time")]
            submitted_at: Option<DateTime<Utc>>,
        }
        let fields: Fields = serde_json::from_value(raw.clone())
            .map_err(|e| ClientError::Protocol(format!("malformed job: {e}")))?;
        Ok(Job {
            id: fields.job_id,
            status: fields.status,
            progress: fields.progress.min(100),
            original_filename: fields.original_filename,
            failure_reason: fields.failure_reason,
            mp3_size_bytes: fields.mp3_size_bytes,
            duration_seconds: fields.duration_seconds,
            bitrate_kbps: fields.bitrate_kbps,
            quality_label: fields.quality_label,
            submitted_at: fields.submitted_at,
            raw,
        })
    }
}

/// One page of `GET /jobs`.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Whether an older page exists.
    pub has_more: bool,
}

/// The 202 answer to an upload.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job_id: String,
    pub raw: Value,
}

/// The requested MP3 encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quality {
    /// `V0`..`V9`.
    Vbr(String),
    /// kbit/s.
    Cbr(u16),
}

/// What the job's event stream reports.
#[derive(Debug)]
pub enum StreamItem {
    /// An event with the job's state after it.
    Update { event_id: String, job: Box<Job> },
    /// The server cannot continue the stream for now (e.g. its store is away): reconnect.
    ServerError(String),
}

/// An MP3 download whose body has not been read yet.
pub struct Download {
    response: Response,
    /// The file name the server suggests (already reduced to a bare, safe name).
    pub filename: Option<String>,
    pub length: Option<u64>,
}

impl Download {
    /// Streams the body into `path` (through a temporary file beside it, renamed at the end,
    /// so an interrupted download never leaves a truncated MP3). Returns the size.
    pub async fn save(self, path: &Path, on_bytes: impl Fn(u64)) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let partial = partial_path(path);
        let result = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(ClientError::file(&partial))?;
            let mut stream = self.response.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ClientError::Transport(describe(&e)))?;
                file.write_all(&chunk)
                    .await
                    .map_err(ClientError::file(&partial))?;
                written += chunk.len() as u64;
                on_bytes(chunk.len() as u64);
            }
            if let Some(expected) = self.length
                && expected != written
            {
                return Err(ClientError::Transport(format!(
                    "the download stopped after {written} of {expected} bytes"
                )));
            }
            file.flush().await.map_err(ClientError::file(&partial))?;
            file.sync_all().await.map_err(ClientError::file(&partial))?;
            tokio::fs::rename(&partial, path)
                .await
                .map_err(ClientError::file(path))?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// A client for one server.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
}

impl ApiClient {
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let base = normalize_server(server)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("mp3-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Transport(describe(&e)))?;
        Ok(Self { http, base })
    }

    /// The server's base URL as the user would write it (no trailing slash): the key of the
    /// token cache.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `base` + path segments, each escaped (job ids come from the user).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn sent(&self, error: reqwest::Error) -> ClientError {
        if error.is_connect() {
            ClientError::Unreachable {
                server: self.server().to_owned(),
                detail: describe(&error),
            }
        } else {
            ClientError::Transport(describe(&error))
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.sent(e))?;
        check(response).await
    }

    /// `POST /signup`; the server's answer (`{user_id, email}`).
    pub async fn signup(&self, email: &str, password: &str) -> Result<Value, ClientError> {
        let request = self
            .http
            .post(self.url(&["signup"]))
            .json(&serde_json::json!({"email": email, "password": password}));
        json_body(self.send(request).await?).await
    }

    /// `POST /login` with HTTP Basic credentials.
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginToken, ClientError> {
        let request = self
            .http
            .post(self.url(&["login"]))
            .basic_auth(email, Some(password))
            .header(header::ACCEPT, "application/json");
        let value = json_body(self.send(request).await?).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(format!("login: {e}")))
    }

    /// `POST /upload`: streams `path` as the multipart part `file`; `on_bytes` is told about
    /// every chunk read from the file.
    pub async fn upload(
        &self,
        token: &str,
        path: &Path,
        quality: Option<&Quality>,
        on_bytes: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Submitted, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(ClientError::file(path))?;
        let length = file
            .metadata()
            .await
            .map_err(ClientError::file(path))?
            .len();
        let counted = ReaderStream::with_capacity(file, UPLOAD_CHUNK)
            .inspect_ok(move |chunk: &Bytes| on_bytes(chunk.len() as u64));
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(counted), length)
            .file_name(filename)
            .mime_str(media_type(path))
            .map_err(|e| ClientError::Protocol(describe(&e)))?;
        let mut url = self.url(&["upload"]);
        match quality {
            Some(Quality::Vbr(level)) => {
                url.query_pairs_mut().append_pair("quality", level);
            }
            Some(Quality::Cbr(kbps)) => {
                url.query_pairs_mut()
                    .append_pair("bitrate", &kbps.to_string());
            }
            None => {}
        }
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .multipart(Form::new().part("file", part));
        let raw = json_body(self.send(request).await?).await?;
        let job_id = raw
            .get("job_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("the upload answer has no job_id".into()))?
            .to_owned();
        Ok(Submitted { job_id, raw })
    }

    /// `GET /jobs?limit=&before=`.
    pub async fn jobs(
        &self,
        token: &str,
        limit: u32,
        before: Option<&str>,
    ) -> Result<JobPage, ClientError> {
        let mut url = self.url(&["jobs"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        if let Some(before) = before {
            url.query_pairs_mut().append_pair("before", before);
        }
        let body = json_body(self.send(self.http.get(url).bearer_auth(token)).await?).await?;
        let jobs = body
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| ClientError::Protocol("the job list has no jobs array".into()))?
            .iter()
            .cloned()
            .map(Job::from_value)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = body.get("next").is_some_and(|next| !next.is_null());
        Ok(JobPage { jobs, has_more })
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, token: &str, id: &str) -> Result<Job, ClientError> {
        let request = self.http.get(self.url(&["jobs", id])).bearer_auth(token);
        Job::from_value(json_body(self.send(request).await?).await?)
    }

    /// `DELETE /jobs/{id}`.
    pub async fn delete(&self, token: &str, id: &str) -> Result<(), ClientError> {
        let request = self.http.delete(self.url(&["jobs", id])).bearer_auth(token);
        self.send(request).await?;
        Ok(())
    }

    /// `GET /jobs/{id}/mp3`: the response head; the body is read by [`Download::save`].
    pub async fn download(&self, token: &str, id: &str) -> Result<Download, ClientError> {
        let request = self
            .http
            .get(self.url(&["jobs", id, "mp3"]))
            .bearer_auth(token);
        let response = self.send(request).await?;
        let filename = response
            .headers()
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(filename_from_disposition);
        let length = response.content_length();
        Ok(Download {
            response,
            filename,
            length,
        })
    }

    /// `GET /jobs/{id}/events`: the job's events (from after `last_event_id` when resuming)
    /// until the server ends the stream at a terminal state.
    pub async fn events(
        &self,
        token: &str,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<StreamItem, ClientError>> + use<>, ClientError> {
        let mut request = self
            .http
            .get(self.url(&["jobs", id, "events"]))
            .bearer_auth(token)
            .header(header::ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = self.send(request).await?;
        Ok(response
            .bytes_stream()
            .eventsource()
            .map(|item| match item {
                Ok(event) => parse_stream_event(&event.event, &event.id, &event.data),
                Err(e) => Err(ClientError::Transport(format!("event stream: {e}"))),
            }))
    }
}

/// Turns one SSE message into a [`StreamItem`].
pub fn parse_stream_event(kind: &str, id: &str, data: &str) -> Result<StreamItem, ClientError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| ClientError::Protocol(format!("event {kind:?} is not JSON: {e}")))?;
    if kind == "error" {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the server interrupted the event stream")
            .to_owned();
        return Ok(StreamItem::ServerError(message));
    }
    let job = value
        .get("job")
        .cloned()
        .ok_or_else(|| ClientError::Protocol(format!("event {kind:?} carries no job")))?;
    Ok(StreamItem::Update {
        event_id: id.to_owned(),
        job: Box::new(Job::from_value(job)?),
    })
}

/// A usable base URL from what the user typed (`http://host:port`, maybe with a path prefix).
pub fn normalize_server(server: &str) -> Result<Url, ClientError> {
    let invalid = || ClientError::InvalidServer(server.to_owned());
    let mut url = Url::parse(server.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::InvalidServer(
            "credentials in the server URL (use --email / MP3_EMAIL instead)".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// Fails with the server's `{error, message}` unless the status is a success.
async fn check(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(api_error(status, &body, retry_after))
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The error for a non-success answer; the server's message when it sent the JSON shape.
pub fn api_error(status: StatusCode, body: &str, retry_after: Option<u64>) -> ClientError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_str::<ErrorBody>(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error.clone())
        .unwrap_or_else(|| status.as_str().to_owned());
    let mut message = parsed
        .and_then(|b| b.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error");
            format!("the server answered {} {reason}", status.as_u16())
        });
    if let Some(seconds) = retry_after
        && status == StatusCode::TOO_MANY_REQUESTS
    {
        message.push_str(&format!(" (retry in {seconds} s)"));
    }
    ClientError::Api {
        status,
        code,
        message,
        retry_after,
    }
}

async fn json_body(response: Response) -> Result<Value, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(describe(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("expected JSON: {e}")))
}

/// The bare file name of a `Content-Disposition` header: `filename*` (RFC 5987) first, then
/// `filename`; any directory part is dropped so a hostile server cannot write elsewhere.
pub fn filename_from_disposition(value: &str) -> Option<String> {
    let mut extended = None;
    let mut plain = None;
    for parameter in split_parameters(value).into_iter().skip(1) {
        let Some((key, raw)) = parameter.split_once('=') else {
            continue;
        };
        let raw = raw.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let encoded = raw.splitn(3, '\'').nth(2).unwrap_or(raw);
                extended = percent_encoding::percent_decode_str(encoded)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned());
            }
            "filename" => plain = Some(unquote(raw)),
            _ => {}
        }
    }
    extended.or(plain).and_then(|name| safe_file_name(&name))
}

fn split_parameters(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn unquote(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_owned();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// The last path component, or `None` when nothing usable is left.
fn safe_file_name(name: &str) -> Option<String> {
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches('.');
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The media type sent with an upload, from the file extension.
pub fn media_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "opus" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        let url = normalize_server("http://127.0.0.1:8080").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        let url = normalize_server("HTTPS://Example.org/api/?x=1").unwrap();
        assert_eq!(url.as_str(), "https://example.org/api/");
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "not a url",
            "http://user:pw@host",
        ] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_appended_and_escaped() {
        let client = ApiClient::new("http://h:1/api").unwrap();
        assert_eq!(client.server(), "http://h:1/api");
        assert_eq!(
            client.url(&["jobs", "abc"]).as_str(),
            "http://h:1/api/jobs/abc"
        );
        assert_eq!(
            client.url(&["jobs", "../x?y"]).as_str(),
            "http://h:1/api/jobs/..%2Fx%3Fy"
        );
        let root = ApiClient::new("http://h:1").unwrap();
        assert_eq!(root.url(&["login"]).as_str(), "http://h:1/login");
    }

    #[test]
    fn server_errors_keep_the_servers_message() {
        let error = api_error(
            StatusCode::CONFLICT,
            r#"{"error":"conflict","message":"the conversion failed: the file has no audio track"}"#,
            None,
        );
        assert_eq!(error.code(), "conflict");
        assert_eq!(
            error.to_string(),
            "the conversion failed: the file has no audio track"
        );
        assert!(!error.is_unauthorized());

        let limited = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":"too_many_requests","message":"too many attempts"}"#,
            Some(30),
        );
        assert_eq!(limited.to_string(), "too many attempts (retry in 30 s)");
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
        assert!(limited.is_transient());

        let bare = api_error(StatusCode::BAD_GATEWAY, "<html>proxy</html>", None);
        assert_eq!(bare.to_string(), "the server answered 502 Bad Gateway");
        assert_eq!(bare.code(), "502");
    }

    #[test]
    fn only_refused_tokens_count_as_unauthorized() {
        let expired = api_error(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"unauthorized","message":"token expired"}"#,
            None,
        );
        assert!(expired.is_unauthorized());
        let wrong_password = api_error(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_credentials","message":"invalid email or password"}"#,
            None,
        );
        assert!(!wrong_password.is_unauthorized());
    }

    #[test]
    fn download_names_come_from_content_disposition_and_stay_bare() {
        let header = "attachment; filename=\"_t_.mp3\"; filename*=UTF-8''%C3%A9t%C3%A9.mp3";
        assert_eq!(
            filename_from_disposition(header).as_deref(),
            Some("été.mp3")
        );
        assert_eq!(
            filename_from_disposition("attachment; filename=\"a;b.mp3\"").as_deref(),
            Some("a;b.mp3")
        );
        assert_eq!(
            filename_from_disposition("attachment; filename=\"../../etc/passwd\"").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            filename_from_disposition("attachment; filename=\"..\""),
            None
        );
        assert_eq!(filename_from_disposition("attachment"), None);
    }

    #[test]
    fn stream_events_carry_the_job_state() {
        let data = r#"{"event":{"type":"conversion.progress"},"job":{"job_id":"j1","status":"converting","progress":40}}"#;
        match parse_stream_event("conversion.progress", "e1", data).unwrap() {
            StreamItem::Update { event_id, job } => {
                assert_eq!(event_id, "e1");
                assert_eq!(job.status, JobStatus::Converting);
                assert_eq!(job.progress, 40);
            }
            other => panic!("{other:?}"),
        }
        let error = r#"{"error":"service_unavailable","message":"the job store is unavailable"}"#;
        assert!(matches!(
            parse_stream_event("error", "", error).unwrap(),
            StreamItem::ServerError(m) if m == "the job store is unavailable"
        ));
        assert!(parse_stream_event("x", "", "not json").is_err());
    }

    #[test]
    fn jobs_parse_with_unknown_statuses_and_extra_fields() {
        let job = Job::from_value(serde_json::json!({
            "job_id": "j", "status": "archived", "progress": 250, "new_field": 1,
            "submitted_at": "2025-01-02T03:04:05Z"
        }))
        .unwrap();
        assert_eq!(job.status, JobStatus::Unknown);
        assert!(job.status.is_terminal());
        assert_eq!(job.progress, 100);
        assert_eq!(job.raw["new_field"], 1);
        assert!(job.submitted_at.is_some());
        assert!(Job::from_value(serde_json::json!({"status": "failed"})).is_err());
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(media_type(Path::new("a/b.MP4")), "video/mp4");
        assert_eq!(media_type(Path::new("x.mkv")), "video/x-matroska");
        assert_eq!(media_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn partial_downloads_sit_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/d/x.mp3")),
            Path::new("/d/x.mp3.part")
        );
    }
}
