//! The notification service: emails each job's owner once when the conversion succeeded or
//! failed, and publishes `notification.sent` / `notification.failed`.
//!
//! - [`configuration`]: settings from the environment;
//! - [`mail`]: the wording of the mails (pure);
//! - [`mailer`]: the mail-sending seam and SMTP;
//! - [`sent_log`]: the exactly-once record, and MongoDB;
//! - [`local_mailer`], [`local_sent_log`]: `.eml` files and a local file, for the all-in-one mode;
//! - [`notifier`]: the event handler tying them together;
//! - [`backends`]: the backing services, chosen in one place;
//! - [`startup`]: composition, health endpoints and the run loop.

pub mod backends;
pub mod configuration;
pub mod local_mailer;
pub mod local_sent_log;
pub mod mail;
pub mod mailer;
pub mod notifier;
pub mod sent_log;
pub mod startup;

pub use backends::Backends;
pub use configuration::Settings;
pub use startup::Application;
