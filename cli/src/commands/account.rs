//! `mp3 signup`, `mp3 login` and `mp3 logout`.

use crate::error::CliError;
use crate::progress::Ui;
use crate::session::{Session, missing_credentials};
use serde_json::json;

pub async fn login(session: &Session, ui: &Ui) -> Result<u8, CliError> {
    let cached = session.login().await?;
    let server = session.client().server();
    let email = cached.email.clone().unwrap_or_default();
    ui.result(
        || match cached.expires_at {
            Some(at) => format!(
                "Logged in to {server} as {email} (session valid until {}).",
                at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
            ),
            None => format!("Logged in to {server} as {email}."),
        },
        || json!({"server": server, "email": email, "expires_at": cached.expires_at}),
    );
    Ok(0)
}

/// Creates the account, then logs in so the next command just works.
pub async fn signup(session: &Session, ui: &Ui) -> Result<u8, CliError> {
    let Some((email, password)) = session.complete(None, true).await? else {
        return Err(CliError::Usage(missing_credentials()));
    };
    let created = session.client().signup(&email, &password).await?;
    let cached = session.login_as(email.clone(), password).await?;
    let server = session.client().server();
    ui.result(
        || format!("Account {email} created on {server}; you are logged in."),
        || {
            json!({
                "server": server,
                "email": email,
                "user_id": created.user_id,
                "expires_at": cached.expires_at,
            })
        },
    );
    Ok(0)
}

pub fn logout(session: &Session, ui: &Ui) -> Result<u8, CliError> {
    let server = session.client().server();
    let removed = session
        .cache()
        .remove(server)
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot remove the session file: {e}")))?;
    ui.result(
        || {
            if removed {
                format!("Logged out of {server}.")
            } else {
                format!("There was no session for {server}.")
            }
        },
        || json!({"server": server, "logged_out": removed}),
    );
    Ok(0)
}
