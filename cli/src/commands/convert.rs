//! `mp3 convert FILE...`: for each file, upload it (progress bar), follow the job's events
//! (second bar), download the MP3 next to the input, and report; files go concurrently.

use super::jobs::{duration_text, save_with_bar};
use crate::cli::ConvertArgs;
use crate::client::{ClientError, Job, StreamItem};
use crate::error::CliError;
use crate::progress::{Ui, human_bytes, short_label};
use crate::session::Session;
use api::{JobStatus, Quality};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use indicatif::ProgressBar;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Width of the file names in front of the bars.
const LABEL_WIDTH: usize = 24;
/// An upload refused for the user's upload rate is retried after the server's `Retry-After`
/// this many times, when the wait is at most [`MAX_RATE_LIMIT_WAIT`].
const MAX_RATE_LIMIT_WAITS: u32 = 10;
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);

/// One input and where its MP3 goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub input: PathBuf,
    pub output: PathBuf,
}

/// Decides every output before anything is uploaded, so a clash is a usage error up front
/// rather than one MP3 silently overwriting another.
pub fn plan(
    inputs: &[PathBuf],
    output: Option<&Path>,
    output_is_dir: bool,
) -> Result<Vec<Planned>, CliError> {
    if output.is_some() && !output_is_dir && inputs.len() > 1 {
        return Err(CliError::Usage(
            "with several files, --output must be an existing directory".into(),
        ));
    }
    let mut planned: Vec<Planned> = Vec::with_capacity(inputs.len());
    let mut claimed: HashMap<PathBuf, PathBuf> = HashMap::new();
    for input in inputs {
        let target = match output {
            Some(file) if !output_is_dir => {
                if file == input {
                    return Err(CliError::Usage(format!(
                        "--output {} would overwrite the input",
                        file.display()
                    )));
                }
                file.to_owned()
            }
            Some(dir) => beside(input, Some(dir)),
            None => beside(input, None),
        };
        if let Some(other) = claimed.insert(target.clone(), input.clone()) {
            return Err(CliError::Usage(format!(
                "{} and {} would both be converted to {}",
                other.display(),
                input.display(),
                target.display()
            )));
        }
        planned.push(Planned {
            input: input.clone(),
            output: target,
        });
    }
    Ok(planned)
}

/// `<dir or the input's dir>/<stem>.mp3`, never the input itself.
fn beside(input: &Path, dir: Option<&Path>) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "output".into());
    let dir = dir
        .map(Path::to_owned)
        .unwrap_or_else(|| input.parent().map(Path::to_owned).unwrap_or_default());
    let mut name = stem.clone();
    name.push(".mp3");
    let target = dir.join(&name);
    if target == input {
        let mut name = stem;
        name.push(".converted.mp3");
        return dir.join(name);
    }
    target
}

pub async fn run(session: &Session, ui: &Ui, args: ConvertArgs) -> Result<u8, CliError> {
    // clap lets at most one of the two through.
    let quality = args.quality.or(args.bitrate);
    for input in &args.inputs {
        if !input.is_file() {
            return Err(CliError::Usage(format!(
                "{}: no such file",
                input.display()
            )));
        }
    }
    let output_is_dir = args.output.as_deref().is_some_and(Path::is_dir);
    let planned = plan(&args.inputs, args.output.as_deref(), output_is_dir)?;
    // Log in (or renew a refused session) once, before the uploads start in parallel.
    session.ensure_accepted().await?;

    let quality = quality.as_ref();
    let mut results = futures::stream::iter(planned)
        .map(|item| convert_one(session, ui, item, quality, args.rm))
        .buffer_unordered(usize::from(args.parallel));
    let mut failures = 0usize;
    while let Some(report) = results.next().await {
        if !report.print(ui) {
            failures += 1;
        }
    }
    Ok(u8::from(failures > 0))
}

/// What happened to one file.
struct Report {
    input: PathBuf,
    job_id: Option<String>,
    outcome: Result<Converted, CliError>,
}

struct Converted {
    output: PathBuf,
    size: u64,
    job: Job,
    deleted: bool,
}

impl Report {
    /// Prints the outcome; `true` when the file was converted.
    fn print(self, ui: &Ui) -> bool {
        let input = self.input.display().to_string();
        match self.outcome {
            Ok(done) => {
                ui.result(
                    || {
                        let mut details = vec![human_bytes(done.size)];
                        if let Some(seconds) = done.job.view.duration_seconds {
                            details.push(duration_text(seconds));
                        }
                        if let Some(kbps) = done.job.view.bitrate_kbps {
                            details.push(format!("{kbps} kbit/s"));
                        }
                        format!(
                            "✓ {input} → {} ({})",
                            done.output.display(),
                            details.join(", ")
                        )
                    },
                    || {
                        json!({
                            "input": input,
                            "status": "succeeded",
                            "job_id": done.job.id(),
                            "output": done.output,
                            "size_bytes": done.size,
                            "duration_seconds": done.job.view.duration_seconds,
                            "bitrate_kbps": done.job.view.bitrate_kbps,
                            "deleted": done.deleted,
                        })
                    },
                );
                true
            }
            Err(error) => {
                ui.error(
                    &format!("{input}: {error}"),
                    error.code(),
                    Some(json!({"input": input, "status": "failed", "job_id": self.job_id})),
                );
                false
            }
        }
    }
}

async fn convert_one(
    session: &Session,
    ui: &Ui,
    planned: Planned,
    quality: Option<&Quality>,
    delete_after: bool,
) -> Report {
    let mut job_id = None;
    let outcome = convert_steps(session, ui, &planned, quality, delete_after, &mut job_id).await;
    Report {
        input: planned.input,
        job_id,
        outcome,
    }
}

async fn convert_steps(
    session: &Session,
    ui: &Ui,
    planned: &Planned,
    quality: Option<&Quality>,
    delete_after: bool,
    job_id: &mut Option<String>,
) -> Result<Converted, CliError> {
    let client = session.client();
    let name = planned
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = short_label(&name, LABEL_WIDTH);
    let length = tokio::fs::metadata(&planned.input)
        .await
        .map_err(|source| ClientError::File {
            path: planned.input.clone(),
            source,
        })?
        .len();

    let upload_bar = ui.transfer_bar(&label, "upload", Some(length));
    let mut waits = 0;
    let submitted = loop {
        let attempt = session
            .call(|token| {
                // A retry after a refused token starts the file again.
                upload_bar.set_position(0);
                let counter = upload_bar.clone();
                async move {
                    client
                        .upload(&token, &planned.input, quality, move |n| counter.inc(n))
                        .await
                }
            })
            .await;
        // The server limits uploads per user (per minute, and at once): wait as it asks.
        match &attempt {
            Err(CliError::Client(error)) if waits < MAX_RATE_LIMIT_WAITS => {
                match error
                    .retry_after()
                    .filter(|wait| *wait <= MAX_RATE_LIMIT_WAIT)
                {
                    Some(wait) => {
                        waits += 1;
                        upload_bar.set_message("waiting");
                        tokio::time::sleep(wait).await;
                        upload_bar.set_message("upload");
                    }
                    None => break attempt,
                }
            }
            _ => break attempt,
        }
    };
    let submitted = match submitted {
        Ok(submitted) => submitted,
        Err(error) => {
            upload_bar.abandon_with_message("failed");
            upload_bar.finish_and_clear();
            return Err(error);
        }
    };
    upload_bar.finish_with_message("uploaded");
    *job_id = Some(submitted.job_id().to_owned());

    let conversion_bar = ui.conversion_bar(&label, Some(&upload_bar));
    let followed = follow(session, submitted.job_id(), &conversion_bar).await;
    upload_bar.finish_and_clear();
    conversion_bar.finish_and_clear();
    let job = followed?;
    match job.view.status {
        JobStatus::Succeeded => {}
        JobStatus::Failed => {
            return Err(CliError::JobFailed(format!(
                "the conversion failed: {}",
                job.view
                    .failure_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            )));
        }
        other => {
            return Err(CliError::JobFailed(format!(
                "the job ended as {other} before an MP3 was made"
            )));
        }
    }

    let id = submitted.job_id();
    let download = session
        .call(|token| async move { client.download(&token, id).await })
        .await?;
    let size = save_with_bar(ui, download, &planned.output, &name).await?;
    let deleted = if delete_after {
        session
            .call(|token| async move { client.delete(&token, id).await })
            .await?;
        true
    } else {
        false
    };
    Ok(Converted {
        output: planned.output.clone(),
        size,
        job,
        deleted,
    })
}

/// Reconnection schedule for a broken event stream (about a minute in all).
fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(10)
        .with_jitter()
        .build()
}

/// Follows the job's events until it is terminal, showing its progress on `bar`. A broken
/// stream is resumed (`Last-Event-ID`) with backoff; the job's state is read directly between
/// attempts, so a missed final event cannot leave us waiting.
async fn follow(session: &Session, job_id: &str, bar: &ProgressBar) -> Result<Job, CliError> {
    let client = session.client();
    let mut last_event: Option<String> = None;
    let mut backoff = reconnect_backoff();
    loop {
        let problem: String;
        let opened = session
            .call(|token| {
                let last = last_event.clone();
                async move { client.events(&token, job_id, last.as_deref()).await }
            })
            .await;
        match opened {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                let mut ended = String::from("the event stream ended early");
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(StreamItem::Update { event_id, job }) => {
                            if !event_id.is_empty() {
                                last_event = Some(event_id);
                            }
                            show(bar, &job);
                            if job.view.status.is_terminal() {
                                return Ok(*job);
                            }
                            backoff = reconnect_backoff();
                        }
                        Ok(StreamItem::ServerError(message)) => {
                            ended = message;
                            break;
                        }
                        Err(error) => {
                            ended = error.to_string();
                            break;
                        }
                    }
                }
                problem = ended;
            }
            Err(CliError::Client(error)) if error.is_transient() => problem = error.to_string(),
            Err(error) => return Err(error),
        }
        match session
            .call(|token| async move { client.job(&token, job_id).await })
            .await
        {
            Ok(job) if job.view.status.is_terminal() => return Ok(job),
            Ok(job) => show(bar, &job),
            Err(CliError::Client(error)) if error.is_transient() => {}
            Err(error) => return Err(error),
        }
        let Some(delay) = backoff.next() else {
            return Err(CliError::Other(anyhow::anyhow!(
                "lost track of job {job_id} ({problem}); check it later with `mp3 status {job_id}`"
            )));
        };
        bar.set_message("reconnect");
        tokio::time::sleep(delay).await;
    }
}

fn show(bar: &ProgressBar, job: &Job) {
    match job.view.status {
        JobStatus::Submitted => bar.set_message("queued"),
        JobStatus::Converting => {
            bar.set_message("convert");
            bar.set_position(u64::from(job.view.progress));
        }
        JobStatus::Succeeded => {
            bar.set_message("done");
            bar.set_position(100);
        }
        other => bar.set_message(other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn mp3s_go_next_to_their_inputs_by_default() {
        let planned = plan(&paths(&["videos/a.mp4", "b.mkv"]), None, false).unwrap();
        assert_eq!(planned[0].output, Path::new("videos/a.mp3"));
        assert_eq!(planned[1].output, Path::new("b.mp3"));
    }

    #[test]
    fn an_mp3_input_is_never_overwritten() {
        let planned = plan(&paths(&["song.mp3"]), None, false).unwrap();
        assert_eq!(planned[0].output, Path::new("song.converted.mp3"));
        assert!(matches!(
            plan(&paths(&["song.mp3"]), Some(Path::new("song.mp3")), false),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn output_is_a_file_for_one_input_and_a_directory_for_several() {
        let one = plan(&paths(&["a.mp4"]), Some(Path::new("out/x.mp3")), false).unwrap();
        assert_eq!(one[0].output, Path::new("out/x.mp3"));
        let several = plan(&paths(&["a.mp4", "d/b.mp4"]), Some(Path::new("out")), true).unwrap();
        assert_eq!(several[0].output, Path::new("out/a.mp3"));
        assert_eq!(several[1].output, Path::new("out/b.mp3"));
        let error = plan(&paths(&["a.mp4", "b.mp4"]), Some(Path::new("x.mp3")), false).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn clashing_outputs_are_refused_up_front() {
        let error = plan(&paths(&["a.mp4", "a.mkv"]), None, false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("would both be converted to a.mp3"),
            "{error}"
        );
        assert!(
            plan(
                &paths(&["x/a.mp4", "y/a.mp4"]),
                Some(Path::new("out")),
                true
            )
            .is_err()
        );
    }
}
