//! Hex helpers: the `data` field as a hex string in JSON, and the classic
//! hex+ASCII dump used by `--dry-run` and the UI's detail view.

use std::fmt::Write;

/// Lower-case hex without separators.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse contiguous hex (as written by [`to_hex`]).
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).ok_or("non-ASCII in hex")?, 16)
                .map_err(|_| format!("invalid hex at offset {i}: {:?}", &s[i..i + 2]))
        })
        .collect()
}

/// `offset  16 hex bytes  |ascii|` lines, like `xxd`/`hexdump -C`.
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
        for &b in chunk {
            out.push(if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' });
        }
        out.push_str("|\n");
    }
    out
}

pub(crate) mod serde_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(to_hex(&b), "00017f80ff");
        assert_eq!(from_hex("00017f80ff").unwrap(), b);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
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
