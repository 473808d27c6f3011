//! The GridFS blob store against a real MongoDB-wire server: streaming round trip of a
//! multi-megabyte file, byte ranges, abort, delete and lookup by metadata.

use futures::TryStreamExt;
use platform::blob::{BlobError, BlobStore, Bucket, GridFsStore, Metadata};
use platform::testing::required_env;
use serde_json::json;

async fn store() -> GridFsStore {
    platform::testing::gridfs(&required_env("MONGODB_URI")).await
}

/// Deterministic pseudo-random bytes, so content errors cannot hide behind repetition.
fn content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn read_all(store: &GridFsStore, id: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let stream = store.read(Bucket::Videos, id, range).await.unwrap();
    let parts: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    parts.concat()
}

#[tokio::test]
async fn a_multi_megabyte_file_round_trips_in_chunks() {
    let store = store().await;
    let data = content(12 * 1024 * 1024 + 12_345);
    let job = uuid::Uuid::now_v7().to_string();
    let mut metadata = Metadata::new();
    metadata.insert("job_id".into(), json!(job));
    let mut upload = store
        .create(Bucket::Videos, "clip.mp4", metadata)
        .await
        .unwrap();
    for piece in data.chunks(64 * 1024 + 7) {
        upload.write(piece).await.unwrap();
    }
    let info = upload.finish().await.unwrap();
    assert_eq!(info.length, data.len() as u64);

    assert_eq!(read_all(&store, &info.id, None).await, data);
    let stored = store.info(Bucket::Videos, &info.id).await.unwrap().unwrap();
    assert_eq!(stored.length, data.len() as u64);
    assert_eq!(stored.filename, "clip.mp4");
    assert_eq!(stored.metadata["job_id"], json!(job));
    let found = store
        .find_by_metadata(Bucket::Videos, "job_id", &job)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, info.id);

    // Ranges inside one chunk, across chunk boundaries and up to the end.
    for (start, end) in [
        (0, 10),
        (1_048_570, 1_048_600),
        (5_000_000, 7_654_321),
        (data.len() as u64 - 5, data.len() as u64),
    ] {
        let got = read_all(&store, &info.id, Some((start, end))).await;
        assert_eq!(
            got,
            data[start as usize..end as usize],
            "range {start}..{end}"
        );
    }

    assert!(store.delete(Bucket::Videos, &info.id).await.unwrap());
    assert!(
        store
            .info(Bucket::Videos, &info.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete(Bucket::Videos, &info.id).await.unwrap());
    let chunks = store
        .client()
        .database("videos")
        .collection::<mongodb::bson::Document>("fs.chunks")
        .count_documents(mongodb::bson::doc! {"files_id": mongodb::bson::oid::ObjectId::parse_str(&info.id).unwrap()})
        .await
        .unwrap();
    assert_eq!(chunks, 0, "no orphan chunks after delete");
}

#[tokio::test]
async fn an_aborted_upload_leaves_nothing_behind() {
    let store = store().await;
    let mut upload = store
        .create(Bucket::Videos, "big.mp4", Metadata::new())
        .await
        .unwrap();
    let id = upload.id().to_owned();
    upload.write(&content(3 * 1024 * 1024)).await.unwrap();
    upload.abort().await.unwrap();
    assert!(store.info(Bucket::Videos, &id).await.unwrap().is_none());
    let chunks = store
        .client()
        .database("videos")
        .collection::<mongodb::bson::Document>("fs.chunks")
        .count_documents(
            mongodb::bson::doc! {"files_id": mongodb::bson::oid::ObjectId::parse_str(&id).unwrap()},
        )
        .await
        .unwrap();
    assert_eq!(chunks, 0);
}

#[tokio::test]
async fn bad_and_unknown_ids_are_told_apart() {
    let store = store().await;
    assert!(matches!(
        store.info(Bucket::Mp3s, "../etc/passwd").await,
        Err(BlobError::InvalidId(_))
    ));
    let unknown = mongodb::bson::oid::ObjectId::new().to_hex();
    assert!(store.info(Bucket::Mp3s, &unknown).await.unwrap().is_none());
    assert!(matches!(
        store.read(Bucket::Mp3s, &unknown, None).await,
        Err(BlobError::NotFound)
    ));
    store.check().await.expect("MongoDB answers ping");
}

#[tokio::test]
async fn prepare_indexes_the_job_id_lookups_of_both_buckets() {
    let store = store().await;
    store.prepare().await.expect("indexes are created");
    store
        .prepare()
        .await
        .expect("and creating them again is a no-op");
    for bucket in [Bucket::Videos, Bucket::Mp3s] {
        let names = store
            .client()
            .database(bucket.database())
            .collection::<mongodb::bson::Document>("fs.files")
            .list_index_names()
            .await
            .unwrap();
        assert!(
            names
                .iter()
                .any(|name| name.starts_with("metadata.job_id_1")),
            "{bucket:?}: {names:?}"
        );
    }
}
