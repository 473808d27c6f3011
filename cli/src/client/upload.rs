//! `POST /upload`: a local file streamed as the multipart part `file`, with the requested
//! quality as the contract's query parameter.

use super::error::describe;
use super::{ApiClient, ClientError, json_body, typed};
use api::{Quality, UploadAccepted};
use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::path::Path;
use tokio_util::io::ReaderStream;

const UPLOAD_CHUNK: usize = 256 * 1024;

/// The 202 answer to an upload: the contract's view, and `raw` for `--json`.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub accepted: UploadAccepted,
    pub raw: Value,
}

impl Submitted {
    pub fn job_id(&self) -> &str {
        &self.accepted.job_id
    }
}

impl ApiClient {
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
        if let Some(quality) = quality {
            let (name, value) = quality.request_parameter();
            url.query_pairs_mut().append_pair(name, &value);
        }
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .multipart(Form::new().part("file", part));
        let raw = json_body(self.send(request).await?).await?;
        let accepted = typed(raw.clone(), "upload answer")?;
        Ok(Submitted { accepted, raw })
    }
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
    fn media_types_follow_the_extension() {
        assert_eq!(media_type(Path::new("a/b.MP4")), "video/mp4");
        assert_eq!(media_type(Path::new("x.mkv")), "video/x-matroska");
        assert_eq!(media_type(Path::new("noext")), "application/octet-stream");
    }
}
