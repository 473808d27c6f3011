//! The `mp3` binary against the real stack — auth (fresh MySQL database), the gateway and a
//! converter worker, all started in this process on one isolated RabbitMQ topology and the
//! MongoDB-wire server. Run with `scripts/test.sh -p cli`.

mod accounts;
mod convert;
mod helpers;
mod jobs;
mod sessions;
