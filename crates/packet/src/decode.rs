//! Decoding of the IP/TCP/UDP headers of a captured packet (etherparse, lax mode
//! so that packets cut by the snap length still decode as far as they go).

use crate::{Direction, Protocol, UNSPECIFIED};
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Header fields decoded from a packet's bytes, oriented by its direction:
/// "local" is the target process's end, "remote" the peer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    /// 4 or 6; 0 when the bytes are not an IP packet.
    pub ip_version: u8,
    pub protocol: Protocol,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// Offset of the transport payload in the captured bytes.
    pub payload_offset: u32,
    /// Size of the transport payload on the wire (from the headers' lengths,
    /// so it is right even when the capture was cut short).
    pub payload_size: u32,
    /// TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_seq: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_ack: Option<u32>,
}

impl Decoded {
    fn undecodable(len: usize) -> Decoded {
        Decoded {
            ip_version: 0,
            protocol: Protocol::Other(0),
            local_addr: UNSPECIFIED,
            local_port: 0,
            remote_addr: UNSPECIFIED,
            remote_port: 0,
            payload_offset: 0,
            payload_size: len as u32,
            tcp_flags: None,
            tcp_seq: None,
            tcp_ack: None,
        }
    }

    /// TCP flags as tcpdump prints them (`S`, `S.`, `P.`, `F.`, `R`...), empty for non-TCP.
    pub fn tcp_flags_str(&self) -> String {
        let Some(f) = self.tcp_flags else { return String::new() };
        let mut s = String::new();
        for (bit, c) in [(0x02, 'S'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')] {
            if f & bit != 0 {
                s.push(c);
            }
        }
        if f & 0x10 != 0 {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }
}

/// Decode the headers of `data` (starting at the IP header).
///
/// Never fails: what cannot be decoded is left unspecified (address
/// `0.0.0.0`, port 0, protocol `Other(0)`), so a malformed packet is still
/// kept and shown.
pub fn decode(data: &[u8], direction: Direction) -> Decoded {
    let Ok(pkt) = LaxSlicedPacket::from_ip(data) else {
        return Decoded::undecodable(data.len());
    };
    let (version, proto, src, dst, ip_payload_len, ip_header_len) = match &pkt.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let hl = h.slice().len();
            let total = usize::from(h.total_len()).max(hl);
            (4, h.protocol().0, IpAddr::from(h.source()), IpAddr::from(h.destination()), total - hl, hl)
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let p = v6.payload();
            // Offset of the IP payload = everything before it in `data`.
            let off = p.payload.as_ptr() as usize - data.as_ptr() as usize;
            let ext = off - 40;
            let total_payload = usize::from(h.payload_length()).saturating_sub(ext);
            (6, p.ip_number.0, IpAddr::from(h.source()), IpAddr::from(h.destination()), total_payload, off)
        }
        _ => return Decoded::undecodable(data.len()),
    };
    let (mut src_port, mut dst_port) = (0u16, 0u16);
    let mut tcp = None;
    let mut l4_header_len = 0usize;
    match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => {
            src_port = t.source_port();
            dst_port = t.destination_port();
            l4_header_len = t.slice().len() - t.payload().len();
            let flags = t.slice()[13];
            tcp = Some((flags, t.sequence_number(), t.acknowledgment_number()));
        }
        Some(TransportSlice::Udp(u)) => {
            src_port = u.source_port();
            dst_port = u.destination_port();
            l4_header_len = 8;
        }
        Some(TransportSlice::Icmpv4(i)) => l4_header_len = i.header_len(),
        Some(TransportSlice::Icmpv6(i)) => l4_header_len = i.header_len(),
        _ => {}
    }
    let (local_addr, local_port, remote_addr, remote_port) = match direction {
        Direction::Outbound => (src, src_port, dst, dst_port),
        Direction::Inbound => (dst, dst_port, src, src_port),
    };
    Decoded {
        ip_version: version,
        protocol: Protocol::from_number(proto),
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        payload_offset: (ip_header_len + l4_header_len).min(data.len()) as u32,
        payload_size: ip_payload_len.saturating_sub(l4_header_len) as u32,
        tcp_flags: tcp.map(|t| t.0),
        tcp_seq: tcp.map(|t| t.1),
        tcp_ack: tcp.map(|t| t.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1000, 65535).syn().ack(7);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn tcp_v4_outbound_is_oriented_from_the_source() {
        let d = decode(&tcp4(b"GET /"), Direction::Outbound);
        assert_eq!(d.ip_version, 4);
        assert_eq!(d.protocol, Protocol::Tcp);
        assert_eq!(d.local_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((d.local_port, d.remote_port), (40000, 80));
        assert_eq!(d.payload_offset, 40);
        assert_eq!(d.payload_size, 5);
        assert_eq!(d.tcp_flags_str(), "S.");
        assert_eq!(d.tcp_seq, Some(1000));
        assert_eq!(d.tcp_ack, Some(7));
    }

    #[test]
    fn inbound_swaps_local_and_remote() {
        let d = decode(&tcp4(b""), Direction::Inbound);
        assert_eq!(d.local_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((d.local_port, d.remote_port), (80, 40000));
    }

    #[test]
    fn truncated_packet_keeps_headers_and_wire_payload_size() {
        let full = tcp4(&[0x41; 1000]);
        let d = decode(&full[..60], Direction::Outbound);
        assert_eq!(d.protocol, Protocol::Tcp);
        assert_eq!(d.remote_port, 80);
        assert_eq!(d.payload_size, 1000);
        assert_eq!(d.payload_offset, 40);
    }

    #[test]
    fn udp_v6() {
        let b = PacketBuilder::ipv6(Ipv6Addr::LOCALHOST.octets(), Ipv6Addr::LOCALHOST.octets(), 64).udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        let d = decode(&out, Direction::Outbound);
        assert_eq!(d.ip_version, 6);
        assert_eq!(d.protocol, Protocol::Udp);
        assert_eq!(d.local_addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!((d.local_port, d.remote_port), (5353, 53));
        assert_eq!(d.payload_offset, 48);
        assert_eq!(d.payload_size, 5);
        assert_eq!(d.tcp_flags, None);
    }

    #[test]
    fn garbage_does_not_panic_and_is_undecodable() {
        for bytes in [&[][..], &[0x45][..], &[0x00, 1, 2, 3][..], &[0x60; 10][..]] {
            let d = decode(bytes, Direction::Inbound);
            assert_eq!(d.ip_version, 0, "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_packet_decodes_without_panic() {
        let full = tcp4(b"payload");
        for n in 0..=full.len() {
            let d = decode(&full[..n], Direction::Outbound);
            assert!(d.payload_offset as usize <= n);
        }
    }
}
