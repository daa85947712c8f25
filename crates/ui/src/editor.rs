//! The payload editor: the same bytes as hex and as ASCII, kept in sync.
//!
//! Editing the hex text re-parses it: when it is valid the bytes and the
//! ASCII view follow; when not, the error is shown (with the position) and
//! the last valid bytes are kept — nothing invalid is ever sent. Editing the
//! ASCII text takes its characters as bytes; a `.` standing for a
//! non-printable byte keeps that byte, and `\xHH`, `\r`, `\n`, `\t`, `\0`,
//! `\\` escapes write any byte.

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

/// Printable ASCII as is, everything else as `.`.
pub fn format_ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect()
}

/// Parse hex, ignoring whitespace, `0x` prefixes and `:`/`-` separators.
/// The error names the first bad character's position (1-based, in the text).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut hi: Option<u8> = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '0' && hi.is_none() && chars.get(i + 1).is_some_and(|n| *n == 'x' || *n == 'X') {
            i += 2;
            continue;
        }
        if c.is_whitespace() || c == ':' || c == '-' {
            if hi.is_some() {
                return Err(format!("odd number of hex digits before character {}", i + 1));
            }
            i += 1;
            continue;
        }
        let Some(v) = c.to_digit(16) else {
            return Err(format!("`{c}` at character {} is not a hex digit", i + 1));
        };
        match hi.take() {
            None => hi = Some(v as u8),
            Some(h) => out.push(h << 4 | v as u8),
        }
        i += 1;
    }
    if hi.is_some() {
        return Err("odd number of hex digits at the end".into());
    }
    Ok(out)
}

/// Bytes from the ASCII view; `previous` supplies the bytes behind `.`.
pub fn parse_ascii(text: &str, previous: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let pos = out.len();
        match c {
            '.' => match previous.get(pos) {
                Some(&b) if !(0x20..0x7f).contains(&b) => out.push(b),
                _ => out.push(b'.'),
            },
            '\\' => match chars.peek().copied() {
                Some('n') => {
                    chars.next();
                    out.push(b'\n')
                }
                Some('r') => {
                    chars.next();
                    out.push(b'\r')
                }
                Some('t') => {
                    chars.next();
                    out.push(b'\t')
                }
                Some('0') => {
                    chars.next();
                    out.push(0)
                }
                Some('\\') => {
                    chars.next();
                    out.push(b'\\')
                }
                Some('x') => {
                    let mut look = chars.clone();
                    look.next();
                    let h: String = look.by_ref().take(2).collect();
                    match u8::from_str_radix(&h, 16) {
                        Ok(b) if h.len() == 2 => {
                            chars = look;
                            out.push(b)
                        }
                        _ => out.push(b'\\'),
                    }
                }
                _ => out.push(b'\\'),
            },
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// The editor's state for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    /// The captured packet it started from.
    pub packet_id: u64,
    /// The original payload.
    pub original: Vec<u8>,
    /// The current (last valid) payload.
    pub payload: Vec<u8>,
    pub hex_text: String,
    pub ascii_text: String,
    /// Why the hex text is not valid (then it is not sent).
    pub hex_error: Option<String>,
}

impl Editor {
    pub fn new(packet_id: u64, payload: &[u8]) -> Editor {
        Editor {
            packet_id,
            original: payload.to_vec(),
            payload: payload.to_vec(),
            hex_text: format_hex(payload),
            ascii_text: format_ascii(payload),
            hex_error: None,
        }
    }

    pub fn edit_hex(&mut self, text: String) {
        match parse_hex(&text) {
            Ok(bytes) => {
                self.ascii_text = format_ascii(&bytes);
                self.payload = bytes;
                self.hex_error = None;
            }
            Err(e) => self.hex_error = Some(e),
        }
        self.hex_text = text;
    }

    pub fn edit_ascii(&mut self, text: String) {
        let bytes = parse_ascii(&text, &self.payload);
        self.hex_text = format_hex(&bytes);
        self.ascii_text = format_ascii(&bytes);
        self.payload = bytes;
        self.hex_error = None;
    }

    /// Back to the captured payload.
    pub fn reset(&mut self) {
        *self = Editor::new(self.packet_id, &self.original.clone());
    }

    pub fn is_valid(&self) -> bool {
        self.hex_error.is_none()
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
        assert_eq!(e.ascii_text, "GET /..");
        e.edit_hex("50 4f 53 54 0d 0a".into());
        assert_eq!(e.payload, b"POST\r\n");
        assert_eq!(e.ascii_text, "POST..");
        // The dots keep their bytes.
        e.edit_ascii("PUT!..".into());
        assert_eq!(e.payload, b"PUT!\r\n");
        assert_eq!(e.hex_text, "50 55 54 21 0d 0a");
        // Escapes.
        e.edit_ascii("a\\x00b\\n".into());
        assert_eq!(e.payload, b"a\0b\n");
        assert!(e.is_modified());
        // Invalid hex: marked, bytes kept, ASCII untouched.
        e.edit_hex("61 zz".into());
        assert!(!e.is_valid());
        assert!(e.hex_error.as_deref().unwrap().contains("character 4"), "{:?}", e.hex_error);
        assert_eq!(e.payload, b"a\0b\n");
        e.edit_hex("6".into());
        assert!(e.hex_error.as_deref().unwrap().contains("odd"));
        e.edit_hex("0x61:62".into());
        assert!(e.is_valid());
        assert_eq!(e.payload, b"ab");
        e.reset();
        assert_eq!(e.payload, b"GET /\r\n");
        assert_eq!(format_hex(&[0u8; 17]).matches('\n').count(), 1);
    }
}
