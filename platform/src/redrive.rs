//! The operator's commands on messages the service's consumer set aside, run as
//! `<service> COMMAND` with the service's own `AMQP_URL`:
//!
//! - `redrive-parked`: puts the events the consumer parked (written by a newer build, see
//!   [`crate::rabbit`]) back into its queue, once the service runs a build that reads them.
//!   Typically the last step of a rolling deploy. Events still too new are simply parked again.
//! - `dead-letters`: lists the dead-letter queue (where each message died, why, which event),
//!   leaving it as it is.
//! - `dead-letters redrive`: moves the dead letters that died in this service's queue back into
//!   it, with their retries counted afresh (after the cause was fixed); other services' stay.
//!
//! Each prints what it did and exits 0, or prints the error and exits 1 (2 for a usage error).

use crate::rabbit::{DeadLetter, RabbitBus};
use std::process::ExitCode;

/// The first argument that selects the re-drive of parked events.
pub const ARGUMENT: &str = "redrive-parked";
/// The first argument that selects the dead-letter commands.
pub const DEAD_LETTERS: &str = "dead-letters";
/// How many dead letters `dead-letters` lists at most.
const LIST_LIMIT: usize = 1000;

enum Command {
    RedriveParked,
    ListDeadLetters,
    RedriveDeadLetters,
}

/// Runs the command when the process was started as `<binary> redrive-parked` or `<binary>
/// dead-letters [redrive]` and gives the exit code `main` returns; `None` otherwise. `queue` is
/// the service's queue (its `Subscription`'s); `amqp_url` gives the broker's URL, asked only when
/// a command runs.
pub fn run_if_requested(queue: &str, amqp_url: impl FnOnce() -> String) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = match args.as_slice() {
        [ARGUMENT] => Command::RedriveParked,
        [DEAD_LETTERS] => Command::ListDeadLetters,
        [DEAD_LETTERS, "redrive"] => Command::RedriveDeadLetters,
        [ARGUMENT, ..] | [DEAD_LETTERS, ..] => {
            eprintln!(
                "usage: {ARGUMENT} (moves {queue}.parked back into {queue})\n       \
                 {DEAD_LETTERS} [redrive] (lists the dead-letter queue; redrive moves what died \
                 in {queue} back into it)\nBoth read AMQP_URL."
            );
            return Some(ExitCode::from(2));
        }
        _ => return None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{}: {e}", args[0]);
            return Some(ExitCode::FAILURE);
        }
    };
    let bus = RabbitBus::new(amqp_url());
    let outcome = runtime.block_on(async {
        match command {
            Command::RedriveParked => bus
                .redrive_parked(queue)
                .await
                .map(|moved| format!("{moved} parked event(s) moved back into {queue}")),
            Command::ListDeadLetters => bus
                .dead_letters(LIST_LIMIT)
                .await
                .map(|letters| describe(&letters)),
            Command::RedriveDeadLetters => bus
                .redrive_dead_letters(queue)
                .await
                .map(|moved| format!("{moved} dead letter(s) moved back into {queue}")),
        }
    });
    Some(match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", args[0]);
            ExitCode::FAILURE
        }
    })
}

/// One line per dead letter: queue, reason, event type, job and event ids, size.
pub fn describe(letters: &[DeadLetter]) -> String {
    let unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let mut lines = vec![format!("{} dead letter(s)", letters.len())];
    lines.extend(letters.iter().map(|letter| {
        format!(
            "queue={} reason={} event_type={} job_id={} event_id={} bytes={}",
            unknown(&letter.queue),
            unknown(&letter.reason),
            unknown(&letter.event_type),
            unknown(&letter.job_id),
            unknown(&letter.event_id),
            letter.bytes
        )
    }));
    lines.join("\n")
}
