//! `mp3 jobs`, `mp3 status ID`, `mp3 download ID` and `mp3 rm ID...`.

use crate::client::{Download, Job};
use crate::error::CliError;
use crate::progress::{Ui, human_bytes, short_label};
use crate::session::Session;
use api::JobStatus;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The server's largest page.
const MAX_PAGE: u32 = 100;

pub async fn list(session: &Session, ui: &Ui, limit: u32) -> Result<u8, CliError> {
    let client = session.client();
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        let page_size = (limit - jobs.len() as u32).min(MAX_PAGE);
        let before = jobs.last().map(|job| job.id().to_owned());
        let page = session
            .call(|token| {
                let before = before.clone();
                async move { client.jobs(&token, page_size, before.as_deref()).await }
            })
            .await?;
        let exhausted = !page.has_more || page.jobs.is_empty();
        jobs.extend(page.jobs);
        if exhausted || jobs.len() as u32 >= limit {
            break;
        }
    }
    if ui.json() {
        for job in &jobs {
            ui.result(String::new, || job.raw.clone());
        }
    } else if jobs.is_empty() {
        ui.result(
            || "No jobs yet: convert a video with `mp3 convert FILE`.".into(),
            || json!({}),
        );
    } else {
        ui.result(|| job_table(&jobs), || json!({}));
    }
    Ok(0)
}

fn job_table(jobs: &[Job]) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["JOB ID", "FILE", "STATUS", "SUBMITTED", "RESULT"]);
    for job in jobs {
        table.add_row([
            job.id().to_owned(),
            short_label(job.view.original_filename.as_deref().unwrap_or("-"), 32)
                .trim_end()
                .to_owned(),
            status_text(job),
            job.view
                .submitted_at
                .map(|at| {
                    at.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M")
                        .to_string()
                })
                .unwrap_or_else(|| "-".into()),
            result_text(job),
        ]);
    }
    table.to_string()
}

fn status_text(job: &Job) -> String {
    match job.view.status {
        JobStatus::Converting => format!("converting {}%", job.view.progress),
        other => other.to_string(),
    }
}

fn result_text(job: &Job) -> String {
    match job.view.status {
        JobStatus::Succeeded => {
            let mut parts = Vec::new();
            if let Some(size) = job.view.mp3_size_bytes {
                parts.push(human_bytes(size));
            }
            if let Some(seconds) = job.view.duration_seconds {
                parts.push(duration_text(seconds));
            }
            if parts.is_empty() {
                "ready".into()
            } else {
                parts.join(", ")
            }
        }
        JobStatus::Failed => job
            .view
            .failure_reason
            .clone()
            .unwrap_or_else(|| "unknown reason".into()),
        _ => String::new(),
    }
}

/// `3:25` or `1:02:03`.
pub fn duration_text(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

pub async fn status(session: &Session, ui: &Ui, id: &str) -> Result<u8, CliError> {
    let client = session.client();
    let job = session
        .call(|token| async move { client.job(&token, id).await })
        .await?;
    if matches!(job.view.status, JobStatus::Deleted | JobStatus::Expired) {
        // The job is gone (only its history remains): for the user that is "no such job".
        let reason = format!("job {id} was {} and no longer exists", job.view.status);
        ui.error(
            &reason,
            "job_gone",
            Some(json!({"job_id": id, "status": job.view.status.as_str()})),
        );
        return Ok(1);
    }
    ui.result(|| status_lines(&job), || job.raw.clone());
    Ok(0)
}

fn status_lines(job: &Job) -> String {
    let mut lines = vec![
        format!("job:        {}", job.id()),
        format!(
            "file:       {}",
            job.view.original_filename.as_deref().unwrap_or("-")
        ),
        format!("status:     {}", status_text(job)),
    ];
    if let Some(at) = job.view.submitted_at {
        lines.push(format!(
            "submitted:  {}",
            at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
        ));
    }
    if let Some(quality) = &job.view.quality_label {
        lines.push(format!("quality:    {quality}"));
    }
    if let Some(reason) = &job.view.failure_reason {
        lines.push(format!("reason:     {reason}"));
    }
    if job.view.status == JobStatus::Succeeded {
        if let Some(size) = job.view.mp3_size_bytes {
            lines.push(format!("mp3 size:   {}", human_bytes(size)));
        }
        if let Some(seconds) = job.view.duration_seconds {
            lines.push(format!("duration:   {}", duration_text(seconds)));
        }
        if let Some(kbps) = job.view.bitrate_kbps {
            lines.push(format!("bitrate:    {kbps} kbit/s"));
        }
        lines.push(format!("download:   mp3 download {}", job.id()));
    }
    lines.join("\n")
}

pub async fn download(
    session: &Session,
    ui: &Ui,
    id: &str,
    output: Option<&Path>,
) -> Result<u8, CliError> {
    let client = session.client();
    let download = session
        .call(|token| async move { client.download(&token, id).await })
        .await?;
    let server_name = download
        .filename
        .clone()
        .unwrap_or_else(|| format!("{id}.mp3"));
    let path = match output {
        Some(dir) if dir.is_dir() => dir.join(&server_name),
        Some(file) => file.to_owned(),
        None => PathBuf::from(&server_name),
    };
    let size = save_with_bar(ui, download, &path, &server_name).await?;
    ui.result(
        || format!("Saved {} ({}).", path.display(), human_bytes(size)),
        || json!({"job_id": id, "output": path, "size_bytes": size}),
    );
    Ok(0)
}

/// Saves a download while a bar shows its progress.
pub async fn save_with_bar(
    ui: &Ui,
    download: Download,
    path: &Path,
    label: &str,
) -> Result<u64, CliError> {
    let bar = ui.transfer_bar(&short_label(label, 24), "download", download.length);
    let counter = bar.clone();
    let saved = download.save(path, move |n| counter.inc(n)).await;
    bar.finish_and_clear();
    Ok(saved?)
}

/// Deletes every job given; reports each one, fails (exit 1) if any could not be deleted.
pub async fn remove(session: &Session, ui: &Ui, ids: &[String]) -> Result<u8, CliError> {
    let client = session.client();
    let mut failed = false;
    for id in ids {
        let deleted = session
            .call(|token| async move { client.delete(&token, id).await })
            .await;
        match deleted {
            Ok(()) => ui.result(
                || format!("Deleted job {id}."),
                || json!({"job_id": id, "deleted": true}),
            ),
            Err(CliError::NotLoggedIn(message)) => return Err(CliError::NotLoggedIn(message)),
            Err(error) => {
                failed = true;
                ui.error(
                    &format!("{id}: {error}"),
                    error.code(),
                    Some(json!({"job_id": id})),
                );
            }
        }
    }
    Ok(u8::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(value: serde_json::Value) -> Job {
        Job::from_value(value).unwrap()
    }

    #[test]
    fn durations_read_like_a_player() {
        assert_eq!(duration_text(0.4), "0:00");
        assert_eq!(duration_text(205.0), "3:25");
        assert_eq!(duration_text(3723.0), "1:02:03");
    }

    #[test]
    fn the_table_shows_progress_results_and_reasons() {
        let jobs = [
            job(
                json!({"job_id": "j-ok", "status": "succeeded", "original_filename": "a.mp4",
                       "mp3_size_bytes": 2048, "duration_seconds": 65.0}),
            ),
            job(
                json!({"job_id": "j-run", "status": "converting", "progress": 40, "original_filename": "b.mp4"}),
            ),
            job(
                json!({"job_id": "j-bad", "status": "failed", "original_filename": "c.mp4",
                       "failure_reason": "the file has no audio track"}),
            ),
        ];
        let table = job_table(&jobs);
        for expected in [
            "j-ok",
            "2.00 KiB, 1:05",
            "converting 40%",
            "the file has no audio track",
            "a.mp4",
        ] {
            assert!(table.contains(expected), "{expected} missing from\n{table}");
        }
    }

    #[test]
    fn status_lines_offer_the_download_only_when_done() {
        let done = status_lines(&job(
            json!({"job_id": "j1", "status": "succeeded", "bitrate_kbps": 190}),
        ));
        assert!(
            done.contains("mp3 download j1") && done.contains("190 kbit/s"),
            "{done}"
        );
        let failed = status_lines(&job(
            json!({"job_id": "j2", "status": "failed", "failure_reason": "no audio"}),
        ));
        assert!(
            failed.contains("reason:     no audio") && !failed.contains("download"),
            "{failed}"
        );
    }
}
