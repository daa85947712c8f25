//! The packet model shared by every pidcap layer.
//!
//! A [`CapturedPacket`] is what the engine produces for each packet the kernel
//! layer hands up: the seed's `CapturedPacket` fields (id, timestamp, pid,
//! direction, protocol, local/remote address and port, payload) plus what the
//! seed lacks (IPv6, the process name, the socket cookie, the verdict of the
//! filter rules, the length on the wire). The bytes always start at the IP
//! header; the decoded fields are derived from them once, by [`decode`].
//!
//! Nothing here touches the OS: the pcap writer, the library, the daemon and
//! the UI all use this crate without pulling in the kernel layer.

mod decode;
mod hex;

pub use decode::{decode, Decoded};
pub use hex::{from_hex, hex_dump, to_hex};

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

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
    /// Short form used in one-line output: `in` / `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
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

/// One captured packet, as every layer above the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// Unique, increasing identifier within one capture session.
    pub id: u64,
    /// Wall-clock time the kernel saw the packet, nanoseconds since the UNIX epoch.
    pub timestamp_ns: u64,
    /// Process (thread group) id of the socket's owner.
    pub pid: u32,
    /// Process name (`comm`, at most 15 bytes) of the socket's owner.
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
    /// Fields decoded from `data` (see [`decode`]).
    #[serde(flatten)]
    pub decoded: Decoded,
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
}
