//! The packet list's display filter: what the user types in the filter box.
//!
//! Space-separated terms, all of which must match (AND):
//! - `tcp`, `udp`, `icmp`: the protocol;
//! - `in`, `out`: the direction; `blocked`, `pass`: the verdict;
//! - `port:N` or a bare number `N`: the local or remote port;
//! - `pid:N`: the process;
//! - an IPv4/IPv6 address or CIDR (`10.0.0.0/8`, `::1`): the local or remote address;
//! - anything else (or `"quoted text"`): text in the payload (ASCII,
//!   case-insensitive) or in the process name.

use pidcap_packet::{CapturedPacket, Direction, Protocol, Verdict};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Protocol(Protocol),
    Direction(Direction),
    Verdict(Verdict),
    Port(u16),
    Pid(u32),
    Net(IpAddr, u8),
    /// Lower-cased text.
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayFilter {
    pub terms: Vec<Term>,
}

impl DisplayFilter {
    /// Parse the filter box; an error names the bad term.
    pub fn parse(s: &str) -> Result<DisplayFilter, String> {
        let mut terms = Vec::new();
        for word in split_words(s) {
            terms.push(parse_term(&word)?);
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
    Ok(match lower.as_str() {
        "tcp" => Term::Protocol(Protocol::Tcp),
        "udp" => Term::Protocol(Protocol::Udp),
        "icmp" => Term::Protocol(Protocol::Icmp),
        "icmpv6" => Term::Protocol(Protocol::Icmpv6),
        "in" => Term::Direction(Direction::Inbound),
        "out" => Term::Direction(Direction::Outbound),
        "blocked" => Term::Verdict(Verdict::Blocked),
        "pass" => Term::Verdict(Verdict::Pass),
        _ => {
            if let Some(p) = lower.strip_prefix("port:") {
                Term::Port(p.parse().map_err(|_| format!("`{w}`: a port is 0..65535"))?)
            } else if let Some(p) = lower.strip_prefix("pid:") {
                Term::Pid(p.parse().map_err(|_| format!("`{w}`: a pid is a number"))?)
            } else if let Ok(port) = lower.parse::<u16>() {
                Term::Port(port)
            } else if let Some((addr, len)) = parse_net(&lower) {
                Term::Net(addr, len)
            } else if lower.contains('/') && lower.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                return Err(format!("`{w}` is not an address or network (10.0.0.0/8)"));
            } else {
                Term::Text(lower)
            }
        }
    })
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((addr, len))
}

fn in_net(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
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
        Term::Net(n, len) => in_net(d.local_addr, *n, *len) || in_net(d.remote_addr, *n, *len),
        Term::Text(s) => contains_ci(p.payload(), s.as_bytes()) || p.comm.to_lowercase().contains(s.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(port: u16, payload: &[u8]) -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [10, 1, 2, 3], 64)
            .udp(5000, port)
            .write(&mut data, payload)
            .unwrap();
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
        ] {
            assert_eq!(DisplayFilter::parse(f).unwrap().matches(&p), want, "{f}");
        }
        assert!(DisplayFilter::parse("port:99999").is_err());
        assert!(DisplayFilter::parse("10.0.0.0/99").is_err());
    }
}
