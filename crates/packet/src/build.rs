//! One packet builder: an IPv4/IPv6 + TCP/UDP packet around a payload, from
//! addresses, ports and (for TCP) sequence numbers, flags and window, with
//! every length and checksum computed (etherparse).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// TCP flag bits, as in the header's flags byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// The TCP header fields a built segment takes (ports come from the addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFields {
    pub seq: u32,
    /// Written only when `flags` has ACK.
    pub ack: u32,
    /// The flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80).
    pub flags: u8,
    pub window: u16,
}

impl Default for TcpFields {
    /// PSH|ACK, sequence numbers 0, window 65535: for packets made from scratch.
    fn default() -> TcpFields {
        TcpFields { seq: 0, ack: 0, flags: flags::PSH | flags::ACK, window: 65535 }
    }
}

/// The transport header of a built packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp(TcpFields),
}

/// TTL / hop limit when none is given.
pub const DEFAULT_TTL: u8 = 64;

/// A packet that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("source {src} and destination {dst} are not the same IP version")]
    MixedVersions { src: IpAddr, dst: IpAddr },
    #[error("{0}")]
    Write(#[source] etherparse::err::packet::BuildWriteError),
}

/// The IP packet carrying `payload` from `src` to `dst` (TTL / hop limit `ttl`).
pub fn build(
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    transport: Transport,
    payload: &[u8],
) -> Result<Vec<u8>, BuildError> {
    use etherparse::PacketBuilder;
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), ttl),
        (s, d) => return Err(BuildError::MixedVersions { src: s, dst: d }),
    };
    let mut out = Vec::new();
    let r = match transport {
        Transport::Udp => ip.udp(src.port(), dst.port()).write(&mut out, payload),
        Transport::Tcp(t) => {
            let mut b = ip.tcp(src.port(), dst.port(), t.seq, t.window);
            let f = t.flags;
            if f & flags::ACK != 0 {
                b = b.ack(t.ack);
            }
            if f & flags::FIN != 0 {
                b = b.fin();
            }
            if f & flags::SYN != 0 {
                b = b.syn();
            }
            if f & flags::RST != 0 {
                b = b.rst();
            }
            if f & flags::PSH != 0 {
                b = b.psh();
            }
            if f & flags::URG != 0 {
                b = b.urg(0);
            }
            if f & flags::ECE != 0 {
                b = b.ece();
            }
            if f & flags::CWR != 0 {
                b = b.cwr();
            }
            b.write(&mut out, payload)
        }
    };
    r.map_err(BuildError::Write)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode::headers, Direction};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn built_packets_decode_back_with_correct_checksums() {
        for (src, dst) in [("10.0.0.1:4000", "10.0.0.2:53"), ("[::1]:4000", "[::2]:53")] {
            for transport in [Transport::Udp, Transport::Tcp(TcpFields { seq: 7, ack: 9, flags: 0xff, window: 512 })] {
                let pkt = build(sa(src), sa(dst), 33, transport, b"payload!").unwrap();
                let h = headers(&pkt);
                let ip = h.ip.unwrap();
                assert_eq!((ip.source(), ip.destination(), ip.hop_limit()), (sa(src).ip(), sa(dst).ip(), 33));
                assert_eq!(&pkt[h.payload_offset..], b"payload!");
                let d = crate::decode(&pkt, Direction::Outbound);
                assert_eq!((d.local_port, d.remote_port, d.payload_size), (4000, 53, 8));
                // etherparse checks the checksums it is asked to.
                let s = etherparse::SlicedPacket::from_ip(&pkt).unwrap();
                match (s.net.unwrap(), s.transport.unwrap(), transport) {
                    (etherparse::NetSlice::Ipv4(v4), etherparse::TransportSlice::Udp(u), _) => {
                        let hh = v4.header().to_header();
                        assert_eq!(hh.header_checksum, hh.calc_header_checksum());
                        assert_eq!(u.checksum(), u.to_header().calc_checksum_ipv4(&hh, u.payload()).unwrap());
                    }
                    (etherparse::NetSlice::Ipv6(v6), etherparse::TransportSlice::Udp(u), _) => {
                        let hh = v6.header().to_header();
                        assert_eq!(u.checksum(), u.to_header().calc_checksum_ipv6(&hh, u.payload()).unwrap());
                    }
                    (net, etherparse::TransportSlice::Tcp(t), Transport::Tcp(f)) => {
                        let want = match net {
                            etherparse::NetSlice::Ipv4(v4) => {
                                t.to_header().calc_checksum_ipv4(&v4.header().to_header(), t.payload()).unwrap()
                            }
                            etherparse::NetSlice::Ipv6(v6) => {
                                t.to_header().calc_checksum_ipv6(&v6.header().to_header(), t.payload()).unwrap()
                            }
                            _ => unreachable!(),
                        };
                        assert_eq!(t.checksum(), want);
                        let th = h.tcp().unwrap();
                        assert_eq!(th.fields(), f);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn flags_are_written_as_given() {
        for f in [flags::SYN, flags::SYN | flags::ACK, flags::PSH | flags::ACK, flags::RST, flags::FIN | flags::ACK] {
            let t = TcpFields { seq: 1, ack: 2, flags: f, window: 100 };
            let pkt = build(sa("1.1.1.1:1"), sa("2.2.2.2:2"), 64, Transport::Tcp(t), b"").unwrap();
            let th = headers(&pkt).tcp().unwrap();
            assert_eq!(th.flags, f);
            assert_eq!(th.ack, if f & flags::ACK != 0 { 2 } else { 0 });
        }
    }

    #[test]
    fn mixed_versions_are_refused() {
        let e = build(sa("1.1.1.1:1"), sa("[::1]:2"), 64, Transport::Udp, b"").unwrap_err();
        assert_eq!(e.to_string(), "source 1.1.1.1 and destination ::1 are not the same IP version");
        assert!(build(sa("1.1.1.1:1"), sa("2.2.2.2:2"), 64, Transport::Udp, &vec![0; 70_000]).is_err());
    }
}
