//! `<service> redrive-parked`: the operator's command that puts the events the service's consumer
//! parked (written by a newer build, see [`crate::rabbit`]) back into its queue, once the service
//! runs a build that reads them. Typically the last step of a rolling deploy.
//!
//! It connects to the service's broker (`AMQP_URL`, read by the service: which variables a
//! service reads stays visible in its own code), moves the messages of `<queue>.parked` into
//! `<queue>`, prints how many and exits 0, or prints the error and exits 1. Events still too new
//! for the running consumer are simply parked again.

use crate::rabbit::RabbitBus;
use std::process::ExitCode;

/// The first argument that selects the command.
pub const ARGUMENT: &str = "redrive-parked";

/// Runs the re-drive when the process was started as `<binary> redrive-parked` and gives the exit
/// code `main` returns; `None` otherwise. `queue` is the service's queue (its `Subscription`'s);
/// `amqp_url` gives the broker's URL, asked only when the command runs.
pub fn run_if_requested(queue: &str, amqp_url: impl FnOnce() -> String) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(ARGUMENT) {
        return None;
    }
    if args.next().is_some() {
        eprintln!("usage: {ARGUMENT} (moves {queue}.parked back into {queue}; reads AMQP_URL)");
        return Some(ExitCode::from(2));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{ARGUMENT}: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let bus = RabbitBus::new(amqp_url());
    Some(match runtime.block_on(bus.redrive_parked(queue)) {
        Ok(moved) => {
            println!("{moved} parked event(s) moved back into {queue}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{ARGUMENT}: {e}");
            ExitCode::FAILURE
        }
    })
}
