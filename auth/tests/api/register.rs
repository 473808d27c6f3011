//! Register: accepted and refused accounts, and what ends up in the users table.

use crate::helpers::{Backend, PASSWORD, expect_code, on_both_backends, unique_email};
use tonic::Code;

on_both_backends!(
    register_login_and_validate_round_trip,
    a_taken_email_is_already_exists_whatever_its_case,
    malformed_emails_are_invalid_argument,
    passwords_outside_8_to_1024_bytes_are_invalid_argument,
    an_email_shaped_like_sql_injection_is_stored_and_matched_literally,
    the_stored_password_is_an_argon2id_hash,
);

async fn register_login_and_validate_round_trip(backend: Backend) {
    let app = backend.spawn().await;

    let registered = app.register("Alice@Example.com", PASSWORD).await.unwrap();
    assert_eq!(registered.email, "alice@example.com");
    assert!(
        uuid::Uuid::parse_str(&registered.user_id).is_ok(),
        "{}",
        registered.user_id
    );

    let login = app.login("alice@example.com", PASSWORD).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    // Default TTL: 24 hours.
    assert!(
        (login.expires_at - (now + 86_400)).abs() <= 5,
        "{}",
        login.expires_at
    );

    let claims = app.validate(&login.token).await.unwrap();
    assert_eq!(claims.sub, registered.user_id);
    assert_eq!(claims.email, "alice@example.com");
    assert_eq!(claims.exp, login.expires_at);
    assert_eq!(claims.exp - claims.iat, 86_400);
    assert_eq!(claims.iss, contracts::claims::DEFAULT_ISSUER);
    assert_eq!(claims.aud, contracts::claims::DEFAULT_AUDIENCE);
    assert!(uuid::Uuid::parse_str(&claims.jti).is_ok());

    // Emails are matched case-insensitively at login too.
    let again = app.login("  ALICE@example.COM ", PASSWORD).await.unwrap();
    let again = app.validate(&again.token).await.unwrap();
    assert_eq!(again.sub, registered.user_id);
    assert_ne!(again.jti, claims.jti, "every token has its own id");
    app.stop().await;
}

async fn a_taken_email_is_already_exists_whatever_its_case(backend: Backend) {
    let app = backend.spawn().await;
    let email = unique_email("dup");
    app.register(&email, PASSWORD).await.unwrap();

    let status = expect_code(
        app.register(&email, "another password").await,
        Code::AlreadyExists,
    );
    assert_eq!(
        status.message(),
        "an account with this email already exists"
    );
    expect_code(
        app.register(&email.to_uppercase(), PASSWORD).await,
        Code::AlreadyExists,
    );
    assert_eq!(app.user_count().await, 1);
    // The original password still works: the duplicate did not overwrite anything.
    app.login(&email, PASSWORD).await.unwrap();
    app.stop().await;
}

async fn malformed_emails_are_invalid_argument(backend: Backend) {
    let app = backend.spawn().await;
    for email in [
        "",
        "   ",
        "no-at-sign",
        "two@@example.com",
        "a@localhost",
        "Name <a@example.com>",
    ] {
        let status = expect_code(app.register(email, PASSWORD).await, Code::InvalidArgument);
        assert!(
            status.message().starts_with("email"),
            "{email}: {}",
            status.message()
        );
    }
    let long = format!("{}@example.com", "a".repeat(250));
    let status = expect_code(app.register(&long, PASSWORD).await, Code::InvalidArgument);
    assert!(
        status.message().contains("too long"),
        "{}",
        status.message()
    );
    assert_eq!(app.user_count().await, 0);
    app.stop().await;
}

async fn passwords_outside_8_to_1024_bytes_are_invalid_argument(backend: Backend) {
    let app = backend.spawn().await;
    let email = unique_email("pw");
    let status = expect_code(app.register(&email, "1234567").await, Code::InvalidArgument);
    assert_eq!(status.message(), "password must be at least 8 bytes long");
    let status = expect_code(app.register(&email, "").await, Code::InvalidArgument);
    assert_eq!(status.message(), "password must be at least 8 bytes long");
    let status = expect_code(
        app.register(&email, &"x".repeat(1025)).await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "password must be at most 1024 bytes long");
    assert_eq!(app.user_count().await, 0);

    // The bounds themselves are fine.
    app.register(&unique_email("min"), "12345678")
        .await
        .unwrap();
    let longest = "x".repeat(1024);
    let max_email = unique_email("max");
    app.register(&max_email, &longest).await.unwrap();
    app.login(&max_email, &longest).await.unwrap();
    app.stop().await;
}

async fn an_email_shaped_like_sql_injection_is_stored_and_matched_literally(backend: Backend) {
    let app = backend.spawn().await;
    app.register("victim@example.com", "victim's password")
        .await
        .unwrap();

    // Apostrophes and '=' are legal in the local part, so this is a valid address.
    let sneaky = "x'OR'1'='1@example.com";
    let registered = app.register(sneaky, PASSWORD).await.unwrap();
    assert_eq!(registered.email, "x'or'1'='1@example.com");
    assert_eq!(app.user_count().await, 2);
    let stored: Vec<String> = app
        .stored_users()
        .await
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(stored, ["victim@example.com", "x'or'1'='1@example.com"]);

    // It logs into its own account only.
    let token = app.login(sneaky, PASSWORD).await.unwrap().token;
    let claims = app.validate(&token).await.unwrap();
    assert_eq!(claims.sub, registered.user_id);
    assert_eq!(claims.email, "x'or'1'='1@example.com");
    expect_code(
        app.login(sneaky, "victim's password").await,
        Code::Unauthenticated,
    );

    // Classic payloads that are not addresses are refused and leave the table alone.
    for payload in [
        "' OR '1'='1",
        "victim@example.com' --",
        "a@example.com'; DROP TABLE users; --",
    ] {
        expect_code(app.register(payload, PASSWORD).await, Code::InvalidArgument);
        expect_code(app.login(payload, PASSWORD).await, Code::Unauthenticated);
    }
    assert_eq!(app.user_count().await, 2);
    app.stop().await;
}

async fn the_stored_password_is_an_argon2id_hash(backend: Backend) {
    let app = backend.spawn().await;
    let email = unique_email("hash");
    let registered = app.register(&email, PASSWORD).await.unwrap();

    let stored = app.stored_users().await;
    let [user] = &stored[..] else {
        panic!("one account expected: {stored:?}");
    };
    assert_eq!(user.id, registered.user_id);
    assert_eq!(user.email, email.to_lowercase());
    let hash = &user.password_hash;
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert!((chrono::Utc::now() - user.created_at).num_seconds().abs() < 60);
    assert_eq!(user.created_at, user.updated_at);

    // The same password registered twice gets two different (salted) hashes.
    let other = unique_email("hash2");
    app.register(&other, PASSWORD).await.unwrap();
    let hashes: Vec<String> = app
        .stored_users()
        .await
        .into_iter()
        .map(|u| u.password_hash)
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1]);
    app.stop().await;
}
