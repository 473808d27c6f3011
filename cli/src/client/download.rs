//! Downloads: `GET /jobs/{id}/mp3` streamed into a file, under the name the server suggests in
//! `Content-Disposition` (reduced to a bare, safe file name).

use super::error::describe;
use super::{ApiClient, ClientError};
use futures::StreamExt;
use reqwest::Response;
use reqwest::header;
use std::path::{Path, PathBuf};

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

impl ApiClient {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn partial_downloads_sit_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/d/x.mp3")),
            Path::new("/d/x.mp3.part")
        );
    }
}
