//! The `converter` binary: runs the job worker, or converts local files with `convert`.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use contracts::Quality;
use converter::{TranscodeOptions, transcode};

#[derive(Parser)]
#[command(version, about = "Converts the audio of videos to MP3")]
struct Cli {
    /// Without a subcommand the conversion worker runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a local file to MP3 and print what was produced.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// VBR quality V0 (best) to V9.
        #[arg(long, value_parser = parse_vbr, conflicts_with = "bitrate")]
        quality: Option<Quality>,
        /// Constant bitrate in kbps (64 to 320).
        #[arg(long, value_parser = parse_cbr)]
        bitrate: Option<Quality>,
        /// ID3 title; defaults to the input file name without its extension.
        #[arg(long)]
        title: Option<String>,
    },
}

fn parse_vbr(text: &str) -> Result<Quality, String> {
    Quality::parse_vbr(text).map_err(|e| e.0)
}

fn parse_cbr(text: &str) -> Result<Quality, String> {
    Quality::parse_cbr(text).map_err(|e| e.0)
}

fn main() -> std::process::ExitCode {
    // `converter healthcheck [/readyz]`: the container healthcheck (see platform::healthcheck).
    if let Some(code) =
        platform::healthcheck::run_if_requested(platform::config::defaults::CONVERTER_HTTP_ADDR)
    {
        return code;
    }
    // `converter redrive-parked`: after an upgrade, re-drives the events this service's consumer
    // parked because an older build could not read them (see platform::redrive).
    if let Some(code) = platform::redrive::run_if_requested(converter::worker::QUEUE, || {
        platform::config::string_or("AMQP_URL", platform::config::defaults::AMQP_URL)
    }) {
        return code;
    }
    platform::runtime::exit_code("converter", platform::runtime::run(run()))
}

async fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => converter::worker::run().await,
        Some(Command::Convert {
            input,
            output,
            quality,
            bitrate,
            title,
        }) => {
            let title = title.or_else(|| {
                input
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
            });
            let options = TranscodeOptions {
                quality: quality.or(bitrate),
                title,
                limits: converter::worker::limits_from_env()?,
            };
            tokio::task::spawn_blocking(move || convert(&input, &output, &options)).await?
        }
    }
}

fn convert(input: &PathBuf, output: &PathBuf, options: &TranscodeOptions) -> anyhow::Result<()> {
    let source = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut target =
        File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let started = Instant::now();
    let report = transcode(source, &mut target, options, &mut |_| {})
        .with_context(|| format!("converting {}", input.display()))?;
    let wall = started.elapsed();
    println!(
        "duration {:.2} s, {} kbps, {} Hz, {} channel(s), {} bytes, {}, wall time {:.3} s",
        report.duration_seconds,
        report.bitrate_kbps,
        report.sample_rate,
        report.channels,
        report.bytes_written,
        if report.passthrough {
            "MP3 frames copied"
        } else {
            "encoded"
        },
        wall.as_secs_f64()
    );
    Ok(())
}
