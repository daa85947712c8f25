//! Hex and escaped-ASCII editing: `pidcap_packet::hex::parse` /
//! `parse_max`, `pidcap_packet::ascii::unescape` / `escape`, and
//! `pidcap_resend`'s edits (`Edit::parse_patch`, `Edit::parse_replace`,
//! `apply_edits`), `parse_duration` and `parse_endpoint`.
//!
//! The input is lines: the first is the payload (`h` + hex or `a` + escaped
//! text, else the raw line), each other line an edit (`p` + `OFF:HEX`, `r`
//! + `FROM:TO`) applied in order, or any text given to every parser.
//!
//! Checked: `unescape(escape(x)) == x` for every byte string, and `escape`
//! gives printable ASCII; hex that parses is printed back (`to_hex`) to the
//! same bytes, and `parse_max` agrees with `parse`; errors point at the
//! character they name; a patch and a replace do exactly what a plain
//! reference implementation does, and neither grows the payload past
//! `MAX_EDITED_PAYLOAD` (1 MiB).

use super::{outcome, text_shape};
use pidcap_packet::ascii::{escape, printable, unescape};
use pidcap_packet::hex::{parse, parse_max, to_hex, HexErrorKind};
use pidcap_resend::edit::{apply_edits, parse_duration, Edit, MAX_EDITED_PAYLOAD};
use pidcap_resend::parse_endpoint;

pub fn run(data: &[u8]) -> u64 {
    // Every byte string escapes and comes back.
    let e = escape(data);
    assert!(e.bytes().all(printable), "escape gives something that is not printable ASCII: {e:?}");
    assert_eq!(unescape(&e).as_deref(), Ok(data), "unescape(escape(x)) != x");

    let Some(text) = super::text(data) else { return 1 };
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let mut parts = vec![check_hex(first), check_unescape(first)];
    let mut payload = match first.split_at_checked(1) {
        Some(("h", h)) => parse(h).unwrap_or_default(),
        Some(("a", a)) => unescape(a).unwrap_or_default(),
        _ => first.as_bytes().to_vec(),
    };
    for line in lines.take(32) {
        // Past 128 KiB every edit is a slow pass in a debug build: enough (the
        // 1 MiB cap itself is tested in pidcap-resend).
        if payload.len() > 128 << 10 {
            break;
        }
        parts.push(check_hex(line));
        parts.push(check_unescape(line));
        let _ = parse_duration(line).map(|d| assert!(d.as_secs_f64() <= 1e9, "duration {line:?} beyond the cap"));
        let _ = parse_endpoint(line);
        let edit = match line.split_at_checked(1) {
            Some(("p", spec)) => Edit::parse_patch(spec),
            Some(("r", spec)) => Edit::parse_replace(spec),
            _ => continue,
        };
        let edit = match edit {
            Ok(e) => e,
            Err(e) => {
                parts.push(text_shape(&e.to_string()));
                continue;
            }
        };
        let before = payload.clone();
        match apply_edits(&before, std::slice::from_ref(&edit)) {
            Ok(after) => {
                assert!(after.len() <= MAX_EDITED_PAYLOAD.max(before.len()), "{edit:?} grew the payload past the cap");
                // The plain way is slow on long payloads (in debug builds): compared up to 256 KiB.
                if after.len().max(before.len()) <= 256 << 10 {
                    assert_eq!(Some(&after), reference(&before, &edit).as_ref(), "{edit:?} on {before:02x?}");
                }
                payload = after;
            }
            Err(e) => {
                if before.len() <= 256 << 10 {
                    assert_eq!(reference(&before, &edit), None, "{edit:?} refused on {before:02x?}: {e}");
                }
                parts.push(4);
            }
        }
    }
    parts.push(super::shape(payload.len()));
    outcome(&parts)
}

/// What an edit must do, written the plain way; `None` where it must refuse
/// (an offset past the end; a payload grown past `MAX_EDITED_PAYLOAD`).
fn reference(payload: &[u8], edit: &Edit) -> Option<Vec<u8>> {
    let out = reference_unbounded(payload, edit)?;
    (out.len() <= MAX_EDITED_PAYLOAD.max(payload.len())).then_some(out)
}

fn reference_unbounded(payload: &[u8], edit: &Edit) -> Option<Vec<u8>> {
    match edit {
        Edit::Patch { offset, bytes } => {
            if *offset > payload.len() {
                return None;
            }
            let mut out = payload[..*offset].to_vec();
            out.extend_from_slice(bytes);
            out.extend_from_slice(payload.get(offset + bytes.len()..).unwrap_or_default());
            Some(out)
        }
        Edit::Replace { from, to } => {
            let mut out = Vec::new();
            let mut rest = payload;
            while !rest.is_empty() {
                if out.len() > MAX_EDITED_PAYLOAD.max(payload.len()) {
                    return Some(out); // refused anyway: no need to go on
                }
                match rest.strip_prefix(from.as_slice()) {
                    Some(after) => {
                        out.extend_from_slice(to);
                        rest = after;
                    }
                    None => {
                        out.push(rest[0]);
                        rest = &rest[1..];
                    }
                }
            }
            Some(out)
        }
    }
}

fn check_hex(s: &str) -> u64 {
    match parse(s) {
        Ok(bytes) => {
            assert_eq!(parse(&to_hex(&bytes)).as_ref(), Ok(&bytes), "to_hex does not parse back");
            assert!(bytes.len() * 2 <= s.len(), "{} bytes from {} characters", bytes.len(), s.len());
            if !bytes.is_empty() {
                let e = parse_max(s, bytes.len() - 1).expect_err("parse_max takes one byte past its cap");
                assert_eq!(e.kind, HexErrorKind::TooLong { max: bytes.len() - 1 });
            }
            assert_eq!(parse_max(s, bytes.len()).as_ref(), Ok(&bytes));
            outcome(&[1, super::shape(bytes.len())])
        }
        Err(e) => {
            assert!(s.is_char_boundary(e.at.offset) && e.at.offset <= s.len(), "{e:?} in {s:?}");
            assert_eq!(s[..e.at.offset].chars().count(), e.at.index, "offset and index disagree: {e:?} in {s:?}");
            if let HexErrorKind::InvalidDigit(c) = e.kind {
                assert!(s[e.at.offset..].starts_with(c), "{e:?} in {s:?}");
            }
            let _ = (e.group(s), e.to_string());
            outcome(&[2, e.kind_index()])
        }
    }
}

fn check_unescape(s: &str) -> u64 {
    match unescape(s) {
        Ok(bytes) => {
            assert_eq!(unescape(&escape(&bytes)).as_ref(), Ok(&bytes));
            outcome(&[3, super::shape(bytes.len())])
        }
        Err(e) => {
            assert!(s.is_char_boundary(e.at.offset), "{e:?} in {s:?}");
            assert!(s[e.at.offset..].starts_with('\\'), "the error does not point at a backslash: {e:?} in {s:?}");
            assert_eq!(s[..e.at.offset].chars().count(), e.at.index, "{e:?} in {s:?}");
            outcome(&[4, text_shape(&e.to_string())])
        }
    }
}

/// A number per kind of hex error, for signatures.
trait KindIndex {
    fn kind_index(&self) -> u64;
}

impl KindIndex for pidcap_packet::hex::HexError {
    fn kind_index(&self) -> u64 {
        match self.kind {
            HexErrorKind::InvalidDigit(_) => 1,
            HexErrorKind::EmptyPrefix => 2,
            HexErrorKind::OddDigits { .. } => 3,
            HexErrorKind::TooLong { .. } => 4,
        }
    }
}

/// Separators, prefixes, escapes and the edit lines' forms.
pub const DICTIONARY: &[&[u8]] = &[
    b"\nh",
    b"\na",
    b"\np",
    b"\nr",
    b"\np0:50",
    b"\nr41:4141",
    b"\nr4141:41",
    b"0x",
    b"0X",
    b":",
    b",",
    b"-",
    b" ",
    b"\xc2\xa0",
    b"\\x",
    b"\\x4",
    b"\\xff",
    b"\\r\\n",
    b"\\0",
    b"\\\\",
    b"\\\"",
    b"\\'",
    b"\\",
    b"ms",
    b"us",
    b"\xc2\xb5s",
    b"min",
    b"h",
    b"1e9",
    b"1e10",
    b"[::1]:80",
    b"127.0.0.1:65535",
    b"18446744073709551615",
    b"18446744073709551616",
];
