//! Tasks operators run from the command line (`auth create-user EMAIL`).

use crate::backends::Backends;
use crate::configuration::Settings;
use crate::error::AuthError;
use crate::startup::Core;
use crate::store::User;
use secrecy::SecretString;
use std::time::Duration;

/// Creates an account in the configured database. Unlike the service, gives up after a few
/// connection attempts: an operator is waiting.
pub async fn create_user(
    settings: &Settings,
    email: &str,
    password: SecretString,
) -> Result<User, AuthError> {
    let backends = Backends::connect_with(
        &settings.database_url,
        platform::retry::bounded(Duration::from_millis(500), 4),
    )
    .await?;
    let core = Core::assemble(settings, backends).await?;
    core.accounts.register(email, password).await
}
