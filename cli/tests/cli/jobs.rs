//! `mp3 jobs`, `status`, `download` and `rm` on a job converted through the real pipeline.

use crate::helpers::{Stack, assert_mp3};

#[tokio::test(flavor = "multi_thread")]
async fn a_converted_job_is_listed_inspected_downloaded_and_removed() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let video = stack.media("mp4_aac_moov_start.mp4", "trip.mp4");

    // Human output: one line naming the result.
    let convert = stack.mp3().args(["convert"]).args([&video]).run().await;
    convert.assert_success();
    let converted = stack.work.path().join("trip.mp3");
    assert!(
        convert.stdout().contains("trip.mp3"),
        "{}",
        convert.stdout()
    );
    assert_mp3(&converted);

    let listed = stack.mp3().args(["--json", "jobs"]).run().await;
    listed.assert_success();
    let jobs = listed.json_lines();
    assert_eq!(jobs.len(), 1, "{}", listed.stdout());
    assert_eq!(jobs[0]["original_filename"], "trip.mp4");
    assert_eq!(jobs[0]["status"], "succeeded");
    let id = jobs[0]["job_id"].as_str().unwrap().to_owned();

    let table = stack.mp3().args(["jobs"]).run().await;
    table.assert_success();
    for expected in [id.as_str(), "trip.mp4", "succeeded", "JOB ID"] {
        assert!(
            table.stdout().contains(expected),
            "{expected} missing:\n{}",
            table.stdout()
        );
    }

    let status = stack.mp3().args(["--json", "status", &id]).run().await;
    status.assert_success();
    let job = status.json();
    assert_eq!(job["job_id"], id.as_str());
    assert_eq!(job["progress"], 100);
    // `--json` passes the server's job through: it is the contract's view.
    let view: api::JobView = serde_json::from_value(job.clone()).unwrap();
    assert_eq!(view.status, api::JobStatus::Succeeded);
    assert!(view.links.download.is_some(), "{job}");
    assert!(job["mp3_size_bytes"].as_u64().unwrap() > 0);
    let human = stack.mp3().args(["status", &id]).run().await;
    human.assert_success();
    assert!(
        human.stdout().contains("succeeded") && human.stdout().contains("trip.mp4"),
        "{}",
        human.stdout()
    );

    // Download to a chosen file, then into a directory under the server's name.
    let copy = stack.work.path().join("copy.mp3");
    let download = stack
        .mp3()
        .args(["--json", "download", &id, "-o"])
        .args([&copy])
        .run()
        .await;
    download.assert_success();
    assert_eq!(download.json()["output"], copy.display().to_string());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&converted).unwrap()
    );
    let dir = stack.work.path().join("downloads");
    std::fs::create_dir(&dir).unwrap();
    stack
        .mp3()
        .args(["download", &id, "-o"])
        .args([&dir])
        .run()
        .await
        .assert_success();
    assert_mp3(&dir.join("trip.mp3"));

    let removed = stack.mp3().args(["rm", &id]).run().await;
    removed.assert_success();
    assert!(removed.stdout().contains("Deleted"), "{}", removed.stdout());

    let gone = stack.mp3().args(["status", &id]).run().await;
    gone.assert_failure(1);
    assert!(
        gone.stderr().contains("no longer exists"),
        "{}",
        gone.stderr()
    );
    let no_mp3 = stack.mp3().args(["download", &id]).run().await;
    no_mp3.assert_failure(1);
    assert!(
        no_mp3.stderr().contains("no such file"),
        "{}",
        no_mp3.stderr()
    );

    let unknown = stack
        .mp3()
        .args(["--json", "status", "not-a-job"])
        .run()
        .await;
    unknown.assert_failure(1);
    assert_eq!(unknown.json()["error"], "bad_request");
    let empty = stack.mp3().args(["--json", "jobs"]).run().await;
    empty.assert_success();
    assert_eq!(empty.json_lines()[0]["status"], "deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_pages_through_the_servers_list() {
    let stack = Stack::start().await;
    stack.signed_up().await;
    let one = stack.media("bad_no_audio.mp4", "one.mp4");
    let two = stack.media("bad_no_audio.mp4", "two.mp4");
    let three = stack.media("bad_no_audio.mp4", "three.mp4");
    // Failing jobs are the quickest to make; the command's failure is expected.
    stack
        .mp3()
        .args(["convert"])
        .args([&one, &two, &three])
        .run()
        .await
        .assert_failure(1);

    let all = stack.mp3().args(["--json", "jobs"]).run().await;
    all.assert_success();
    let all = all.json_lines();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|job| job["status"] == "failed"));
    assert!(
        all.iter()
            .all(|job| job["failure_reason"] == "the file has no audio track")
    );

    let two_newest = stack.mp3().args(["--json", "jobs", "-n", "2"]).run().await;
    two_newest.assert_success();
    let two_newest = two_newest.json_lines();
    assert_eq!(two_newest.len(), 2);
    assert_eq!(two_newest[0]["job_id"], all[0]["job_id"], "newest first");
    assert_eq!(two_newest[1]["job_id"], all[1]["job_id"]);

    let table = stack.mp3().args(["jobs"]).run().await;
    assert!(
        table.stdout().contains("the file has no audio track"),
        "{}",
        table.stdout()
    );
}
