//! TLS in pcapng files: how a plaintext record is written (Wireshark's
//! Exported PDU, `LINKTYPE_WIRESHARK_UPPER_PDU`), and what the writer reads
//! from packets to place key logs and to avoid showing HTTP twice (the
//! ClientHello's random of each connection).
//!
//! # A record as an Exported PDU
//!
//! The frame's bytes are tags (big-endian `type u16, length u16, value`),
//! then the plaintext:
//!
//! | tag | value |
//! |---|---|
//! | 12 `PROTO_NAME` | `http` when the plaintext starts like an HTTP/1.x request or response, else `data` (NUL-padded to 4 bytes: both names are exactly 4) |
//! | 20/21 or 22/23 | IPv4 or IPv6 source and destination |
//! | 24 `PORT_TYPE` | 2 (TCP) |
//! | 25/26 | source and destination port (u32) |
//! | 33 `COL_PROT_TEXT` | `TLS plaintext` (the Protocol column when the dissector does not set it) |
//! | 0 | end of tags |
//!
//! tshark 4.0 dissects the payload with the named dissector (`-Y
//! http.request` finds a request), fills `ip.addr`, `ip.src`, `ip.dst` and
//! `exported_pdu.src_port`/`dst_port` (not `tcp.port`: there is no TCP
//! header).

use std::net::{IpAddr, SocketAddr};

/// `LINKTYPE_WIRESHARK_UPPER_PDU`.
pub const LINKTYPE_UPPER_PDU: u16 = 252;
/// `if_name` of the interface TLS plaintext records are written on.
pub const TLS_IF_NAME: &str = "pidcap-tls-plaintext";
/// `if_description` of that interface.
pub const TLS_IF_DESCRIPTION: &str =
    "TLS plaintext taken by pidcap from the process's TLS library (decrypted application data, not packets from the wire)";

const TAG_END: u16 = 0;
const TAG_PROTO_NAME: u16 = 12;
const TAG_IPV4_SRC: u16 = 20;
const TAG_IPV4_DST: u16 = 21;
const TAG_IPV6_SRC: u16 = 22;
const TAG_IPV6_DST: u16 = 23;
const TAG_PORT_TYPE: u16 = 24;
const TAG_SRC_PORT: u16 = 25;
const TAG_DST_PORT: u16 = 26;
const TAG_COL_PROT_TEXT: u16 = 33;
const PORT_TYPE_TCP: u32 = 2;
/// The Protocol column of a record that no dissector claims.
pub const COL_PROT_TEXT: &str = "TLS plaintext";

/// The dissector named in a record's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduProto {
    Http,
    Data,
}

impl PduProto {
    fn name(self) -> &'static [u8; 4] {
        match self {
            PduProto::Http => b"http",
            PduProto::Data => b"data",
        }
    }
}

/// True when `plaintext` starts like an HTTP/1.x request line or status line.
pub fn looks_like_http(plaintext: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] =
        [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];
    plaintext.starts_with(b"HTTP/1.") || METHODS.iter().any(|m| plaintext.starts_with(m))
}

/// The tags of a record from `src` to `dst`; the offset of the 4-byte
/// protocol name in them (so it can be changed in place).
pub fn pdu_tags(proto: PduProto, src: SocketAddr, dst: SocketAddr) -> (Vec<u8>, usize) {
    let mut t = Vec::with_capacity(64);
    let tag = |t: &mut Vec<u8>, code: u16, value: &[u8]| {
        t.extend_from_slice(&code.to_be_bytes());
        t.extend_from_slice(&(value.len() as u16).to_be_bytes());
        t.extend_from_slice(value);
    };
    tag(&mut t, TAG_PROTO_NAME, proto.name());
    let name_at = 4;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            tag(&mut t, TAG_IPV4_SRC, &s.octets());
            tag(&mut t, TAG_IPV4_DST, &d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            tag(&mut t, TAG_IPV6_SRC, &v6(s));
            tag(&mut t, TAG_IPV6_DST, &v6(d));
        }
    }
    tag(&mut t, TAG_PORT_TYPE, &PORT_TYPE_TCP.to_be_bytes());
    tag(&mut t, TAG_SRC_PORT, &u32::from(src.port()).to_be_bytes());
    tag(&mut t, TAG_DST_PORT, &u32::from(dst.port()).to_be_bytes());
    let mut col = COL_PROT_TEXT.as_bytes().to_vec();
    col.resize(col.len().next_multiple_of(4), 0);
    tag(&mut t, TAG_COL_PROT_TEXT, &col);
    tag(&mut t, TAG_END, &[]);
    (t, name_at)
}

/// What an Exported PDU frame says: its endpoints, its dissector name and
/// where the payload starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: String,
    pub payload_at: usize,
}

/// Parse the tags of an Exported PDU frame; `Err` says what is wrong.
pub fn parse_pdu(b: &[u8]) -> Result<Pdu, String> {
    let mut at = 0usize;
    let (mut src_ip, mut dst_ip, mut sport, mut dport, mut proto) = (None, None, None, None, String::new());
    loop {
        let head = b.get(at..at + 4).ok_or_else(|| format!("tags cut at byte {at}"))?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = b.get(at + 4..at + 4 + len).ok_or_else(|| format!("tag {code} claims {len} bytes past the end"))?;
        at += 4 + len;
        let port = |v: &[u8]| -> Result<u16, String> {
            let a: [u8; 4] = v.try_into().map_err(|_| format!("port tag of {} bytes", v.len()))?;
            u16::try_from(u32::from_be_bytes(a)).map_err(|_| "port above 65535".to_string())
        };
        let ip = |v: &[u8]| -> Result<IpAddr, String> {
            match v.len() {
                4 => Ok(IpAddr::from(<[u8; 4]>::try_from(v).unwrap_or_default())),
                16 => Ok(IpAddr::from(<[u8; 16]>::try_from(v).unwrap_or_default())),
                n => Err(format!("address tag of {n} bytes")),
            }
        };
        match code {
            TAG_END => break,
            TAG_PROTO_NAME => {
                proto = String::from_utf8_lossy(value).trim_end_matches('\0').to_string();
            }
            TAG_IPV4_SRC | TAG_IPV6_SRC => src_ip = Some(ip(value)?),
            TAG_IPV4_DST | TAG_IPV6_DST => dst_ip = Some(ip(value)?),
            TAG_SRC_PORT => sport = Some(port(value)?),
            TAG_DST_PORT => dport = Some(port(value)?),
            _ => {}
        }
    }
    let (Some(s), Some(d)) = (src_ip, dst_ip) else { return Err("no source or destination address".into()) };
    if s.is_ipv4() != d.is_ipv4() {
        return Err("source and destination of different IP versions".into());
    }
    Ok(Pdu {
        src: SocketAddr::new(s, sport.unwrap_or(0)),
        dst: SocketAddr::new(d, dport.unwrap_or(0)),
        proto,
        payload_at: at,
    })
}

/// A connection with its two ends in a fixed order, whichever way a packet went.
pub type ConnKey = (SocketAddr, SocketAddr);

/// The two ends of a connection in a fixed order.
pub fn conn_key(a: SocketAddr, b: SocketAddr) -> ConnKey {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// If the IP packet `data` is a TCP segment starting with a TLS ClientHello:
/// its connection and the client random. Cheap for every other packet (a
/// few header bytes are read, nothing is decoded): the writer asks it of
/// every packet.
pub fn client_hello(data: &[u8]) -> Option<(ConnKey, [u8; 32])> {
    const TCP: u8 = 6;
    let (src, dst, l4) = match data.first()? >> 4 {
        4 => {
            let ihl = usize::from(data[0] & 0x0f) * 4;
            if *data.get(9)? != TCP || ihl < 20 {
                return None;
            }
            let s: [u8; 4] = data.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = data.get(16..20)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), ihl)
        }
        6 => {
            if *data.get(6)? != TCP {
                return None;
            }
            let s: [u8; 16] = data.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = data.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), 40)
        }
        _ => return None,
    };
    let tcp = data.get(l4..l4 + 20)?;
    let payload = data.get(l4 + usize::from(tcp[12] >> 4) * 4..)?;
    let random = client_hello_random(payload)?;
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    Some((conn_key(SocketAddr::new(src, sport), SocketAddr::new(dst, dport)), random))
}

/// The client random of a TLS ClientHello at the start of a TCP payload.
pub fn client_hello_random(payload: &[u8]) -> Option<[u8; 32]> {
    // Record header: type 22 (handshake), version 3.x, length; handshake type 1, 3-byte length, version 2 bytes.
    if payload.len() < 43 || payload[0] != 22 || payload[1] != 3 || payload[5] != 1 || payload[9] != 3 {
        return None;
    }
    payload[11..43].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_for_both_ip_versions_and_the_name_can_be_patched() {
        for (s, d) in [("127.0.0.1:40000", "127.0.0.2:8443"), ("[::1]:1", "[fe80::2]:65535")] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let (mut tags, at) = pdu_tags(PduProto::Http, s, d);
            assert_eq!(&tags[at..at + 4], b"http");
            tags.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let p = parse_pdu(&tags).unwrap();
            assert_eq!((p.src, p.dst, p.proto.as_str()), (s, d, "http"));
            assert_eq!(&tags[p.payload_at..], b"GET / HTTP/1.1\r\n");
            tags[at..at + 4].copy_from_slice(PduProto::Data.name());
            assert_eq!(parse_pdu(&tags).unwrap().proto, "data");
            for cut in 0..p.payload_at {
                assert!(parse_pdu(&tags[..cut]).is_err(), "{cut}");
            }
        }
    }

    #[test]
    fn http_and_client_hellos_are_recognised() {
        assert!(looks_like_http(b"GET /x HTTP/1.1\r\n"));
        assert!(looks_like_http(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_http(b"\x16\x03\x01"));
        assert!(!looks_like_http(b"GETX"));
        let mut hello = vec![22, 3, 1, 0, 100, 1, 0, 0, 96, 3, 3];
        hello.extend(1..=32u8);
        hello.extend([0; 10]);
        assert_eq!(client_hello_random(&hello).unwrap()[0], 1);
        // In a TCP segment, either IP version: the connection, either way round.
        for (src, dst) in [("127.0.0.1:40000", "127.0.0.2:443"), ("[::1]:443", "[::2]:40000")] {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let tcp = pidcap_packet::build::Transport::Tcp(Default::default());
            let packet = pidcap_packet::build::build(src, dst, 64, tcp, &hello).unwrap();
            let (conn, random) = client_hello(&packet).unwrap();
            assert_eq!((conn, random[31]), (conn_key(dst, src), 32));
            let udp = pidcap_packet::build::build(src, dst, 64, pidcap_packet::build::Transport::Udp, &hello).unwrap();
            assert_eq!(client_hello(&udp), None);
            for cut in 0..packet.len() {
                let _ = client_hello(&packet[..cut]);
            }
        }
        hello[5] = 2; // ServerHello
        assert_eq!(client_hello_random(&hello), None);
        assert_eq!(client_hello_random(&hello[..40]), None);
    }
}
