//! `Settings::from_env`: the defaults a newcomer gets, the variables that switch a backend to the
//! real service, and one-line errors naming a malformed variable. One test: the environment is
//! process-wide (nextest runs each test in its own process).

use allinone::Settings;
use std::path::PathBuf;

const VARIABLES: [&str; 8] = [
    "DATA_DIR",
    "HTTP_ADDR",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "MONGODB_URI",
    "AMQP_URL",
    "SMTP_URL",
    "MAX_UPLOAD_BYTES",
];

fn set(name: &str, value: &str) {
    // SAFETY: this test binary has a single test, which owns the environment.
    unsafe { std::env::set_var(name, value) };
}

fn clear() {
    for name in VARIABLES {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
}

#[test]
fn defaults_switches_and_malformed_values() {
    clear();
    let settings = Settings::from_env().unwrap();
    assert_eq!(settings.data_dir, PathBuf::from("./data"));
    assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8080");
    assert!(settings.public_base_url.is_none());
    assert!(settings.database_url.is_none());
    assert!(settings.mongodb_uri.is_none());
    assert!(settings.amqp_url.is_none());
    assert!(settings.smtp_url.is_none());
    assert_eq!(
        settings.auth_database_url(),
        "sqlite://./data/auth.db?mode=rwc"
    );
    assert!(settings.start_converter && settings.start_notification);

    set("DATA_DIR", "/var/lib/mp3");
    set("HTTP_ADDR", "0.0.0.0:9000");
    set("PUBLIC_BASE_URL", "https://mp3.example.com/");
    set("DATABASE_URL", "mysql://root@127.0.0.1:3306/auth");
    set("MONGODB_URI", "mongodb://127.0.0.1:27017");
    set("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    set("SMTP_URL", "smtp://user:hunter2@127.0.0.1:1025");
    set("MAX_UPLOAD_BYTES", "1048576");
    let settings = Settings::from_env().unwrap();
    assert_eq!(settings.data_dir, PathBuf::from("/var/lib/mp3"));
    assert_eq!(settings.http_addr.port(), 9000);
    assert_eq!(
        settings.public_base_url.as_ref().unwrap().as_str(),
        "https://mp3.example.com"
    );
    assert_eq!(
        settings.auth_database_url(),
        "mysql://root@127.0.0.1:3306/auth"
    );
    assert_eq!(
        settings.mongodb_uri.as_ref().map(|uri| uri.expose()),
        Some("mongodb://127.0.0.1:27017")
    );
    assert!(settings.amqp_url.is_some());
    assert_eq!(
        settings.smtp_url.as_ref().unwrap().to_string(),
        "smtp://user:***@127.0.0.1:1025"
    );
    assert_eq!(
        settings.gateway.max_upload_bytes, 1_048_576,
        "the services' own variables apply"
    );

    for (name, value) in [
        ("HTTP_ADDR", "nope"),
        ("PUBLIC_BASE_URL", "mp3.example.com"),
        ("DATABASE_URL", "postgres://db/auth"),
        ("SMTP_URL", "imap://user:hunter2@mail.example.com"),
    ] {
        clear();
        set(name, value);
        let line = Settings::from_env().unwrap_err().to_string();
        assert!(line.contains(name), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }
    clear();
}
