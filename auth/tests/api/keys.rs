//! Signing keys: generated once per database, shared by every instance, or supplied by operators.

use crate::helpers::{Backend, PASSWORD, on_both_backends, spawn_app_on, start, unique_email};
use auth::keys::SigningKey;
use auth::{Application, Settings};
use contracts::auth::v1::GetVerificationKeysRequest;
use secrecy::ExposeSecret;

async fn kids(app: &crate::helpers::TestApp) -> Vec<String> {
    app.client
        .clone()
        .get_verification_keys(GetVerificationKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect()
}

on_both_backends!(
    instances_starting_together_on_a_fresh_database_agree_on_one_key,
    an_operator_supplied_key_signs_and_is_never_stored,
);

/// On SQLite: two instances on the same file, as the all-in-one mode restarted (or the
/// `create-user` command run while it starts).
async fn instances_starting_together_on_a_fresh_database_agree_on_one_key(backend: Backend) {
    let database = backend.fresh_database().await;
    // Two replicas racing through migrations and key creation on an empty database.
    let (first, second) = tokio::join!(
        Application::connect(Settings::for_tests(&database.url)),
        Application::connect(Settings::for_tests(&database.url)),
    );
    let first = start(first.unwrap(), &database).await;
    let second = start(second.unwrap(), &database).await;

    assert_eq!(first.signing_key_count().await, 1);
    let (stored_kid, _) = first.stored_signing_key().await;
    assert_eq!(kids(&first).await, std::slice::from_ref(&stored_kid));
    assert_eq!(kids(&second).await, std::slice::from_ref(&stored_kid));

    // A token from one replica validates on the other.
    let email = unique_email("replica");
    first.register(&email, PASSWORD).await.unwrap();
    let token = second.login(&email, PASSWORD).await.unwrap().token;
    let claims = first.validate(&token).await.unwrap();
    assert_eq!(claims.email, email.to_lowercase());
    first.stop().await;

    // A restart keeps the key: old tokens stay valid.
    let restarted = spawn_app_on(&database, |_| {}).await;
    assert_eq!(kids(&restarted).await, [stored_kid]);
    restarted.validate(&token).await.unwrap();
    second.stop().await;
    restarted.stop().await;
}

async fn an_operator_supplied_key_signs_and_is_never_stored(backend: Backend) {
    // As `openssl genpkey -algorithm ed25519` would produce, passed via SIGNING_KEY_PEM.
    let operator_key = SigningKey::generate();
    let pem = operator_key.private_key_pem().expose_secret().to_owned();
    let app = backend
        .spawn_with(|settings| {
            settings.signing_key = Some(SigningKey::from_pkcs8_pem(&pem).unwrap());
        })
        .await;

    assert_eq!(kids(&app).await, std::slice::from_ref(&operator_key.kid));
    let token = app.registered_token(&unique_email("operator")).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(operator_key.kid.as_str()));
    app.validate(&token).await.unwrap();

    assert_eq!(
        app.signing_key_count().await,
        0,
        "the operator's private key must not be copied into the database"
    );
    app.stop().await;
}
