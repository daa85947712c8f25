//! The payload editor: the same bytes as hex and as escaped ASCII, kept in sync.
//!
//! Editing the hex text parses it with [`pidcap_packet::hex::parse`]; editing
//! the ASCII text with [`pidcap_packet::ascii::unescape`], the inverse of the
//! [`pidcap_packet::ascii::escape`] it is shown with: printable ASCII is
//! itself, a backslash is `\\`, and every other byte an escape (`\r \n \t \0
//! \xHH`), so the ASCII view round-trips every byte (an HTTP request edited
//! there keeps its CRLFs). When the text edited is valid the bytes and the
//! other view follow; when not, the error is shown (with the 1-based
//! character position) and the last valid bytes are kept: nothing invalid is
//! ever sent.

use pidcap_packet::ascii::{self, EscapeError, EscapeErrorKind};
use pidcap_packet::hex::{self, HexError, HexErrorKind};

/// Hex with a space between bytes and a newline every 16.
pub fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The editor's words for a hex error in `text`.
fn hex_error(e: &HexError, text: &str) -> String {
    let at = e.at.index + 1;
    match e.kind {
        HexErrorKind::InvalidDigit(c) => format!("`{c}` at character {at} is not a hex digit"),
        HexErrorKind::EmptyPrefix => format!("`0x` at character {at} has no hex digits after it"),
        HexErrorKind::OddDigits { end, .. } if end.offset >= text.len() => "odd number of hex digits at the end".into(),
        HexErrorKind::OddDigits { end, .. } => format!("odd number of hex digits before character {}", end.index + 1),
        HexErrorKind::TooLong { max } => format!("more than {max} bytes (at character {at})"),
    }
}

/// The editor's words for an escape error.
fn escape_error(e: &EscapeError) -> String {
    let at = e.at.index + 1;
    match e.kind {
        EscapeErrorKind::LoneBackslash => format!("a lone `\\` at character {at}: write `\\\\` for a backslash"),
        EscapeErrorKind::BadHexEscape => format!("`\\x` at character {at} needs two hex digits"),
        EscapeErrorKind::UnknownEscape(c) => {
            format!("`\\{c}` at character {at} is not an escape ({})", ascii::KNOWN_ESCAPES)
        }
    }
}

/// The editor's state for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    /// The captured packet it started from (0: a library entry).
    pub packet_id: u64,
    /// Set when it holds a TLS plaintext record's plaintext (from that
    /// library), not a packet's payload.
    pub record: Option<pidcap_packet::TlsInfo>,
    /// The original payload.
    pub original: Vec<u8>,
    /// The current (last valid) payload.
    pub payload: Vec<u8>,
    pub hex_text: String,
    pub ascii_text: String,
    /// Why the hex text is not valid (then it is not sent).
    pub hex_error: Option<String>,
    /// Why the ASCII text is not valid (then it is not sent).
    pub ascii_error: Option<String>,
}

impl Editor {
    pub fn new(packet_id: u64, payload: &[u8]) -> Editor {
        Editor {
            packet_id,
            record: None,
            original: payload.to_vec(),
            payload: payload.to_vec(),
            hex_text: format_hex(payload),
            ascii_text: ascii::escape(payload),
            hex_error: None,
            ascii_error: None,
        }
    }

    /// The editor of a captured packet or record (its payload: a record's plaintext).
    pub fn of(packet_id: u64, p: &pidcap_packet::CapturedPacket) -> Editor {
        Editor { record: p.tls, ..Editor::new(packet_id, p.payload()) }
    }

    /// The hex text changed: when it parses, the bytes and the ASCII view follow.
    pub fn edit_hex(&mut self, text: String) {
        match hex::parse(&text) {
            Ok(bytes) => {
                self.ascii_text = ascii::escape(&bytes);
                self.payload = bytes;
                self.hex_error = None;
                self.ascii_error = None;
            }
            Err(e) => self.hex_error = Some(hex_error(&e, &text)),
        }
        self.hex_text = text;
    }

    /// The ASCII text changed (kept as typed): when it parses, the bytes and the hex view follow.
    pub fn edit_ascii(&mut self, text: String) {
        match ascii::unescape(&text) {
            Ok(bytes) => {
                self.hex_text = format_hex(&bytes);
                self.payload = bytes;
                self.hex_error = None;
                self.ascii_error = None;
            }
            Err(e) => self.ascii_error = Some(escape_error(&e)),
        }
        self.ascii_text = text;
    }

    /// Back to the captured payload.
    pub fn reset(&mut self) {
        *self = Editor::new(self.packet_id, &self.original.clone());
    }

    pub fn is_valid(&self) -> bool {
        self.hex_error.is_none() && self.ascii_error.is_none()
    }

    pub fn is_modified(&self) -> bool {
        self.payload != self.original
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_ascii_stay_in_sync() {
        let mut e = Editor::new(1, b"GET /\r\n");
        assert_eq!(e.hex_text, "47 45 54 20 2f 0d 0a");
        assert_eq!(e.ascii_text, "GET /\\r\\n");
        e.edit_hex("50 4f 53 54 0d 0a".into());
        assert_eq!(e.payload, b"POST\r\n");
        assert_eq!(e.ascii_text, "POST\\r\\n");
        // The escapes keep their bytes; a typed `.` is a dot.
        e.edit_ascii("PUT!\\r\\n.".into());
        assert_eq!(e.payload, b"PUT!\r\n.");
        assert_eq!(e.hex_text, "50 55 54 21 0d 0a 2e");
        // Escapes.
        e.edit_ascii("a\\x00b\\n".into());
        assert_eq!(e.payload, b"a\0b\n");
        assert!(e.is_modified());
        // Invalid hex: marked, bytes kept, ASCII untouched.
        e.edit_hex("61 zz".into());
        assert!(!e.is_valid());
        assert!(e.hex_error.as_deref().unwrap().contains("character 4"), "{:?}", e.hex_error);
        assert_eq!(e.payload, b"a\0b\n");
        assert_eq!(e.ascii_text, "a\\x00b\\n");
        e.edit_hex("6".into());
        assert!(e.hex_error.as_deref().unwrap().contains("odd"));
        e.edit_hex("0x61:62".into());
        assert!(e.is_valid());
        assert_eq!(e.payload, b"ab");
        e.reset();
        assert_eq!(e.payload, b"GET /\r\n");
        assert_eq!(format_hex(&[0u8; 17]).matches('\n').count(), 1);
    }

    #[test]
    fn every_byte_survives_an_edit_in_the_ascii_view() {
        let all: Vec<u8> = (0..=255).collect();
        let mut e = Editor::new(1, &all);
        // Edit the text around the bytes (as a user would): every byte is still there.
        let text = format!("<{}>", e.ascii_text);
        e.edit_ascii(text);
        assert!(e.is_valid());
        assert_eq!(e.payload[0], b'<');
        assert_eq!(&e.payload[1..257], &all[..]);
        assert_eq!(e.payload[257], b'>');
    }

    #[test]
    fn a_bad_escape_is_marked_and_never_sent() {
        let mut e = Editor::new(1, b"hi");
        // Half-typed escapes: the text is kept as typed, the bytes are not touched.
        for (text, words) in [
            ("hi\\", "lone `\\` at character 3"),
            ("hi\\x4", "`\\x` at character 3 needs two hex digits"),
            ("h\\qi", "`\\q` at character 2 is not an escape"),
        ] {
            e.edit_ascii(text.into());
            assert!(!e.is_valid(), "{text}");
            assert!(e.ascii_error.as_deref().unwrap().contains(words), "{text}: {:?}", e.ascii_error);
            assert_eq!(e.ascii_text, text);
            assert_eq!(e.payload, b"hi");
        }
        e.edit_ascii("hi\\x41".into());
        assert!(e.is_valid());
        assert_eq!(e.payload, b"hiA");
        assert_eq!(e.hex_text, "68 69 41");
        // A valid hex edit makes both views valid again.
        e.edit_ascii("\\".into());
        e.edit_hex("41".into());
        assert!(e.is_valid());
        assert_eq!(e.ascii_text, "A");
    }
}
