//! TLS key logs in the NSS key log format (what `SSLKEYLOGFILE` makes
//! OpenSSL, GnuTLS, NSS, curl, Python and browsers write), as pidcap folds
//! them into a pcapng Decryption Secrets Block.
//!
//! One line is `LABEL <client_random> <secret>`, both in hex: the client
//! random is 32 bytes; the secret is 48 bytes for `CLIENT_RANDOM` (the TLS
//! 1.2 master secret) and 32 or 48 bytes (the hash length: SHA-256 or
//! SHA-384) for the TLS 1.3 secrets. Only the labels of [`Label`] are taken.
//! Blank lines and `#` comments are skipped; every other line that is not
//! exactly that (a truncated line, another label, a wrong length, garbage) is
//! ignored and counted, never an error.
//!
//! [`KeyLogFollower`] reads a key log that its program is still writing: it
//! reads what was added since its last call and keeps a last line without
//! its newline until the rest arrives.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A label of the NSS key log format that pidcap takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// TLS 1.2 and older: the master secret.
    ClientRandom,
    ClientEarlyTrafficSecret,
    ClientHandshakeTrafficSecret,
    ServerHandshakeTrafficSecret,
    ClientTrafficSecret0,
    ServerTrafficSecret0,
    EarlyExporterSecret,
    ExporterSecret,
}

impl Label {
    pub const ALL: [Label; 8] = [
        Label::ClientRandom,
        Label::ClientEarlyTrafficSecret,
        Label::ClientHandshakeTrafficSecret,
        Label::ServerHandshakeTrafficSecret,
        Label::ClientTrafficSecret0,
        Label::ServerTrafficSecret0,
        Label::EarlyExporterSecret,
        Label::ExporterSecret,
    ];

    /// The label as the file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::ClientRandom => "CLIENT_RANDOM",
            Label::ClientEarlyTrafficSecret => "CLIENT_EARLY_TRAFFIC_SECRET",
            Label::ClientHandshakeTrafficSecret => "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            Label::ServerHandshakeTrafficSecret => "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            Label::ClientTrafficSecret0 => "CLIENT_TRAFFIC_SECRET_0",
            Label::ServerTrafficSecret0 => "SERVER_TRAFFIC_SECRET_0",
            Label::EarlyExporterSecret => "EARLY_EXPORTER_SECRET",
            Label::ExporterSecret => "EXPORTER_SECRET",
        }
    }

    fn parse(s: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// One bit per label (for sets of labels).
    pub fn bit(self) -> u8 {
        1 << Label::ALL.iter().position(|&l| l == self).unwrap_or(0)
    }

    /// Secret lengths in bytes this label accepts.
    fn secret_lengths(self) -> &'static [usize] {
        match self {
            Label::ClientRandom => &[48],
            _ => &[32, 48],
        }
    }
}

/// Label bits that, once all present for a client random, let Wireshark
/// decrypt that connection: the master secret (TLS 1.2), or the handshake
/// and application traffic secrets of both sides (TLS 1.3).
pub fn covers_connection(labels: u8) -> bool {
    let tls13 = Label::ClientHandshakeTrafficSecret.bit()
        | Label::ServerHandshakeTrafficSecret.bit()
        | Label::ClientTrafficSecret0.bit()
        | Label::ServerTrafficSecret0.bit();
    labels & Label::ClientRandom.bit() != 0 || labels & tls13 == tls13
}

/// One valid key log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLogLine {
    pub label: Label,
    /// The ClientHello's random: names the connection.
    pub client_random: [u8; 32],
    pub secret: Vec<u8>,
}

impl KeyLogLine {
    /// The line as written into a file (lower-case hex, no newline).
    pub fn to_line(&self) -> String {
        format!("{} {} {}", self.label.as_str(), hex(&self.client_random), hex(&self.secret))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Why a line was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLine {
    /// Not `LABEL RANDOM SECRET` (missing or extra fields, not UTF-8, too long).
    Shape,
    /// A label pidcap does not take.
    Label,
    /// A field that is not hex, or of the wrong length.
    Hex,
}

/// Parse one line (without its newline; a trailing `\r` is allowed):
/// `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<KeyLogLine>, BadLine> {
    let line = line.strip_suffix('\r').unwrap_or(line).trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_ascii_whitespace();
    let (Some(label), Some(random), Some(secret), None) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(BadLine::Shape);
    };
    let label = Label::parse(label).ok_or(BadLine::Label)?;
    let client_random: [u8; 32] = unhex(random).and_then(|r| r.try_into().ok()).ok_or(BadLine::Hex)?;
    let secret = unhex(secret).filter(|s| label.secret_lengths().contains(&s.len())).ok_or(BadLine::Hex)?;
    Ok(Some(KeyLogLine { label, client_random, secret }))
}

/// The valid lines of a whole key log text, and how many lines were ignored.
pub fn parse_text(text: &[u8]) -> (Vec<KeyLogLine>, u64) {
    let mut lines = Vec::new();
    let mut bad = 0;
    for raw in text.split(|&b| b == b'\n') {
        match std::str::from_utf8(raw).map_err(|_| BadLine::Shape).and_then(parse_line) {
            Ok(Some(l)) => lines.push(l),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
    }
    (lines, bad)
}

/// Longest line kept while waiting for its newline; a longer one is garbage.
const MAX_LINE: usize = 1024;

/// Reads a key log file as it grows. See the module documentation.
#[derive(Debug)]
pub struct KeyLogFollower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
    /// The partial line grew past [`MAX_LINE`]: skip to the next newline.
    skipping: bool,
    bad: u64,
    taken: u64,
}

impl KeyLogFollower {
    /// Follow `path`; it need not exist yet (a program creates its key log
    /// when it first writes to it). Never through a symbolic link.
    pub fn new(path: &Path) -> KeyLogFollower {
        KeyLogFollower {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            bad: 0,
            taken: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines ignored so far (see [`BadLine`]).
    pub fn bad_lines(&self) -> u64 {
        self.bad
    }

    /// Valid lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.taken
    }

    /// The complete lines added since the last call. A file that cannot be
    /// opened (not yet there) gives nothing; a file cut shorter than what
    /// was read is read again from its start.
    pub fn poll(&mut self) -> Vec<KeyLogLine> {
        if self.file.is_none() {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.path);
            match opened {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => self.file = Some(f),
                _ => return Vec::new(),
            }
        }
        let Some(mut file) = self.file.take() else { return Vec::new() };
        if file.metadata().is_ok_and(|m| m.len() < self.offset) {
            // Truncated and rewritten: start again.
            let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0));
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.offset += n as u64;
            self.feed(&buf[..n], &mut out);
        }
        self.file = Some(file);
        out
    }

    /// The end: a last line without its newline is taken if it is valid.
    pub fn finish(&mut self) -> Vec<KeyLogLine> {
        let mut out = self.poll();
        if !self.partial.is_empty() && !self.skipping {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, &mut out);
        }
        self.partial.clear();
        out
    }

    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<KeyLogLine>) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if self.skipping {
                self.skipping = false;
            } else {
                self.partial.extend_from_slice(&bytes[..nl]);
                let line = std::mem::take(&mut self.partial);
                self.line(&line, out);
            }
            bytes = &bytes[nl + 1..];
        }
        if self.skipping {
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
            self.skipping = true;
            self.bad += 1;
        }
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<KeyLogLine>) {
        match std::str::from_utf8(raw).map_err(|_| BadLine::Shape).and_then(parse_line) {
            Ok(Some(l)) => {
                self.taken += 1;
                out.push(l);
            }
            Ok(None) => {}
            Err(_) => self.bad += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const R: &str = "d500ee052fdb61619f826bde6e8828add826fc892d3e0a1b2c3d4e5f60718293";

    fn line(label: &str, secret_bytes: usize) -> String {
        format!("{label} {R} {}", "ab".repeat(secret_bytes))
    }

    #[test]
    fn every_known_label_parses_with_its_lengths() {
        for l in Label::ALL {
            for len in [32, 48] {
                let text = line(l.as_str(), len);
                let ok = l.secret_lengths().contains(&len);
                match parse_line(&text) {
                    Ok(Some(k)) => {
                        assert!(ok, "{text}");
                        assert_eq!(k.label, l);
                        assert_eq!(k.to_line(), text);
                        assert_eq!(hex(&k.client_random), R);
                    }
                    Err(BadLine::Hex) => assert!(!ok, "{text}"),
                    other => panic!("{text}: {other:?}"),
                }
            }
        }
        assert_eq!(parse_line(&format!("{}\r", line("CLIENT_RANDOM", 48))).unwrap().unwrap().secret.len(), 48);
    }

    #[test]
    fn bad_lines_are_told_apart_and_never_panic() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("# a comment"), Ok(None));
        assert_eq!(parse_line("RSA 0102 0304"), Err(BadLine::Label));
        assert_eq!(parse_line("client_random x y"), Err(BadLine::Label));
        assert_eq!(parse_line("CLIENT_RANDOM onlyone"), Err(BadLine::Shape));
        assert_eq!(parse_line(&format!("{} extra", line("CLIENT_RANDOM", 48))), Err(BadLine::Shape));
        let cut = line("SERVER_TRAFFIC_SECRET_0", 32);
        assert_eq!(parse_line(&cut[..cut.len() - 1]), Err(BadLine::Hex));
        assert_eq!(parse_line(&cut[..cut.len() - 2]), Err(BadLine::Hex));
        assert_eq!(parse_line(&format!("CLIENT_RANDOM {} {}", &R[..62], "ab".repeat(48))), Err(BadLine::Hex));
        assert_eq!(parse_line(&format!("CLIENT_RANDOM {R} {}", "zz".repeat(48))), Err(BadLine::Hex));
        assert_eq!(parse_line("CLIENT_RANDOM é\u{0} ü"), Err(BadLine::Hex));
        let text =
            format!("{}\ngarbage\n\n#c\nRSA a b\n{}\n\u{ff}", line("CLIENT_RANDOM", 48), line("EXPORTER_SECRET", 48));
        let (lines, bad) = parse_text(text.as_bytes());
        assert_eq!((lines.len(), bad), (2, 3));
        let (lines, bad) = parse_text(&[0xff, 0xfe, b'\n', 0x80]);
        assert_eq!((lines.len(), bad), (0, 2));
    }

    #[test]
    fn covers_tls12_with_the_master_secret_and_tls13_with_four_secrets() {
        assert!(covers_connection(Label::ClientRandom.bit()));
        let hs = Label::ClientHandshakeTrafficSecret.bit() | Label::ServerHandshakeTrafficSecret.bit();
        assert!(!covers_connection(hs));
        assert!(!covers_connection(hs | Label::ClientTrafficSecret0.bit()));
        assert!(covers_connection(hs | Label::ClientTrafficSecret0.bit() | Label::ServerTrafficSecret0.bit()));
        assert!(!covers_connection(0));
    }

    #[test]
    fn the_follower_reads_a_growing_file_and_waits_for_a_cut_line() {
        let dir = std::env::temp_dir().join(format!("pidcap-keylog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        let _ = std::fs::remove_file(&path);
        let mut f = KeyLogFollower::new(&path);
        assert!(f.poll().is_empty(), "no file yet");
        let mut w = std::fs::File::create(&path).unwrap();
        let a = line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", 32);
        let b = line("SERVER_HANDSHAKE_TRAFFIC_SECRET", 48);
        write!(w, "{a}\n{}", &b[..20]).unwrap();
        let got = f.poll();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to_line(), a);
        assert!(f.poll().is_empty(), "the cut line waits");
        write!(w, "{}\nnot a key line\n", &b[20..]).unwrap();
        let got = f.poll();
        assert_eq!(got.iter().map(KeyLogLine::to_line).collect::<Vec<_>>(), vec![b.clone()]);
        assert_eq!((f.lines_read(), f.bad_lines()), (2, 1));
        // A huge line without a newline is garbage, counted once, and the next line reads.
        w.write_all(&vec![b'x'; 5000]).unwrap();
        assert!(f.poll().is_empty());
        write!(w, "yyy\n{a}\n").unwrap();
        assert_eq!(f.poll().len(), 1);
        assert_eq!(f.bad_lines(), 2);
        // A last line without a newline is taken at the end.
        write!(w, "{b}").unwrap();
        assert!(f.poll().is_empty());
        assert_eq!(f.finish().len(), 1);
        // A symbolic link is not followed.
        let link = dir.join("link.log");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(KeyLogFollower::new(&link).finish().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
