//! What `run` and `capture` print: one line per packet (tcpdump-like) or TLS
//! plaintext record (its connection and its decrypted text), one JSON object
//! per packet (a record's has a `tls` object), the TLS coverage of each
//! target, and the closing summary. [`Lines`] and [`Discard`] are
//! the CLI's [`PacketOutput`]s, beside pcapfile's capture-file writers.
//! [`TextOptions`] are tcpdump's output letters for the text lines (`-t`...
//! `-tttt`, `-A`, `-x`, `-X`, `-l`, `-v`); the default is the plain line.
//! Times of day and dates are local ([`Zone`]), as tcpdump's.
//! [`error_text`] is how every command prints an error and its causes.

use pidcap_engine::backend::TlsLibraryFile;
use pidcap_engine::cgroup::AttachPoint;
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

/// The timestamp a text line starts with (tcpdump's `-t` letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// `HH:MM:SS.micros` (local time): [`clock_time`].
    #[default]
    Clock,
    /// `-t`: no timestamp.
    None,
    /// `-tt`: `seconds.micros` since the epoch.
    Epoch,
    /// `-ttt`: `HH:MM:SS.micros` since the previous packet (0 for the first).
    Delta,
    /// `-tttt`: `YYYY-MM-DD HH:MM:SS.micros` (local time).
    Date,
    /// `-ttttt`: `HH:MM:SS.micros` since the first packet.
    SinceFirst,
}

impl TimeFormat {
    /// tcpdump's `-t` count (0 = none given).
    pub fn from_count(n: u8) -> TimeFormat {
        match n {
            0 => TimeFormat::Clock,
            1 => TimeFormat::None,
            2 => TimeFormat::Epoch,
            3 => TimeFormat::Delta,
            4 => TimeFormat::Date,
            _ => TimeFormat::SinceFirst,
        }
    }
}

/// What follows a text line (tcpdump's `-A`, `-x`, `-X`; `-X` wins over
/// `-x`, which wins over `-A`, as in tcpdump).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dump {
    #[default]
    None,
    /// `-A`: the payload as ASCII ([`ascii_dump`]).
    Ascii,
    /// `-x`: the packet in hex from its IP header ([`tcpdump_hex`]).
    Hex,
    /// `-X`/`-XX`: hex and ASCII side by side ([`tcpdump_hex`]).
    HexAscii,
}

/// tcpdump's output letters for the text lines. JSON lines are not
/// changed by them (they carry `timestamp_ns` and the bytes already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextOptions {
    pub time: TimeFormat,
    pub dump: Dump,
    /// `-l`: flush stdout after every packet.
    pub flush_each: bool,
    // -- cli habits --
    /// The time zone of times of day and dates.
    pub zone: Zone,
    /// `-v` count: tcpdump's verbose fields after the line ([`pidcap_packet::info::verbose`]).
    pub verbose: u8,
}

/// The time zone of the text timestamps: local (the C library's, so TZ
/// is respected: TZ=UTC for UTC), as tcpdump's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Local,
    /// A fixed offset east of UTC, in seconds (tests).
    #[cfg(test)]
    Fixed(i64),
}

impl Zone {
    /// Seconds east of UTC at the instant `secs` (since the epoch).
    fn offset(self, secs: u64) -> i64 {
        match self {
            #[cfg(test)]
            Zone::Fixed(o) => o,
            Zone::Local => pidcap_packet::clock::utc_offset(secs),
        }
    }

    /// `unix_ns` shifted to this zone's wall clock (still counted from the epoch).
    fn wall_ns(self, unix_ns: u64) -> u64 {
        pidcap_packet::clock::shifted_ns(unix_ns, self.offset(unix_ns / 1_000_000_000))
    }
}

impl TextOptions {
    pub fn from_cli(o: &crate::cli::OutputOpts) -> TextOptions {
        let dump = if o.hex_ascii > 0 {
            Dump::HexAscii
        } else if o.hex > 0 {
            Dump::Hex
        } else if o.ascii {
            Dump::Ascii
        } else {
            Dump::None
        };
        TextOptions {
            time: TimeFormat::from_count(o.time),
            dump,
            flush_each: o.line_buffered || o.packet_buffered,
            zone: Zone::Local,
            verbose: o.verbose,
        }
    }
}

/// One line per packet on a stream (stdout): text or JSON.
pub struct Lines<W: Write> {
    out: W,
    format: LineFormat,
    text: TextOptions,
    /// The previous and the first packet's timestamps (`-ttt`, `-ttttt`).
    previous: Option<u64>,
    first: Option<u64>,
}

impl<W: Write> Lines<W> {
    #[cfg(test)]
    pub fn new(out: W, format: LineFormat) -> Lines<W> {
        Lines::with_options(out, format, TextOptions::default())
    }

    pub fn with_options(out: W, format: LineFormat, text: TextOptions) -> Lines<W> {
        Lines { out, format, text, previous: None, first: None }
    }
}

impl<W: Write> PacketOutput for Lines<W> {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        self.write_packet(&r.to_packet())
    }

    fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        let mut line = match self.format {
            LineFormat::Text => {
                let ts = p.timestamp_ns;
                let since = match self.text.time {
                    TimeFormat::Delta => self.previous,
                    _ => self.first,
                };
                self.first.get_or_insert(ts);
                self.previous = Some(ts);
                packet_text(p, &self.text, since.unwrap_or(ts))
            }
            LineFormat::Json => packet_json(p),
        };
        // One write of the whole line, newline included: a buffered `out`
        // then flushes only between lines, so on a stdout shared with the
        // command (`run`) no line of ours is cut by one of its.
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        if self.text.flush_each {
            self.out.flush()?;
        }
        Ok(())
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

/// `HH:MM:SS.micros` in local time, like tcpdump's default timestamp.
pub fn clock_time(unix_ns: u64) -> String {
    clock_time_in(unix_ns, Zone::Local)
}

/// `HH:MM:SS.micros` in `zone`.
pub fn clock_time_in(unix_ns: u64, zone: Zone) -> String {
    pidcap_packet::clock::clock(zone.wall_ns(unix_ns))
}

/// `YYYY-MM-DD HH:MM:SS.micros` in `zone` (`-tttt`).
pub fn date_time(unix_ns: u64, zone: Zone) -> String {
    pidcap_packet::clock::date_time(zone.wall_ns(unix_ns))
}

/// A duration as `HH:MM:SS.micros` (hours may pass 24): `-ttt`, `-ttttt`.
pub fn duration_time(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1_000;
    format!("{:02}:{:02}:{:02}.{:06}", secs / 3600, secs % 3600 / 60, secs % 60, micros)
}

/// The timestamp of a line as `time` says, times of day and dates in
/// `zone` (`since`: the packet that `-ttt`/`-ttttt` count from), or None for `-t`.
pub fn timestamp(time: TimeFormat, zone: Zone, ts: u64, since: u64) -> Option<String> {
    Some(match time {
        TimeFormat::Clock => clock_time_in(ts, zone),
        TimeFormat::None => return None,
        TimeFormat::Epoch => format!("{}.{:06}", ts / 1_000_000_000, ts % 1_000_000_000 / 1_000),
        TimeFormat::Delta | TimeFormat::SinceFirst => duration_time(ts.saturating_sub(since)),
        TimeFormat::Date => date_time(ts, zone),
    })
}

/// A packet's text as `opts` say: its line with the timestamp they ask
/// for (`since`: see [`timestamp`]), then its dump lines, if any (no final
/// newline). With the default options, exactly [`packet_line`].
pub fn packet_text(p: &CapturedPacket, opts: &TextOptions, since: u64) -> String {
    let line = packet_line(p);
    // packet_line starts with clock_time's fixed-width stamp (HH:MM:SS.micros) and a space.
    let rest = line.get(STAMP_LEN + 1..).unwrap_or_default();
    let mut s = match timestamp(opts.time, opts.zone, p.timestamp_ns, since) {
        Some(t) => format!("{t} {rest}"),
        None => rest.to_string(),
    };
    // -v: tcpdump's fields. A TLS record's headers are pidcap's own, and its text is on the line already.
    if opts.verbose > 0 && !p.is_tls() {
        let fields = pidcap_packet::info::verbose(&p.data, opts.verbose);
        if !fields.is_empty() {
            s.push(' ');
            s.push_str(&fields);
        }
    }
    // A TLS record's headers are made up by pidcap: its dumps show the plaintext only.
    let bytes = if p.is_tls() { p.payload() } else { &p.data[..] };
    let dump = match opts.dump {
        Dump::None => String::new(),
        Dump::Ascii => ascii_dump(p.payload()),
        Dump::Hex => tcpdump_hex(bytes, false),
        Dump::HexAscii => tcpdump_hex(bytes, true),
    };
    if !dump.is_empty() {
        s.push('\n');
        s.push_str(dump.strip_suffix('\n').unwrap_or(&dump));
    }
    s
}

/// The width of [`clock_time`]'s `HH:MM:SS.micros`.
const STAMP_LEN: usize = 15;

/// tcpdump's `-A`: printable ASCII, tab and newline as themselves, a CR
/// before a newline (or ending the bytes) left out, any other byte `.`.
/// Of the payload only (tcpdump's starts at the IP header, whose bytes
/// print as noise; the line above has them decoded). A final newline is
/// not doubled ([`packet_text`] leaves it out).
pub fn ascii_dump(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if matches!(bytes.get(i + 1), None | Some(b'\n')) => {}
            b'\t' | b'\n' => s.push(char::from(b)),
            b if pidcap_packet::ascii::printable(b) => s.push(char::from(b)),
            _ => s.push('.'),
        }
    }
    s
}

/// tcpdump's `-x` (`ascii` false) and `-X` (true) layout: lines of 16
/// bytes, `\t0xOFFS:  `, the bytes in groups of two (`4500 0054`), and with
/// `-X` the hex padded to 40 columns, two spaces, and each byte that is
/// graphic ASCII as itself, else `.` (a space too: tcpdump's column, unlike
/// `pidcap_packet::ascii::dots`). Not `pidcap_packet::hex::hex_dump`, whose
/// layout is `hexdump -C`'s (8-digit offsets, single bytes, `|...|`):
/// people compare this one with tcpdump's output, and tools read it
/// (text2pcap). Each line ends with a newline.
pub fn tcpdump_hex(bytes: &[u8], ascii: bool) -> String {
    let mut s = String::with_capacity(bytes.len() * 4);
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::with_capacity(40);
        for pair in chunk.chunks(2) {
            hex.push(' ');
            for b in pair {
                let _ = write!(hex, "{b:02x}");
            }
        }
        let _ = write!(s, "\t0x{:04x}: ", n * 16);
        if ascii {
            let text: String = chunk.iter().map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '.' }).collect();
            let _ = write!(s, "{hex:<40}  {text}");
        } else {
            s.push_str(&hex);
        }
        s.push('\n');
    }
    s
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
        "{} {} {:<3} {} {} {} {}",
        clock_time(p.timestamp_ns),
        process_label(p),
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

// -- the whole process (issue 12) --
/// `1234/dig` (the process: its leader's name), and the thread's name when
/// it is another: `1234/dig[isc-net-0000]`. The whole process is in `--json`
/// (`tid`, `thread`, `process`) and in the pcapng comment.
pub fn process_label(p: &CapturedPacket) -> String {
    if p.thread.is_empty() || p.thread == p.comm {
        format!("{}/{}", p.pid, p.comm)
    } else {
        format!("{}/{}[{}]", p.pid, p.comm, p.thread)
    }
}

#[cfg(test)]
mod process_label_tests {
    use super::*;

    #[test]
    fn the_thread_shows_only_when_it_is_another_name() {
        let mut p = CapturedPacket::new(
            1,
            0,
            42,
            "dig".into(),
            7,
            pidcap_packet::Direction::Outbound,
            Verdict::Pass,
            3,
            vec![0x45, 0, 3],
        );
        assert_eq!(process_label(&p), "42/dig");
        p.thread = "dig".into();
        assert_eq!(process_label(&p), "42/dig");
        p.thread = "isc-net-0000".into();
        assert_eq!(process_label(&p), "42/dig[isc-net-0000]");
        assert!(packet_line(&p).contains(" 42/dig[isc-net-0000] out "), "{}", packet_line(&p));
    }
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
        "{} {} {:<3} TLS {} {} {} decrypted {} tid {} len {}: {}",
        clock_time(p.timestamp_ns),
        process_label(p),
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

/// The closing lines. First the targets' counters, every stage where one
/// of their packets can be lost: captured (and written), dropped in the
/// kernel ring (full, or bytes unreadable), evicted from memory (only said
/// when some were: the CLI writes each packet before the ring could evict
/// it), blocked, sockets whose owner could not be recorded (the kernel's
/// owner table was full: their packets, a target's among them maybe, had
/// no owner); then children followed and TLS records. With `-v`
/// (`verbose` > 0) a second line with the system-wide counts, which are
/// not the targets': packets the kernel layer saw of other processes, and
/// of sockets with no known owner (the kernel counts no finer reason).
/// `attached`: where the kernel layer's programs are, which is what the
/// counters of other processes' packets (-v) cover.
pub fn summary(stats: &CaptureStats, written: u64, verbose: u8, attached: &AttachPoint) -> Vec<String> {
    let k = &stats.kernel;
    let mut s = format!(
        "pidcap: {} packets captured ({} written), {} dropped in the kernel ring",
        stats.received,
        written,
        k.ring_full + k.load_failed
    );
    if stats.evicted > 0 {
        let _ = write!(s, ", {} evicted from memory (after they were written: none lost)", stats.evicted);
    }
    if k.blocked > 0 || k.connect_blocked > 0 {
        let _ = write!(s, ", {} blocked ({} connect/send refused)", k.blocked, k.connect_blocked);
    }
    if k.owner_full > 0 {
        let _ = write!(
            s,
            ", {} sockets whose owner could not be recorded (owner table full: their packets had no owner, \
             a target's may be among them)",
            k.owner_full
        );
    }
    if k.forked > 0 {
        let _ = write!(s, ", {} child processes followed", k.forked);
    }
    if k.tls_records > 0 || k.tls_dropped > 0 {
        let _ = write!(s, ", {} TLS plaintext records ({} dropped)", k.tls_records, k.tls_dropped);
    }
    let mut lines = vec![s];
    if verbose > 0 {
        let others = k.seen.saturating_sub(k.target).saturating_sub(k.unattributed);
        let scope = match attached {
            AttachPoint::Root => "system-wide".to_string(),
            at => format!("in {at} (where the programs are attached)"),
        };
        lines.push(format!(
            "pidcap: {scope}, not the targets': {} packets seen by the kernel layer: {others} of other \
             processes, {} of sockets with no known owner (sockets older than pidcap and idle since, or \
             packets the kernel sends itself, such as resets)",
            k.seen, k.unattributed
        ));
    }
    lines
}

/// What is known, at the end of a capture, about why it has no packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZeroHints {
    /// A target process was seen alive at a liveness check.
    pub targets_seen: bool,
    /// `run`: the command's pid and name, and its exit status once known.
    pub command: Option<(u32, String, Option<u8>)>,
    /// `run --no-follow`.
    pub no_follow: bool,
    /// `run --no-follow`: the command was seen with child processes.
    pub started_children: bool,
    /// Targets seen in another network namespace than pidcap's: pid, name.
    pub other_netns: Vec<(u32, String)>,
    /// A target was seen with a Unix socket open; with an IP socket open.
    pub unix_sockets: bool,
    pub ip_sockets: bool,
    /// TLS records the classic pcap file left out.
    pub records_left_out: u64,
}

/// Why a capture that wrote no packet may have none, from what the
/// counters and the targets seen say (nothing when something was written).
pub fn zero_reasons(stats: &CaptureStats, written: u64, h: &ZeroHints) -> Vec<String> {
    let k = &stats.kernel;
    if written > 0 {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut say = |l: String| lines.push(format!("pidcap: no packets: {l}"));
    if stats.received > 0 && h.records_left_out >= stats.received {
        say(format!(
            "{} were captured, all TLS plaintext records, which a classic pcap file cannot hold (pcapng keeps them)",
            stats.received
        ));
    } else if stats.received > 0 {
        say(format!("{} were captured and none was kept for the output (left out by a filter)", stats.received));
    } else if k.target > 0 {
        say(format!(
            "{} packets of the targets reached the kernel hooks and none was captured ({} dropped in the kernel ring)",
            k.target,
            k.ring_full + k.load_failed
        ));
    } else {
        let mut l = String::from("no packet of the targets crossed the kernel's hooks");
        if let Some((pid, comm, status)) = &h.command {
            let _ = write!(l, "; the command (pid {pid}, {comm}) ");
            match status {
                Some(code) => {
                    let _ = write!(l, "exited with status {code}");
                }
                None => l.push_str("was still running"),
            }
        }
        match (h.ip_sockets, h.unix_sockets) {
            _ if !h.targets_seen && h.command.is_none() => l.push_str("; no target process was seen running"),
            _ if !h.targets_seen => {
                l.push_str("; it ended before pidcap could look at it (it may not have used the network)")
            }
            (false, true) => {
                l.push_str("; it was seen with Unix sockets only (not IP: pidcap captures TCP and UDP over IP)")
            }
            (false, false) => l.push_str(
                "; no socket was seen open in it (it may have used none, or exited before using the network)",
            ),
            (true, _) => l.push_str("; it had IP sockets open but sent and received nothing on them"),
        }
        say(l);
    }
    if h.no_follow && h.started_children {
        say("the command started child processes, and --no-follow leaves them out (drop --no-follow to capture them)"
            .into());
    }
    for (pid, comm) in &h.other_netns {
        say(format!(
            "pid {pid} ({comm}) ran in another network namespace than pidcap; that does not hide its packets \
             (the hooks see every namespace): it sent or received none"
        ));
    }
    if k.owner_full > 0 {
        say(format!("{} sockets' owners could not be recorded (owner table full)", k.owner_full));
    }
    lines
}

/// Said once when -w writes classic pcap.
pub fn pcap_warning(file: &str) -> String {
    format!(
        "pidcap: warning: {file} is classic pcap: it loses each packet's process (pid, name, verdict) and \
         cannot hold TLS plaintext records or keys; pcapng (the default, -F pcapng) keeps them"
    )
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
        assert_eq!(utc_line(&p), "13:05:07.123456 42/curl out TCP 127.0.0.1:40000 > 127.0.0.2:80 [S] len 0");
        let mut p =
            CapturedPacket::new(1, ts, 42, "curl".into(), 1, Direction::Inbound, Verdict::Blocked, 40, tcp_syn());
        p.rule = Some(3);
        assert_eq!(
            utc_line(&p),
            "13:05:07.123456 42/curl in  TCP 127.0.0.2:80 < 127.0.0.1:40000 [S] len 0 BLOCKED (rule 3)"
        );
    }

    /// 10.0.0.1:40000 > 10.0.0.2:80 [P.] with an HTTP request, at 2026-12-01 13:05:07.123456 UTC.
    fn tcp_with_payload() -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 512)
            .psh()
            .ack(2000)
            .write(&mut data, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let len = data.len() as u32;
        CapturedPacket::new(1, STAMP, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, len, data)
    }

    /// 127.0.0.1:5353 > 127.0.0.1:53, 7 bytes, 1.5 s after [`tcp_with_payload`].
    fn udp() -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(5353, 53)
            .write(&mut data, b"\x124\x01\x00abc")
            .unwrap();
        let len = data.len() as u32;
        let ts = STAMP + 1_500_000_000;
        CapturedPacket::new(2, ts, 7, "dig".into(), 1, Direction::Outbound, Verdict::Pass, len, data)
    }

    const STAMP: u64 = 1_796_130_307_123_456_789;
    const UTC: Zone = Zone::Fixed(0);

    /// [`packet_line`], in UTC (packet_line's is local).
    fn utc_line(p: &CapturedPacket) -> String {
        packet_text(p, &TextOptions { zone: UTC, ..Default::default() }, p.timestamp_ns)
    }

    fn text(time: TimeFormat, dump: Dump, packets: &[CapturedPacket]) -> String {
        let opts = TextOptions { time, dump, flush_each: false, zone: UTC, verbose: 0 };
        let mut out = Lines::with_options(Vec::new(), LineFormat::Text, opts);
        for p in packets {
            out.write_packet(p).unwrap();
        }
        String::from_utf8(out.out).unwrap()
    }

    /// The three fixtures: a TCP packet with a payload, a UDP datagram 1.5 s
    /// later, a TLS record 0.5 s after that.
    fn three() -> [CapturedPacket; 3] {
        let mut tls = record(b"HTTP/1.1 200 OK\r\n\x00\xff", 19);
        tls.timestamp_ns = STAMP + 2_000_000_000;
        [tcp_with_payload(), udp(), tls]
    }

    const TCP_LINE: &str = "42/curl out TCP 10.0.0.1:40000 > 10.0.0.2:80 [P.] len 27";
    const UDP_LINE: &str = "7/dig out UDP 127.0.0.1:5353 > 127.0.0.1:53 len 7";
    const TLS_LINE: &str = "4242/curl in  TLS 127.0.0.1:40000 < 127.0.0.1:8443 decrypted gnutls tid 4243 len 19: \
                            HTTP/1.1 200 OK\\r\\n\\0\\xff";

    #[test]
    fn the_default_text_is_the_plain_line() {
        let ps = three();
        let want: String = ps.iter().map(|p| format!("{}\n", utc_line(p))).collect();
        assert_eq!(text(TimeFormat::Clock, Dump::None, &ps), want);
        for p in &ps {
            let local = packet_text(p, &TextOptions::default(), p.timestamp_ns);
            assert_eq!(local, packet_line(p), "the default is packet_line, in local time");
        }
        assert_eq!(
            want,
            format!("13:05:07.123456 {TCP_LINE}\n13:05:08.623456 {UDP_LINE}\n13:05:09.123456 {TLS_LINE}\n")
        );
        assert_eq!(TextOptions::from_cli(&crate::cli::OutputOpts::default()), TextOptions::default());
    }

    #[test]
    fn the_t_letters_change_only_the_timestamp() {
        let ps = three();
        let cases = [
            (1, format!("{TCP_LINE}\n{UDP_LINE}\n{TLS_LINE}\n")),
            (2, format!("1796130307.123456 {TCP_LINE}\n1796130308.623456 {UDP_LINE}\n1796130309.123456 {TLS_LINE}\n")),
            (3, format!("00:00:00.000000 {TCP_LINE}\n00:00:01.500000 {UDP_LINE}\n00:00:00.500000 {TLS_LINE}\n")),
            (
                4,
                format!(
                    "2026-12-01 13:05:07.123456 {TCP_LINE}\n2026-12-01 13:05:08.623456 {UDP_LINE}\n\
                     2026-12-01 13:05:09.123456 {TLS_LINE}\n"
                ),
            ),
            (5, format!("00:00:00.000000 {TCP_LINE}\n00:00:01.500000 {UDP_LINE}\n00:00:02.000000 {TLS_LINE}\n")),
        ];
        for (count, want) in cases {
            let opts = crate::cli::OutputOpts { time: count, ..Default::default() };
            let t = TextOptions::from_cli(&opts).time;
            assert_eq!(text(t, Dump::None, &ps), want, "-{}", "t".repeat(count.into()));
        }
        // Dates across a leap day and a century, against `date -u -d @SECS`.
        assert_eq!(date_time(951_782_400_000_000_000, UTC), "2000-02-29 00:00:00.000000");
        assert_eq!(date_time(4_107_542_399_999_999_000, UTC), "2100-02-28 23:59:59.999999");
        assert_eq!(date_time(0, UTC), "1970-01-01 00:00:00.000000");
        // Another zone moves the clock and, across midnight, the date.
        assert_eq!(date_time(STAMP, Zone::Fixed(-5 * 3600)), "2026-12-01 08:05:07.123456");
        assert_eq!(date_time(STAMP, Zone::Fixed(11 * 3600 + 1800)), "2026-12-02 00:35:07.123456");
        assert_eq!(clock_time_in(STAMP, Zone::Fixed(11 * 3600 + 1800)), "00:35:07.123456");
        assert_eq!(duration_time(90_061_000_001_000), "25:01:01.000001");
    }

    #[test]
    fn a_prints_the_payload_or_the_plaintext_in_ascii() {
        let want = format!(
            "13:05:07.123456 {TCP_LINE}\nGET / HTTP/1.1\nHost: x\n\n\
             13:05:08.623456 {UDP_LINE}\n.4..abc\n\
             13:05:09.123456 {TLS_LINE}\nHTTP/1.1 200 OK\n..\n"
        );
        assert_eq!(text(TimeFormat::Clock, Dump::Ascii, &three()), want);
        // A lone CR, a tab and a CR that ends the bytes, as tcpdump.
        assert_eq!(ascii_dump(b"a\rb\tc\r"), "a.b\tc");
        // Nothing after a packet without payload.
        let syn =
            CapturedPacket::new(1, STAMP, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, 40, tcp_syn());
        let opts = TextOptions { dump: Dump::Ascii, ..Default::default() };
        assert_eq!(packet_text(&syn, &opts, STAMP), packet_line(&syn));
    }

    /// As `tcpdump -r -x` prints the TCP and UDP fixtures (written to a
    /// LINKTYPE_RAW pcap file): checked against tcpdump 4.99.
    const TCP_HEX: &str = "\t0x0000:  4500 0043 0000 4000 4006 26b3 0a00 0001
\t0x0010:  0a00 0002 9c40 0050 0000 03e8 0000 07d0
\t0x0020:  5018 0200 9db1 0000 4745 5420 2f20 4854
\t0x0030:  5450 2f31 2e31 0d0a 486f 7374 3a20 780d
\t0x0040:  0a0d 0a
";
    const UDP_HEX: &str = "\t0x0000:  4500 0023 0000 4000 4011 3cc8 7f00 0001
\t0x0010:  7f00 0001 14e9 0035 000f 1519 1234 0100
\t0x0020:  6162 63
";

    #[test]
    fn x_prints_the_packet_in_hex_as_tcpdump_and_a_record_s_plaintext() {
        let want = format!(
            "13:05:07.123456 {TCP_LINE}\n{TCP_HEX}13:05:08.623456 {UDP_LINE}\n{UDP_HEX}13:05:09.123456 {TLS_LINE}\n\
             \t0x0000:  4854 5450 2f31 2e31 2032 3030 204f 4b0d\n\t0x0010:  0a00 ff\n"
        );
        let opts = crate::cli::OutputOpts { hex: 1, ascii: true, ..Default::default() };
        assert_eq!(TextOptions::from_cli(&opts).dump, Dump::Hex, "-x wins over -A");
        assert_eq!(text(TimeFormat::Clock, Dump::Hex, &three()), want);
    }

    /// As `tcpdump -r -X` prints the fixtures (a space is `.` in its column).
    const TCP_HEX_ASCII: &str = "\t0x0000:  4500 0043 0000 4000 4006 26b3 0a00 0001  E..C..@.@.&.....
\t0x0010:  0a00 0002 9c40 0050 0000 03e8 0000 07d0  .....@.P........
\t0x0020:  5018 0200 9db1 0000 4745 5420 2f20 4854  P.......GET./.HT
\t0x0030:  5450 2f31 2e31 0d0a 486f 7374 3a20 780d  TP/1.1..Host:.x.
\t0x0040:  0a0d 0a                                  ...
";
    const UDP_HEX_ASCII: &str = "\t0x0000:  4500 0023 0000 4000 4011 3cc8 7f00 0001  E..#..@.@.<.....
\t0x0010:  7f00 0001 14e9 0035 000f 1519 1234 0100  .......5.....4..
\t0x0020:  6162 63                                  abc
";

    #[test]
    fn capital_x_prints_hex_and_ascii_as_tcpdump_and_xx_is_the_same() {
        let want = format!(
            "1796130307.123456 {TCP_LINE}\n{TCP_HEX_ASCII}1796130308.623456 {UDP_LINE}\n{UDP_HEX_ASCII}\
             1796130309.123456 {TLS_LINE}\n\
             \t0x0000:  4854 5450 2f31 2e31 2032 3030 204f 4b0d  HTTP/1.1.200.OK.\n\
             \t0x0010:  0a00 ff                                  ...\n"
        );
        for count in [1, 2] {
            let opts = crate::cli::OutputOpts { hex_ascii: count, hex: 1, ascii: true, time: 2, ..Default::default() };
            let o = TextOptions::from_cli(&opts);
            assert_eq!(o.dump, Dump::HexAscii, "-X wins over -x and -A");
            assert_eq!(text(o.time, o.dump, &three()), want, "-{}", "X".repeat(count.into()));
        }
    }

    #[test]
    fn v_adds_tcpdump_s_fields_and_vv_more() {
        let ps = three();
        let verbose = |level: u8| {
            let opts = TextOptions { zone: UTC, verbose: level, ..Default::default() };
            ps.iter().map(|p| packet_text(p, &opts, p.timestamp_ns)).collect::<Vec<String>>()
        };
        assert_eq!(
            verbose(1),
            [
                format!("13:05:07.123456 {TCP_LINE} (ttl 64, id 0, length 67) seq 1000, ack 2000, win 512: HTTP GET / HTTP/1.1"),
                format!("13:05:08.623456 {UDP_LINE} (ttl 64, id 0, length 35) udp length 15"),
                // A TLS record's line has its text already.
                format!("13:05:09.123456 {TLS_LINE}"),
            ]
        );
        let vv = verbose(2);
        assert!(vv[0].contains("(tos 0x0, flags [DF], ttl 64, id 0, length 67, proto 6, cksum 0x"), "{}", vv[0]);
        assert_eq!(TextOptions::from_cli(&crate::cli::OutputOpts { verbose: 2, ..Default::default() }).verbose, 2);
        // The dumps still follow.
        let opts = TextOptions { zone: UTC, verbose: 1, dump: Dump::Ascii, ..Default::default() };
        assert!(packet_text(&ps[0], &opts, STAMP).ends_with("HTTP/1.1\nGET / HTTP/1.1\nHost: x\n"));
    }

    #[test]
    fn l_and_u_flush_every_packet() {
        /// Counts flushes.
        struct Counting(Vec<u8>, usize);
        impl Write for Counting {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.1 += 1;
                Ok(())
            }
        }
        for (opts, flushes) in [
            (crate::cli::OutputOpts::default(), 0),
            (crate::cli::OutputOpts { line_buffered: true, ..Default::default() }, 3),
            (crate::cli::OutputOpts { packet_buffered: true, ..Default::default() }, 3),
            (crate::cli::OutputOpts { numeric: true, ..Default::default() }, 0),
        ] {
            let text = TextOptions::from_cli(&opts);
            let mut out = Lines::with_options(Counting(Vec::new(), 0), LineFormat::Text, text);
            for p in three() {
                out.write_packet(&p).unwrap();
            }
            assert_eq!(out.out.1, flushes, "{opts:?}");
            if opts.numeric {
                assert_eq!(text, TextOptions::default(), "-n changes nothing");
            }
        }
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
    fn a_buffered_stdout_is_written_in_whole_lines_only() {
        /// Each write that reaches the stream, as the pipe would see it.
        struct Writes(Vec<Vec<u8>>);
        impl std::io::Write for Writes {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.push(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let p = udp();
        for format in [LineFormat::Text, LineFormat::Json] {
            let len = match format {
                LineFormat::Text => packet_line(&p).len(),
                LineFormat::Json => packet_json(&p).len(),
            };
            // Room for two lines and a third without its newline: the
            // newline written apart would flush the third one cut.
            let out = std::io::BufWriter::with_capacity(3 * len + 2, Writes(Vec::new()));
            let mut lines = Lines::new(out, format);
            for _ in 0..7 {
                lines.write_packet(&p).unwrap();
            }
            lines.flush().unwrap();
            let writes = lines.out.into_inner().map_err(|_| "flush").unwrap().0;
            assert!(writes.len() > 1, "{format:?}: the buffer was flushed between lines");
            assert!(writes.iter().all(|w| w.ends_with(b"\n")), "{format:?}: a write ends mid-line");
            assert_eq!(writes.concat().iter().filter(|&&b| b == b'\n').count(), 7);
        }
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
            utc_line(&p),
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

    fn stats(f: impl FnOnce(&mut CaptureStats)) -> CaptureStats {
        let mut s = CaptureStats::default();
        f(&mut s);
        s
    }

    #[test]
    fn the_summary_says_the_targets_counters_first_and_the_system_wide_ones_only_with_v() {
        let s = stats(|s| {
            s.received = 12;
            s.kernel = pidcap_engine::KernelCounters {
                seen: 500,
                target: 12,
                unattributed: 30,
                ring_full: 1,
                load_failed: 1,
                ..Default::default()
            };
        });
        assert_eq!(
            summary(&s, 12, 0, &AttachPoint::Root),
            ["pidcap: 12 packets captured (12 written), 2 dropped in the kernel ring"]
        );
        let v = summary(&s, 12, 1, &AttachPoint::Root);
        assert_eq!(v[0], summary(&s, 12, 0, &AttachPoint::Root)[0]);
        assert_eq!(
            v[1],
            "pidcap: system-wide, not the targets': 500 packets seen by the kernel layer: 458 of other processes, 30 of \
             sockets with no known owner (sockets older than pidcap and idle since, or packets the kernel sends itself, \
             such as resets)"
        );
        // Programs on a cgroup see that cgroup's packets only: the line says where.
        let at = AttachPoint::Cgroup("/sys/fs/cgroup/pidcap-run-9".into());
        assert!(
            summary(&s, 12, 1, &at)[1].starts_with(
                "pidcap: in cgroup /sys/fs/cgroup/pidcap-run-9 (where the programs are attached), not the targets': 500 \
                 packets seen"
            ),
            "{:?}",
            summary(&s, 12, 1, &at)
        );
        // Each counter that concerns the targets, when it is not zero, in order.
        let s = stats(|s| {
            s.received = 9;
            s.evicted = 4;
            s.kernel.blocked = 3;
            s.kernel.connect_blocked = 1;
            s.kernel.owner_full = 2;
            s.kernel.forked = 5;
            s.kernel.tls_records = 6;
        });
        let line = &summary(&s, 7, 0, &AttachPoint::Root)[0];
        let order = [
            "9 packets captured (7 written)",
            "0 dropped in the kernel ring",
            "4 evicted from memory (after they were written: none lost)",
            "3 blocked (1 connect/send refused)",
            "2 sockets whose owner could not be recorded",
            "5 child processes followed",
            "6 TLS plaintext records (0 dropped)",
        ];
        let at: Vec<usize> = order.iter().map(|o| line.find(o).unwrap_or_else(|| panic!("{o:?} in {line}"))).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
        assert!(!line.contains("system-wide") && !line.contains("attributed"), "{line}");
    }

    #[test]
    fn zero_reasons_say_what_the_counters_and_the_targets_seen_say() {
        let none = CaptureStats::default();
        let said = |s: &CaptureStats, h: &ZeroHints| zero_reasons(s, 0, h).join("\n");
        assert!(
            zero_reasons(&stats(|s| s.received = 1), 1, &ZeroHints::default()).is_empty(),
            "packets: nothing to say"
        );
        let run = ZeroHints { command: Some((7, "sh".into(), Some(0))), targets_seen: true, ..Default::default() };
        assert_eq!(
            said(&none, &run),
            "pidcap: no packets: no packet of the targets crossed the kernel's hooks; the command (pid 7, sh) exited \
             with status 0; no socket was seen open in it (it may have used none, or exited before using the network)"
        );
        let unix = ZeroHints { unix_sockets: true, ..run.clone() };
        assert!(said(&none, &unix).contains("; it was seen with Unix sockets only"));
        let ip = ZeroHints { ip_sockets: true, unix_sockets: true, ..run.clone() };
        assert!(said(&none, &ip).contains("; it had IP sockets open but sent and received nothing on them"));
        let quick = ZeroHints { targets_seen: false, ..run.clone() };
        assert!(said(&none, &quick).contains("it ended before pidcap could look at it"));
        let names = ZeroHints::default();
        assert!(said(&none, &names).ends_with("; no target process was seen running"));
        // --no-follow with children; another namespace; both said after the first line.
        let h =
            ZeroHints { no_follow: true, started_children: true, other_netns: vec![(8, "curl".into())], ..run.clone() };
        let lines = zero_reasons(&none, 0, &h);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains("--no-follow leaves them out"));
        assert!(lines[2].starts_with("pidcap: no packets: pid 8 (curl) ran in another network namespace"));
        // --no-follow without children seen: not blamed.
        let h = ZeroHints { no_follow: true, ..run.clone() };
        assert!(!said(&none, &h).contains("--no-follow"));
        // Packets seen in the kernel but not captured; captured but not written.
        let dropped = stats(|s| {
            s.kernel.target = 4;
            s.kernel.ring_full = 4;
        });
        assert!(said(&dropped, &run)
            .contains("4 packets of the targets reached the kernel hooks and none was captured (4 dropped"));
        let filtered = stats(|s| s.received = 3);
        assert!(said(&filtered, &run).contains("3 were captured and none was kept for the output"));
        let tls = ZeroHints { records_left_out: 3, ..run };
        assert!(said(&filtered, &tls).contains("all TLS plaintext records, which a classic pcap file cannot hold"));
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
