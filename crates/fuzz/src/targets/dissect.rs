//! The packet detail tree (`pidcap_packet::dissect`) and the Info line
//! (`pidcap_packet::info`) on any bytes: as an IP packet (both directions),
//! as the payload of TCP and UDP packets on the ports whose application
//! protocols pidcap reads (53 DNS, 80 HTTP, 443 TLS and QUIC), and as a TLS
//! plaintext record.
//!
//! Checked: nothing panics; every field's range is inside the packet's
//! bytes (start <= end); every field has a name and no label holds a
//! newline; the transport's port fields hold the ports' bytes; the Info
//! line is one line; a display filter on the application fields runs.

use super::outcome;
use pidcap_packet::build::{build, TcpFields, Transport};
use pidcap_packet::dfilter::DisplayFilter;
use pidcap_packet::dissect::{dissect, find, Field};
use pidcap_packet::{info, CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord, Verdict};
use std::net::SocketAddr;
use std::sync::OnceLock;

pub fn run(data: &[u8]) -> u64 {
    let mut parts = Vec::new();
    for direction in [Direction::Outbound, Direction::Inbound] {
        let p = CapturedPacket::new(1, 0, 1, "f".into(), 1, direction, Verdict::Pass, data.len() as u32, data.to_vec());
        parts.push(check(&p));
    }
    // UDP to 53 or 443 (DNS, QUIC), TCP to 53, 80, 443 or 8443 (DNS, HTTP, TLS), picked by the input's hash.
    let h = super::hash(data);
    let udp_port = if h & 1 == 0 { 443 } else { 53 };
    let tcp_port = [53, 80, 443, 8443][(h >> 1) as usize % 4];
    for (transport, port) in
        [(Transport::Udp, udp_port), (Transport::Tcp(TcpFields { flags: 0x18, ..TcpFields::default() }), tcp_port)]
    {
        let (src, dst) = (SocketAddr::from(([10, 0, 0, 1], 40000)), SocketAddr::from(([10, 0, 0, 2], port)));
        if let Ok(bytes) = build(src, dst, 64, transport, data) {
            let p = CapturedPacket::new(
                1,
                0,
                1,
                "f".into(),
                1,
                Direction::Outbound,
                Verdict::Pass,
                bytes.len() as u32,
                bytes,
            );
            parts.push(check(&p));
            let tree = dissect(&p);
            let name = if matches!(transport, Transport::Udp) { "udp.dstport" } else { "tcp.dstport" };
            let f = find(&tree, name).expect("a built packet has its transport");
            assert_eq!(p.data[f.range.clone()], port.to_be_bytes(), "{name}'s bytes");
            assert!(!info::info(&p.data).contains('\n'));
            for f in filters() {
                parts.push(u64::from(f.matches(&p)));
            }
        }
    }
    let record = CapturedPacket::tls_record(TlsRecord {
        id: 1,
        timestamp_ns: 0,
        pid: 1,
        comm: "f".into(),
        socket_cookie: 1,
        direction: Direction::Inbound,
        local: "127.0.0.1:40000".parse().unwrap(),
        remote: "127.0.0.1:443".parse().unwrap(),
        info: TlsInfo { tid: 1, library: TlsLibrary::Openssl },
        plaintext: data,
        true_len: data.len() as u64,
        stream_offset: 0,
    });
    parts.push(check(&record));
    outcome(&parts)
}

fn filters() -> &'static [DisplayFilter] {
    static F: OnceLock<Vec<DisplayFilter>> = OnceLock::new();
    F.get_or_init(|| {
        [
            "dns.qry.name contains \"a\" || dns.a == 10.0.0.0/8",
            "http.host contains \"x\" || http.response.code > 200",
            "tls.handshake.extensions_server_name contains \"e\" || tls.handshake.type == 2",
            "quic.long.packet_type == 0 || quic.dcid contains 00",
        ]
        .iter()
        .map(|f| DisplayFilter::parse(f).expect("the target's filters parse"))
        .collect()
    })
}

/// The tree's checks; its shape as a signature.
fn check(p: &CapturedPacket) -> u64 {
    let tree = dissect(p);
    let mut n = 0;
    for top in &tree {
        for f in top.walk() {
            assert!(
                f.range.start <= f.range.end && f.range.end <= p.data.len(),
                "{} {:?} outside {} bytes",
                f.name,
                f.range,
                p.data.len()
            );
            assert!(!f.name.is_empty() && !f.label.contains('\n'), "{f:?}");
            n += 1;
        }
    }
    let names: Vec<&str> = tree.iter().map(|f: &Field| f.name).collect();
    outcome(&[super::hash(names.join(",").as_bytes()), super::shape(n)])
}

pub const DICTIONARY: &[&[u8]] = &[
    b"\x45\x00",
    b"\x60\x00\x00\x00",
    b"\x16\x03\x01",
    b"\x16\x03\x03",
    b"\x17\x03\x03",
    b"\x01\x00\x00",
    b"\x02\x00\x00",
    b"\x00\x00",
    b"\x00\x10",
    b"\x00\x2b",
    b"\xc0\x00\x00\x00\x01",
    b"\x40",
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"Host: ",
    b"\r\n\r\n",
    b"\x00\x01\x00\x01",
    b"\xc0\x0c",
    b"\x02\x04\x05\xb4",
    b"\x01\x03\x03\x07",
    b"\x08\x0a",
];
