//! Process start-up and exit shared by the service binaries: allocator tuning, then the Tokio
//! runtime; at the end, the exit code and the one-line error.

use crate::config::ConfigError;
use std::future::Future;
use std::process::ExitCode;

/// Runs `main` to completion on a multi-threaded Tokio runtime, after tuning the allocator.
/// Call it first thing in `fn main`: the tuning must precede every other thread.
pub fn run<F: Future>(main: F) -> F::Output {
    single_malloc_arena();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the Tokio runtime starts")
        .block_on(main)
}

/// glibc gives each allocating thread its own arena and each arena keeps the large buffers freed
/// in it (GridFS chunks are 1 MiB, copied a few times on their way out), so every runtime thread
/// ends up holding its own set. Measured on a 1 GiB upload: gateway peak RSS 28–30 MiB with the
/// default arenas, 24 MiB with one, upload wall time within the run-to-run noise (these services
/// allocate too little for the shared arena's lock to matter). An operator's own
/// `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` setting wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn single_malloc_arena() {
    let tuned_by_operator = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if !tuned_by_operator {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn single_malloc_arena() {}

/// How a service process ends, for every `main.rs`: success, or the error on one line of standard
/// error and an exit code — 2 for a configuration error (a [`ConfigError`] anywhere in the error's
/// chain: the line names the variable), 1 for anything else (`{service}: error: causes`). Library
/// code returns errors and never ends the process itself.
pub fn exit_code(service: &str, outcome: anyhow::Result<()>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    match error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ConfigError>())
    {
        Some(config) => {
            eprintln!("{config}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{service}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_error_anywhere_in_the_chain_exits_2() {
        let error = anyhow::Error::new(ConfigError::new("TOKEN_TTL", "forever", "not a duration"))
            .context("reading the settings");
        assert_eq!(exit_code("auth", Err(error)), ExitCode::from(2));
        assert_eq!(
            exit_code("auth", Err(anyhow::anyhow!("boom"))),
            ExitCode::FAILURE
        );
        assert_eq!(exit_code("auth", Ok(())), ExitCode::SUCCESS);
    }
}
