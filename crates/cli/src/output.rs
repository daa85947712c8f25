//! What `run` and `capture` print: one line per packet (tcpdump-like) or TLS
//! plaintext record (its connection and its decrypted text), one JSON object
//! per packet (a record's has a `tls` object), the TLS coverage of each
//! target, and the closing summary. [`Lines`] and [`Discard`] are
//! the CLI's [`PacketOutput`]s, beside pcapfile's capture-file writers.
//! [`error_text`] is how every command prints an error and its causes.

use pidcap_engine::backend::TlsLibraryFile;
use pidcap_engine::CaptureStats;
use pidcap_packet::{CapturedPacket, Protocol, TlsInfo, Verdict};
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
    if let Some(tls) = p.tls {
        return tls_line(p, tls);
    }
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

/// Plaintext bytes shown on a record's line; the rest is counted.
pub const TLS_TEXT_MAX: usize = 256;

/// A TLS plaintext record:
/// `12:00:01.000002 1234/curl out TLS 127.0.0.1:40000 > 127.0.0.1:8443 decrypted openssl tid 1235 len 78: GET / HTTP/1.1\r\n...`
///
/// The text is the plaintext with `pidcap_packet::ascii::escape`'s escapes
/// for what is not printable (`\r`, `\n`, `\xHH`...), its first
/// [`TLS_TEXT_MAX`] bytes, then `... (N more bytes)`.
pub fn tls_line(p: &CapturedPacket, tls: TlsInfo) -> String {
    let d = &p.decoded;
    let text = p.payload();
    let shown = &text[..text.len().min(TLS_TEXT_MAX)];
    let more = d.payload_size as usize - shown.len().min(d.payload_size as usize);
    let mut s = String::with_capacity(120 + shown.len() * 2);
    let _ = write!(
        s,
        "{} {}/{} {:<3} TLS {} {} {} decrypted {} tid {} len {}: {}",
        clock_time(p.timestamp_ns),
        p.pid,
        p.comm,
        p.direction.as_str(),
        endpoint(d.local_addr, d.local_port, Protocol::Tcp),
        if p.direction == pidcap_packet::Direction::Outbound { ">" } else { "<" },
        endpoint(d.remote_addr, d.remote_port, Protocol::Tcp),
        tls.library,
        tls.tid,
        d.payload_size,
        pidcap_packet::ascii::escape(shown)
    );
    if more > 0 {
        let _ = write!(s, "... ({more} more bytes)");
    }
    s
}

/// Where a target's TLS plaintext comes from, or why it has none.
pub fn tls_coverage_line(pid: u32, comm: &str, libraries: &[TlsLibraryFile]) -> String {
    if libraries.is_empty() {
        return format!(
            "pidcap: TLS: pid {pid} ({comm}) maps no supported TLS library (looked for libssl.so.3, libssl.so.1.1, \
             libgnutls.so.30, libnspr4.so): its TLS traffic is captured encrypted only; statically linked TLS (Go \
             programs, OpenSSL built in) is not covered"
        );
    }
    let libs: Vec<String> = libraries.iter().map(|l| format!("{} ({})", l.library, l.path.display())).collect();
    format!("pidcap: TLS: pid {pid} ({comm}): plaintext from {}", libs.join(", "))
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
    if k.tls_records > 0 || k.tls_dropped > 0 {
        let _ = write!(s, ", {} TLS plaintext records ({} dropped)", k.tls_records, k.tls_dropped);
    }
    s
}

/// What a capture did with TLS keys and records beyond the packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFileSummary {
    /// The key logs read, each with whether it was pidcap's own.
    pub keylogs: Vec<(std::path::PathBuf, bool)>,
    pub keys_written: u64,
    pub bad_key_lines: u64,
    /// The -w file, and the records it could not hold (classic pcap).
    pub file: Option<String>,
    pub records_left_out: u64,
}

/// The lines after the summary about TLS keys (when some were written or
/// ignored) and left-out records (none when there is nothing to say).
pub fn tls_summary(t: &TlsFileSummary) -> Vec<String> {
    let mut lines = Vec::new();
    let file = t.file.as_deref().unwrap_or("the file");
    if !t.keylogs.is_empty() && (t.keys_written > 0 || t.bad_key_lines > 0) {
        let from: Vec<String> = t
            .keylogs
            .iter()
            .map(
                |(path, private)| {
                    if *private {
                        "pidcap's own key log".to_string()
                    } else {
                        path.display().to_string()
                    }
                },
            )
            .collect();
        let from = from.join(", ");
        let mut l = format!("pidcap: TLS keys: {} key log lines from {from} written into {file}", t.keys_written);
        if t.bad_key_lines > 0 {
            let _ = write!(l, ", {} lines ignored (not valid NSS key log lines)", t.bad_key_lines);
        }
        lines.push(l);
    }
    if t.records_left_out > 0 {
        lines.push(format!(
            "pidcap: {} TLS plaintext records left out of {file}: classic pcap cannot hold them (pcapng keeps them)",
            t.records_left_out
        ));
    }
    lines
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

    fn record(text: &[u8], true_len: u64) -> CapturedPacket {
        CapturedPacket::tls_record(pidcap_packet::TlsRecord {
            id: 4,
            timestamp_ns: (3600 * 13 + 60 * 5 + 7) * 1_000_000_000 + 123_456_789,
            pid: 4242,
            comm: "curl".into(),
            socket_cookie: 9,
            direction: Direction::Inbound,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8443".parse().unwrap(),
            info: TlsInfo { tid: 4243, library: pidcap_packet::TlsLibrary::Gnutls },
            plaintext: text,
            true_len,
            stream_offset: 0,
        })
    }

    #[test]
    fn a_tls_record_is_one_line_with_its_connection_and_its_escaped_text() {
        let p = record(b"HTTP/1.1 200 OK\r\n\x00\xff", 19);
        assert_eq!(
            packet_line(&p),
            "13:05:07.123456 4242/curl in  TLS 127.0.0.1:40000 < 127.0.0.1:8443 decrypted gnutls tid 4243 len 19: \
             HTTP/1.1 200 OK\\r\\n\\0\\xff"
        );
        let long = vec![b'a'; 1000];
        let line = packet_line(&record(&long, 5000));
        assert!(line.ends_with(&format!("{}... (4744 more bytes)", "a".repeat(TLS_TEXT_MAX))), "{line}");
        let j: serde_json::Value = serde_json::from_str(&packet_json(&p)).unwrap();
        assert_eq!((j["tls"]["library"].as_str(), j["tls"]["tid"].as_u64()), (Some("gnutls"), Some(4243)));
        let packet = CapturedPacket::new(9, 0, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, 40, tcp_syn());
        let j: serde_json::Value = serde_json::from_str(&packet_json(&packet)).unwrap();
        assert!(j.get("tls").is_none(), "a packet has no tls field");
        // Lines from a record's borrowed fields say the same.
        let mut out = Lines::new(Vec::new(), LineFormat::Text);
        out.write_record(&RecordRef::from(&p)).unwrap();
        assert_eq!(String::from_utf8(out.out).unwrap(), format!("{}\n", packet_line(&p)));
    }

    #[test]
    fn coverage_and_tls_summary_lines() {
        let none = tls_coverage_line(7, "python3", &[]);
        assert!(none.contains("pid 7 (python3) maps no supported TLS library"), "{none}");
        for name in ["libssl.so.3", "libssl.so.1.1", "libgnutls.so.30", "libnspr4.so", "statically linked", "Go"] {
            assert!(none.contains(name), "{none}");
        }
        let lib = TlsLibraryFile {
            library: pidcap_packet::TlsLibrary::Openssl,
            path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into(),
        };
        assert_eq!(
            tls_coverage_line(7, "curl", &[lib]),
            "pidcap: TLS: pid 7 (curl): plaintext from openssl (/usr/lib/x86_64-linux-gnu/libssl.so.3)"
        );
        assert!(tls_summary(&TlsFileSummary::default()).is_empty());
        let t = TlsFileSummary {
            keylogs: vec![("/tmp/x".into(), true)],
            keys_written: 5,
            bad_key_lines: 2,
            file: Some("f.pcap".into()),
            records_left_out: 3,
        };
        assert_eq!(
            tls_summary(&t),
            [
                "pidcap: TLS keys: 5 key log lines from pidcap's own key log written into f.pcap, 2 lines ignored (not valid NSS key log lines)",
                "pidcap: 3 TLS plaintext records left out of f.pcap: classic pcap cannot hold them (pcapng keeps them)",
            ]
        );
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
