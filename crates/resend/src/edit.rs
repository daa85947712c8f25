//! Payload editing, pure: hex and escaped-ASCII parsers (pidcap-packet's),
//! byte patches, find/replace, and durations. Errors name the position of
//! the bad input.

use pidcap_packet::ascii::EscapeError;
use pidcap_packet::hex::HexError;
use std::fmt;
use std::net::AddrParseError;
use std::num::{ParseFloatError, ParseIntError};
use std::time::Duration;

/// A bad payload, patch, replacement, duration, address or job argument; the
/// message says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// Bad hex (the position is in the error).
    Hex(HexError),
    /// Bad escaped text (the position is in the error).
    Escape(EscapeError),
    /// An offset that is neither decimal nor `0x` hex.
    Offset { text: String, source: ParseIntError },
    /// A duration whose number does not parse.
    Duration { text: String, source: ParseFloatError },
    /// An address that is not `ADDR:PORT` / `[IPv6]:PORT`.
    Address { text: String, source: AddrParseError },
    /// An error inside a larger argument: `{context}: {error}{hint}`, e.g.
    /// `patch "1:2g": invalid hex digit 'g' at position 1 (after the colon)`.
    In { context: String, error: Box<EditError>, hint: &'static str },
    /// Anything else, in words (there is no error underneath).
    Invalid(String),
}

impl EditError {
    /// `error` inside `context`, followed by `hint`.
    pub fn within(context: impl Into<String>, error: EditError, hint: &'static str) -> EditError {
        EditError::In { context: context.into(), error: Box::new(error), hint }
    }

    /// The innermost error (under every [`EditError::In`]).
    pub fn innermost(&self) -> &EditError {
        match self {
            EditError::In { error, .. } => error.innermost(),
            e => e,
        }
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Hex(e) => write!(f, "{e}"),
            EditError::Escape(e) => write!(f, "{e}"),
            EditError::Offset { text, .. } => write!(f, "invalid offset {text:?}: a decimal number or 0x-prefixed hex"),
            EditError::Duration { text, .. } => write!(f, "invalid duration {text:?}: e.g. 100ms, 1s, 2.5s"),
            EditError::Address { text, .. } => write!(f, "invalid address {text:?}: ADDR:PORT or [IPv6]:PORT"),
            EditError::In { context, error, hint } => write!(f, "{context}: {error}{hint}"),
            EditError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EditError {
    /// The parse error underneath, if any. [`EditError::Hex`], [`EditError::Escape`]
    /// and [`EditError::In`] already show the error they hold in their message,
    /// so they pass on *its* source (as `#[error(transparent)]` does) and a
    /// chain of causes does not repeat it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EditError::Offset { source, .. } => Some(source),
            EditError::Duration { source, .. } => Some(source),
            EditError::Address { source, .. } => Some(source),
            EditError::In { error, .. } => error.source(),
            EditError::Hex(_) | EditError::Escape(_) | EditError::Invalid(_) => None,
        }
    }
}

impl From<HexError> for EditError {
    fn from(e: HexError) -> EditError {
        EditError::Hex(e)
    }
}

impl From<EscapeError> for EditError {
    fn from(e: EscapeError) -> EditError {
        EditError::Escape(e)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, EditError> {
    Err(EditError::Invalid(msg.into()))
}

/// Parse hex bytes with [`pidcap_packet::hex::parse`]: `47 45 54`, `474554`,
/// `0x47 0x45`, `47:45:54`, `47-45,54`; the error names the 0-based position.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, EditError> {
    Ok(pidcap_packet::hex::parse(s)?)
}

/// Parse text with C-like escapes ([`pidcap_packet::ascii::unescape`]):
/// `\r \n \t \0 \\ \" \' \xHH`; any other character stands for its
/// UTF-8 bytes. The error names the position.
pub fn parse_ascii(s: &str) -> Result<Vec<u8>, EditError> {
    Ok(pidcap_packet::ascii::unescape(s)?)
}

/// An offset: decimal, or hex with `0x`.
fn parse_offset(s: &str) -> Result<usize, EditError> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => usize::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|source| EditError::Offset { text: s.into(), source })
}

/// Longest payload an edit may make (1 MiB, more than a daemon request can
/// carry): replaces that each multiply the payload (`41:4141` forty times)
/// made it grow exponentially, hanging or killing the daemon (found by
/// fuzzing, see docs/RELIABILITY.md). A longer payload given as it is stays
/// accepted; an edit may only not make it longer.
pub const MAX_EDITED_PAYLOAD: usize = 1 << 20;

/// Most edits (patches and replaces) one payload takes: with the length cap,
/// this bounds the work of one job's edits (about 256 passes over 1 MiB).
pub const MAX_EDITS: usize = 256;

fn too_long<T>(what: &str, len: usize) -> Result<T, EditError> {
    bad(format!("{what} would make the payload longer than {MAX_EDITED_PAYLOAD} bytes ({len} and more)"))
}

/// One edit of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Overwrite bytes from `offset` (may extend the payload; `offset` at most its length).
    Patch { offset: usize, bytes: Vec<u8> },
    /// Replace every occurrence of `from` (non-empty) by `to`, left to right, not overlapping.
    Replace { from: Vec<u8>, to: Vec<u8> },
}

impl Edit {
    /// `OFF:HEX`, e.g. `0:50`, `0x10:0d 0a`.
    pub fn parse_patch(s: &str) -> Result<Edit, EditError> {
        let (off, hex) = s
            .split_once(':')
            .ok_or_else(|| EditError::Invalid(format!("patch {s:?}: expected OFF:HEX, e.g. 4:2f61")))?;
        let bytes = parse_hex(hex).map_err(|e| EditError::within(format!("patch {s:?}"), e, " (after the colon)"))?;
        if bytes.is_empty() {
            return bad(format!("patch {s:?}: no bytes after the colon"));
        }
        let offset = parse_offset(off).map_err(|e| EditError::within(format!("patch {s:?}"), e, ""))?;
        Ok(Edit::Patch { offset, bytes })
    }

    /// `FROM_HEX:TO_HEX`, e.g. `474554:504f5354`; TO may be empty (delete).
    pub fn parse_replace(s: &str) -> Result<Edit, EditError> {
        let (from, to) =
            s.split_once(':').ok_or_else(|| EditError::Invalid(format!("replace {s:?}: expected FROM_HEX:TO_HEX")))?;
        let from = parse_hex(from).map_err(|e| EditError::within(format!("replace {s:?}"), e, " (in FROM)"))?;
        let to = parse_hex(to).map_err(|e| EditError::within(format!("replace {s:?}"), e, " (in TO)"))?;
        if from.is_empty() {
            return bad(format!("replace {s:?}: FROM is empty"));
        }
        Ok(Edit::Replace { from, to })
    }

    /// Apply to `payload`.
    pub fn apply(&self, payload: &mut Vec<u8>) -> Result<(), EditError> {
        match self {
            Edit::Patch { offset, bytes } => {
                if *offset > payload.len() {
                    return bad(format!(
                        "patch at offset {offset} is past the end of the {}-byte payload",
                        payload.len()
                    ));
                }
                let end = offset + bytes.len();
                if end > MAX_EDITED_PAYLOAD && end > payload.len() {
                    return too_long("the patch", end);
                }
                if end > payload.len() {
                    payload.resize(end, 0);
                }
                payload[*offset..end].copy_from_slice(bytes);
            }
            Edit::Replace { from, to } => {
                let mut out = Vec::with_capacity(payload.len());
                let most = MAX_EDITED_PAYLOAD.max(payload.len());
                let mut i = 0;
                while i < payload.len() {
                    if payload[i..].starts_with(from) {
                        // What is already out, this replacement, and the rest still to copy.
                        let len = out.len() + to.len() + (payload.len() - i - from.len());
                        if len > most {
                            return too_long("the replacement", len);
                        }
                        out.extend_from_slice(to);
                        i += from.len();
                    } else {
                        out.push(payload[i]);
                        i += 1;
                    }
                }
                *payload = out;
            }
        }
        Ok(())
    }
}

/// Apply `edits` (at most [`MAX_EDITS`]) in order to a copy of `payload`.
pub fn apply_edits(payload: &[u8], edits: &[Edit]) -> Result<Vec<u8>, EditError> {
    if edits.len() > MAX_EDITS {
        return bad(format!("{} edits, more than the cap of {MAX_EDITS}", edits.len()));
    }
    let mut p = payload.to_vec();
    for e in edits {
        e.apply(&mut p)?;
    }
    Ok(p)
}

/// `100ms`, `1s`, `2.5s`, `1m`, `500us`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, EditError> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|source| EditError::Duration { text: s.into(), source })?;
    let secs = match unit.trim() {
        "" | "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return bad(format!("invalid duration unit {u:?} in {s:?}: us, ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return bad(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("47 45 54").unwrap(), b"GET");
        assert_eq!(parse_hex("474554").unwrap(), b"GET");
        assert_eq!(parse_hex("0x47 0x45 0X54").unwrap(), b"GET");
        assert_eq!(parse_hex("0x474554").unwrap(), b"GET");
        assert_eq!(parse_hex("47:45-54,\n0a").unwrap(), b"GET\n");
        assert_eq!(parse_hex("  ").unwrap(), b"");
        assert_eq!(parse_hex("fF").unwrap(), [0xff]);
    }

    #[test]
    fn hex_errors_name_the_position() {
        assert_eq!(parse_hex("47 4g").unwrap_err().to_string(), "invalid hex digit 'g' at position 4");
        assert!(parse_hex("474")
            .unwrap_err()
            .to_string()
            .contains("odd number of hex digits (3) in the group at position 0"));
        assert!(parse_hex("47 0x").unwrap_err().to_string().contains("position 3"));
        assert!(parse_hex("zz").unwrap_err().to_string().contains("position 0"));
        assert!(parse_hex("00 é").unwrap_err().to_string().contains("position 3"));
    }

    #[test]
    fn ascii_escapes() {
        assert_eq!(parse_ascii("GET / HTTP/1.1\\r\\n").unwrap(), b"GET / HTTP/1.1\r\n");
        assert_eq!(parse_ascii("a\\x00b\\\\c\\t\\0\\\"").unwrap(), b"a\x00b\\c\t\x00\"");
        assert_eq!(parse_ascii("é").unwrap(), "é".as_bytes());
        assert!(parse_ascii("ab\\").unwrap_err().to_string().contains("position 2"));
        assert!(parse_ascii("a\\q").unwrap_err().to_string().contains("\\q at position 1"));
        assert!(parse_ascii("\\x4").unwrap_err().to_string().contains("two hex digits"));
        assert!(parse_ascii("\\xzz").unwrap_err().to_string().contains("position 0"));
    }

    #[test]
    fn patches() {
        let e = Edit::parse_patch("0:50").unwrap();
        assert_eq!(e, Edit::Patch { offset: 0, bytes: vec![0x50] });
        assert_eq!(apply_edits(b"GET", &[e]).unwrap(), b"PET");
        assert_eq!(apply_edits(b"GET", &[Edit::parse_patch("0x2:5453").unwrap()]).unwrap(), b"GETS");
        assert_eq!(apply_edits(b"GET", &[Edit::parse_patch("3:21").unwrap()]).unwrap(), b"GET!");
        assert!(apply_edits(b"GET", &[Edit::parse_patch("4:21").unwrap()])
            .unwrap_err()
            .to_string()
            .contains("past the end"));
        assert!(Edit::parse_patch("x:21").unwrap_err().to_string().contains("invalid offset"));
        assert!(Edit::parse_patch("21").unwrap_err().to_string().contains("OFF:HEX"));
        assert!(Edit::parse_patch("1:2g").unwrap_err().to_string().contains("position 1"));
        assert!(Edit::parse_patch("1:").unwrap_err().to_string().contains("no bytes"));
    }

    #[test]
    fn replaces() {
        let r = Edit::parse_replace("474554:504f5354").unwrap();
        assert_eq!(apply_edits(b"GET /a GET /b", &[r]).unwrap(), b"POST /a POST /b");
        let del = Edit::parse_replace("20:").unwrap();
        assert_eq!(apply_edits(b"a b c", &[del]).unwrap(), b"abc");
        // Non-overlapping, left to right.
        assert_eq!(apply_edits(b"aaa", &[Edit::parse_replace("6161:62").unwrap()]).unwrap(), b"ba");
        assert!(Edit::parse_replace(":41").unwrap_err().to_string().contains("FROM is empty"));
        assert!(Edit::parse_replace("4x:41").unwrap_err().to_string().contains("in FROM"));
        assert!(Edit::parse_replace("41").unwrap_err().to_string().contains("FROM_HEX:TO_HEX"));
        // Patches then replaces, in the order given.
        let edits = [Edit::parse_patch("0:48").unwrap(), Edit::parse_replace("48:4a4a").unwrap()];
        assert_eq!(apply_edits(b"GET", &edits).unwrap(), b"JJET");
    }

    /// Found by the `edit` fuzz target (libFuzzer; the input is
    /// crates/fuzz/corpus/edit/regress-replace-growth.txt): replaces that each
    /// triple the payload (`41:41:411241aaaf`: each `A` becomes three) grew it
    /// without bound.
    #[test]
    fn replaces_cannot_grow_the_payload_without_bound() {
        let triple = Edit::parse_replace("41:41:411241aaaf").unwrap();
        let edits = vec![triple; 40];
        let started = std::time::Instant::now();
        let e = apply_edits(b"A", &edits).unwrap_err();
        assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Up to the cap it works, and a payload already longer may be edited if it does not grow.
        let doubled = apply_edits(&[0x41; 1 << 19], &[Edit::parse_replace("41:4141").unwrap()]).unwrap();
        assert_eq!(doubled.len(), MAX_EDITED_PAYLOAD);
        // Found by libFuzzer after the first fix: the bytes after the last
        // replacement count too (half doubled, half copied: 1.5 MiB).
        let mut half = vec![0x41; 1 << 19];
        half.extend(vec![0x42; 1 << 19]);
        assert!(apply_edits(&half, &[Edit::parse_replace("41:4141").unwrap()]).is_err());
        let big = vec![0x41; MAX_EDITED_PAYLOAD + 10];
        assert_eq!(apply_edits(&big, &[Edit::parse_replace("41:42").unwrap()]).unwrap().len(), big.len());
        assert!(apply_edits(&big, &[Edit::parse_patch(&format!("{}:4243", big.len() - 1)).unwrap()]).is_err());
        assert!(apply_edits(&doubled, &[Edit::parse_patch(&format!("{}:42", doubled.len())).unwrap()]).is_err());
        // And the number of passes over it is bounded.
        let same = Edit::parse_replace("41:41").unwrap();
        assert!(apply_edits(b"A", &vec![same.clone(); MAX_EDITS]).is_ok());
        assert!(apply_edits(b"A", &vec![same; MAX_EDITS + 1]).unwrap_err().to_string().contains("cap of 256"));
    }

    #[test]
    fn errors_are_typed_and_keep_their_sources() {
        use pidcap_packet::hex::HexErrorKind;
        use std::error::Error;
        let e = Edit::parse_patch("1:2g").unwrap_err();
        assert!(
            matches!(e.innermost(), EditError::Hex(h) if h.kind == HexErrorKind::InvalidDigit('g') && h.at.offset == 1)
        );
        assert!(e.source().is_none(), "the hex error is in the message, not repeated as a cause");
        let e = Edit::parse_patch("x:21").unwrap_err();
        assert!(matches!(e.innermost(), EditError::Offset { text, .. } if text == "x"));
        assert!(e.source().is_some_and(|s| s.is::<ParseIntError>()));
        let e = parse_duration("fast").unwrap_err();
        assert!(e.source().is_some_and(|s| s.is::<ParseFloatError>()), "{e:?}");
        assert!(matches!(parse_ascii("\\q").unwrap_err(), EditError::Escape(_)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1 parsec").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
