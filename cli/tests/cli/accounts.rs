//! `mp3 signup`, `login`, `logout`: sessions are remembered privately, the server's refusals
//! reach the user, and a command line that cannot work is a usage error.

use crate::helpers::Stack;

#[tokio::test(flavor = "multi_thread")]
async fn signup_and_login_remember_a_private_session_without_the_password() {
    let stack = Stack::start().await;
    let (email, password) = stack.signed_up().await;
    // signup logs in too.
    let session = std::fs::read_to_string(stack.session_file()).expect("signup saved a session");
    assert!(session.contains(&email), "{session}");
    assert!(
        !session.contains(&password),
        "the password must never be stored"
    );

    let logout = stack.mp3().args(["logout"]).run().await;
    logout.assert_success();
    assert!(
        logout.stdout().contains("Logged out"),
        "{}",
        logout.stdout()
    );
    assert!(!stack.session_file().exists());

    let login = stack
        .mp3()
        .args(["--json", "login", "--email", &email, "--password-stdin"])
        .stdin(&format!("{password}\n"))
        .run()
        .await;
    login.assert_success();
    let answer = login.json();
    assert_eq!(answer["email"], email.as_str());
    assert_eq!(answer["server"], stack.server.as_str());
    assert!(answer["expires_at"].is_string(), "{answer}");
    assert!(
        answer.get("token").is_none(),
        "the token stays out of the output"
    );

    let saved: cli::config::CachedToken =
        serde_json::from_slice(&std::fs::read(stack.session_file()).unwrap()).unwrap();
    assert_eq!(saved.email.as_deref(), Some(email.as_str()));
    assert!(saved.token.split('.').count() == 3, "a JWT is cached");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(stack.session_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "session files are private");
    }

    // The cached session works for the next command without any credentials.
    stack.mp3().args(["jobs"]).run().await.assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_refusals_are_shown_with_a_failure_exit_code() {
    let stack = Stack::start().await;
    let (email, password) = stack.signed_up().await;

    let wrong = stack
        .mp3()
        .args(["login", "--email", &email])
        .env("MP3_PASSWORD", "not the password")
        .run()
        .await;
    wrong.assert_failure(1);
    assert!(
        wrong.stderr().contains("invalid email or password"),
        "{}",
        wrong.stderr()
    );

    let again = stack
        .mp3()
        .args(["--json", "signup", "--password-stdin"])
        .env("MP3_EMAIL", &email)
        .stdin(&format!("{password}\n"))
        .run()
        .await;
    again.assert_failure(1);
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    assert_eq!(again.json()["error"], "conflict");

    let invalid = stack
        .mp3()
        .args(["signup", "--email", "not-an-email", "--password-stdin"])
        .stdin("correct horse battery staple\n")
        .run()
        .await;
    invalid.assert_failure(1);
    assert!(invalid.stderr().contains("error:"), "{}", invalid.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn command_lines_that_cannot_work_exit_with_2() {
    let stack = Stack::start().await;
    // No terminal, no password: nothing to log in with.
    let login = stack
        .mp3()
        .args(["login", "--email", "a@example.com"])
        .run()
        .await;
    login.assert_failure(2);
    assert!(
        login.stderr().contains("MP3_PASSWORD"),
        "{}",
        login.stderr()
    );

    let bad_server = stack
        .mp3()
        .args(["--server", "localhost:8080", "jobs"])
        .run()
        .await;
    bad_server.assert_failure(2);
    assert!(
        bad_server.stderr().contains("not a valid server URL"),
        "{}",
        bad_server.stderr()
    );

    let missing = stack
        .mp3()
        .args(["convert", "does-not-exist.mp4"])
        .run()
        .await;
    missing.assert_failure(2);
    assert!(
        missing.stderr().contains("no such file"),
        "{}",
        missing.stderr()
    );

    let unknown = stack.mp3().args(["convert"]).run().await;
    unknown.assert_failure(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named_in_the_error() {
    let port = platform::testing::free_port();
    let stack = Stack::start().await;
    let run = stack
        .mp3()
        .args(["login", "--email", "a@example.com"])
        .env("MP3_PASSWORD", "whatever")
        .env("MP3_SERVER", &format!("http://127.0.0.1:{port}"))
        .run()
        .await;
    run.assert_failure(1);
    assert!(
        run.stderr().contains(&format!(
            "cannot reach the server at http://127.0.0.1:{port}"
        )),
        "{}",
        run.stderr()
    );
}
