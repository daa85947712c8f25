//! The per-packet process comment (pcapng `opt_comment`) and its parser.
//!
//! # Grammar
//!
//! ```text
//! comment = "pid=" u32 " comm=" name " cookie=" u64 " verdict=" ("pass" | "blocked") [" rule=" u16]
//! name    = *( safe-byte | "\x" hex hex )
//! safe-byte = A-Z / a-z / 0-9 / "." / "_" / ":" / "/" / "+" / "-"
//! ```
//!
//! Example: `pid=4242 comm=Web\x20Content cookie=8812 verdict=blocked rule=3`.
//!
//! Every byte of the (UTF-8) process name outside the safe set, including the
//! space, `=`, `\` and any non-printable byte, is written as `\x` followed by
//! two lower-case hex digits, so the name never contains a space and the
//! comment splits on single spaces. `pid=N comm=NAME` are always the first
//! two tokens, so `frame.comment contains "pid=1234"` works in tshark.
//!
//! The parser is lenient where it costs nothing: after `pid` and `comm`
//! (mandatory, in that order) the other tokens may come in any order or be
//! missing (defaults: cookie 0, verdict pass, no rule), unknown `key=value`
//! tokens are ignored, and unescaped non-space bytes in the name are taken
//! literally. A malformed number, verdict or escape means "not ours".
//!
//! A TLS plaintext record's comment adds ` tls=LIBRARY tid=N offset=N`
//! ([`TlsComment`], [`format_tls`], [`parse_tls`]); the process parser
//! ignores those tokens.

use pidcap_packet::{CapturedPacket, TlsInfo, Verdict};

/// The process fields carried by a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: String,
    pub socket_cookie: u64,
    pub verdict: Verdict,
    pub rule: Option<u16>,
}

impl ProcessInfo {
    /// The process fields of a packet.
    pub fn of(p: &CapturedPacket) -> ProcessInfo {
        ProcessInfo {
            pid: p.pid,
            comm: p.comm.clone(),
            socket_cookie: p.socket_cookie,
            verdict: p.verdict,
            rule: p.rule,
        }
    }
}

fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'+' | b'-')
}

/// Escape a process name for the comment (see the module doc).
pub fn escape_comm(comm: &str) -> String {
    let mut out = String::with_capacity(comm.len());
    for &b in comm.as_bytes() {
        if is_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Undo [`escape_comm`]; `None` on a bad escape or a name that is not UTF-8.
pub fn unescape_comm(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            let hex = bytes.get(i + 2..i + 4)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The comment written on a packet: `pid=1234 comm=curl cookie=8812 verdict=pass`.
pub fn format_comment(info: &ProcessInfo) -> String {
    let verdict = info.verdict;
    let mut s =
        format!("pid={} comm={} cookie={} verdict={verdict}", info.pid, escape_comm(&info.comm), info.socket_cookie);
    if let Some(rule) = info.rule {
        s.push_str(&format!(" rule={rule}"));
    }
    s
}

/// Parse a comment written by [`format_comment`]; `None` if it is not ours.
pub fn parse_comment(s: &str) -> Option<ProcessInfo> {
    let mut tokens = s.split(' ');
    let pid = tokens.next()?.strip_prefix("pid=")?.parse().ok()?;
    let comm = unescape_comm(tokens.next()?.strip_prefix("comm=")?)?;
    let mut info = ProcessInfo { pid, comm, socket_cookie: 0, verdict: Verdict::Pass, rule: None };
    for tok in tokens {
        let (key, value) = tok.split_once('=').unwrap_or((tok, ""));
        match key {
            "cookie" => info.socket_cookie = value.parse().ok()?,
            "verdict" => info.verdict = value.parse().ok()?,
            "rule" => info.rule = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(info)
}

/// What the comment of a TLS plaintext record says beyond the process:
/// ` tls=LIBRARY tid=N offset=N` after the process fields, e.g.
/// `pid=4242 comm=curl cookie=8812 verdict=pass tls=openssl tid=4243 offset=0`
/// (`offset`: the plaintext's place in its direction of the connection).
/// `frame.comment contains "tls="` selects the records in tshark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsComment {
    pub info: TlsInfo,
    pub offset: u32,
}

/// The suffix [`TlsComment`] describes, with its leading space.
pub fn format_tls(t: &TlsComment) -> String {
    format!(" tls={} tid={} offset={}", t.info.library, t.info.tid, t.offset)
}

/// The TLS fields of a comment, if it has a valid `tls=` token.
pub fn parse_tls(s: &str) -> Option<TlsComment> {
    let (mut library, mut tid, mut offset) = (None, 0, 0);
    for tok in s.split(' ').skip(2) {
        let (key, value) = tok.split_once('=').unwrap_or((tok, ""));
        match key {
            "tls" => library = Some(value.parse().ok()?),
            "tid" => tid = value.parse().ok()?,
            "offset" => offset = value.parse().ok()?,
            _ => {}
        }
    }
    Some(TlsComment { info: TlsInfo { tid, library: library? }, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(comm: &str, verdict: Verdict, rule: Option<u16>) -> ProcessInfo {
        ProcessInfo { pid: 1234, comm: comm.into(), socket_cookie: 8812, verdict, rule }
    }

    #[test]
    fn format_is_exactly_the_documented_grammar() {
        assert_eq!(format_comment(&info("curl", Verdict::Pass, None)), "pid=1234 comm=curl cookie=8812 verdict=pass");
        assert_eq!(
            format_comment(&info("Web Content", Verdict::Blocked, Some(3))),
            "pid=1234 comm=Web\\x20Content cookie=8812 verdict=blocked rule=3"
        );
        assert_eq!(escape_comm("a=b\\c\td.e_f:g/h+i-j"), "a\\x3db\\x5cc\\x09d.e_f:g/h+i-j");
        assert_eq!(escape_comm("é"), "\\xc3\\xa9");
    }

    #[test]
    fn round_trips_odd_names() {
        for comm in [
            "",
            "curl",
            "Web Content",
            "a=b",
            "back\\slash",
            "x\\x20y",
            "tab\there",
            "\u{1}\u{7f}",
            "ünïcode",
            "kworker/0:1+ev",
        ] {
            for rule in [None, Some(0), Some(u16::MAX)] {
                let i = info(comm, Verdict::Blocked, rule);
                assert_eq!(parse_comment(&format_comment(&i)), Some(i.clone()), "{comm:?}");
            }
        }
    }

    #[test]
    fn tls_fields_round_trip_after_the_process() {
        use pidcap_packet::TlsLibrary;
        let t = TlsComment { info: TlsInfo { tid: 4243, library: TlsLibrary::Gnutls }, offset: 7 };
        let s = format!("{}{}", format_comment(&info("curl", Verdict::Pass, None)), format_tls(&t));
        assert_eq!(s, "pid=1234 comm=curl cookie=8812 verdict=pass tls=gnutls tid=4243 offset=7");
        assert_eq!(parse_tls(&s), Some(t));
        assert_eq!(parse_comment(&s), Some(info("curl", Verdict::Pass, None)));
        assert_eq!(parse_tls("pid=1 comm=x verdict=pass"), None);
        assert_eq!(parse_tls("pid=1 comm=x tls=quic"), None);
        assert_eq!(parse_tls("pid=1 comm=x tls=nss tid=-1"), None);
        // A process named "tls=openssl" is not a record.
        assert_eq!(parse_tls(&format_comment(&info("tls=openssl", Verdict::Pass, None))), None);
    }

    #[test]
    fn lenient_and_strict_parts() {
        let p = parse_comment("pid=7 comm=sh").unwrap();
        assert_eq!((p.pid, p.comm.as_str(), p.socket_cookie, p.verdict, p.rule), (7, "sh", 0, Verdict::Pass, None));
        let p = parse_comment("pid=7 comm=sh future=1 verdict=blocked odd").unwrap();
        assert_eq!(p.verdict, Verdict::Blocked);
        for bad in [
            "",
            "hello world",
            "comm=sh pid=7",
            "pid=x comm=sh",
            "pid=7",
            "pid=7 comm=a\\q",
            "pid=7 comm=a\\x2",
            "pid=7 comm=a\\x+f",
            "pid=7 comm=\\xff",
            "pid=7 comm=sh verdict=maybe",
            "pid=7 comm=sh rule=70000",
            "pid=7 comm=sh cookie=-1",
        ] {
            assert_eq!(parse_comment(bad), None, "{bad:?}");
        }
    }
}
