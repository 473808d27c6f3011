//! The MongoDB conversion lease against a real MongoDB-wire server: one holder at a time, taken
//! over only once expired, renewed only by its holder, released only by its holder.

use converter::worker::lease::{Leases, MongoLeases};
use platform::testing::{mongo_client, required_env};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn a_lease_has_one_holder_until_it_is_released_or_expires() {
    let leases = MongoLeases::new(&mongo_client(&required_env("MONGODB_URI")).await);
    let job = Uuid::now_v7();
    let ttl = Duration::from_millis(800);

    assert!(leases.acquire(job, "a", ttl).await.unwrap(), "free");
    assert!(!leases.acquire(job, "b", ttl).await.unwrap(), "held by a");
    assert!(
        leases.acquire(job, "a", ttl).await.unwrap(),
        "a again: its own"
    );
    assert!(leases.renew(job, "a", ttl).await.unwrap());
    assert!(
        !leases.renew(job, "b", ttl).await.unwrap(),
        "b holds nothing"
    );
    leases.release(job, "b").await.unwrap();
    assert!(
        !leases.acquire(job, "b", ttl).await.unwrap(),
        "b cannot release a's lease"
    );

    leases.release(job, "a").await.unwrap();
    assert!(leases.acquire(job, "b", ttl).await.unwrap(), "released");

    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(leases.acquire(job, "c", ttl).await.unwrap(), "b's expired");
    assert!(
        !leases.renew(job, "b", ttl).await.unwrap(),
        "b lost it to c"
    );
    assert!(
        leases.acquire(Uuid::now_v7(), "b", ttl).await.unwrap(),
        "another job's lease is its own"
    );
}

#[tokio::test]
async fn of_many_contenders_at_once_exactly_one_gets_the_lease() {
    let client = mongo_client(&required_env("MONGODB_URI")).await;
    let job = Uuid::now_v7();
    let contenders = (0..8).map(|i| {
        let leases = MongoLeases::new(&client);
        async move {
            leases
                .acquire(job, &format!("holder-{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }
    });
    let won = futures::future::join_all(contenders).await;
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
}
