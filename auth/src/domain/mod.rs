//! Domain types that parse instead of validate: once built, an `EmailAddress` or a `Password`
//! is known to be acceptable, so nothing downstream re-checks them.

mod email;
mod password;

pub use email::{EmailAddress, EmailError};
pub use password::{
    MAX_BYTES as MAX_PASSWORD_BYTES, MIN_BYTES as MIN_PASSWORD_BYTES, Password, PasswordError,
};
