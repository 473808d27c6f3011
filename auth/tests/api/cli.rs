//! The `auth` binary: configuration errors and the `create-user` operator command.

use crate::helpers::{Backend, PASSWORD, on_both_backends, spawn_app_on};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run_auth(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the auth binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_malformed_variable_exits_2_with_one_line_naming_it() {
    let output = run_auth(&[], &[("TOKEN_TTL", "forever")], "");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("invalid value for TOKEN_TTL (\"forever\")"),
        "{stderr}"
    );
}

on_both_backends!(create_user_reads_the_password_from_stdin);

async fn create_user_reads_the_password_from_stdin(backend: Backend) {
    let database = backend.fresh_database().await;
    let env = [("DATABASE_URL", database.url.as_str())];
    let output = run_auth(
        &["create-user", "Ops@Example.com"],
        &env,
        &format!("{PASSWORD}\n"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("ops@example.com"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // Once more: refused, the account exists.
    let output = run_auth(
        &["create-user", "ops@example.com"],
        &env,
        "other password\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");

    // A password that is too short is refused with the reason.
    let output = run_auth(&["create-user", "short@example.com"], &env, "short\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 8 bytes"), "{stderr}");

    // The service accepts the password given on stdin (without its newline).
    let app = spawn_app_on(&database, |_| {}).await;
    app.login("ops@example.com", PASSWORD).await.unwrap();
    assert_eq!(app.user_count().await, 1);
    app.stop().await;
}
