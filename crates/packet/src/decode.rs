//! Decoding of the IP/TCP/UDP headers of a captured packet, in one place
//! (etherparse, lax mode so that packets cut by the snap length still decode
//! as far as they go): [`headers`] gives every field as it is in the bytes
//! (for detail views and for resending), [`decode`] the summary a
//! [`crate::CapturedPacket`] carries, oriented by its direction.

use crate::build::TcpFields;
use crate::{Direction, Protocol, UNSPECIFIED};
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The IP header's fields (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHeader {
    V4(Ipv4Fields),
    V6(Ipv6Fields),
}

/// IPv4 header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Fields {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    /// Header length in bytes (IHL * 4).
    pub header_len: usize,
    pub total_len: u16,
    pub identification: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: u16,
}

/// IPv6 header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fields {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub payload_len: u16,
    /// The fixed header's next header (may be an extension header).
    pub next_header: u8,
    pub hop_limit: u8,
    pub flow_label: u32,
    /// The transport protocol, after any extension headers.
    pub protocol: u8,
    /// The fixed header and the extension headers, in bytes.
    pub header_len: usize,
}

impl IpHeader {
    /// 4 or 6.
    pub fn version(&self) -> u8 {
        match self {
            IpHeader::V4(_) => 4,
            IpHeader::V6(_) => 6,
        }
    }

    pub fn source(&self) -> IpAddr {
        match self {
            IpHeader::V4(h) => h.source.into(),
            IpHeader::V6(h) => h.source.into(),
        }
    }

    pub fn destination(&self) -> IpAddr {
        match self {
            IpHeader::V4(h) => h.destination.into(),
            IpHeader::V6(h) => h.destination.into(),
        }
    }

    /// The IPv4 TTL or the IPv6 hop limit.
    pub fn hop_limit(&self) -> u8 {
        match self {
            IpHeader::V4(h) => h.ttl,
            IpHeader::V6(h) => h.hop_limit,
        }
    }

    /// The transport protocol number (after IPv6 extension headers).
    pub fn protocol(&self) -> u8 {
        match self {
            IpHeader::V4(h) => h.protocol,
            IpHeader::V6(h) => h.protocol,
        }
    }
}

/// TCP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    pub source_port: u16,
    pub destination_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// The flags byte (see [`crate::build::flags`]).
    pub flags: u8,
    pub window: u16,
    /// Header length in bytes (data offset * 4).
    pub header_len: usize,
    pub checksum: u16,
}

impl TcpHeader {
    /// The fields [`crate::build::build`] takes to write this segment again.
    pub fn fields(&self) -> TcpFields {
        TcpFields { seq: self.seq, ack: self.ack, flags: self.flags, window: self.window }
    }
}

/// UDP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    pub source_port: u16,
    pub destination_port: u16,
    pub length: u16,
    pub checksum: u16,
}

/// The transport header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportHeader {
    Tcp(TcpHeader),
    Udp(UdpHeader),
    /// ICMP or ICMPv6 (`header_len` bytes of header).
    Icmp {
        header_len: usize,
    },
}

/// Every header field of a packet's bytes, as they are (not oriented by direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// None when the bytes are not an IP packet.
    pub ip: Option<IpHeader>,
    /// None when there is no (decodable) TCP, UDP or ICMP header.
    pub transport: Option<TransportHeader>,
    /// Offset of the transport payload in the bytes (at most their length).
    pub payload_offset: usize,
    /// Size of the transport payload on the wire (from the headers' lengths).
    pub payload_size: usize,
}

impl Headers {
    pub fn tcp(&self) -> Option<TcpHeader> {
        match self.transport {
            Some(TransportHeader::Tcp(t)) => Some(t),
            _ => None,
        }
    }

    pub fn udp(&self) -> Option<UdpHeader> {
        match self.transport {
            Some(TransportHeader::Udp(u)) => Some(u),
            _ => None,
        }
    }

    /// (source port, destination port); zeros without TCP or UDP.
    pub fn ports(&self) -> (u16, u16) {
        match &self.transport {
            Some(TransportHeader::Tcp(t)) => (t.source_port, t.destination_port),
            Some(TransportHeader::Udp(u)) => (u.source_port, u.destination_port),
            _ => (0, 0),
        }
    }
}

/// Every header field of `data` (starting at the IP header), decoded as far
/// as the bytes go (a packet cut by the snap length keeps its headers).
/// Never fails: what cannot be decoded is None.
pub fn headers(data: &[u8]) -> Headers {
    let none = Headers { ip: None, transport: None, payload_offset: 0, payload_size: data.len() };
    let Ok(pkt) = LaxSlicedPacket::from_ip(data) else {
        return none;
    };
    let (ip, ip_payload_len, ip_header_len) = match &pkt.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let hl = h.slice().len();
            let total = usize::from(h.total_len()).max(hl);
            let f = Ipv4Fields {
                source: h.source_addr(),
                destination: h.destination_addr(),
                header_len: usize::from(h.ihl()) * 4,
                total_len: h.total_len(),
                identification: h.identification(),
                dont_fragment: h.dont_fragment(),
                more_fragments: h.more_fragments(),
                ttl: h.ttl(),
                protocol: h.protocol().0,
                checksum: h.header_checksum(),
            };
            (IpHeader::V4(f), total - hl, hl)
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let p = v6.payload();
            // Offset of the IP payload = everything before it in `data`.
            let off = p.payload.as_ptr() as usize - data.as_ptr() as usize;
            let ext = off - 40;
            let total_payload = usize::from(h.payload_length()).saturating_sub(ext);
            let f = Ipv6Fields {
                source: h.source_addr(),
                destination: h.destination_addr(),
                payload_len: h.payload_length(),
                next_header: h.next_header().0,
                hop_limit: h.hop_limit(),
                flow_label: h.flow_label().value(),
                protocol: p.ip_number.0,
                header_len: off,
            };
            (IpHeader::V6(f), total_payload, off)
        }
        _ => return none,
    };
    let (transport, l4_header_len) = match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => {
            let hl = t.slice().len() - t.payload().len();
            let h = TcpHeader {
                source_port: t.source_port(),
                destination_port: t.destination_port(),
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                flags: t.slice()[13],
                window: t.window_size(),
                header_len: hl,
                checksum: t.checksum(),
            };
            (Some(TransportHeader::Tcp(h)), hl)
        }
        Some(TransportSlice::Udp(u)) => {
            let h = UdpHeader {
                source_port: u.source_port(),
                destination_port: u.destination_port(),
                length: u.length(),
                checksum: u.checksum(),
            };
            (Some(TransportHeader::Udp(h)), 8)
        }
        Some(TransportSlice::Icmpv4(i)) => (Some(TransportHeader::Icmp { header_len: i.header_len() }), i.header_len()),
        Some(TransportSlice::Icmpv6(i)) => (Some(TransportHeader::Icmp { header_len: i.header_len() }), i.header_len()),
        _ => (None, 0),
    };
    Headers {
        ip: Some(ip),
        transport,
        payload_offset: (ip_header_len + l4_header_len).min(data.len()),
        payload_size: ip_payload_len.saturating_sub(l4_header_len),
    }
}

/// Decode the headers of `data` (starting at the IP header), oriented by `direction`.
///
/// Never fails: what cannot be decoded is left unspecified (address
/// `0.0.0.0`, port 0, protocol `Other(0)`), so a malformed packet is still
/// kept and shown.
pub fn decode(data: &[u8], direction: Direction) -> Decoded {
    let h = headers(data);
    let Some(ip) = h.ip else {
        return Decoded::undecodable(data.len());
    };
    let (src, dst) = (ip.source(), ip.destination());
    let (src_port, dst_port) = h.ports();
    let tcp = h.tcp();
    let (local_addr, local_port, remote_addr, remote_port) = match direction {
        Direction::Outbound => (src, src_port, dst, dst_port),
        Direction::Inbound => (dst, dst_port, src, src_port),
    };
    Decoded {
        ip_version: ip.version(),
        protocol: Protocol::from_number(ip.protocol()),
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        payload_offset: h.payload_offset as u32,
        payload_size: h.payload_size as u32,
        tcp_flags: tcp.map(|t| t.flags),
        tcp_seq: tcp.map(|t| t.seq),
        tcp_ack: tcp.map(|t| t.ack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

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

    #[test]
    fn headers_give_every_field() {
        let h = headers(&tcp4(b"GET /"));
        let Some(IpHeader::V4(ip)) = h.ip else { panic!("{h:?}") };
        assert_eq!((ip.source, ip.destination), (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((ip.header_len, ip.total_len, ip.ttl, ip.protocol), (20, 45, 64, 6));
        assert!(ip.dont_fragment && !ip.more_fragments);
        assert_ne!(ip.checksum, 0);
        let t = h.tcp().unwrap();
        assert_eq!((t.source_port, t.destination_port, t.seq, t.ack), (40000, 80, 1000, 7));
        assert_eq!((t.flags, t.window, t.header_len), (0x12, 65535, 20));
        assert_eq!(t.fields(), TcpFields { seq: 1000, ack: 7, flags: 0x12, window: 65535 });
        assert_eq!((h.payload_offset, h.payload_size), (40, 5));
        assert_eq!(h.udp(), None);

        let b =
            PacketBuilder::ipv6(Ipv6Addr::LOCALHOST.octets(), [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 9)
                .udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        let h = headers(&out);
        let Some(IpHeader::V6(ip)) = h.ip else { panic!("{h:?}") };
        assert_eq!((ip.payload_len, ip.next_header, ip.hop_limit, ip.protocol, ip.header_len), (13, 17, 9, 17, 40));
        assert_eq!(h.ip.unwrap().hop_limit(), 9);
        assert_eq!(h.ip.unwrap().destination().to_string(), "fd00::2");
        let u = h.udp().unwrap();
        assert_eq!((u.source_port, u.destination_port, u.length), (5353, 53, 13));
        assert_eq!(h.ports(), (5353, 53));
        assert_eq!(headers(&[0x45]).ip, None);
    }
}
