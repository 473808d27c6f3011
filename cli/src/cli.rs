//! The command line: global options and one subcommand per action (clap derive).

use api::Quality;
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
    // The server's own parser: the CLI refuses exactly what the gateway would refuse.
    #[arg(long, value_parser = Quality::parse_vbr, conflicts_with = "bitrate")]
    pub quality: Option<Quality>,
    /// Constant bitrate in kbit/s: 64, 80, 96, 112, 128, 160, 192, 256 or 320.
    #[arg(long, value_parser = Quality::parse_cbr)]
    pub bitrate: Option<Quality>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn convert_args(options: &[&str]) -> Result<ConvertArgs, clap::Error> {
        let args = ["mp3", "convert", "a.mp4"].iter().chain(options);
        match Cli::try_parse_from(args)?.command {
            Command::Convert(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn vbr_qualities_are_v0_to_v9() {
        let quality = |level: &str| convert_args(&["--quality", level]).map(|a| a.quality);
        assert_eq!(quality("v0").unwrap(), Some(Quality::Vbr { level: 0 }));
        assert_eq!(quality("V9").unwrap(), Some(Quality::Vbr { level: 9 }));
        for bad in ["V10", "V", "9", "Q2", "V-1", "V01"] {
            assert!(quality(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bitrates_are_the_ones_the_gateway_accepts() {
        let bitrate = |kbps: &str| convert_args(&["--bitrate", kbps]).map(|a| a.bitrate);
        // 100 is inside 64..=320 but no MPEG-1 bitrate: the gateway answers 422, so the CLI
        // refuses it before uploading anything (it used to accept the whole range).
        let refused = bitrate("100").unwrap_err();
        assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            refused.to_string().contains("bitrate must be one of"),
            "{refused}"
        );
        for kbps in api::CBR_BITRATES {
            assert_eq!(
                bitrate(&kbps.to_string()).unwrap(),
                Some(Quality::Cbr { kbps })
            );
        }
        for bad in ["63", "321", "fast"] {
            assert!(bitrate(bad).is_err(), "{bad}");
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
