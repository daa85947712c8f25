//! The packet decoder (`pidcap_packet::headers`, `decode`) on any bytes.
//!
//! Checked: offsets stay inside the bytes; `decode` is `headers` oriented by
//! the direction (inbound is outbound with the ends swapped); the TCP flags
//! are the header's byte; a TCP or UDP packet rebuilt by `build::build` from
//! its decoded fields and payload decodes to the same fields; a packet goes
//! to JSON (as the API and `.dpp` carry it) and back unchanged; the hex dump
//! has one line per 16 bytes.

use super::outcome;
use pidcap_packet::build::{build, Transport};
use pidcap_packet::{decode, headers, hex_dump, CapturedPacket, Direction, Verdict};
use std::net::SocketAddr;

pub fn run(data: &[u8]) -> u64 {
    let h = headers(data);
    assert!(h.payload_offset <= data.len(), "payload offset {} past {} bytes", h.payload_offset, data.len());
    let out = decode(data, Direction::Outbound);
    let inb = decode(data, Direction::Inbound);
    assert_eq!((out.local_addr, out.local_port), (inb.remote_addr, inb.remote_port), "in is not out swapped");
    assert_eq!((out.remote_addr, out.remote_port), (inb.local_addr, inb.local_port), "in is not out swapped");
    assert_eq!((out.payload_offset, out.payload_size), (inb.payload_offset, inb.payload_size));
    assert_eq!(out.payload_offset as usize, h.payload_offset);
    let _ = (out.tcp_flags_str(), out.protocol.name());
    match h.ip {
        None => {
            assert_eq!(out.ip_version, 0);
            assert!(h.transport.is_none());
        }
        Some(ip) => {
            assert_eq!(out.ip_version, ip.version());
            assert_eq!(out.ip_version, data[0] >> 4, "the version is the first nibble");
            assert_eq!((out.local_addr, out.remote_addr), (ip.source(), ip.destination()));
            assert_eq!(out.protocol.number(), ip.protocol());
            if let Some(t) = h.tcp() {
                assert!(t.header_len >= 20);
                assert_eq!(out.tcp_flags, Some(t.flags));
                assert_eq!((out.tcp_seq, out.tcp_ack), (Some(t.seq), Some(t.ack)));
            } else {
                assert_eq!(out.tcp_flags, None);
            }
            rebuild(data, &h);
        }
    }

    // As JSON, both ways (the API's packets, the library's rows).
    let p = CapturedPacket::new(7, 1, 2, "fuzz".into(), 3, Direction::Inbound, Verdict::Blocked, 9, data.to_vec());
    let json = serde_json::to_string(&p).expect("a packet serializes");
    let back: CapturedPacket = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(back, p, "a packet changed through JSON");
    assert_eq!(p.payload(), &data[h.payload_offset..]);

    assert_eq!(hex_dump(data).lines().count(), data.len().div_ceil(16));
    outcome(&[u64::from(out.ip_version), u64::from(out.protocol.number()), h.transport.is_some() as u64])
}

/// A TCP or UDP packet built again around its payload decodes to the same fields.
fn rebuild(data: &[u8], h: &pidcap_packet::Headers) {
    let Some(ip) = h.ip else { return };
    let (sport, dport) = h.ports();
    let transport = match (h.tcp(), h.udp()) {
        (Some(t), _) => Transport::Tcp(t.fields()),
        (None, Some(_)) => Transport::Udp,
        _ => return,
    };
    let payload = &data[h.payload_offset..];
    let (src, dst) = (SocketAddr::new(ip.source(), sport), SocketAddr::new(ip.destination(), dport));
    let Ok(again) = build(src, dst, ip.hop_limit(), transport, payload) else {
        // Only a payload too long for one IP packet may be refused.
        assert!(payload.len() > 65_000, "build refuses a {}-byte payload", payload.len());
        return;
    };
    let g = headers(&again);
    let gip = g.ip.expect("a built packet has an IP header");
    assert_eq!((gip.source(), gip.destination(), gip.hop_limit()), (ip.source(), ip.destination(), ip.hop_limit()));
    assert_eq!(gip.protocol(), ip.protocol());
    assert_eq!(g.ports(), (sport, dport));
    assert_eq!(&again[g.payload_offset..], payload, "the payload moved");
    assert_eq!(g.payload_size, payload.len());
    if let (Some(a), Some(b)) = (h.tcp(), g.tcp()) {
        // Written only with ACK (build's contract); the rest as they were.
        let ack = if a.flags & 0x10 != 0 { a.ack } else { 0 };
        assert_eq!((b.seq, b.ack, b.flags, b.window), (a.seq, ack, a.flags, a.window), "TCP fields changed");
    }
}

/// Header bytes: versions, IHLs, protocol numbers, IPv6 extension headers.
pub const DICTIONARY: &[&[u8]] = &[
    b"\x45\x00",
    b"\x46\x00",
    b"\x4f\x00",
    b"\x60\x00\x00\x00",
    b"\x06",
    b"\x11",
    b"\x01",
    b"\x3a",
    b"\x00",
    b"\x2b",
    b"\x2c",
    b"\x3c",
    b"\x33",
    b"\x32",
    b"\x87",
    b"\x8c",
    b"\xff\xff",
    b"\x00\x14",
    b"\x50\x18",
    b"\xf0\x02",
    b"\x7f\x00\x00\x01",
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
];
