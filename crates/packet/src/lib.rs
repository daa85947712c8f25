//! The packet model shared by every pidcap layer.
//!
//! A [`CapturedPacket`] is what the engine produces for each packet the kernel
//! layer hands up: the seed's `CapturedPacket` fields (id, timestamp, pid,
//! direction, protocol, local/remote address and port, payload) plus what the
//! seed lacks (IPv6, the process name, the socket cookie, the verdict of the
//! filter rules, the length on the wire). The bytes always start at the IP
//! header; the decoded fields are derived from them once, by [`decode()`].
//!
//! Nothing here touches the OS: the pcap writer, the library, the daemon and
//! the UI all use this crate without pulling in the kernel layer.
//!
//! It is also the one home of the small concepts every layer shares: hex
//! ([`hex`]), bytes as text ([`ascii`]), CIDR networks ([`net`]), building
//! a packet ([`build`]), decoding one ([`decode()`], [`headers`]), TLS
//! plaintext records ([`tls`]), one-line protocol summaries ([`info`]), the
//! packet detail tree ([`dissect`]), the display filter ([`dfilter`]), and the
//! names of [`Direction`] and [`Verdict`] (`Display` / `FromStr`).

pub mod ascii;
pub mod build;
pub mod clock;
pub mod decode;
pub mod dfilter;
pub mod dissect;
pub mod hex;
pub mod info;
pub mod net;
pub mod process;
pub mod stream;
pub mod tls;

pub use decode::{decode, headers, Decoded, Headers};
pub use hex::{hex_dump, to_hex};
pub use process::{ContainerRef, ProcessMeta};
pub use tls::{TlsInfo, TlsLibrary, TlsRecord};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;

/// Which way a packet crossed the target process's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received by the target process.
    Inbound,
    /// Sent by the target process.
    Outbound,
}

impl Direction {
    /// Short form used in one-line output and in the library's database: `in` / `out`
    /// (also what `Display` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }

    /// Long form, as serde writes it (JSON, `.dpp` files): `inbound` / `outbound`.
    pub fn long_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    /// `in` / `out`; `{:#}` writes `inbound` / `outbound`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if f.alternate() { self.long_str() } else { self.as_str() })
    }
}

/// A direction, verdict or protocol name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not {expected}")]
pub struct ParseNameError {
    /// The text that did not parse.
    pub found: String,
    /// What would have (`in, out, inbound or outbound`).
    pub expected: &'static str,
}

impl FromStr for Direction {
    type Err = ParseNameError;
    /// `in`, `out`, `inbound`, `outbound` (lower case, as written everywhere;
    /// callers that accept other cases lower it first).
    fn from_str(s: &str) -> Result<Direction, ParseNameError> {
        match s {
            "in" | "inbound" => Ok(Direction::Inbound),
            "out" | "outbound" => Ok(Direction::Outbound),
            _ => Err(ParseNameError { found: s.into(), expected: "in, out, inbound or outbound" }),
        }
    }
}

/// Transport protocol of a packet, from the IP header's protocol / next header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol number.
    Other(u8),
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol for an IANA protocol number.
    pub fn from_number(n: u8) -> Protocol {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            n => Protocol::Other(n),
        }
    }

    /// Upper-case name for one-line output (`TCP`, `UDP`, `ICMP`, `IP/47`).
    pub fn name(self) -> String {
        match self {
            Protocol::Tcp => "TCP".into(),
            Protocol::Udp => "UDP".into(),
            Protocol::Icmp => "ICMP".into(),
            Protocol::Icmpv6 => "ICMPv6".into(),
            Protocol::Other(n) => format!("IP/{n}"),
        }
    }
}

impl fmt::Display for Protocol {
    /// [`Protocol::name`]: `TCP`, `UDP`, `ICMP`, `ICMPv6`, `IP/47`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Protocol {
    type Err = ParseNameError;
    /// `tcp`, `udp`, `icmp`, `icmpv6` in any case, or `IP/N` (what `Display` writes).
    fn from_str(s: &str) -> Result<Protocol, ParseNameError> {
        let p = match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "icmpv6" => Protocol::Icmpv6,
            l => match l.strip_prefix("ip/").and_then(|n| n.parse().ok()) {
                Some(n) => Protocol::from_number(n),
                None => return Err(ParseNameError { found: s.into(), expected: "tcp, udp, icmp, icmpv6 or IP/N" }),
            },
        };
        Ok(p)
    }
}

/// What the kernel's filter rules decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let through (no rule matched, or an allow rule did).
    #[default]
    Pass,
    /// Dropped in the kernel by a block rule.
    Blocked,
}

impl Verdict {
    /// `pass` / `blocked`, as serde, pcapng comments, `.dpp` files and the library write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = ParseNameError;
    /// `pass` or `blocked`.
    fn from_str(s: &str) -> Result<Verdict, ParseNameError> {
        match s {
            "pass" => Ok(Verdict::Pass),
            "blocked" => Ok(Verdict::Blocked),
            _ => Err(ParseNameError { found: s.into(), expected: "pass or blocked" }),
        }
    }
}

/// One captured packet, as every layer above the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// Unique, increasing identifier within one capture session.
    pub id: u64,
    /// Wall-clock time the kernel saw the packet, nanoseconds since the UNIX epoch.
    pub timestamp_ns: u64,
    /// Process (thread group) id of the socket's owner.
    pub pid: u32,
    /// Process name (`comm`, at most 15 bytes) of the socket's owner: the
    /// thread-group leader's when the process is known ([`ProcessMeta::comm`]),
    /// else the name the kernel recorded with the packet.
    pub comm: String,
    /// Kernel socket cookie: stable id of the socket for its lifetime.
    pub socket_cookie: u64,
    pub direction: Direction,
    pub verdict: Verdict,
    /// Index of the rule that decided the verdict, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u16>,
    /// Length of the whole IP packet on the wire; `data` may be shorter (snap length).
    pub orig_len: u32,
    /// The captured bytes, starting at the IP header.
    #[serde(with = "hex::serde_hex")]
    pub data: Vec<u8>,
    /// Fields decoded from `data` (see [`decode()`]).
    #[serde(flatten)]
    pub decoded: Decoded,
    /// Set for a TLS plaintext record (see [`tls`]): `data` is then a
    /// synthesized packet carrying the plaintext, not one seen on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    // -- the whole process (issue 12) --
    /// The thread that sent the packet (egress in the process's context), or
    /// that last sent on or set up the socket (ingress); 0 = unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tid: u32,
    /// That thread's name (`comm` of the task), empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub thread: String,
    /// The process, read once per process and shared by its packets (see [`process`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Arc<ProcessMeta>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CapturedPacket {
    /// Build a packet from the raw fields, decoding the headers once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        timestamp_ns: u64,
        pid: u32,
        comm: String,
        socket_cookie: u64,
        direction: Direction,
        verdict: Verdict,
        orig_len: u32,
        data: Vec<u8>,
    ) -> CapturedPacket {
        let decoded = decode(&data, direction);
        CapturedPacket {
            id,
            timestamp_ns,
            pid,
            comm,
            socket_cookie,
            direction,
            verdict,
            rule: None,
            orig_len,
            data,
            decoded,
            tls: None,
            tid: 0,
            thread: String::new(),
            process: None,
        }
    }

    /// The transport payload bytes that were captured (may be cut by the snap length).
    pub fn payload(&self) -> &[u8] {
        let start = (self.decoded.payload_offset as usize).min(self.data.len());
        &self.data[start..]
    }

    /// True when the snap length cut the packet short.
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }

    /// The process as written on every pcapng packet: `pid=1234 comm=curl`.
    pub fn process_comment(&self) -> String {
        format!("pid={} comm={}", self.pid, self.comm)
    }
}

/// The "unspecified" address used when a packet cannot be decoded.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64).udp(1, 2).write(&mut data, b"abc").unwrap();
        let p = CapturedPacket::new(
            7,
            1_700_000_000_000_000_000,
            42,
            "curl".into(),
            99,
            Direction::Outbound,
            Verdict::Pass,
            31,
            data,
        );
        let j = serde_json::to_string(&p).unwrap();
        assert!(j.contains("\"protocol\":\"udp\""), "{j}");
        let back: CapturedPacket = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.payload(), b"abc");
        assert_eq!(back.process_comment(), "pid=42 comm=curl");
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for d in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(d.to_string().parse::<Direction>().unwrap(), d);
            assert_eq!(format!("{d:#}").parse::<Direction>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d:#}\""));
        }
        assert_eq!(Direction::Inbound.to_string(), "in");
        assert_eq!(format!("{:#}", Direction::Outbound), "outbound");
        assert_eq!("inbound".parse::<Direction>().unwrap(), Direction::Inbound);
        assert_eq!("out".parse::<Direction>().unwrap(), Direction::Outbound);
        let e = "sideways".parse::<Direction>().unwrap_err();
        assert_eq!(e.to_string(), "\"sideways\" is not in, out, inbound or outbound");
        for v in [Verdict::Pass, Verdict::Blocked] {
            assert_eq!(v.to_string().parse::<Verdict>().unwrap(), v);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
        }
        assert!("block".parse::<Verdict>().is_err());
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Icmpv6, Protocol::Other(47)] {
            assert_eq!(p.to_string().parse::<Protocol>().unwrap(), p);
        }
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("Udp".parse::<Protocol>().unwrap(), Protocol::Udp);
        assert_eq!("IP/6".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert!("sctp".parse::<Protocol>().is_err());
        assert!("IP/300".parse::<Protocol>().is_err());
        assert!("Pass".parse::<Verdict>().is_err());
    }
}
