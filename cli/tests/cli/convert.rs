//! `mp3 convert`: end to end through the real pipeline.

use crate::helpers::{Stack, assert_mp3};

#[tokio::test(flavor = "multi_thread")]
async fn convert_writes_a_real_mp3_next_to_the_input() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let video = stack.media("mp4_aac_moov_start.mp4", "holiday.mp4");

    let run = stack
        .mp3()
        .args(["--json", "convert"])
        .args([&video])
        .run()
        .await;
    run.assert_success();
    let result = run.json();
    let expected = stack.work.path().join("holiday.mp3");
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["input"], video.display().to_string());
    assert_eq!(result["output"], expected.display().to_string());
    assert!(
        result["job_id"].as_str().is_some_and(|id| id.len() == 36),
        "{result}"
    );
    assert!(
        result["duration_seconds"].as_f64().is_some_and(|d| d > 0.5),
        "{result}"
    );
    let size = result["size_bytes"].as_u64().unwrap();
    assert_eq!(size, std::fs::metadata(&expected).unwrap().len());
    assert_mp3(&expected);
    // Nothing half-written is left behind.
    assert!(!stack.work.path().join("holiday.mp3.part").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_without_audio_fails_with_the_servers_reason() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let video = stack.media("bad_no_audio.mp4", "silent.mp4");

    let run = stack.mp3().args(["convert"]).args([&video]).run().await;
    run.assert_failure(1);
    assert!(
        run.stderr().contains("the file has no audio track"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("silent.mp4"), "{}", run.stderr());
    assert!(!stack.work.path().join("silent.mp3").exists());

    let json = stack
        .mp3()
        .args(["--json", "convert"])
        .args([&video])
        .run()
        .await;
    json.assert_failure(1);
    let line = json.json();
    assert_eq!(line["status"], "failed");
    assert_eq!(line["error"], "job_failed");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("the file has no audio track"),
        "{line}"
    );
    assert!(
        line["job_id"].is_string(),
        "the failed job is named: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn several_files_are_converted_concurrently_in_one_command() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let first = stack.media("mp4_aac_moov_start.mp4", "first.mp4");
    let second = stack.media("mov_aac_mono.mov", "second.mov");
    let out = stack.work.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let run = stack
        .mp3()
        .args(["--json", "convert", "-o"])
        .args([&out, &first, &second])
        .run()
        .await;
    run.assert_success();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2, "one result line per file: {}", run.stdout());
    let mut job_ids = Vec::new();
    for name in ["first", "second"] {
        let line = lines
            .iter()
            .find(|l| {
                l["input"].as_str().unwrap().ends_with(&format!(
                    "{name}.{}",
                    if name == "first" { "mp4" } else { "mov" }
                ))
            })
            .unwrap_or_else(|| panic!("no result for {name}: {lines:?}"));
        assert_eq!(line["status"], "succeeded");
        let output = out.join(format!("{name}.mp3"));
        assert_eq!(line["output"], output.display().to_string());
        assert_mp3(&output);
        job_ids.push(line["job_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(job_ids[0], job_ids[1]);

    // Concurrent, not one after the other: both jobs were submitted before either finished.
    let mut submitted = Vec::new();
    let mut finished = Vec::new();
    for id in &job_ids {
        let status = stack.mp3().args(["--json", "status", id]).run().await;
        status.assert_success();
        let job = status.json();
        let at = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(
                job[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("{field}: {job}")),
            )
            .unwrap()
        };
        submitted.push(at("submitted_at"));
        finished.push(at("finished_at"));
    }
    let last_submitted = submitted.iter().max().unwrap();
    let first_finished = finished.iter().min().unwrap();
    assert!(
        last_submitted < first_finished,
        "the second upload started only after a conversion finished: submitted {submitted:?}, finished {finished:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quality_options_reach_the_server_and_rm_cleans_up() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let video = stack.media("mp4_aac_moov_start.mp4", "clip.mp4");

    let vbr = stack
        .mp3()
        .args(["--json", "convert", "--quality", "v0"])
        .args([&video])
        .run()
        .await;
    vbr.assert_success();
    let id = vbr.json()["job_id"].as_str().unwrap().to_owned();
    let status = stack.mp3().args(["--json", "status", &id]).run().await;
    status.assert_success();
    assert_eq!(status.json()["quality_label"], "V0");
    let job: api::JobView = serde_json::from_value(status.json()).unwrap();
    assert_eq!(job.quality, Some(api::Quality::Vbr { level: 0 }));

    let target = stack.work.path().join("clip-128.mp3");
    let cbr = stack
        .mp3()
        .args(["--json", "convert", "--bitrate", "128", "--rm", "-o"])
        .args([&target, &video])
        .run()
        .await;
    cbr.assert_success();
    let result = cbr.json();
    // The measured bitrate of a 128 kbit/s CBR file (headers included).
    let kbps = result["bitrate_kbps"].as_u64().unwrap();
    assert!((120..=140).contains(&kbps), "{result}");
    assert_eq!(result["deleted"], true);
    assert_mp3(&target);
    // --rm removed the job from the server.
    let id = result["job_id"].as_str().unwrap();
    let status = stack.mp3().args(["status", id]).run().await;
    status.assert_failure(1);
    assert!(
        status.stderr().contains("no longer exists"),
        "{}",
        status.stderr()
    );

    // A bitrate the encoder does not offer is refused with the server's own rule and reason,
    // on the command line (a usage error) before anything is uploaded.
    let jobs_before = stack.mp3().args(["--json", "jobs"]).run().await;
    jobs_before.assert_success();
    let odd = stack
        .mp3()
        .args(["convert", "--bitrate", "100"])
        .args([&video])
        .run()
        .await;
    odd.assert_failure(2);
    assert!(
        odd.stderr().contains("bitrate must be one of"),
        "{}",
        odd.stderr()
    );
    let jobs_after = stack.mp3().args(["--json", "jobs"]).run().await;
    jobs_after.assert_success();
    assert_eq!(
        jobs_after.json_lines().len(),
        jobs_before.json_lines().len(),
        "a refused bitrate created a job: {}",
        jobs_after.stdout()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_servers_limit_is_refused_with_its_message() {
    let stack = Stack::start_with(|settings| settings.max_upload_bytes = 10_000).await;
    stack.signed_up().await;
    // 26 kB of video, and a 4 MB file that is still being sent when the server refuses it.
    let small_over = stack.media("mp4_aac_moov_start.mp4", "over.mp4");
    let big = stack.work.path().join("big.mp4");
    std::fs::write(&big, vec![7u8; 4 * 1024 * 1024]).unwrap();

    for video in [&small_over, &big] {
        let run = stack.mp3().args(["convert"]).args([video]).run().await;
        run.assert_failure(1);
        assert!(
            run.stderr()
                .contains("larger than the limit of 10000 bytes"),
            "{}",
            run.stderr()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_refused_for_the_users_rate_wait_and_go_through() {
    // One upload at a time per user: the other files are answered 429 with Retry-After and
    // must be sent again once the server allows it.
    let stack = Stack::start_with(|settings| settings.rate_limits.max_concurrent_uploads = 1).await;
    stack.signed_up().await;
    let files: Vec<_> = ["a.mp4", "b.mp4", "c.mp4"]
        .into_iter()
        .map(|name| {
            let path = stack.work.path().join(name);
            // Big enough that the uploads overlap; not a video, so each job fails quickly.
            std::fs::write(&path, vec![0x5a; 8 * 1024 * 1024]).unwrap();
            path
        })
        .collect();

    let run = stack
        .mp3()
        .args(["--json", "convert", "-j", "3"])
        .args(&files)
        .run()
        .await;
    run.assert_failure(1);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 3, "{}", run.stdout());
    for line in &lines {
        assert_eq!(
            line["error"], "job_failed",
            "every file was uploaded and converted: {line}"
        );
        assert!(line["job_id"].is_string(), "{line}");
    }
    assert!(!run.stderr().contains("too many"), "{}", run.stderr());
}
