//! Cached sessions that went bad: an expired or refused token is replaced by a new login when
//! credentials are at hand, and the user is told to log in when they are not.

use crate::helpers::{Stack, assert_mp3};
use chrono::{Duration, Utc};
use cli::config::{CachedToken, TokenCache};

fn plant(stack: &Stack, token: &str, expires_in: Duration) {
    TokenCache::new(stack.config.path())
        .store(&CachedToken {
            server: stack.server.clone(),
            email: None,
            token: token.into(),
            expires_at: Some(Utc::now() + expires_in),
        })
        .expect("write the session file");
}

fn cached_token(stack: &Stack) -> String {
    TokenCache::new(stack.config.path())
        .load(&stack.server)
        .expect("a session is cached")
        .token
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_is_renewed_from_environment_credentials() {
    let stack = Stack::start().await;
    let (email, password) = stack.signed_up().await;
    plant(&stack, "expired.token.value", Duration::hours(-1));
    let video = stack.media("mp4_aac_moov_start.mp4", "renewed.mp4");

    let run = stack
        .mp3()
        .args(["convert"])
        .args([&video])
        .env("MP3_EMAIL", &email)
        .env("MP3_PASSWORD", &password)
        .run()
        .await;
    run.assert_success();
    assert_mp3(&stack.work.path().join("renewed.mp3"));
    let renewed = cached_token(&stack);
    assert_ne!(renewed, "expired.token.value");
    assert_eq!(renewed.split('.').count(), 3, "a real JWT replaced it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_session_is_replaced_by_one_new_login() {
    let stack = Stack::start().await;
    let (email, password) = stack.signed_up().await;
    // Looks valid for another hour, but the server refuses it.
    plant(&stack, "garbage", Duration::hours(1));
    let video = stack.media("mp4_aac_moov_start.mp4", "refused.mp4");

    let run = stack
        .mp3()
        .args(["--json", "convert", "--email", &email, "--password-stdin"])
        .args([&video])
        .stdin(&format!("{password}\n"))
        .run()
        .await;
    run.assert_success();
    assert_eq!(run.json()["status"], "succeeded");
    assert_ne!(cached_token(&stack), "garbage");

    // The same for a plain request.
    plant(&stack, "garbage", Duration::hours(1));
    let jobs = stack
        .mp3()
        .args(["--json", "jobs"])
        .env("MP3_EMAIL", &email)
        .env("MP3_PASSWORD", &password)
        .run()
        .await;
    jobs.assert_success();
    assert_eq!(jobs.json_lines().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_a_bad_session_asks_the_user_to_log_in() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let video = stack.media("mp4_aac_moov_start.mp4", "nope.mp4");

    plant(&stack, "garbage", Duration::hours(1));
    let refused = stack.mp3().args(["convert"]).args([&video]).run().await;
    refused.assert_failure(1);
    assert!(
        refused.stderr().contains("run `mp3 login`"),
        "{}",
        refused.stderr()
    );
    assert!(
        refused.stderr().contains("refused your session"),
        "{}",
        refused.stderr()
    );
    assert!(!stack.work.path().join("nope.mp3").exists());

    plant(&stack, "expired", Duration::hours(-1));
    let expired = stack.mp3().args(["--json", "jobs"]).run().await;
    expired.assert_failure(1);
    assert!(
        expired.stderr().contains("has expired"),
        "{}",
        expired.stderr()
    );
    assert_eq!(expired.json()["error"], "not_logged_in");

    std::fs::remove_file(stack.session_file()).unwrap();
    let never = stack
        .mp3()
        .args(["status", "0199a3c4-0000-7000-8000-000000000000"])
        .run()
        .await;
    never.assert_failure(1);
    assert!(
        never.stderr().contains("not logged in"),
        "{}",
        never.stderr()
    );
}
