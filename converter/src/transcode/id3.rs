//! A minimal ID3v2.3 tag holding only the title (TIT2), written ahead of the MP3 frames.
//!
//! Written by hand because one text frame is a few dozen bytes of format, and the same tag is
//! needed in front of both LAME output and passed-through MP3 frames.

/// Titles are file names in practice; cap them so a hostile name cannot bloat the file.
const MAX_TITLE_CHARS: usize = 1024;

/// Builds the ID3v2.3 tag bytes for `title`, or nothing when the title is empty.
pub(crate) fn title_tag(title: &str) -> Vec<u8> {
    let title: String = title
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TITLE_CHARS)
        .collect();
    if title.is_empty() {
        return Vec::new();
    }

    let frame_body = encode_text(&title);
    let frame_len = u32::try_from(frame_body.len()).expect("title is capped");

    let mut frame = Vec::with_capacity(10 + frame_body.len());
    frame.extend_from_slice(b"TIT2");
    // ID3v2.3 frame sizes are plain big-endian; only the tag header size is syncsafe.
    frame.extend_from_slice(&frame_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&frame_body);

    let mut tag = Vec::with_capacity(10 + frame.len());
    tag.extend_from_slice(b"ID3");
    tag.extend_from_slice(&[3, 0, 0]);
    tag.extend_from_slice(&syncsafe(
        u32::try_from(frame.len()).expect("title is capped"),
    ));
    tag.extend_from_slice(&frame);
    tag
}

/// Latin-1 when every character fits (most compatible), else UTF-16 with a byte order mark.
fn encode_text(text: &str) -> Vec<u8> {
    if text.chars().all(|c| u32::from(c) <= 0xFF) {
        let mut body = vec![0u8];
        body.extend(
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
        body
    } else {
        let mut body = vec![1u8, 0xFF, 0xFE];
        body.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        body
    }
}

/// ID3 sizes keep the top bit of each byte clear so no false MPEG sync appears inside.
fn syncsafe(value: u32) -> [u8; 4] {
    [
        ((value >> 21) & 0x7F) as u8,
        ((value >> 14) & 0x7F) as u8,
        ((value >> 7) & 0x7F) as u8,
        (value & 0x7F) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_title_is_one_byte_per_char() {
        let tag = title_tag("Café");
        assert_eq!(&tag[..6], b"ID3\x03\x00\x00");
        assert_eq!(&tag[10..14], b"TIT2");
        assert_eq!(&tag[14..18], &5u32.to_be_bytes());
        assert_eq!(&tag[20..], b"\x00Caf\xE9");
        assert_eq!(tag.len(), 10 + 10 + 5);
    }

    #[test]
    fn other_scripts_use_utf16_with_bom() {
        let tag = title_tag("日本");
        assert_eq!(&tag[20..23], &[1, 0xFF, 0xFE]);
        assert_eq!(&tag[23..], &[0xE5, 0x65, 0x2C, 0x67]);
    }

    #[test]
    fn empty_or_blank_title_writes_no_tag() {
        assert!(title_tag("").is_empty());
        assert!(title_tag(" \t\n").is_empty());
    }

    #[test]
    fn header_size_is_syncsafe() {
        assert_eq!(syncsafe(0x7F), [0, 0, 0, 0x7F]);
        assert_eq!(syncsafe(0x80), [0, 0, 1, 0]);
        assert_eq!(syncsafe(300), [0, 0, 2, 44]);
    }
}
