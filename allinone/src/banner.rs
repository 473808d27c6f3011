//! What the all-in-one prints when it is ready: where it listens, where data and mail go, which
//! backends it uses, and a quick start to paste into a shell.

use std::fmt::Write;
use std::path::PathBuf;

/// Where mails end up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailDestination {
    /// One `.eml` file per mail in this folder.
    Folder(PathBuf),
    /// Sent to this SMTP server (its URL without password).
    Smtp(String),
}

/// Everything the banner reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The URL the quick start talks to (the API's own address).
    pub api_url: String,
    /// The internal listener: health, readiness, metrics.
    pub admin_url: String,
    /// The prefix of links in responses and mails, when it differs from `api_url`.
    pub public_base_url: String,
    pub data_dir: PathBuf,
    /// `(what, which backend)`, e.g. `("users", "SQLite in …/auth.db")`.
    pub backends: Vec<(&'static str, String)>,
    pub mail: MailDestination,
    /// A video to upload in the quick start, when one is at hand (the repository's fixture).
    pub sample_video: Option<PathBuf>,
}

/// Single-quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Summary {
    pub fn banner(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        line(&mut out, "");
        line(
            &mut out,
            "mp3converter is running: auth, gateway, converter and notification in one process.",
        );
        line(&mut out, "");
        let _ = writeln!(out, "  API         {}", self.api_url);
        let _ = writeln!(
            out,
            "  web page    {}/  (sign up, upload, watch and download in a browser)",
            self.api_url
        );
        if self.public_base_url != self.api_url {
            let _ = writeln!(out, "  links       {}", self.public_base_url);
        }
        let _ = writeln!(
            out,
            "  health      {}/readyz (metrics: /metrics)",
            self.admin_url
        );
        let _ = writeln!(out, "  data        {}", self.data_dir.display());
        match &self.mail {
            MailDestination::Folder(dir) => {
                let _ = writeln!(
                    out,
                    "  mail        {} (one .eml file per mail)",
                    dir.display()
                );
            }
            MailDestination::Smtp(url) => {
                let _ = writeln!(out, "  mail        sent through {url}");
            }
        }
        line(&mut out, "");
        line(
            &mut out,
            "  Backends (set the variable to switch one to the real service):",
        );
        for (what, which) in &self.backends {
            let _ = writeln!(out, "    {what:<11} {which}");
        }
        line(&mut out, "");
        line(
            &mut out,
            "Quick start (paste into another terminal; needs only curl):",
        );
        line(&mut out, "");
        let video = self
            .sample_video
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "video.mp4".to_owned());
        let _ = writeln!(out, "  BASE={}", shell_quote(&self.api_url));
        let _ = writeln!(
            out,
            "  VIDEO={}    # or any video or audio file of yours",
            shell_quote(&video)
        );
        line(
            &mut out,
            r#"  curl -sS -X POST "$BASE/signup" -H 'Content-Type: application/json' -d '{"email":"me@example.com","password":"correct-horse-battery"}'; echo"#,
        );
        line(
            &mut out,
            r#"  TOKEN=$(curl -sS -X POST -u 'me@example.com:correct-horse-battery' "$BASE/login")"#,
        );
        line(
            &mut out,
            r#"  JOB=$(curl -sS -H "Authorization: Bearer $TOKEN" -F "file=@$VIDEO" "$BASE/upload" | sed -E 's/.*"job_id":"([^"]+)".*/\1/'); echo "job $JOB""#,
        );
        line(
            &mut out,
            r#"  curl -sS -N -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB/events"   # live progress, ends when done"#,
        );
        line(
            &mut out,
            r#"  curl -sS -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB"; echo"#,
        );
        line(
            &mut out,
            r#"  curl -sS -o out.mp3 -H "Authorization: Bearer $TOKEN" "$BASE/jobs/$JOB/mp3" && ls -l out.mp3"#,
        );
        if let MailDestination::Folder(dir) = &self.mail {
            let _ = writeln!(
                out,
                "  ls -t {} | head -1   # the \"your MP3 is ready\" mail",
                shell_quote(&dir.display().to_string())
            );
        }
        line(&mut out, "");
        line(
            &mut out,
            "Stop with Ctrl-C; unfinished jobs resume at the next start.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            api_url: "http://127.0.0.1:8080".into(),
            admin_url: "http://127.0.0.1:8084".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            data_dir: "/srv/mp3/data".into(),
            backends: vec![("users", "SQLite in /srv/mp3/data/auth.db".into())],
            mail: MailDestination::Folder("/srv/mp3/data/mail".into()),
            sample_video: Some("/src/it's/sample.mp4".into()),
        }
    }

    #[test]
    fn the_banner_names_addresses_folders_and_every_quick_start_step() {
        let banner = summary().banner();
        for expected in [
            "API         http://127.0.0.1:8080",
            "web page    http://127.0.0.1:8080/ ",
            "data        /srv/mp3/data",
            "mail        /srv/mp3/data/mail",
            "users       SQLite in /srv/mp3/data/auth.db",
            "BASE='http://127.0.0.1:8080'",
            r"VIDEO='/src/it'\''s/sample.mp4'",
            "$BASE/signup",
            "$BASE/login",
            "$BASE/upload",
            "$BASE/jobs/$JOB/events",
            "$BASE/jobs/$JOB/mp3",
            "ls -t '/srv/mp3/data/mail'",
        ] {
            assert!(
                banner.contains(expected),
                "{expected:?} missing from\n{banner}"
            );
        }
        assert!(!banner.contains("links "), "{banner}");
    }

    #[test]
    fn smtp_mail_and_a_separate_public_url_are_reported() {
        let banner = Summary {
            public_base_url: "https://mp3.example.com".into(),
            mail: MailDestination::Smtp("smtp://user:***@mail.example.com:587".into()),
            sample_video: None,
            ..summary()
        }
        .banner();
        assert!(
            banner.contains("links       https://mp3.example.com"),
            "{banner}"
        );
        assert!(banner.contains("sent through smtp://user:***@mail.example.com:587"));
        assert!(banner.contains("VIDEO='video.mp4'"));
        assert!(!banner.contains("ls -t"));
    }
}
