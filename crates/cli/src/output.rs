//! What `run` and `capture` print: one line per packet (tcpdump-like), one JSON
//! object per packet, and the closing summary. [`Lines`] and [`Discard`] are
//! the CLI's [`PacketOutput`]s, beside pcapfile's capture-file writers.
//! [`error_text`] is how every command prints an error and its causes.

use pidcap_engine::CaptureStats;
use pidcap_packet::{CapturedPacket, Protocol, Verdict};
use pidcap_pcapfile::{PacketOutput, PcapError, RecordRef};
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;

/// The format of [`Lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// [`packet_line`].
    Text,
    /// [`packet_json`].
    Json,
}

/// One line per packet on a stream (stdout): text or JSON.
pub struct Lines<W: Write> {
    out: W,
    format: LineFormat,
}

impl<W: Write> Lines<W> {
    pub fn new(out: W, format: LineFormat) -> Lines<W> {
        Lines { out, format }
    }
}

impl<W: Write> PacketOutput for Lines<W> {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        self.write_packet(&r.to_packet())
    }

    fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        let line = match self.format {
            LineFormat::Text => packet_line(p),
            LineFormat::Json => packet_json(p),
        };
        Ok(writeln!(self.out, "{line}")?)
    }

    /// Lines show decoded headers.
    fn wants_decoded(&self) -> bool {
        true
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.out.flush()?)
    }

    fn finish(mut self: Box<Self>) -> Result<(), PcapError> {
        self.flush()
    }
}

/// `-q`: packets are counted by the capture loop, nothing is written.
pub struct Discard;

impl PacketOutput for Discard {
    fn write_record(&mut self, _: &RecordRef<'_>) -> Result<(), PcapError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        Ok(())
    }
}

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

/// An error and its causes on one line, `what failed: why: why`, each text
/// once. Many errors both show their source in their message and return it
/// as `source()` (thiserror's `{source}` with a `source` field, `#[from]`
/// with `{0}`); printing the chain naively would repeat it (`(os error 2):
/// ... (os error 2)`). A cause whose text the line already holds is left out:
/// nothing is lost, nothing is said twice.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

    #[test]
    fn lines_write_the_same_line_from_a_record_or_a_decoded_packet() {
        let mut p =
            CapturedPacket::new(9, 5, 42, "curl".into(), 1, Direction::Outbound, Verdict::Blocked, 40, tcp_syn());
        p.rule = Some(1);
        for format in [LineFormat::Text, LineFormat::Json] {
            let mut out = Lines::new(Vec::new(), format);
            assert!(out.wants_decoded());
            out.write_packet(&p).unwrap();
            out.write_record(&RecordRef::from(&p)).unwrap();
            out.flush().unwrap();
            let text = String::from_utf8(out.out).unwrap();
            let want = match format {
                LineFormat::Text => packet_line(&p),
                LineFormat::Json => packet_json(&p),
            };
            assert_eq!(text, format!("{want}\n{want}\n"), "{format:?}");
        }
        assert!(packet_line(&p).ends_with("BLOCKED (rule 1)"));
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        /// As thiserror makes `#[error("cannot open {path}: {source}")]` with a `source` field.
        #[derive(Debug)]
        struct Open {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for Open {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot open {}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for Open {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let os = io.to_string();
        let e = anyhow::Error::new(Open { path: "/no/such.dpp".into(), source: io }).context("importing /no/such.dpp");
        assert_eq!(format!("{e:#}").matches(&os).count(), 2, "anyhow's own chain repeats the cause: {e:#}");
        let text = error_text(&e);
        assert_eq!(text, format!("importing /no/such.dpp: cannot open /no/such.dpp: {os}"));
        assert_eq!(text.matches("(os error 2)").count(), 1, "{text}");
        // Causes that say something new are all kept, in order.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&e), "outer: middle: inner");
    }

    #[test]
    fn a_write_error_is_an_io_error_of_the_output() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let p = CapturedPacket::new(1, 0, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, 40, tcp_syn());
        let mut out: Box<dyn PacketOutput> = Box::new(Lines::new(Closed, LineFormat::Text));
        match out.write_packet(&p) {
            Err(PcapError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
            other => panic!("{other:?}"),
        }
        let mut quiet: Box<dyn PacketOutput> = Box::new(Discard);
        assert!(!quiet.wants_decoded());
        quiet.write_record(&RecordRef::from(&p)).unwrap();
        quiet.finish().unwrap();
    }
}
