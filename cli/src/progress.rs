//! Progress bars (on stderr, only in a terminal) and the output of results (on stdout, as text
//! or one JSON object per line), kept from garbling each other.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

const TRANSFER_TEMPLATE: &str = "{prefix:.bold} {msg:9} [{bar:28.cyan/blue}] {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} ETA {eta}";
const CONVERSION_TEMPLATE: &str =
    "{prefix:.bold} {msg:9} [{bar:28.green/blue}] {pos:>3}%  {elapsed_precise} {spinner}";

/// Where everything a command shows goes.
#[derive(Clone)]
pub struct Ui {
    bars: MultiProgress,
    json: bool,
}

impl Ui {
    /// Bars are drawn unless `--json` or `--quiet`; indicatif also hides them when stderr is
    /// not a terminal.
    pub fn new(json: bool, quiet: bool) -> Self {
        let target = if json || quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        };
        Self {
            bars: MultiProgress::with_draw_target(target),
            json,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn bars(&self) -> &MultiProgress {
        &self.bars
    }

    /// A byte-counting bar (upload, download) for `label`.
    pub fn transfer_bar(&self, label: &str, verb: &'static str, total: Option<u64>) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template(TRANSFER_TEMPLATE)
                .expect("the transfer template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar.set_message(verb);
        bar
    }

    /// A 0–100 % bar for a conversion on the server, under `after` (the same file's upload
    /// bar) when given.
    pub fn conversion_bar(&self, label: &str, after: Option<&ProgressBar>) -> ProgressBar {
        let bar = match after {
            Some(after) => self.bars.insert_after(after, ProgressBar::new(100)),
            None => self.bars.add(ProgressBar::new(100)),
        };
        bar.set_style(
            ProgressStyle::with_template(CONVERSION_TEMPLATE)
                .expect("the conversion template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar.set_message("queued");
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A result: `human` in text mode, `json` as one line in `--json` mode (stdout).
    pub fn result(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        let line = if self.json {
            json().to_string()
        } else {
            human()
        };
        self.bars.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        });
    }

    /// An error for a human (stderr); in `--json` mode also as a JSON line on stdout so a
    /// script reading stdout sees every outcome.
    pub fn error(&self, message: &str, code: &str, extra: Option<Value>) {
        self.bars.suspend(|| {
            eprintln!("error: {message}");
            if self.json {
                let mut object = serde_json::json!({"error": code, "message": message});
                if let (Some(Value::Object(extra)), Some(target)) = (extra, object.as_object_mut())
                {
                    target.extend(extra);
                }
                println!("{object}");
            }
        });
    }
}

/// Bytes for humans: `3.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

/// A label that fits the bars: the file name, shortened in the middle when long.
pub fn short_label(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width || width < 5 {
        return format!("{name:<width$}");
    }
    let keep = width - 1;
    let head = keep / 2;
    let tail = keep - head;
    let mut label: String = chars[..head].iter().collect();
    label.push('…');
    label.extend(&chars[chars.len() - tail..]);
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_padded_or_shortened_in_the_middle() {
        assert_eq!(short_label("a.mp4", 8), "a.mp4   ");
        let long = short_label("a-very-long-holiday-video.mp4", 12);
        assert_eq!(long.chars().count(), 12);
        assert!(
            long.starts_with("a-ver") && long.ends_with(".mp4") && long.contains('…'),
            "{long}"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.00 MiB");
    }

    #[test]
    fn templates_are_valid() {
        let ui = Ui::new(false, true);
        let bar = ui.transfer_bar("x", "upload", Some(10));
        bar.inc(5);
        assert_eq!(bar.position(), 5);
        let conversion = ui.conversion_bar("x", Some(&bar));
        conversion.set_position(40);
        conversion.finish_and_clear();
    }
}
