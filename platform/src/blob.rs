//! The blob storage seam: videos and MP3s, written and read as streams, never whole in memory.
//!
//! [`GridFsStore`] implements it on MongoDB GridFS: database `videos` for uploads and `mp3s` for
//! results, each with the default `fs` bucket (as the original system laid them out). Reads go
//! straight to the chunks collection so a byte range costs only the chunks it covers.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{AsyncWriteExt, StreamExt, TryStreamExt};
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use mongodb::options::GridFsBucketOptions;
use mongodb::{Client, gridfs::GridFsUploadStream};

/// Which kind of file: each lives in its own database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Videos,
    Mp3s,
}

impl Bucket {
    pub fn database(self) -> &'static str {
        match self {
            Bucket::Videos => "videos",
            Bucket::Mp3s => "mp3s",
        }
    }
}

/// Free-form metadata stored beside a file (owner, job id, original name, ...).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct BlobInfo {
    /// Hex ObjectId.
    pub id: String,
    pub filename: String,
    pub length: u64,
    pub uploaded_at: DateTime<Utc>,
    pub metadata: Metadata,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("not a valid file id: {0:?}")]
    InvalidId(String),
    #[error("file not found")]
    NotFound,
    #[error("blob storage unavailable: {0}")]
    Unavailable(String),
}

impl From<mongodb::error::Error> for BlobError {
    fn from(e: mongodb::error::Error) -> Self {
        BlobError::Unavailable(e.to_string())
    }
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        BlobError::Unavailable(e.to_string())
    }
}

/// A stream of a file's bytes (or of a range of them).
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// A file being written. Dropping it without [`BlobUpload::finish`] leaves nothing behind.
#[async_trait]
pub trait BlobUpload: Send {
    fn id(&self) -> &str;
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// Commits the file; only then does it become visible.
    async fn finish(self: Box<Self>) -> Result<BlobInfo, BlobError>;
    /// Discards everything written so far.
    async fn abort(self: Box<Self>) -> Result<(), BlobError>;
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn create(
        &self,
        bucket: Bucket,
        filename: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn BlobUpload>, BlobError>;

    async fn info(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError>;

    /// The newest file whose metadata field `key` equals `value` (e.g. the MP3 of a job).
    async fn find_by_metadata(
        &self,
        bucket: Bucket,
        key: &str,
        value: &str,
    ) -> Result<Option<BlobInfo>, BlobError>;

    /// Bytes `range.0 .. range.1` (end exclusive) of the file, or all of it.
    async fn read(
        &self,
        bucket: Bucket,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, BlobError>;

    /// Deletes the file and all its chunks; `false` when it did not exist.
    async fn delete(&self, bucket: Bucket, id: &str) -> Result<bool, BlobError>;

    /// Up to `limit` files uploaded before `before`, in id order, starting after the id `after`
    /// (the last one of the previous page): how a sweep walks the whole store a page at a time.
    async fn list_older_than(
        &self,
        bucket: Bucket,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError>;

    /// Readiness: `Ok` when the store answers.
    async fn check(&self) -> Result<(), BlobError>;

    /// Readies the store once it answers (GridFS: the index behind [`BlobStore::find_by_metadata`]
    /// on `job_id`); idempotent, retried at start-up until it succeeds.
    async fn prepare(&self) -> Result<(), BlobError> {
        Ok(())
    }
}

/// Parses a hex ObjectId, refusing anything else.
pub fn parse_id(id: &str) -> Result<ObjectId, BlobError> {
    ObjectId::parse_str(id).map_err(|_| BlobError::InvalidId(id.to_owned()))
}

#[derive(Clone)]
pub struct GridFsStore {
    client: Client,
    chunk_size: u32,
}

/// GridFS chunk size: larger than the 255 KiB default to cut round trips on big files.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;

impl GridFsStore {
    /// GridFS on `client` (see [`crate::mongo::connect`]): operations fail fast while MongoDB is
    /// unreachable and recover by themselves when it returns.
    pub fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn bucket(&self, bucket: Bucket) -> mongodb::gridfs::GridFsBucket {
        self.client.database(bucket.database()).gridfs_bucket(
            GridFsBucketOptions::builder()
                .chunk_size_bytes(self.chunk_size)
                .build(),
        )
    }

    fn chunks(&self, bucket: Bucket) -> mongodb::Collection<Document> {
        self.client
            .database(bucket.database())
            .collection("fs.chunks")
    }

    fn files(&self, bucket: Bucket) -> mongodb::Collection<Document> {
        self.client
            .database(bucket.database())
            .collection("fs.files")
    }
}

fn info_from(document: &Document) -> Option<BlobInfo> {
    let id = document.get_object_id("_id").ok()?.to_hex();
    let length = match document.get("length")? {
        Bson::Int64(n) => u64::try_from(*n).ok()?,
        Bson::Int32(n) => u64::try_from(*n).ok()?,
        Bson::Double(n) => *n as u64,
        _ => return None,
    };
    let uploaded_at = document
        .get_datetime("uploadDate")
        .ok()
        .and_then(|d| DateTime::<Utc>::from_timestamp_millis(d.timestamp_millis()))
        .unwrap_or_else(Utc::now);
    let metadata = match document.get_document("metadata") {
        Ok(m) => match Bson::Document(m.clone()).into_relaxed_extjson() {
            serde_json::Value::Object(map) => map,
            _ => Metadata::new(),
        },
        Err(_) => Metadata::new(),
    };
    Some(BlobInfo {
        id,
        filename: document.get_str("filename").unwrap_or_default().to_owned(),
        length,
        uploaded_at,
        metadata,
    })
}

struct GridFsUpload {
    id: String,
    filename: String,
    metadata: Metadata,
    written: u64,
    stream: GridFsUploadStream,
}

#[async_trait]
impl BlobUpload for GridFsUpload {
    fn id(&self) -> &str {
        &self.id
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.stream.write_all(chunk).await?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<BlobInfo, BlobError> {
        self.stream.close().await?;
        Ok(BlobInfo {
            id: self.id.clone(),
            filename: self.filename.clone(),
            length: self.written,
            uploaded_at: Utc::now(),
            metadata: std::mem::take(&mut self.metadata),
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BlobError> {
        self.stream.abort().await?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for GridFsStore {
    async fn prepare(&self) -> Result<(), BlobError> {
        // Every lookup by job (the MP3 of a job, the files of a deleted one) filters on
        // `metadata.job_id` and takes the newest: one index serves both.
        let by_job = mongodb::IndexModel::builder()
            .keys(doc! {"metadata.job_id": 1, "uploadDate": -1})
            .build();
        for bucket in [Bucket::Videos, Bucket::Mp3s] {
            self.files(bucket).create_index(by_job.clone()).await?;
        }
        Ok(())
    }

    async fn create(
        &self,
        bucket: Bucket,
        filename: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn BlobUpload>, BlobError> {
        let document = bson::to_document(&metadata)
            .map_err(|e| BlobError::Unavailable(format!("metadata: {e}")))?;
        let id = ObjectId::new();
        let stream = self
            .bucket(bucket)
            .open_upload_stream(filename)
            .id(Bson::ObjectId(id))
            .metadata(document)
            .await?;
        Ok(Box::new(GridFsUpload {
            id: id.to_hex(),
            filename: filename.to_owned(),
            metadata,
            written: 0,
            stream,
        }))
    }

    async fn info(&self, bucket: Bucket, id: &str) -> Result<Option<BlobInfo>, BlobError> {
        let oid = parse_id(id)?;
        let found = self.files(bucket).find_one(doc! {"_id": oid}).await?;
        Ok(found.as_ref().and_then(info_from))
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        let mut filter =
            doc! {"uploadDate": {"$lt": bson::DateTime::from_millis(before.timestamp_millis())}};
        if let Some(after) = after {
            filter.insert("_id", doc! {"$gt": parse_id(after)?});
        }
        let found: Vec<Document> = self
            .files(bucket)
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        Ok(found.iter().filter_map(info_from).collect())
    }

    async fn find_by_metadata(
        &self,
        bucket: Bucket,
        key: &str,
        value: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        let found = self
            .files(bucket)
            .find_one(doc! {format!("metadata.{key}"): value})
            .sort(doc! {"uploadDate": -1})
            .await?;
        Ok(found.as_ref().and_then(info_from))
    }

    async fn read(
        &self,
        bucket: Bucket,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, BlobError> {
        let oid = parse_id(id)?;
        let file = self
            .files(bucket)
            .find_one(doc! {"_id": oid})
            .await?
            .ok_or(BlobError::NotFound)?;
        let length = info_from(&file).map(|i| i.length).unwrap_or(0);
        let chunk_size = match file.get("chunkSize") {
            Some(Bson::Int32(n)) if *n > 0 => *n as u64,
            Some(Bson::Int64(n)) if *n > 0 => *n as u64,
            _ => return Err(BlobError::Unavailable("file has no chunk size".into())),
        };
        let (start, end) = range.unwrap_or((0, length));
        let end = end.min(length);
        if start >= end {
            return Ok(futures::stream::empty().boxed());
        }
        let first = (start / chunk_size) as i64;
        let last = ((end - 1) / chunk_size) as i64;
        let cursor = self
            .chunks(bucket)
            .find(doc! {"files_id": oid, "n": {"$gte": first, "$lte": last}})
            .sort(doc! {"n": 1})
            .batch_size(4)
            .await?;
        let stream = cursor
            .map_err(BlobError::from)
            .and_then(move |chunk| async move {
                let n = match chunk.get("n") {
                    Some(Bson::Int32(n)) => *n as u64,
                    Some(Bson::Int64(n)) => *n as u64,
                    _ => return Err(BlobError::Unavailable("chunk without index".into())),
                };
                let data = chunk
                    .get_binary_generic("data")
                    .map_err(|e| BlobError::Unavailable(e.to_string()))?;
                let chunk_start = n * chunk_size;
                let from = start.saturating_sub(chunk_start) as usize;
                let to = ((end - chunk_start) as usize).min(data.len());
                Ok(Bytes::copy_from_slice(&data[from.min(to)..to]))
            });
        Ok(stream.boxed())
    }

    async fn delete(&self, bucket: Bucket, id: &str) -> Result<bool, BlobError> {
        let oid = parse_id(id)?;
        // Chunks first: a crash in between leaves a file entry that a retried delete removes,
        // never chunks without a file.
        self.chunks(bucket)
            .delete_many(doc! {"files_id": oid})
            .await?;
        let removed = self.files(bucket).delete_one(doc! {"_id": oid}).await?;
        Ok(removed.deleted_count > 0)
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }
}
