//! What the mails say: pure functions from an outcome event to a ready-to-send message.
//!
//! No I/O here, so every word the user reads is unit-tested. Every mail is multipart/alternative
//! (plain text and HTML saying the same) and carries a Message-ID derived from the outcome's event
//! id, so a resend after a crash is recognisably the same message to the receiving side.

use crate::configuration::PublicBaseUrl;
use contracts::events::{ConversionFailed, ConversionSucceeded, FailureKind, JobEvent};
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, address::AddressError};
use uuid::Uuid;

/// The container and codec families the converter reads, for the "what can I do" advice.
pub const SUPPORTED_FORMATS: &str = "MP4/MOV, MKV/WebM, AVI, FLV, Ogg, WAV, AIFF, FLAC and MP3 files \
     with AAC, MP3, Opus, Vorbis, FLAC, ALAC or PCM audio";

/// A conversion outcome worth a mail, borrowed from its event.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Succeeded(&'a ConversionSucceeded),
    Failed(&'a ConversionFailed),
}

impl<'a> Outcome<'a> {
    /// The outcome carried by `event`, or `None` for events that are not announced by mail.
    pub fn of(event: &'a JobEvent) -> Option<Self> {
        match event {
            JobEvent::ConversionSucceeded(succeeded) => Some(Self::Succeeded(succeeded)),
            JobEvent::ConversionFailed(failed) => Some(Self::Failed(failed)),
            _ => None,
        }
    }

    /// The job owner's address as the event carries it (unvalidated).
    pub fn owner_email(&self) -> &'a str {
        match self {
            Self::Succeeded(succeeded) => &succeeded.owner_email,
            Self::Failed(failed) => &failed.owner_email,
        }
    }

    /// The owner's address, parsed.
    pub fn recipient(&self) -> Result<Address, AddressError> {
        self.owner_email().trim().parse()
    }
}

/// A mail before it becomes a MIME message: what tests and previews look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Composes the mails of one deployment (its sender and public URL).
#[derive(Debug, Clone)]
pub struct Composer {
    from: Mailbox,
    public_base_url: PublicBaseUrl,
}

impl Composer {
    pub fn new(from: Mailbox, public_base_url: PublicBaseUrl) -> Self {
        Self {
            from,
            public_base_url,
        }
    }

    /// The words of the mail announcing `outcome` of job `job_id`.
    pub fn content(&self, job_id: Uuid, outcome: Outcome<'_>) -> Content {
        match outcome {
            Outcome::Succeeded(succeeded) => self.success(job_id, succeeded),
            Outcome::Failed(failed) => failure(job_id, failed),
        }
    }

    /// The complete message to `recipient`, identified by the outcome's `event_id`.
    pub fn message(
        &self,
        event_id: Uuid,
        job_id: Uuid,
        recipient: Address,
        outcome: Outcome<'_>,
    ) -> Result<Message, lettre::error::Error> {
        let content = self.content(job_id, outcome);
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, recipient))
            .subject(content.subject)
            .message_id(Some(self.message_id(event_id)))
            // RFC 3834: tells auto-responders (vacation replies) not to answer.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))
    }

    /// `<notification.EVENT_ID@SENDER_DOMAIN>`: the same for every (re)send of one outcome.
    pub fn message_id(&self, event_id: Uuid) -> String {
        format!("<notification.{event_id}@{}>", self.from.email.domain())
    }

    fn success(&self, job_id: Uuid, succeeded: &ConversionSucceeded) -> Content {
        let original = printable(&succeeded.original_filename);
        let size = human_size(succeeded.mp3_size_bytes);
        let duration = clock_duration(succeeded.duration_seconds);
        let url = download_url(&self.public_base_url, &succeeded.mp3_file_id);
        let command = curl_command(&mp3_name(&succeeded.original_filename), &url);
        let mp3_id = printable(&succeeded.mp3_file_id);
        let subject = format!("Your MP3 of \"{original}\" is ready");
        let text = format!(
            "Hello,\n\
             \n\
             your MP3 of \"{original}\" is ready to download.\n\
             \n\
             Job:         {job_id}\n\
             Original:    {original}\n\
             MP3 file id: {mp3_id}\n\
             Size:        {size}\n\
             Duration:    {duration}\n\
             \n\
             Download it with the access token you got when logging in (in $TOKEN):\n\
             \n\
             {command}\n\
             \n\
             -- \n\
             MP3 Converter\n"
        );
        let html = format!(
            "<!DOCTYPE html>\n\
             <html><body style=\"font-family: sans-serif; line-height: 1.5\">\n\
             <p>Hello,</p>\n\
             <p>your MP3 of &quot;{original_html}&quot; is ready to download.</p>\n\
             <table>\n\
             <tr><th align=\"left\">Job</th><td>{job_id}</td></tr>\n\
             <tr><th align=\"left\">Original</th><td>{original_html}</td></tr>\n\
             <tr><th align=\"left\">MP3 file id</th><td>{mp3_id_html}</td></tr>\n\
             <tr><th align=\"left\">Size</th><td>{size}</td></tr>\n\
             <tr><th align=\"left\">Duration</th><td>{duration}</td></tr>\n\
             </table>\n\
             <p>Download it with the access token you got when logging in (in <code>$TOKEN</code>):</p>\n\
             <pre>{command_html}</pre>\n\
             <p>&mdash;<br>MP3 Converter</p>\n\
             </body></html>\n",
            original_html = escape_html(&original),
            mp3_id_html = escape_html(&mp3_id),
            command_html = escape_html(&command),
        );
        Content {
            subject,
            text,
            html,
        }
    }
}

fn failure(job_id: Uuid, failed: &ConversionFailed) -> Content {
    let original = printable(&failed.original_filename);
    let reason = printable(failed.reason.trim().trim_end_matches('.'));
    let advice = advice(failed);
    let subject = format!("We could not convert \"{original}\"");
    let text = format!(
        "Hello,\n\
         \n\
         we could not convert \"{original}\" to MP3: {reason}.\n\
         \n\
         {advice}\n\
         \n\
         Job: {job_id}\n\
         \n\
         -- \n\
         MP3 Converter\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n\
         <html><body style=\"font-family: sans-serif; line-height: 1.5\">\n\
         <p>Hello,</p>\n\
         <p>we could not convert &quot;{original_html}&quot; to MP3: {reason_html}.</p>\n\
         <p>{advice_html}</p>\n\
         <p>Job: {job_id}</p>\n\
         <p>&mdash;<br>MP3 Converter</p>\n\
         </body></html>\n",
        original_html = escape_html(&original),
        reason_html = escape_html(&reason),
        advice_html = escape_html(&advice),
    );
    Content {
        subject,
        text,
        html,
    }
}

/// What the user can do about a failure, judged from its kind and the converter's wording.
pub fn advice(failed: &ConversionFailed) -> String {
    if failed.kind == FailureKind::RetriesExhausted {
        return "This was a problem on our side, not with your file. Please try again later by \
                uploading the file again."
            .to_owned();
    }
    let reason = failed.reason.to_lowercase();
    if reason.contains(" limit") {
        // The converter's caps (duration, MP3 size, time) name themselves in the reason.
        "The file is beyond what this service converts in one job. Please split it into shorter \
         parts, or choose a lower quality, and upload them."
            .to_owned()
    } else if reason.contains("no audio") {
        "The file has no sound to convert. Please upload a video or audio file that has an audio \
         track (check that it plays with sound on your computer)."
            .to_owned()
    } else if reason.contains("not supported") || reason.contains("not a recognised") {
        format!("Please upload the file in a supported format: {SUPPORTED_FORMATS}.")
    } else if reason.contains("empty") || reason.contains("corrupt") || reason.contains("truncated")
    {
        "The upload may have been cut short. Please check that the file plays to the end on your \
         computer and upload it again."
            .to_owned()
    } else {
        format!(
            "Please check that the file plays with sound on your computer and upload a file with \
             an audio track in a supported format: {SUPPORTED_FORMATS}."
        )
    }
}

/// `1536` → `1.5 KB`; binary multiples, one decimal, whole bytes below 1 KB.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return if bytes == 1 {
            "1 byte".to_owned()
        } else {
            format!("{bytes} bytes")
        };
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Switch unit before rounding could print "1024.0 KB".
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `185.4` → `3:05`; `3725` → `1:02:05`. Rounded to the second; nonsense reads `0:00`.
pub fn clock_duration(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// `PUBLIC_BASE_URL/download?fid=ID`, the id percent-encoded.
pub fn download_url(base: &PublicBaseUrl, mp3_file_id: &str) -> String {
    format!("{base}/download?fid={}", percent_encode(mp3_file_id))
}

/// The ready-to-paste command: `curl -o "NAME" -H "Authorization: Bearer $TOKEN" "URL"`.
///
/// `$TOKEN` is left for the shell to expand; every other character inside the double quotes is
/// inert there (see [`mp3_name`] and [`download_url`]).
pub fn curl_command(output_name: &str, url: &str) -> String {
    format!("curl -o \"{output_name}\" -H \"Authorization: Bearer $TOKEN\" \"{url}\"")
}

/// The MP3's local name: `holiday.mp4` → `holiday.mp3`, with every character a shell would treat
/// specially inside double quotes (`$ \` \\ " !`), path separators and control characters
/// replaced by `_`, so a hostile file name cannot turn the pasted command into something else.
pub fn mp3_name(original_filename: &str) -> String {
    let base = original_filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let stem = match base.rsplit_once('.') {
        Some((stem, _extension)) => stem,
        None => base,
    };
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_control() || "$`\\\"!/".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let safe = safe.trim().trim_start_matches(['.', '-']);
    let safe = if safe.is_empty() { "download" } else { safe };
    format!("{safe}.mp3")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Keeps everything but control characters (a file name could smuggle line breaks into a
/// subject or a carefully formatted text mail).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Percent-encodes all but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn composer() -> Composer {
        Composer::new(
            "MP3 Converter <no-reply@mp3converter.com>".parse().unwrap(),
            "https://mp3.example.com".parse().unwrap(),
        )
    }

    fn succeeded(name: &str) -> ConversionSucceeded {
        ConversionSucceeded {
            owner_id: "42".into(),
            owner_email: "user@example.com".into(),
            original_filename: name.into(),
            mp3_file_id: "65f0c0ffee0000000000beef".into(),
            mp3_size_bytes: 4_404_019,
            duration_seconds: 185.4,
            bitrate_kbps: 190,
            passthrough: false,
        }
    }

    fn failed(kind: FailureKind, reason: &str) -> ConversionFailed {
        ConversionFailed {
            owner_id: "42".into(),
            owner_email: "user@example.com".into(),
            original_filename: "x.avi".into(),
            kind,
            reason: reason.into(),
        }
    }

    #[test]
    fn success_mail_names_the_file_and_holds_every_detail_in_both_parts() {
        let job_id = Uuid::now_v7();
        let event = succeeded("holiday.mp4");
        let content = composer().content(job_id, Outcome::Succeeded(&event));
        assert_eq!(content.subject, "Your MP3 of \"holiday.mp4\" is ready");
        let command = "curl -o \"holiday.mp3\" -H \"Authorization: Bearer $TOKEN\" \
                       \"https://mp3.example.com/download?fid=65f0c0ffee0000000000beef\"";
        assert!(content.text.contains(command), "{}", content.text);
        assert!(
            content.html.contains(&escape_html(command)),
            "{}",
            content.html
        );
        for part in [&content.text, &content.html] {
            assert!(part.contains(&job_id.to_string()));
            assert!(part.contains("holiday.mp4"));
            assert!(part.contains("65f0c0ffee0000000000beef"));
            assert!(part.contains("4.2 MB"));
            assert!(part.contains("3:05"));
        }
        assert!(
            !content.html.contains("\"holiday.mp3\""),
            "quotes are escaped in HTML"
        );
    }

    #[test]
    fn hostile_file_names_are_escaped_in_html_and_defused_in_the_command() {
        let event = succeeded("<script>alert(1)</script> $(rm -rf ~) `id` \"q\".mp4");
        let content = composer().content(Uuid::now_v7(), Outcome::Succeeded(&event));
        assert!(!content.html.contains("<script>"));
        assert!(content.html.contains("&lt;script&gt;"));
        let command_line = content
            .text
            .lines()
            .find(|l| l.starts_with("curl "))
            .unwrap();
        assert!(
            command_line.starts_with("curl -o \"script> _(rm -rf ~) _id_ _q_.mp3\" -H"),
            "{command_line}"
        );
        assert_eq!(
            command_line.matches('$').count(),
            1,
            "only $TOKEN: {command_line}"
        );
    }

    #[test]
    fn failure_mail_gives_the_reason_and_what_to_do() {
        let no_audio = failed(FailureKind::Unconvertible, "the file has no audio track");
        let content = composer().content(Uuid::now_v7(), Outcome::Failed(&no_audio));
        assert_eq!(content.subject, "We could not convert \"x.avi\"");
        for part in [&content.text, &content.html] {
            assert!(part.contains("the file has no audio track."));
            assert!(part.contains("has an audio track"));
        }

        let codec = failed(
            FailureKind::Unconvertible,
            "the audio codec AC-3 is not supported",
        );
        assert!(advice(&codec).contains(SUPPORTED_FORMATS));

        let corrupt = failed(
            FailureKind::Unconvertible,
            "the file is corrupt or truncated: x",
        );
        assert!(advice(&corrupt).contains("upload it again"));

        for over in [
            "the audio is longer than the 6 h limit",
            "the MP3 would be larger than the 1 GiB limit",
            "converting it took longer than the 2 h limit",
        ] {
            let advice = advice(&failed(FailureKind::Unconvertible, over));
            assert!(advice.contains("shorter parts"), "{over}: {advice}");
        }

        let ours = failed(
            FailureKind::RetriesExhausted,
            "reading or writing a file failed",
        );
        let content = composer().content(Uuid::now_v7(), Outcome::Failed(&ours));
        assert!(content.text.contains("try again later"), "{}", content.text);
        assert!(content.text.contains("not with your file"));
    }

    #[test]
    fn the_message_is_multipart_alternative_with_a_deterministic_id() {
        let event_id = Uuid::now_v7();
        let event = succeeded("holiday.mp4");
        let message = composer()
            .message(
                event_id,
                Uuid::now_v7(),
                "user@example.com".parse().unwrap(),
                Outcome::Succeeded(&event),
            )
            .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains(&format!(
            "Message-ID: <notification.{event_id}@mp3converter.com>"
        )));
        assert!(raw.contains("Content-Type: multipart/alternative"));
        assert!(raw.contains("Content-Type: text/plain"));
        assert!(raw.contains("Content-Type: text/html"));
        assert!(raw.contains("Auto-Submitted: auto-generated"));
        assert!(raw.contains("To: user@example.com"));
        assert_eq!(
            composer().message_id(event_id),
            composer().message_id(event_id),
            "a resend carries the same id"
        );
    }

    #[test]
    fn owner_addresses_parse_or_fail() {
        let mut event = succeeded("a.mp4");
        assert!(Outcome::Succeeded(&event).recipient().is_ok());
        event.owner_email = "not an address".into();
        assert!(Outcome::Succeeded(&event).recipient().is_err());
        let other = JobEvent::JobDeleted(contracts::events::JobDeleted {
            owner_id: "1".into(),
        });
        assert!(Outcome::of(&other).is_none());
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(4_404_019), "4.2 MB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GB");
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(clock_duration(0.0), "0:00");
        assert_eq!(clock_duration(9.6), "0:10");
        assert_eq!(clock_duration(185.4), "3:05");
        assert_eq!(clock_duration(3599.4), "59:59");
        assert_eq!(clock_duration(3725.0), "1:02:05");
        assert_eq!(clock_duration(f64::NAN), "0:00");
        assert_eq!(clock_duration(-3.0), "0:00");
    }

    #[test]
    fn mp3_names_keep_the_stem_and_drop_shell_metacharacters() {
        assert_eq!(mp3_name("holiday.mp4"), "holiday.mp3");
        assert_eq!(mp3_name("my.trip.2024.mkv"), "my.trip.2024.mp3");
        assert_eq!(mp3_name("noextension"), "noextension.mp3");
        assert_eq!(mp3_name(".mp4"), "download.mp3");
        assert_eq!(mp3_name("../../etc/passwd"), "passwd.mp3");
        assert_eq!(mp3_name("été à $HOME!.mov"), "été à _HOME_.mp3");
        assert_eq!(mp3_name("-rf.mp4"), "rf.mp3");
    }

    #[test]
    fn download_urls_encode_the_id() {
        let base: PublicBaseUrl = "http://mp3converter.com".parse().unwrap();
        assert_eq!(
            download_url(&base, "abc123"),
            "http://mp3converter.com/download?fid=abc123"
        );
        assert_eq!(
            download_url(&base, "a b&c\"$"),
            "http://mp3converter.com/download?fid=a%20b%26c%22%24"
        );
    }
}
