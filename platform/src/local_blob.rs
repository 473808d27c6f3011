//! Local-disk implementation of the [`BlobStore`] seam, for the all-in-one mode.
//!
//! Layout: `<root>/<database>/<id>.bin` holds the bytes and `<id>.json` the [`BlobInfo`]. An
//! upload writes `<id>.part` and renames it on finish, so readers never see a partial file.

use crate::blob::{
    BlobError, BlobInfo, BlobStore, BlobUpload, Bucket, ByteStream, Metadata, parse_id,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

#[derive(Clone)]
pub struct DiskStore {
    root: PathBuf,
}

/// What `<id>.json` holds.
#[derive(Serialize, Deserialize)]
struct StoredInfo {
    filename: String,
    length: u64,
    uploaded_at: DateTime<Utc>,
    metadata: Metadata,
}

impl DiskStore {
    /// A store under `root` (created when missing).
    pub async fn new(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for bucket in [Bucket::Videos, Bucket::Mp3s] {
            tokio::fs::create_dir_all(root.join(bucket.database())).await?;
        }
        Ok(Self { root })
    }

    fn path(&self, bucket: Bucket, id: &str, extension: &str) -> PathBuf {
        self.root
            .join(bucket.database())
            .join(format!("{id}.{extension}"))
    }

    async fn load(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError> {
        load_info(&self.path(bucket, id, "json"), id).await
    }
}

async fn load_info(path: &Path, id: &str) -> Result<Option<BlobInfo>, BlobError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let stored: StoredInfo = serde_json::from_slice(&bytes)
                .map_err(|e| BlobError::Unavailable(format!("{}: {e}", path.display())))?;
            Ok(Some(BlobInfo {
                id: id.to_owned(),
                filename: stored.filename,
                length: stored.length,
                uploaded_at: stored.uploaded_at,
                metadata: stored.metadata,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

struct DiskUpload {
    id: String,
    filename: String,
    metadata: Metadata,
    part: PathBuf,
    data: PathBuf,
    info: PathBuf,
    file: tokio::fs::File,
    written: u64,
}

#[async_trait]
impl BlobUpload for DiskUpload {
    fn id(&self) -> &str {
        &self.id
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.file.write_all(chunk).await?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<BlobInfo, BlobError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        tokio::fs::rename(&self.part, &self.data).await?;
        let info = BlobInfo {
            id: self.id.clone(),
            filename: self.filename.clone(),
            length: self.written,
            uploaded_at: Utc::now(),
            metadata: std::mem::take(&mut self.metadata),
        };
        let stored = StoredInfo {
            filename: info.filename.clone(),
            length: info.length,
            uploaded_at: info.uploaded_at,
            metadata: info.metadata.clone(),
        };
        let tmp = self.info.with_extension("json.tmp");
        tokio::fs::write(&tmp, serde_json::to_vec(&stored).expect("serialisable")).await?;
        tokio::fs::rename(&tmp, &self.info).await?;
        Ok(info)
    }

    async fn abort(self: Box<Self>) -> Result<(), BlobError> {
        match tokio::fs::remove_file(&self.part).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Drop for DiskUpload {
    fn drop(&mut self) {
        // Unfinished uploads leave nothing behind (finish renamed the part away already).
        let _ = std::fs::remove_file(&self.part);
    }
}

#[async_trait]
impl BlobStore for DiskStore {
    async fn create(
        &self,
        bucket: Bucket,
        filename: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn BlobUpload>, BlobError> {
        let id = mongodb::bson::oid::ObjectId::new().to_hex();
        let part = self.path(bucket, &id, "part");
        let file = tokio::fs::File::create(&part).await?;
        Ok(Box::new(DiskUpload {
            data: self.path(bucket, &id, "bin"),
            info: self.path(bucket, &id, "json"),
            id,
            filename: filename.to_owned(),
            metadata,
            part,
            file,
            written: 0,
        }))
    }

    async fn info(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError> {
        parse_id(id)?;
        self.load(bucket, id).await
    }

    async fn find_by_metadata(
        &self,
        bucket: Bucket,
        key: &str,
        value: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        let mut newest: Option<BlobInfo> = None;
        let mut entries = tokio::fs::read_dir(self.root.join(bucket.database())).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Some(info) = load_info(&path, id).await?
                && info.metadata.get(key).and_then(|v| v.as_str()) == Some(value)
                && newest
                    .as_ref()
                    .is_none_or(|n| n.uploaded_at < info.uploaded_at)
            {
                newest = Some(info);
            }
        }
        Ok(newest)
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        // One directory per bucket: read every description, keep the page (ids are ObjectIds,
        // so their order is the order of creation, as in GridFS).
        let mut found = Vec::new();
        let mut entries = tokio::fs::read_dir(self.root.join(bucket.database())).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if after.is_some_and(|after| id <= after) {
                continue;
            }
            if let Some(info) = load_info(&path, id).await?
                && info.uploaded_at < before
            {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.truncate(limit);
        Ok(found)
    }

    async fn read(
        &self,
        bucket: Bucket,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, BlobError> {
        parse_id(id)?;
        let info = self.load(bucket, id).await?.ok_or(BlobError::NotFound)?;
        let (start, end) = range.unwrap_or((0, info.length));
        let end = end.min(info.length);
        let mut file = tokio::fs::File::open(self.path(bucket, id, "bin")).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let limited = file.take(end.saturating_sub(start));
        let stream = tokio_util::io::ReaderStream::with_capacity(limited, 256 * 1024)
            .map(|piece| piece.map_err(BlobError::from));
        Ok(stream.boxed())
    }

    async fn delete(&self, bucket: Bucket, id: &str) -> Result<bool, BlobError> {
        parse_id(id)?;
        let existed = tokio::fs::remove_file(self.path(bucket, id, "json"))
            .await
            .is_ok();
        let _ = tokio::fs::remove_file(self.path(bucket, id, "bin")).await;
        Ok(existed)
    }

    async fn check(&self) -> Result<(), BlobError> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn files_round_trip_with_ranges_and_unfinished_uploads_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::new(dir.path()).await.unwrap();
        let mut metadata = Metadata::new();
        metadata.insert("job_id".into(), serde_json::json!("j1"));
        let mut upload = store.create(Bucket::Mp3s, "a.mp3", metadata).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(7_000) {
            upload.write(piece).await.unwrap();
        }
        let info = upload.finish().await.unwrap();
        let all: Vec<bytes::Bytes> = store
            .read(Bucket::Mp3s, &info.id, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.concat(), data);
        let part: Vec<bytes::Bytes> = store
            .read(Bucket::Mp3s, &info.id, Some((1000, 2000)))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(part.concat(), data[1000..2000]);
        assert_eq!(
            store
                .find_by_metadata(Bucket::Mp3s, "job_id", "j1")
                .await
                .unwrap()
                .unwrap()
                .id,
            info.id
        );

        let mut dropped = store
            .create(Bucket::Videos, "b.mp4", Metadata::new())
            .await
            .unwrap();
        dropped.write(b"partial").await.unwrap();
        let dropped_id = dropped.id().to_owned();
        drop(dropped);
        assert!(
            store
                .info(Bucket::Videos, &dropped_id)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("videos"))
                .unwrap()
                .count(),
            0
        );

        assert!(store.delete(Bucket::Mp3s, &info.id).await.unwrap());
        assert!(matches!(
            store.read(Bucket::Mp3s, &info.id, None).await,
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            store.info(Bucket::Mp3s, "nope").await,
            Err(BlobError::InvalidId(_))
        ));
    }
}
