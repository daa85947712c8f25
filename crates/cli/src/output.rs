//! What `run` and `capture` print: one line per packet (tcpdump-like), one JSON
//! object per packet, and the closing summary.

use pidcap_engine::CaptureStats;
use pidcap_packet::{CapturedPacket, Protocol, Verdict};
use std::fmt::Write as _;
use std::net::IpAddr;

/// `HH:MM:SS.micros` in UTC, like tcpdump's default timestamp.
pub fn clock_time(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let micros = (unix_ns % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:06}", day / 3600, day % 3600 / 60, day % 60, micros)
}

fn endpoint(addr: IpAddr, port: u16, proto: Protocol) -> String {
    let has_port = matches!(proto, Protocol::Tcp | Protocol::Udp);
    match (addr, has_port) {
        (IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, true) => format!("{a}:{port}"),
        (a, false) => a.to_string(),
    }
}

/// `12:00:01.000002 1234/curl out TCP 127.0.0.1:40000 > 127.0.0.1:80 [S] len 60`
///
/// The arrow always points the way the packet went: `local > remote` for
/// outbound, `local < remote` for inbound.
pub fn packet_line(p: &CapturedPacket) -> String {
    let d = &p.decoded;
    let mut s = String::with_capacity(120);
    let _ = write!(
        s,
        "{} {}/{} {:<3} {} {} {} {}",
        clock_time(p.timestamp_ns),
        p.pid,
        p.comm,
        p.direction.as_str(),
        d.protocol.name(),
        endpoint(d.local_addr, d.local_port, d.protocol),
        if p.direction == pidcap_packet::Direction::Outbound { ">" } else { "<" },
        endpoint(d.remote_addr, d.remote_port, d.protocol)
    );
    if d.tcp_flags.is_some() {
        let _ = write!(s, " [{}]", d.tcp_flags_str());
    }
    let _ = write!(s, " len {}", d.payload_size);
    if p.verdict == Verdict::Blocked {
        s.push_str(" BLOCKED");
        if let Some(r) = p.rule {
            let _ = write!(s, " (rule {r})");
        }
    }
    s
}

pub fn packet_json(p: &CapturedPacket) -> String {
    serde_json::to_string(p).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The closing line: every stage where a packet can be lost, counted.
pub fn summary(stats: &CaptureStats, written: u64) -> String {
    let k = &stats.kernel;
    let mut s = format!(
        "pidcap: {} packets captured ({} written), {} dropped in the kernel ring, {} evicted from the user ring, {} not attributed",
        stats.received, written, k.ring_full + k.load_failed, stats.evicted, k.unattributed
    );
    if k.blocked > 0 || k.connect_blocked > 0 {
        let _ = write!(s, ", {} blocked ({} connect/send refused)", k.blocked, k.connect_blocked);
    }
    if k.forked > 0 {
        let _ = write!(s, ", {} child processes followed", k.forked);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::Direction;

    fn tcp_syn() -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 100)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn line_shows_time_process_direction_flow_flags_and_length() {
        let ts = (3600 * 13 + 60 * 5 + 7) * 1_000_000_000 + 123_456_789;
        let p = CapturedPacket::new(1, ts, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, 40, tcp_syn());
        assert_eq!(packet_line(&p), "13:05:07.123456 42/curl out TCP 127.0.0.1:40000 > 127.0.0.2:80 [S] len 0");
        let mut p =
            CapturedPacket::new(1, ts, 42, "curl".into(), 1, Direction::Inbound, Verdict::Blocked, 40, tcp_syn());
        p.rule = Some(3);
        assert_eq!(
            packet_line(&p),
            "13:05:07.123456 42/curl in  TCP 127.0.0.2:80 < 127.0.0.1:40000 [S] len 0 BLOCKED (rule 3)"
        );
    }

    #[test]
    fn json_is_one_line_with_the_hex_bytes() {
        let p = CapturedPacket::new(9, 0, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, 40, tcp_syn());
        let j = packet_json(&p);
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["pid"], 42);
        assert_eq!(v["remote_port"], 80);
        assert!(v["data"].as_str().unwrap().starts_with("45"));
    }
}
