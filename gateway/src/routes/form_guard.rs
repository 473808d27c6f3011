//! A guard in front of the multipart parser of `POST /upload`.
//!
//! The parser (multer, behind axum's `Multipart`) buffers a part header until it sees the blank
//! line that ends it, without a bound, and rescans the buffer on every read: one part header that
//! never ends made the gateway hold the whole body in memory. The guard sits between the request
//! body and the parser, follows the multipart framing as the bytes stream past (memmem searches
//! with a carry of a few bytes between chunks; file data is searched, never copied) and stops the
//! body with a [`Refusal`] once:
//!
//! - the preamble or one part header passes [`MAX_PART_HEADER_BYTES`],
//! - the body has more than [`MAX_PARTS`] parts,
//! - the whole body passes its byte limit (`MAX_UPLOAD_BYTES` plus room for the form around the
//!   file), whether it declared a length or came chunked,
//! - a boundary line is malformed,
//! - or the body stalled past `BODY_IDLE_TIMEOUT` (reported here so it gets its own answer).
//!
//! The parser then fails at once, holding at most the cap plus one chunk; the handler asks the
//! guard why ([`FormGuard::refusal`]) and reads what is left of the body raw, within limits, to
//! discard it ([`FormGuard::drain`]). Non-file fields are bounded by the handler as it reads them.

use axum::BoxError;
use axum::body::{Body, BodyDataStream};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use memchr::memmem::Finder;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Largest preamble, and largest part header (from the end of its boundary to its blank line).
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;
/// Most parts in one upload form (the file, the options, a few fields clients add).
pub const MAX_PARTS: u32 = 16;
/// RFC 2046 allows 70 characters; a little more is tolerated, a long one is refused.
pub const MAX_BOUNDARY_BYTES: usize = 200;

/// Why the guard stopped a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PartHeaderTooLarge,
    TooManyParts,
    BodyTooLarge,
    MalformedBoundary,
    /// The client stopped sending for longer than `BODY_IDLE_TIMEOUT`.
    BodyTimedOut,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::PartHeaderTooLarge => "a multipart part header is too large",
            Refusal::TooManyParts => "the form has too many parts",
            Refusal::BodyTooLarge => "the request body is too large",
            Refusal::MalformedBoundary => "a multipart boundary line is malformed",
            Refusal::BodyTimedOut => "the request body stalled",
        })
    }
}

impl std::error::Error for Refusal {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first `--boundary`.
    Preamble,
    /// Just after a boundary: `--` closes the form, anything else starts a part.
    AfterBoundary { dash: bool },
    /// Transport padding (spaces, tabs) and the CRLF that ends the boundary line.
    BoundaryLine { cr: bool },
    /// A part's header lines, up to the blank line.
    Headers,
    /// A part's content, up to the next `CRLF--boundary`.
    Data,
    /// After the closing boundary (the parser reads no further).
    Epilogue,
}

/// The multipart framing, followed the way the parser reads it: the first `--boundary` anywhere,
/// then after each boundary either `--` (the end) or padding, CRLF, headers up to CRLFCRLF, and
/// content up to `CRLF--boundary`.
pub struct Framing {
    dash_boundary: Finder<'static>,
    delimiter: Finder<'static>,
    headers_end: Finder<'static>,
    stage: Stage,
    /// The last bytes of the previous chunk (fewer than the searched pattern), so a pattern
    /// split between two chunks is found.
    carry: Vec<u8>,
    window: Vec<u8>,
    /// Bytes of the current preamble, or of the current part's boundary line and header.
    header_bytes: usize,
    parts: u32,
}

impl Framing {
    pub fn new(boundary: &str) -> Self {
        let dash_boundary = format!("--{boundary}").into_bytes();
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Self {
            dash_boundary: Finder::new(&dash_boundary).into_owned(),
            delimiter: Finder::new(&delimiter).into_owned(),
            headers_end: Finder::new(b"\r\n\r\n").into_owned(),
            stage: Stage::Preamble,
            carry: Vec::with_capacity(delimiter.len()),
            window: Vec::with_capacity(2 * delimiter.len()),
            header_bytes: 0,
            parts: 0,
        }
    }

    /// Follows `input`, the next bytes of the body.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Refusal> {
        while !input.is_empty() {
            match self.stage {
                Stage::Preamble | Stage::Headers => {
                    let finder = if self.stage == Stage::Preamble {
                        &self.dash_boundary
                    } else {
                        &self.headers_end
                    };
                    let found = find_across(&mut self.carry, &mut self.window, finder, input);
                    let consumed = found.unwrap_or(input.len());
                    self.header_bytes = self.header_bytes.saturating_add(consumed);
                    if self.header_bytes > MAX_PART_HEADER_BYTES {
                        return Err(Refusal::PartHeaderTooLarge);
                    }
                    input = &input[consumed..];
                    if found.is_some() {
                        self.stage = match self.stage {
                            Stage::Preamble => Stage::AfterBoundary { dash: false },
                            _ => Stage::Data,
                        };
                    }
                }
                Stage::Data => {
                    match find_across(&mut self.carry, &mut self.window, &self.delimiter, input) {
                        Some(end) => {
                            input = &input[end..];
                            self.stage = Stage::AfterBoundary { dash: false };
                        }
                        None => return Ok(()),
                    }
                }
                Stage::AfterBoundary { dash } => match (dash, input[0]) {
                    (false, b'-') => {
                        self.stage = Stage::AfterBoundary { dash: true };
                        input = &input[1..];
                    }
                    (true, b'-') => {
                        self.stage = Stage::Epilogue;
                        input = &input[1..];
                    }
                    (true, _) => return Err(Refusal::MalformedBoundary),
                    (false, _) => {
                        self.parts += 1;
                        if self.parts > MAX_PARTS {
                            return Err(Refusal::TooManyParts);
                        }
                        self.header_bytes = 0;
                        self.stage = Stage::BoundaryLine { cr: false };
                    }
                },
                // Byte by byte, but only a few bytes per part: the line is capped like a header.
                Stage::BoundaryLine { cr } => {
                    self.header_bytes += 1;
                    if self.header_bytes > MAX_PART_HEADER_BYTES {
                        return Err(Refusal::PartHeaderTooLarge);
                    }
                    self.stage = match (cr, input[0]) {
                        (false, b' ' | b'\t') => Stage::BoundaryLine { cr: false },
                        (false, b'\r') => Stage::BoundaryLine { cr: true },
                        (true, b'\n') => Stage::Headers,
                        _ => return Err(Refusal::MalformedBoundary),
                    };
                    input = &input[1..];
                }
                Stage::Epilogue => return Ok(()),
            }
        }
        Ok(())
    }

    /// Parts begun so far.
    #[cfg(test)]
    fn parts(&self) -> u32 {
        self.parts
    }
}

/// Finds the needle of `finder` in `carry` + `input`, where `carry` holds fewer bytes than the
/// needle: the position in `input` just past the match, or `None` (and `carry` keeps the tail).
fn find_across(
    carry: &mut Vec<u8>,
    window: &mut Vec<u8>,
    finder: &Finder<'_>,
    input: &[u8],
) -> Option<usize> {
    let needle = finder.needle().len();
    if !carry.is_empty() {
        // A match that starts in the carry ends within the first needle-1 bytes of the input.
        window.clear();
        window.extend_from_slice(carry);
        window.extend_from_slice(&input[..input.len().min(needle - 1)]);
        if let Some(at) = finder.find(window) {
            let end = at + needle - carry.len();
            carry.clear();
            return Some(end);
        }
    }
    if let Some(at) = finder.find(input) {
        carry.clear();
        return Some(at + needle);
    }
    let keep = needle - 1;
    if input.len() >= keep {
        carry.clear();
        carry.extend_from_slice(&input[input.len() - keep..]);
    } else {
        carry.extend_from_slice(input);
        let excess = carry.len().saturating_sub(keep);
        carry.drain(..excess);
    }
    None
}

struct Shared {
    /// The request body; taken by [`FormGuard::drain`].
    inner: Option<BodyDataStream>,
    framing: Framing,
    total: u64,
    max_total: u64,
    refusal: Option<Refusal>,
}

/// The guard's view for the handler: why the body was stopped, and the rest of it to discard.
#[derive(Clone)]
pub struct FormGuard {
    shared: Arc<Mutex<Shared>>,
}

impl FormGuard {
    /// Wraps `body` (a multipart body with `boundary`) and limits it to `max_total` bytes; the
    /// returned body goes to the multipart parser.
    pub fn new(body: Body, boundary: &str, max_total: u64) -> (Self, Body) {
        let guard = Self {
            shared: Arc::new(Mutex::new(Shared {
                inner: Some(body.into_data_stream()),
                framing: Framing::new(boundary),
                total: 0,
                max_total,
                refusal: None,
            })),
        };
        let guarded = Body::from_stream(Guarded {
            shared: guard.shared.clone(),
        });
        (guard, guarded)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the guard stopped the body, if it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.lock().refusal
    }

    /// Reads and discards what is left of the raw body, for at most `limit` or `max_bytes`, so
    /// the client reads the answer instead of a reset while it is still sending.
    pub async fn drain(&self, limit: Duration, max_bytes: u64) {
        let Some(mut inner) = self.lock().inner.take() else {
            return;
        };
        let deadline = Instant::now() + limit;
        let mut drained = 0u64;
        let work = async {
            while let Some(Ok(chunk)) = inner.next().await {
                drained += chunk.len() as u64;
                if drained > max_bytes {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, work).await;
    }
}

/// The body the parser reads.
struct Guarded {
    shared: Arc<Mutex<Shared>>,
}

impl Stream for Guarded {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &mut *shared;
        if let Some(refusal) = shared.refusal {
            return Poll::Ready(Some(Err(Box::new(refusal))));
        }
        let Some(inner) = shared.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => {
                let error = error.into_inner();
                if error.is::<tower_http::timeout::TimeoutError>() {
                    shared.refusal = Some(Refusal::BodyTimedOut);
                }
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                shared.total = shared.total.saturating_add(chunk.len() as u64);
                let verdict = if shared.total > shared.max_total {
                    Err(Refusal::BodyTooLarge)
                } else {
                    shared.framing.feed(&chunk)
                };
                match verdict {
                    Ok(()) => Poll::Ready(Some(Ok(chunk))),
                    Err(refusal) => {
                        shared.refusal = Some(refusal);
                        Poll::Ready(Some(Err(Box::new(refusal))))
                    }
                }
            }
        }
    }
}

/// The boundary of a `multipart/form-data` Content-Type, parsed as the multipart parser parses
/// it (the `mime` crate), so the guard and the parser agree on it.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mime: mime::Mime = content_type.parse().ok()?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != mime::FORM_DATA {
        return None;
    }
    mime.get_param(mime::BOUNDARY)
        .map(|boundary| boundary.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "XyZ123";

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (headers, content) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// Feeds `body` in chunks of `size` bytes.
    fn feed_in(body: &[u8], size: usize) -> (Result<(), Refusal>, Framing) {
        let mut framing = Framing::new(BOUNDARY);
        for chunk in body.chunks(size) {
            if let Err(refusal) = framing.feed(chunk) {
                return (Err(refusal), framing);
            }
        }
        (Ok(()), framing)
    }

    mod properties {
        //! The framing follows client bytes: whatever they are and however they are cut into
        //! chunks, the guard decides the same, never panics, and lets every well-formed form
        //! through.
        use super::*;
        use proptest::prelude::*;

        /// Bytes that mix random noise with the pieces the framing looks for.
        fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                Just(format!("--{BOUNDARY}").into_bytes()),
                Just(format!("\r\n--{BOUNDARY}").into_bytes()),
                Just(b"\r\n\r\n".to_vec()),
                Just(b"--\r\n".to_vec()),
                Just(b" \t\r\n".to_vec()),
            ];
            prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
        }

        /// A well-formed form: up to 8 parts, headers under the cap, content that never holds the
        /// delimiter.
        fn valid_form() -> impl Strategy<Value = Vec<u8>> {
            let part = (
                "[a-z]{1,12}",
                prop::collection::vec(any::<u8>(), 0..300).prop_filter(
                    "content holding the delimiter ends the part early",
                    |content| {
                        let delimiter = format!("\r\n--{BOUNDARY}");
                        !content
                            .windows(delimiter.len())
                            .any(|w| w == delimiter.as_bytes())
                            && !content.ends_with(b"\r")
                    },
                ),
            );
            prop::collection::vec(part, 1..8).prop_map(|parts| {
                let parts: Vec<(String, Vec<u8>)> = parts
                    .into_iter()
                    .map(|(name, content)| {
                        (
                            format!("Content-Disposition: form-data; name=\"{name}\""),
                            content,
                        )
                    })
                    .collect();
                let borrowed: Vec<(&str, &[u8])> = parts
                    .iter()
                    .map(|(headers, content)| (headers.as_str(), content.as_slice()))
                    .collect();
                form(&borrowed)
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn the_verdict_does_not_depend_on_the_chunking(
                body in prop_oneof![hostile_bytes(), valid_form()],
                first in 1usize..97,
                second in 1usize..97,
            ) {
                let (a, _) = feed_in(&body, first);
                let (b, _) = feed_in(&body, second);
                let (whole, _) = feed_in(&body, body.len().max(1));
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, whole);
            }

            #[test]
            fn every_well_formed_form_passes(body in valid_form(), size in 1usize..97) {
                let (result, framing) = feed_in(&body, size);
                prop_assert_eq!(result, Ok(()));
                prop_assert_eq!(framing.stage, Stage::Epilogue);
            }
        }
    }

    #[test]
    fn a_normal_form_passes_whatever_the_chunking() {
        // File content that looks almost like a delimiter, and a CRLFCRLF inside it.
        let content = b"ab\r\n--XyZ12\r\n\r\n--XyZ\r-XyZ123 tail".repeat(50);
        let body = form(&[
            (
                "Content-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"",
                &content,
            ),
            ("Content-Disposition: form-data; name=\"quality\"", b"V0"),
        ]);
        for size in [1, 2, 3, 7, 8, 9, 64, 1000, body.len()] {
            let (result, framing) = feed_in(&body, size);
            assert_eq!(result, Ok(()), "chunks of {size}");
            assert_eq!(framing.parts(), 2, "chunks of {size}");
            assert_eq!(framing.stage, Stage::Epilogue, "chunks of {size}");
        }
    }

    #[test]
    fn a_part_header_that_never_ends_is_refused_at_the_cap() {
        let mut body =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"\r\n").into_bytes();
        body.extend(std::iter::repeat_n(b'a', 2 * MAX_PART_HEADER_BYTES));
        let (result, _) = feed_in(&body, 1000);
        assert_eq!(result, Err(Refusal::PartHeaderTooLarge));
        // Long lines of header are fine below the cap.
        let long = format!("X-Long: {}", "b".repeat(MAX_PART_HEADER_BYTES - 100));
        let (result, _) = feed_in(&form(&[(&long, b"x")]), 333);
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_preamble_without_a_boundary_is_refused_at_the_cap() {
        let body = vec![b'p'; 3 * MAX_PART_HEADER_BYTES];
        assert_eq!(feed_in(&body, 4096).0, Err(Refusal::PartHeaderTooLarge));
        // A short preamble is fine.
        let mut body = b"preamble\r\n".to_vec();
        body.extend(form(&[(
            "Content-Disposition: form-data; name=\"a\"",
            b"1",
        )]));
        assert_eq!(feed_in(&body, 5).0, Ok(()));
    }

    #[test]
    fn too_many_parts_are_refused() {
        let fields: Vec<(&str, &[u8])> = (0..=MAX_PARTS)
            .map(|_| ("Content-Disposition: form-data; name=\"x\"", &b"1"[..]))
            .collect();
        assert_eq!(feed_in(&form(&fields), 100).0, Err(Refusal::TooManyParts));
        assert_eq!(feed_in(&form(&fields[..MAX_PARTS as usize]), 100).0, Ok(()));
    }

    #[test]
    fn padding_without_end_and_junk_after_a_boundary_are_refused() {
        let mut body = format!("--{BOUNDARY}").into_bytes();
        body.extend(std::iter::repeat_n(b' ', 2 * MAX_PART_HEADER_BYTES));
        assert_eq!(feed_in(&body, 512).0, Err(Refusal::PartHeaderTooLarge));
        let body = format!("--{BOUNDARY}  junk\r\n").into_bytes();
        assert_eq!(feed_in(&body, 3).0, Err(Refusal::MalformedBoundary));
        let body = format!("--{BOUNDARY} \t\r\nA: b\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes();
        assert_eq!(feed_in(&body, 2).0, Ok(()));
    }

    /// A measurement, not a timed test: `cargo test --release -p gateway --lib -- --ignored
    /// framing_throughput --nocapture` prints how fast the guard follows a 1 GiB file part.
    #[test]
    #[ignore = "a measurement (run it with --release)"]
    fn framing_throughput() {
        let block: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"
        );
        let mut framing = Framing::new(BOUNDARY);
        framing.feed(head.as_bytes()).unwrap();
        let blocks = 16 * 1024; // 1 GiB
        let start = std::time::Instant::now();
        for _ in 0..blocks {
            framing.feed(std::hint::black_box(&block)).unwrap();
        }
        let elapsed = start.elapsed();
        let gib = (blocks * block.len()) as f64 / (1u64 << 30) as f64;
        eprintln!(
            "framing: {gib:.0} GiB in 64 KiB chunks in {elapsed:?}: {:.1} GiB/s",
            gib / elapsed.as_secs_f64()
        );
        assert_eq!(framing.stage, Stage::Data);
    }

    #[test]
    fn boundaries_are_read_like_the_parser_reads_them() {
        assert_eq!(
            boundary_of("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary_of("Multipart/Form-Data; boundary=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(boundary_of("multipart/form-data"), None);
        assert_eq!(boundary_of("application/json; boundary=abc"), None);
        assert_eq!(boundary_of("garbage"), None);
    }
}
