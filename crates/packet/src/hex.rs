//! Hex, in one place: [`to_hex`] (the `data` field as a hex string in JSON),
//! [`parse`] (the one lenient hex parser every caller uses, with a structured
//! error position so each caller keeps its own wording), and [`hex_dump`]
//! (the classic hex+ASCII dump used by `--dry-run`).

use std::fmt::{self, Write};

/// Lower-case hex without separators.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What is wrong with a hex string (see [`HexError`] for where).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexErrorKind {
    /// A character that is neither a hex digit nor a separator; the position is its own.
    InvalidDigit(char),
    /// `0x` with no digits after it; the position is the `0`'s.
    EmptyPrefix,
    /// A group with an odd number of digits; the position is the group's first
    /// digit, `end` the position just after its last one.
    OddDigits { digits: usize, end: Position },
    /// More bytes than the limit given to [`parse_max`]; the position is the
    /// first digit of the byte past the limit.
    TooLong { max: usize },
}

/// A position in the parsed text: the byte offset, and the 0-based character
/// index (add 1 for a "character N" a user counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset in the input string.
    pub offset: usize,
    /// 0-based index of the character in the input string.
    pub index: usize,
}

/// A hex string that [`parse`] refuses, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexError {
    pub kind: HexErrorKind,
    pub at: Position,
}

impl HexError {
    /// The group (run of non-separator characters) of `input` in which the error is.
    pub fn group<'a>(&self, input: &'a str) -> &'a str {
        let before = &input[..self.at.offset];
        let start = before.char_indices().rev().find(|&(_, c)| is_sep(c)).map_or(0, |(i, c)| i + c.len_utf8());
        let end = input[self.at.offset..].find(is_sep).map_or(input.len(), |i| self.at.offset + i);
        &input[start..end]
    }
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = self.at.offset;
        match self.kind {
            HexErrorKind::InvalidDigit(c) => write!(f, "invalid hex digit {c:?} at position {pos}"),
            HexErrorKind::EmptyPrefix => write!(f, "`0x` without digits at position {pos}"),
            HexErrorKind::OddDigits { digits, .. } => write!(
                f,
                "odd number of hex digits ({digits}) in the group at position {pos}: write each byte as two digits"
            ),
            HexErrorKind::TooLong { max } => write!(f, "more than the cap of {max} bytes (at position {pos})"),
        }
    }
}

impl std::error::Error for HexError {}

/// Separators between groups of hex digits.
fn is_sep(c: char) -> bool {
    c.is_whitespace() || matches!(c, ':' | ',' | '-')
}

/// Parse hex bytes, leniently: `47 45 54`, `474554`, `0x47 0x45`, `47:45:54`,
/// `47-45,54` (whitespace, `:`, `,` and `-` separate groups; a `0x`/`0X`
/// prefix may start each group). Digits pair up within a group, so a group
/// needs an even number of digits. Empty (or only separators) is no bytes.
pub fn parse(s: &str) -> Result<Vec<u8>, HexError> {
    parse_max(s, usize::MAX)
}

/// [`parse`], refusing more than `max` bytes (before reading the rest).
pub fn parse_max(s: &str, max: usize) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity((s.len() / 2).min(max).min(1 << 20));
    let mut it = s.char_indices().enumerate().map(|(index, (offset, c))| (Position { offset, index }, c)).peekable();
    while let Some(&(pos, c)) = it.peek() {
        if is_sep(c) {
            it.next();
            continue;
        }
        // A group: optional 0x, then hex digits up to the next separator.
        if c == '0' && s[pos.offset + 1..].starts_with(['x', 'X']) {
            it.next();
            it.next();
        }
        let mut digits = 0usize;
        let mut first = None;
        let mut hi: Option<(Position, u8)> = None;
        let end = loop {
            match it.peek() {
                Some(&(p, d)) if !is_sep(d) => {
                    let v = d.to_digit(16).ok_or(HexError { kind: HexErrorKind::InvalidDigit(d), at: p })? as u8;
                    first.get_or_insert(p);
                    digits += 1;
                    match hi.take() {
                        None => hi = Some((p, v)),
                        Some((hp, h)) => {
                            if out.len() == max {
                                return Err(HexError { kind: HexErrorKind::TooLong { max }, at: hp });
                            }
                            out.push(h << 4 | v);
                        }
                    }
                    it.next();
                }
                Some(&(p, _)) => break p,
                None => break Position { offset: s.len(), index: pos.index + (s[pos.offset..].chars().count()) },
            }
        };
        let Some(first) = first else {
            return Err(HexError { kind: HexErrorKind::EmptyPrefix, at: pos });
        };
        if hi.is_some() {
            return Err(HexError { kind: HexErrorKind::OddDigits { digits, end }, at: first });
        }
    }
    Ok(out)
}

/// `offset  16 hex bytes  |ascii|` lines, like `xxd`/`hexdump -C`; the ASCII
/// column is [`crate::ascii::dots`].
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.push_str(&crate::ascii::dots(chunk));
        out.push_str("|\n");
    }
    out
}

/// `#[serde(with = "pidcap_packet::hex::serde_hex")]`: bytes as a hex string.
pub mod serde_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(to_hex(&b), "00017f80ff");
        assert_eq!(parse("00017f80ff").unwrap(), b);
        assert!(parse("abc").is_err());
        assert!(parse("zz").is_err());
    }

    #[test]
    fn lenient_forms() {
        assert_eq!(parse("47 45 54").unwrap(), b"GET");
        assert_eq!(parse("474554").unwrap(), b"GET");
        assert_eq!(parse("0x47 0x45 0X54").unwrap(), b"GET");
        assert_eq!(parse("0x474554").unwrap(), b"GET");
        assert_eq!(parse("47:45-54,\n0a").unwrap(), b"GET\n");
        assert_eq!(parse("  ").unwrap(), b"");
        assert_eq!(parse("").unwrap(), b"");
        assert_eq!(parse("fF").unwrap(), [0xff]);
        assert_eq!(
            parse("0").unwrap_err().kind,
            HexErrorKind::OddDigits { digits: 1, end: Position { offset: 1, index: 1 } }
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("47 4g").unwrap_err();
        assert_eq!((e.kind, e.at), (HexErrorKind::InvalidDigit('g'), Position { offset: 4, index: 4 }));
        assert_eq!(e.to_string(), "invalid hex digit 'g' at position 4");
        assert_eq!(e.group("47 4g"), "4g");
        let e = parse("é 4x").unwrap_err();
        assert_eq!((e.kind, e.at), (HexErrorKind::InvalidDigit('é'), Position { offset: 0, index: 0 }));
        let e = parse("é").unwrap_err();
        assert_eq!(e.group("é"), "é");
        let e = parse("00 é").unwrap_err();
        assert_eq!(e.at, Position { offset: 3, index: 3 });
        let e = parse("éé 474 00").unwrap_err();
        assert_eq!(e.kind, HexErrorKind::InvalidDigit('é'));
        let e = parse("00 474 00").unwrap_err();
        assert_eq!(e.kind, HexErrorKind::OddDigits { digits: 3, end: Position { offset: 6, index: 6 } });
        assert_eq!(e.at, Position { offset: 3, index: 3 });
        assert!(e.to_string().contains("odd number of hex digits (3) in the group at position 3"), "{e}");
        let e = parse("ab 0x123").unwrap_err();
        assert_eq!(
            (e.at.offset, e.kind),
            (5, HexErrorKind::OddDigits { digits: 3, end: Position { offset: 8, index: 8 } })
        );
        let e = parse("47 0x").unwrap_err();
        assert_eq!((e.kind, e.at.offset), (HexErrorKind::EmptyPrefix, 3));
        let e = parse("é 0").unwrap_err();
        assert_eq!(e.kind, HexErrorKind::InvalidDigit('é'));
        let e = parse_max("00", 0).unwrap_err();
        assert_eq!((e.kind, e.at.offset), (HexErrorKind::TooLong { max: 0 }, 0));
        assert_eq!(parse_max("00 01", 2).unwrap(), [0, 1]);
        let e = parse_max("00 0102", 2).unwrap_err();
        assert_eq!((e.kind, e.at.offset), (HexErrorKind::TooLong { max: 2 }, 5));
    }

    #[test]
    fn char_index_and_offset_differ_after_multibyte() {
        // A no-break space is a separator of 2 bytes in UTF-8.
        let s = "00\u{a0}4g";
        let e = parse(s).unwrap_err();
        assert_eq!(e.at, Position { offset: 5, index: 4 });
        assert_eq!(e.group(s), "4g");
        let e = parse("00\u{a0}123").unwrap_err();
        assert_eq!(
            (e.at, e.kind),
            (
                Position { offset: 4, index: 3 },
                HexErrorKind::OddDigits { digits: 3, end: Position { offset: 7, index: 6 } }
            )
        );
    }

    #[test]
    fn dump_shows_offsets_hex_and_ascii() {
        let d = hex_dump(b"GET / HTTP/1.1\r\nHost: x\r\n");
        let lines: Vec<_> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00000000  47 45 54 20"), "{}", lines[0]);
        assert!(lines[0].ends_with("|GET / HTTP/1.1..|"), "{}", lines[0]);
        assert!(lines[1].starts_with("00000010  48 6f 73 74"), "{}", lines[1]);
    }
}
