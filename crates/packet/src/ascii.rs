//! Bytes as text, in one place.
//!
//! * [`escape`] / [`unescape`]: the editable ASCII view. Printable ASCII
//!   stands for itself, a backslash is `\\`, and every other byte is an
//!   escape (`\r \n \t \0`, else `\xHH`), so `unescape(&escape(b)) == b` for
//!   every byte sequence.
//! * [`printable`], [`lossy`] and [`dots`]: read-only views (the hex dump's
//!   right column, a reply's first bytes, the search index's text) where
//!   every byte that is not printable ASCII becomes one placeholder character.

use crate::hex::Position;
use std::fmt;

/// Printable ASCII: a graphic character or the space.
pub fn printable(b: u8) -> bool {
    b.is_ascii_graphic() || b == b' '
}

/// Each byte as one character: printable ASCII as itself, anything else as `placeholder`.
pub fn lossy(bytes: &[u8], placeholder: char) -> String {
    bytes.iter().map(|&b| if printable(b) { char::from(b) } else { placeholder }).collect()
}

/// [`lossy`] with `.`, as `xxd` and `hexdump -C` show bytes. Read-only: a
/// `.` here may be any byte; edit through [`escape`] instead.
pub fn dots(bytes: &[u8]) -> String {
    lossy(bytes, '.')
}

/// The escaped text of `bytes` (see the module doc); [`unescape`] undoes it exactly.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            b if printable(b) => s.push(char::from(b)),
            b => {
                use fmt::Write;
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// What is wrong with escaped text (see [`EscapeError`] for where).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeErrorKind {
    /// A `\` at the very end.
    LoneBackslash,
    /// `\x` not followed by two hex digits.
    BadHexEscape,
    /// `\` followed by a character that is not a known escape.
    UnknownEscape(char),
}

/// Escaped text that [`unescape`] refuses; `at` is the position of the backslash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscapeError {
    pub kind: EscapeErrorKind,
    pub at: Position,
}

/// The escapes [`unescape`] knows, for messages.
pub const KNOWN_ESCAPES: &str = "\\r \\n \\t \\0 \\\\ \\\" \\' \\xHH";

impl fmt::Display for EscapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = self.at.offset;
        match self.kind {
            EscapeErrorKind::LoneBackslash => {
                write!(f, "lone backslash at the end (position {pos}); write \\\\ for one")
            }
            EscapeErrorKind::BadHexEscape => write!(f, "\\x at position {pos} needs two hex digits"),
            EscapeErrorKind::UnknownEscape(c) => {
                write!(f, "unknown escape \\{c} at position {pos} (known: {KNOWN_ESCAPES})")
            }
        }
    }
}

impl std::error::Error for EscapeError {}

/// The bytes of escaped text: `\r \n \t \0 \\ \" \' \xHH` are escapes, any
/// other character stands for its UTF-8 bytes (so text typed by hand works too).
pub fn unescape(s: &str) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.char_indices().enumerate().map(|(index, (offset, c))| (Position { offset, index }, c)).peekable();
    while let Some((at, c)) = it.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let err = |kind| EscapeError { kind, at };
        let Some((_, e)) = it.next() else {
            return Err(err(EscapeErrorKind::LoneBackslash));
        };
        match e {
            'r' => out.push(b'\r'),
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '\'' => out.push(b'\''),
            'x' => {
                let mut v = 0u8;
                for _ in 0..2 {
                    let d = it.next_if(|(_, d)| d.is_ascii_hexdigit()).ok_or(err(EscapeErrorKind::BadHexEscape))?;
                    v = v << 4 | d.1.to_digit(16).unwrap_or(0) as u8;
                }
                out.push(v);
            }
            other => return Err(err(EscapeErrorKind::UnknownEscape(other))),
        }
    }
    Ok(out)
}

/// `text` in backquotes, cut to its first `max` characters followed by
/// "… (N bytes)" when longer: a client's input is quoted once and short.
pub fn quote_cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => format!("`{text}`"),
        Some((end, _)) => format!("`{}…` ({} bytes)", &text[..end], text.len()),
    }
}

/// `text` with every backquoted span longer than `max` characters cut as
/// [`quote_cut`] does (an error's reason may quote the client's input).
pub fn cut_quotes(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(4 * max + 64));
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('`') {
            Some(close) => {
                out.push_str(&quote_cut(&after[..close], max));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&quote_cut(after, max));
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_not_printable() {
        assert_eq!(escape(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
        assert_eq!(escape(b"a\\b\t\0\x7f\x80\xff \"'."), "a\\\\b\\t\\0\\x7f\\x80\\xff \"'.");
        assert_eq!(dots(b"a\r\n.\\ \x7f"), "a...\\ .");
        assert_eq!(lossy(b"a\r b", ' '), "a  b");
    }

    #[test]
    fn unescape_reads_escapes_and_plain_text() {
        assert_eq!(unescape("GET / HTTP/1.1\\r\\n").unwrap(), b"GET / HTTP/1.1\r\n");
        assert_eq!(unescape("a\\x00b\\\\c\\t\\0\\\"\\'").unwrap(), b"a\x00b\\c\t\x00\"'");
        assert_eq!(unescape("\\xFf\\x0a").unwrap(), [0xff, 0x0a]);
        assert_eq!(unescape("é\n").unwrap(), "é\n".as_bytes());
        // A dot is a dot: it never stands for another byte.
        assert_eq!(unescape("..").unwrap(), b"..");
    }

    #[test]
    fn errors_name_the_backslash() {
        let e = unescape("ab\\").unwrap_err();
        assert_eq!((e.kind, e.at), (EscapeErrorKind::LoneBackslash, Position { offset: 2, index: 2 }));
        let e = unescape("é\\q").unwrap_err();
        assert_eq!((e.kind, e.at), (EscapeErrorKind::UnknownEscape('q'), Position { offset: 2, index: 1 }));
        assert!(e.to_string().contains("\\q at position 2"), "{e}");
        assert_eq!(unescape("\\x4").unwrap_err().kind, EscapeErrorKind::BadHexEscape);
        assert_eq!(unescape("\\x4g").unwrap_err().kind, EscapeErrorKind::BadHexEscape);
        assert_eq!(unescape("a\\xzz").unwrap_err().at.offset, 1);
    }

    /// A small xorshift generator: the property test needs no extra crate.
    fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_byte_sequence_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for n in 0..2000 {
            let b = bytes(&mut seed, n % 97);
            let e = escape(&b);
            assert!(e.chars().all(|c| printable(c as u32 as u8) && c.is_ascii()), "{e:?}");
            assert_eq!(unescape(&e).unwrap(), b, "{e:?}");
        }
        // Bytes that look like escapes once printed (a backslash before `x41`) stay what they were.
        assert_eq!(unescape(&escape(b"\\x41\\n")).unwrap(), b"\\x41\\n");
    }
}
