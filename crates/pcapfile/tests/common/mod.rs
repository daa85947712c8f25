//! Shared test fixtures: the deterministic golden packets and the paths of
//! the golden files in `tests/data/`.
#![allow(dead_code)]

use etherparse::PacketBuilder;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::path::PathBuf;

pub const GOLDEN_OS: &str = "Linux 6.1.0-golden";

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn golden_path(name: &str) -> PathBuf {
    data_dir().join(name)
}

macro_rules! build {
    ($builder:expr, $payload:expr $(,)?) => {{
        let mut out = Vec::new();
        $builder.write(&mut out, $payload).expect("building a test packet");
        out
    }};
}

#[allow(clippy::too_many_arguments)]
fn packet(
    id: u64,
    pid: u32,
    comm: &str,
    cookie: u64,
    dir: Direction,
    verdict: Verdict,
    rule: Option<u16>,
    data: Vec<u8>,
    orig_len: u32,
) -> CapturedPacket {
    let ts = 1_700_000_000_123_456_789 + (id - 1) * 1_000_001;
    let mut p = CapturedPacket::new(id, ts, pid, comm.into(), cookie, dir, verdict, orig_len, data);
    p.rule = rule;
    p
}

/// The golden packets, ids 1..=6 (= frame numbers when read back).
///
/// 1 IPv4 TCP out (curl, pid 4242), 2 IPv4 UDP in (curl), 3 IPv6 UDP out
/// (resolved, pid 77), 4 IPv4 TCP cut to 60 of 1040 bytes (curl),
/// 5 blocked by rule 3 (wget, pid 555), 6 a comm with a space
/// ("Web Content", pid 9001, rule 0).
pub fn golden_packets() -> Vec<CapturedPacket> {
    use Direction::*;
    use Verdict::*;
    let tcp_out = build!(
        PacketBuilder::ipv4([10, 0, 0, 1], [93, 184, 216, 34], 64).tcp(40000, 80, 1000, 64240).syn(),
        b"GET / HTTP/1.1\r\n",
    );
    let udp_in = build!(PacketBuilder::ipv4([9, 9, 9, 9], [10, 0, 0, 1], 57).udp(7777, 51000), b"pong");
    let lo6 = std::net::Ipv6Addr::LOCALHOST.octets();
    let udp6 = build!(
        PacketBuilder::ipv6(lo6, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 64).udp(5000, 6000),
        b"v6"
    );
    let big = build!(
        PacketBuilder::ipv4([10, 0, 0, 1], [93, 184, 216, 34], 64).tcp(40000, 80, 1016, 64240).ack(1).psh(),
        &[0x41; 1000],
    );
    let big_len = big.len() as u32;
    let cut = big[..60].to_vec();
    let blocked = build!(PacketBuilder::ipv4([10, 0, 0, 1], [203, 0, 113, 7], 64).tcp(41000, 443, 1, 64240).syn(), b"");
    let web = build!(PacketBuilder::ipv4([10, 0, 0, 1], [198, 51, 100, 2], 64).udp(60000, 443), b"quic");
    vec![
        packet(1, 4242, "curl", 8812, Outbound, Pass, None, tcp_out.clone(), tcp_out.len() as u32),
        packet(2, 4242, "curl", 8812, Inbound, Pass, None, udp_in.clone(), udp_in.len() as u32),
        packet(3, 77, "resolved", 31337, Outbound, Pass, None, udp6.clone(), udp6.len() as u32),
        packet(4, 4242, "curl", 8812, Outbound, Pass, None, cut, big_len),
        packet(5, 555, "wget", 9000, Outbound, Blocked, Some(3), blocked.clone(), blocked.len() as u32),
        packet(6, 9001, "Web Content", 1, Outbound, Pass, Some(0), web.clone(), web.len() as u32),
    ]
}
