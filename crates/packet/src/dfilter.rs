//! The display filter: what the user types in the packet list's filter box.
//! A parse error says where in the text it is ([`FilterError`]).
//!
//! Space-separated terms, all of which must match (AND):
//! - `tcp`, `udp`, `icmp`, `icmpv6`, `ip/N`: the protocol;
//! - `in`, `out`: the direction; `blocked`, `pass`: the verdict (their `FromStr`);
//! - `port:N` or a bare number `N`: the local or remote port;
//! - `pid:N`: the process;
//! - `tls`: TLS plaintext records (taken from the target's TLS library, not
//!   the wire); `tls:openssl`, `tls:gnutls`, `tls:nss`: those of one library;
//!   `wire`: packets seen on the wire only (no records). To search for the
//!   text "tls" or "wire", quote it;
//! - an IPv4/IPv6 address or CIDR (`10.0.0.0/8`, `::1`, an [`IpNet`]): the local or remote address;
//! - anything else (or `"quoted text"`): text in the payload (ASCII,
//!   case-insensitive) or in the process name.

use crate::net::IpNet;
use crate::{CapturedPacket, Direction, Protocol, TlsLibrary, Verdict};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Protocol(Protocol),
    Direction(Direction),
    Verdict(Verdict),
    Port(u16),
    Pid(u32),
    Net(IpNet),
    /// A TLS plaintext record (of that library, if given).
    Tls(Option<TlsLibrary>),
    /// A packet seen on the wire (not a TLS plaintext record).
    Wire,
    /// Lower-cased text.
    Text(String),
}

/// Why a filter text does not parse, and where: `at` and `len` count
/// characters (not bytes) of the text given to [`DisplayFilter::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub at: usize,
    pub len: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", self.message, self.at + 1)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayFilter {
    pub terms: Vec<Term>,
}

impl DisplayFilter {
    /// Parse the filter box; an error names the bad term.
    pub fn parse(s: &str) -> Result<DisplayFilter, FilterError> {
        let mut terms = Vec::new();
        for word in split_words(s) {
            terms.push(parse_term(&word).map_err(|message| FilterError { at: 0, len: s.chars().count(), message })?);
        }
        Ok(DisplayFilter { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, p: &CapturedPacket) -> bool {
        self.terms.iter().all(|t| term_matches(t, p))
    }
}

fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                if quoted && !cur.is_empty() {
                    out.push(format!("\"{cur}"));
                    cur.clear();
                }
                quoted = !quoted;
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(if quoted { format!("\"{cur}") } else { cur });
    }
    out
}

fn parse_term(w: &str) -> Result<Term, String> {
    if let Some(text) = w.strip_prefix('"') {
        return Ok(Term::Text(text.to_lowercase()));
    }
    let lower = w.to_lowercase();
    if let Ok(p) = lower.parse::<Protocol>() {
        return Ok(Term::Protocol(p));
    }
    if let Ok(d) = lower.parse::<Direction>() {
        return Ok(Term::Direction(d));
    }
    if let Ok(v) = lower.parse::<Verdict>() {
        return Ok(Term::Verdict(v));
    }
    if lower == "tls" {
        return Ok(Term::Tls(None));
    }
    if lower == "wire" {
        return Ok(Term::Wire);
    }
    Ok(if let Some(l) = lower.strip_prefix("tls:") {
        Term::Tls(Some(l.parse().map_err(|_| format!("`{w}`: a TLS library is openssl, gnutls or nss"))?))
    } else if let Some(p) = lower.strip_prefix("port:") {
        Term::Port(p.parse().map_err(|_| format!("`{w}`: a port is 0..65535"))?)
    } else if let Some(p) = lower.strip_prefix("pid:") {
        Term::Pid(p.parse().map_err(|_| format!("`{w}`: a pid is a number"))?)
    } else if let Ok(port) = lower.parse::<u16>() {
        Term::Port(port)
    } else {
        match lower.parse::<IpNet>() {
            Ok(net) => Term::Net(net),
            // Looks like a network but is not one: say why rather than search the text.
            Err(e) if lower.contains('/') && lower.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                return Err(format!("`{w}` {e}"));
            }
            Err(_) => Term::Text(lower),
        }
    })
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

fn term_matches(t: &Term, p: &CapturedPacket) -> bool {
    let d = &p.decoded;
    match t {
        Term::Protocol(x) => d.protocol == *x,
        Term::Direction(x) => p.direction == *x,
        Term::Verdict(x) => p.verdict == *x,
        Term::Port(x) => d.local_port == *x || d.remote_port == *x,
        Term::Pid(x) => p.pid == *x,
        Term::Net(n) => n.contains(d.local_addr) || n.contains(d.remote_addr),
        Term::Tls(None) => p.is_tls(),
        Term::Tls(Some(l)) => p.tls.is_some_and(|t| t.library == *l),
        Term::Wire => !p.is_tls(),
        Term::Text(s) => contains_ci(p.payload(), s.as_bytes()) || p.comm.to_lowercase().contains(s.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TlsInfo, TlsRecord};

    fn record(library: TlsLibrary, plaintext: &[u8]) -> CapturedPacket {
        CapturedPacket::tls_record(TlsRecord {
            id: 2,
            timestamp_ns: 0,
            pid: 42,
            comm: "curl".into(),
            socket_cookie: 1,
            direction: Direction::Outbound,
            local: "127.0.0.1:5000".parse().unwrap(),
            remote: "10.1.2.3:443".parse().unwrap(),
            info: TlsInfo { tid: 42, library },
            plaintext,
            true_len: plaintext.len() as u64,
            stream_offset: 0,
        })
    }

    #[test]
    fn tls_selects_plaintext_records_and_wire_the_packets() {
        let rec = record(TlsLibrary::Openssl, b"GET /secret HTTP/1.1\r\n");
        let gnutls = record(TlsLibrary::Gnutls, b"GET /other");
        let wire = pkt(443, b"\x17\x03\x03 tls ciphertext");
        for (f, want) in [
            ("tls", [true, true, false]),
            ("TLS", [true, true, false]),
            ("tls:openssl", [true, false, false]),
            ("tls:gnutls", [false, true, false]),
            ("tls:nss", [false, false, false]),
            ("wire", [false, false, true]),
            ("tls secret", [true, false, false]),
            ("tls tcp port:443 out", [true, true, false]),
            ("wire 443", [false, false, true]),
            // Quoted, the word is text again.
            ("\"tls\"", [false, false, true]),
        ] {
            let filter = DisplayFilter::parse(f).unwrap();
            assert_eq!([&rec, &gnutls, &wire].map(|p| filter.matches(p)), want, "{f}");
        }
    }

    fn pkt(port: u16, payload: &[u8]) -> CapturedPacket {
        let (src, dst) = ("127.0.0.1:5000".parse().unwrap(), format!("10.1.2.3:{port}").parse().unwrap());
        let data = crate::build::build(src, dst, 64, crate::build::Transport::Udp, payload).unwrap();
        let len = data.len() as u32;
        CapturedPacket::new(1, 0, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, len, data)
    }

    #[test]
    fn terms_and_matching() {
        let p = pkt(53, b"Hello World");
        for (f, want) in [
            ("", true),
            ("udp", true),
            ("tcp", false),
            ("out 53", true),
            ("in", false),
            ("port:5000", true),
            ("10.0.0.0/8", true),
            ("10.1.2.3", true),
            ("192.168.0.0/16", false),
            ("hello", true),
            ("\"lo wor\"", true),
            ("curl", true),
            ("pid:42 blocked", false),
            ("nothing-here", false),
            ("::1", false),
            ("[::]/0 udp", false),
            ("0.0.0.0/0 udp", true),
        ] {
            assert_eq!(DisplayFilter::parse(f).unwrap().matches(&p), want, "{f}");
        }
        assert!(DisplayFilter::parse("port:99999").is_err());
        assert!(DisplayFilter::parse("tls:schannel").unwrap_err().message.contains("openssl, gnutls or nss"));
        let e = DisplayFilter::parse("10.0.0.0/99").unwrap_err();
        assert!(e.message.contains("prefix length `99`"), "{e}");
    }
}
