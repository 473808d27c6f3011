//! The command line: global options and one subcommand per action (clap derive).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Where the CLI talks to when neither `--server` nor `MP3_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Convert videos to MP3 with the mp3converter service.
#[derive(Debug, Parser)]
#[command(name = "mp3", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Base URL of the service's REST API.
    #[arg(long, global = true, env = "MP3_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print one JSON object per result line on stdout (for scripts); no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// Account email, used whenever the CLI has to log in.
    #[arg(long, global = true, env = "MP3_EMAIL")]
    pub email: Option<String>,
    /// Read the password from the first line of standard input (the password can also come
    /// from MP3_PASSWORD, or is prompted for in a terminal).
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// Hide the progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload videos, wait for their conversion and download the MP3s.
    Convert(ConvertArgs),
    /// Log in and remember the session for this server.
    Login,
    /// Create an account, then log in.
    Signup,
    /// Forget the session remembered for this server.
    Logout,
    /// List your jobs, newest first.
    Jobs(JobsArgs),
    /// Show one job.
    Status(JobArg),
    /// Download the MP3 of a finished job.
    Download(DownloadArgs),
    /// Delete jobs with their video and MP3.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The videos (or audio files) to convert; several are converted concurrently.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Where to write the MP3: a file (one input) or an existing directory. Default: next to
    /// each input, with the extension .mp3.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Variable bitrate quality, V0 (best) to V9 (smallest).
    #[arg(long, value_parser = parse_vbr_quality, conflicts_with = "bitrate")]
    pub quality: Option<String>,
    /// Constant bitrate in kbit/s (64 to 320).
    #[arg(long, value_parser = clap::value_parser!(u16).range(64..=320))]
    pub bitrate: Option<u16>,
    /// How many files are uploaded and converted at once.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Delete each job from the server once its MP3 is downloaded.
    #[arg(long)]
    pub rm: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// How many jobs to show (the newest).
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct JobArg {
    /// The job id (as printed by `mp3 convert` or `mp3 jobs`).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The job id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// A file or an existing directory. Default: the server's file name in the current
    /// directory.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The job ids.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// `V0`..`V9` (any case), normalised to upper case.
pub fn parse_vbr_quality(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let level = trimmed
        .strip_prefix(['V', 'v'])
        .and_then(|digits| digits.parse::<u8>().ok())
        .filter(|level| *level <= 9 && trimmed.len() == 2);
    match level {
        Some(level) => Ok(format!("V{level}")),
        None => Err(format!("{raw:?} is not a quality: use V0 (best) to V9")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn vbr_qualities_are_v0_to_v9() {
        assert_eq!(parse_vbr_quality("v0").unwrap(), "V0");
        assert_eq!(parse_vbr_quality("V9").unwrap(), "V9");
        for bad in ["V10", "V", "9", "Q2", "V-1", "V01"] {
            assert!(parse_vbr_quality(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quality_and_bitrate_exclude_each_other() {
        let parsed = Cli::try_parse_from([
            "mp3",
            "convert",
            "a.mp4",
            "--quality",
            "V2",
            "--bitrate",
            "192",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from(["mp3", "convert", "a.mp4", "--bitrate", "500"]);
        assert!(parsed.is_err());
        let parsed =
            Cli::try_parse_from(["mp3", "--json", "convert", "a.mp4", "b.mp4", "-j", "2"]).unwrap();
        assert!(parsed.global.json);
        match parsed.command {
            Command::Convert(args) => {
                assert_eq!(args.inputs.len(), 2);
                assert_eq!(args.parallel, 2);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
