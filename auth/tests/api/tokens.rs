//! ValidateToken refuses every forged, altered, expired or misdirected token, with a reason.

use crate::helpers::{Backend, TestApp, expect_code, on_both_backends, spawn_app, unique_email};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::auth::v1::GetVerificationKeysRequest;
use contracts::claims::{Claims, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tonic::Code;

/// Claims as auth would issue them, for `sub`, valid for an hour from now.
fn claims_for(sub: &str) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: sub.to_owned(),
        email: "someone@example.com".to_owned(),
        iat: now,
        exp: now + 3600,
        iss: DEFAULT_ISSUER.to_owned(),
        aud: DEFAULT_AUDIENCE.to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

/// Signs `claims` with the service's own stored key, as only auth could.
async fn sign_with_stored_key(app: &TestApp, claims: &Claims) -> String {
    let (kid, key) = app.stored_signing_key().await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

async fn expect_refused(app: &TestApp, token: &str, reason: &str) {
    let status = expect_code(app.validate(token).await, Code::Unauthenticated);
    assert_eq!(status.message(), format!("invalid token: {reason}"));
}

on_both_backends!(tokens_signed_with_the_stored_key_validate);

async fn tokens_signed_with_the_stored_key_validate(backend: Backend) {
    // Control for the tests below: the forging helper itself produces acceptable tokens.
    let app = backend.spawn().await;
    let claims = claims_for("user-123");
    let token = sign_with_stored_key(&app, &claims).await;
    let validated = app.validate(&token).await.unwrap();
    assert_eq!(validated.sub, "user-123");
    assert_eq!(validated.jti, claims.jti);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let mut claims = claims_for("user-1");
    claims.iat -= 7200;
    claims.exp = chrono::Utc::now().timestamp() - 3600;
    let token = sign_with_stored_key(&app, &claims).await;
    expect_refused(&app, &token, "token expired").await;
    app.stop().await;
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let app = spawn_app().await;
    let token = app.registered_token(&unique_email("tamper")).await;
    let parts: Vec<&str> = token.split('.').collect();

    // Claims changed (another user id), signature kept.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    expect_refused(&app, &forged, "bad signature").await;

    // Signature altered.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 0x01;
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    expect_refused(&app, &altered, "bad signature").await;

    // Signature dropped.
    expect_refused(
        &app,
        &format!("{}.{}.", parts[0], parts[1]),
        "bad signature",
    )
    .await;

    // The original is still fine.
    app.validate(&token).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = spawn_app().await;
    let (kid, _) = app.stored_signing_key().await;
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid});
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_for("admin")).unwrap())
    );
    expect_refused(
        &app,
        &token,
        "algorithm \"none\" is not accepted (tokens are signed with EdDSA)",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    let app = spawn_app().await;
    // The classic key-confusion attack: the public key is public, so an attacker can HMAC with it.
    let keys = app
        .client
        .clone()
        .get_verification_keys(GetVerificationKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let public = &keys.keys[0];
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(public.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims_for("admin"),
        &EncodingKey::from_secret(public.public_key_pem.as_bytes()),
    )
    .unwrap();
    expect_refused(
        &app,
        &token,
        "algorithm \"HS256\" is not accepted (tokens are signed with EdDSA)",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_is_refused() {
    let app = spawn_app().await;
    let mut claims = claims_for("user-1");
    claims.aud = "some-other-service".to_owned();
    expect_refused(
        &app,
        &sign_with_stored_key(&app, &claims).await,
        "wrong audience",
    )
    .await;

    let mut claims = claims_for("user-1");
    claims.iss = "someone-else".to_owned();
    expect_refused(
        &app,
        &sign_with_stored_key(&app, &claims).await,
        "wrong issuer",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_from_another_key_or_without_kid_is_refused() {
    let app = spawn_app().await;
    let (kid, key) = app.stored_signing_key().await;

    let stranger = auth::keys::SigningKey::generate();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(stranger.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims_for("u"), stranger.encoding_key()).unwrap();
    expect_refused(&app, &token, "token was signed by an unknown key").await;

    // A stranger's key claiming our kid fails on the signature.
    header.kid = Some(kid);
    let token = jsonwebtoken::encode(&header, &claims_for("u"), stranger.encoding_key()).unwrap();
    expect_refused(&app, &token, "bad signature").await;

    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims_for("u"), &key).unwrap();
    expect_refused(&app, &token, "token has no key id (kid)").await;
    app.stop().await;
}

#[tokio::test]
async fn junk_is_a_malformed_token() {
    let app = spawn_app().await;
    for junk in [
        "",
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9.e30",
        "x".repeat(9000).as_str(),
    ] {
        expect_refused(&app, junk, "malformed token").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn verification_keys_let_a_caller_verify_tokens_locally() {
    let app = spawn_app().await;
    let token = app.registered_token(&unique_email("gateway")).await;
    let keys = app
        .client
        .clone()
        .get_verification_keys(GetVerificationKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.issuer, DEFAULT_ISSUER);
    assert_eq!(keys.audience, DEFAULT_AUDIENCE);
    assert_eq!(keys.keys.len(), 1);
    let key = &keys.keys[0];
    assert_eq!(key.algorithm, "EdDSA");
    assert!(key.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    // What the gateway does: pick the key by kid, verify with EdDSA only.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    let decoding = DecodingKey::from_ed_pem(key.public_key_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&keys.issuer]);
    validation.set_audience(&[&keys.audience]);
    let verified = jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).unwrap();
    assert_eq!(verified.claims, {
        let claims = app.validate(&token).await.unwrap();
        Claims {
            sub: claims.sub,
            email: claims.email,
            iat: claims.iat,
            exp: claims.exp,
            iss: claims.iss,
            aud: claims.aud,
            jti: claims.jti,
        }
    });
    app.stop().await;
}
