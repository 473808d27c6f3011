//! File names from clients, made safe to store and to send back.
//!
//! An uploaded name is only ever a label (files are stored under generated ids), but it travels
//! into metadata, e-mails and `Content-Disposition` headers, so it is reduced to a plain name:
//! no directories, no control characters, no leading dots, bounded length.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Longest kept name, in bytes (common file-system limit).
pub const MAX_FILENAME_BYTES: usize = 255;
/// Name used when nothing usable is left.
pub const FALLBACK_STEM: &str = "upload";

/// A client-supplied file name reduced to a safe, non-empty base name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeFilename(String);

impl SafeFilename {
    pub fn parse(raw: &str) -> Self {
        // The last path component, whichever separator the client's OS uses.
        let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = base
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'))
            .map(|c| match c {
                '"' | ':' | '*' | '?' | '<' | '>' | '|' => '_',
                other => other,
            })
            .collect();
        // Leading dots would make hidden files or `..`; trailing dots and spaces confuse Windows.
        let trimmed = cleaned
            .trim()
            .trim_start_matches('.')
            .trim_end_matches(['.', ' '])
            .trim();
        let name = if trimmed.is_empty() {
            FALLBACK_STEM.to_owned()
        } else {
            truncate_keeping_extension(trimmed, MAX_FILENAME_BYTES)
        };
        SafeFilename(name)
    }

    /// From bytes that may not be UTF-8 (invalid sequences become U+FFFD).
    pub fn parse_bytes(raw: &[u8]) -> Self {
        Self::parse(&String::from_utf8_lossy(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its extension (`holiday` for `holiday.mp4`).
    pub fn stem(&self) -> &str {
        match self.0.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => &self.0,
        }
    }

    /// The same name with an `.mp3` extension: the name of the converted file.
    pub fn with_mp3_extension(&self) -> SafeFilename {
        SafeFilename(truncate_keeping_extension(
            &format!("{}.mp3", self.stem()),
            MAX_FILENAME_BYTES,
        ))
    }
}

impl std::fmt::Display for SafeFilename {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() && extension.len() <= 16 => {
            let stem = truncate_at_char_boundary(stem, max - extension.len() - 1);
            format!("{stem}.{extension}")
        }
        _ => truncate_at_char_boundary(name, max).to_owned(),
    }
}

/// Characters kept as-is in an RFC 5987 `filename*` value (attr-char).
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition: attachment` for `name` (RFC 6266): an ASCII `filename` for old clients
/// and the exact UTF-8 name as `filename*`.
pub fn content_disposition(name: &SafeFilename) -> String {
    let ascii: String = name
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(name.as_str(), ATTR_CHAR_ESCAPES);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_traversal_are_reduced_to_the_base_name() {
        assert_eq!(SafeFilename::parse("../../etc/passwd").as_str(), "passwd");
        assert_eq!(
            SafeFilename::parse("C:\\Users\\me\\clip.mp4").as_str(),
            "clip.mp4"
        );
        assert_eq!(SafeFilename::parse("..").as_str(), FALLBACK_STEM);
        assert_eq!(SafeFilename::parse("/").as_str(), FALLBACK_STEM);
        assert_eq!(SafeFilename::parse("").as_str(), FALLBACK_STEM);
        assert_eq!(SafeFilename::parse(".hidden.mp4").as_str(), "hidden.mp4");
    }

    #[test]
    fn control_and_bidi_characters_are_dropped() {
        assert_eq!(
            SafeFilename::parse("ho\u{0}li\nday\r.mp4").as_str(),
            "holiday.mp4"
        );
        assert_eq!(SafeFilename::parse("a\u{202e}4pm.exe").as_str(), "a4pm.exe");
        assert_eq!(
            SafeFilename::parse("say \"hi\".mp4").as_str(),
            "say _hi_.mp4"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let name = SafeFilename::parse_bytes(b"caf\xe9.mp4");
        assert_eq!(name.as_str(), "caf\u{fffd}.mp4");
    }

    #[test]
    fn long_names_are_capped_keeping_the_extension_and_char_boundaries() {
        let long = format!("{}.mp4", "é".repeat(300));
        let name = SafeFilename::parse(&long);
        assert!(name.as_str().len() <= MAX_FILENAME_BYTES);
        assert!(name.as_str().ends_with(".mp4"));
        let no_extension = "x".repeat(1000);
        assert_eq!(
            SafeFilename::parse(&no_extension).as_str().len(),
            MAX_FILENAME_BYTES
        );
    }

    #[test]
    fn the_mp3_name_keeps_the_stem() {
        assert_eq!(
            SafeFilename::parse("holiday.mp4")
                .with_mp3_extension()
                .as_str(),
            "holiday.mp3"
        );
        assert_eq!(
            SafeFilename::parse("holiday").with_mp3_extension().as_str(),
            "holiday.mp3"
        );
        assert_eq!(
            SafeFilename::parse("a.b.webm")
                .with_mp3_extension()
                .as_str(),
            "a.b.mp3"
        );
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_the_exact_utf8_name() {
        let plain = content_disposition(&SafeFilename::parse("holiday.mp3"));
        assert_eq!(
            plain,
            "attachment; filename=\"holiday.mp3\"; filename*=UTF-8''holiday.mp3"
        );
        let fancy = content_disposition(&SafeFilename::parse("été 100%.mp3"));
        assert_eq!(
            fancy,
            "attachment; filename=\"_t_ 100_.mp3\"; filename*=UTF-8''%C3%A9t%C3%A9%20100%25.mp3"
        );
        assert!(axum::http::HeaderValue::from_str(&fancy).is_ok());
    }
}
