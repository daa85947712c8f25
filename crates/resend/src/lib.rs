//! Edit and resend packets: the seed's "hex/ASCII editing, single/loop
//! resend, configurable intervals, send status feedback".
//!
//! * [`edit`]: pure payload editing (hex and escaped-ASCII parsers, patches,
//!   find/replace, durations).
//! * [`InjectArgs`]: one send job as the CLI and the daemon's `inject` take it
//!   (JSON on the wire); [`prepare`] checks it and resolves it against the
//!   captured packet it starts from into a [`Prepared`] job.
//! * Three modes ([`Mode`]), each a [`send::Sender`]:
//!   - **socket**: the owning process's own socket, duplicated with
//!     `pidfd_open` + `pidfd_getfd`, found among `/proc/PID/fd` by socket
//!     cookie (`SO_COOKIE`), else by local and remote address. TCP goes
//!     through the live connection (the kernel numbers the bytes: the
//!     connection stays healthy); UDP uses `send` when the socket is
//!     connected to the remote (no sendmsg hook), else `sendto`. The
//!     process's socket flags are never changed (`MSG_DONTWAIT` per call).
//!   - **raw**: the IPv4/IPv6 + TCP/UDP packet rebuilt with etherparse
//!     (lengths and checksums computed; TCP seq/ack/flags/window from the
//!     captured packet) and sent on an `IPPROTO_RAW` socket (header included,
//!     for v4 and v6 alike, so the source address is ours to choose).
//!   - **connect**: a new TCP connection (one per job, reopened after an
//!     error) or UDP socket; what comes back within the timeout is reported.
//! * [`run_loop`]: count / forever, interval, a rate cap, stop on error or
//!   not, one [`SendStatus`] per send and a [`Summary`].

pub mod edit;
pub mod send;
mod sys;

use edit::{apply_edits, parse_ascii, parse_hex, Edit, EditError};
use pidcap_packet::{CapturedPacket, Direction, Protocol};
use send::Sender;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default cap on the send rate, packets per second.
pub const DEFAULT_MAX_RATE: f64 = 1000.0;
/// Default interval between sends of a loop.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Default wait for a reply (connect mode) and for a full send buffer.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Through the owning process's own socket.
    Socket,
    /// A crafted IP packet on a raw socket.
    Raw,
    /// A new TCP connection or UDP socket.
    Connect,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s.to_ascii_lowercase().as_str() {
            "socket" => Ok(Mode::Socket),
            "raw" => Ok(Mode::Raw),
            "connect" => Ok(Mode::Connect),
            _ => Err(format!("unknown mode {s:?}: socket, raw or connect")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Socket => "socket",
            Mode::Raw => "raw",
            Mode::Connect => "connect",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("unknown protocol {s:?}: tcp or udp")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Why a send failed; stable names for programs (`error_kind` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The owning process has exited.
    ProcessGone,
    /// The process closed the socket, or the connection is closed/reset.
    SocketClosed,
    /// EPERM: a block rule (or a firewall) refused the send.
    Blocked,
    /// ECONNREFUSED.
    Refused,
    Timeout,
    /// pidfd_getfd or a raw socket is not allowed to this user.
    Permission,
    /// No socket of the process matches the packet.
    NoSocket,
    Io,
}

impl ErrorKind {
    /// Errors that no later send of the same job can get past.
    pub fn is_permanent(self) -> bool {
        matches!(self, ErrorKind::ProcessGone | ErrorKind::NoSocket | ErrorKind::Permission)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SendError {
        SendError { kind, message: message.into() }
    }
}

/// What the peer sent back (connect mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyInfo {
    pub bytes: usize,
    /// The first 64 bytes, hex.
    pub hex: String,
    /// The first 64 bytes, printable ASCII, others as `.`.
    pub ascii: String,
}

impl ReplyInfo {
    pub fn new(b: &[u8]) -> ReplyInfo {
        let head = &b[..b.len().min(64)];
        ReplyInfo { bytes: b.len(), hex: pidcap_packet::to_hex(head), ascii: pidcap_packet::ascii::dots(head) }
    }
}

/// TCP header fields for raw mode (the one definition is pidcap-packet's builder's).
pub use pidcap_packet::build::TcpFields;

/// Where a job sends, resolved. Socket and connect modes: `local` is our
/// (the process's) end, `remote` the peer. Raw mode: `local` is the source
/// and `remote` the destination of the crafted packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub proto: Proto,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub cookie: Option<u64>,
    pub tcp: Option<TcpFields>,
    pub ttl: Option<u8>,
}

/// One send job, as `pidcap send` and the daemon's `inject` take it.
/// At least one of `template`, `data`, `ascii` (the daemon also takes
/// `packet`, a captured packet's id, and turns it into `template`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectArgs {
    /// A daemon packet id (resolved by the daemon into `template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<u64>,
    /// The packet to start from: payload, endpoints, pid, socket cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<CapturedPacket>>,
    /// The payload as hex (replaces the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The payload as text with escapes (replaces the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ascii: Option<String>,
    /// `OFF:HEX` patches, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
    /// `FROM_HEX:TO_HEX` replacements, after the patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    /// The remote end (raw: the destination), `ADDR:PORT` / `[V6]:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The local end (raw: the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Socket mode: the process whose socket to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Sends (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Send until stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forever: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Packets per second at most (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_on_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A checked job, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub mode: Mode,
    pub target: Target,
    /// The payload after the edits.
    #[serde(with = "pidcap_packet::hex::serde_hex")]
    pub payload: Vec<u8>,
    pub count: u64,
    pub forever: bool,
    pub interval: Duration,
    pub max_rate: f64,
    pub stop_on_error: bool,
    pub timeout: Duration,
}

/// Parse `ADDR:PORT` or `[V6]:PORT`.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, EditError> {
    s.trim().parse().map_err(|_| EditError(format!("invalid address {s:?}: ADDR:PORT or [IPv6]:PORT")))
}

fn alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The payload the job sends: data/ascii or the template's, then the edits.
pub fn edited_payload(args: &InjectArgs) -> Result<Vec<u8>, EditError> {
    let base = match (&args.data, &args.ascii, &args.template) {
        (Some(_), Some(_), _) => return Err(EditError("give the payload as hex or as ASCII, not both".into())),
        (Some(h), None, _) => parse_hex(h).map_err(|e| EditError(format!("payload hex: {e}")))?,
        (None, Some(a), _) => parse_ascii(a).map_err(|e| EditError(format!("payload text: {e}")))?,
        (None, None, Some(p)) => p.payload().to_vec(),
        (None, None, None) => return Err(EditError("no payload: give a packet, hex or ASCII".into())),
    };
    let mut edits = Vec::new();
    for p in &args.patches {
        edits.push(Edit::parse_patch(p)?);
    }
    for r in &args.replaces {
        edits.push(Edit::parse_replace(r)?);
    }
    apply_edits(&base, &edits)
}

/// Check `args` and resolve the target; nothing is sent. Errors say what is wrong.
pub fn prepare(args: &InjectArgs) -> Result<Prepared, EditError> {
    let payload = edited_payload(args)?;
    let t = args.template.as_deref();
    let to = args.to.as_deref().map(parse_endpoint).transpose()?;
    let from = args.from.as_deref().map(parse_endpoint).transpose()?;
    let pid = args.pid.or(t.map(|p| p.pid).filter(|&p| p != 0));
    let mode = match args.mode {
        Some(m) => m,
        None if t.is_some() && pid.is_some_and(alive) => Mode::Socket,
        None if t.is_none() && args.pid.is_some() => Mode::Socket,
        None => Mode::Connect,
    };
    let proto = match (args.proto, t.map(|p| p.decoded.protocol)) {
        (Some(p), _) => p,
        (None, Some(Protocol::Tcp)) => Proto::Tcp,
        (None, Some(Protocol::Udp)) => Proto::Udp,
        (None, Some(other)) => {
            return Err(EditError(format!("the packet is {}, not TCP or UDP; give --proto", other.name())))
        }
        (None, None) => Proto::Tcp,
    };
    // The packet's ends: the process's and the peer's; raw mode keeps the packet's own direction.
    let ends = t.filter(|p| p.decoded.ip_version != 0).map(|p| {
        let local = SocketAddr::new(p.decoded.local_addr, p.decoded.local_port);
        let remote = SocketAddr::new(p.decoded.remote_addr, p.decoded.remote_port);
        match (mode, p.direction) {
            (Mode::Raw, Direction::Inbound) => (remote, local),
            _ => (local, remote),
        }
    });
    let remote = to
        .or(ends.map(|e| e.1))
        .ok_or_else(|| EditError("no destination: give --to ADDR:PORT (or start from a captured packet)".into()))?;
    let local = from.or(ends.map(|e| e.0));
    if let Some(l) = local {
        if l.is_ipv4() != remote.is_ipv4() && mode == Mode::Raw {
            return Err(EditError(format!("source {l} and destination {remote} are not the same IP version")));
        }
    }
    let same_flow = to.is_none() && from.is_none();
    let tcp = t.and_then(tcp_fields).filter(|_| proto == Proto::Tcp);
    let target = Target {
        proto,
        // Connect mode binds only when asked; socket mode matches the packet's local end.
        local: if mode == Mode::Connect { from } else { local },
        remote,
        pid,
        cookie: t.map(|p| p.socket_cookie).filter(|&c| c != 0 && same_flow),
        tcp,
        ttl: t.and_then(ttl_of),
    };
    if mode == Mode::Socket && target.pid.is_none() {
        return Err(EditError("socket mode needs the process: --pid PID, or a captured packet".into()));
    }
    if mode == Mode::Raw && target.local.is_none() {
        return Err(EditError("raw mode needs a source: --from ADDR:PORT (or a captured packet)".into()));
    }
    let count = if args.forever { 0 } else { args.count.unwrap_or(1) };
    if !args.forever && count == 0 {
        return Err(EditError("--count must be at least 1 (or --forever)".into()));
    }
    let max_rate = args.max_rate.unwrap_or(DEFAULT_MAX_RATE);
    if !(max_rate.is_finite() && max_rate > 0.0) {
        return Err(EditError(format!("--max-rate must be a positive number, not {max_rate}")));
    }
    Ok(Prepared {
        mode,
        target,
        payload,
        count,
        forever: args.forever,
        interval: Duration::from_millis(args.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS)),
        max_rate,
        stop_on_error: args.stop_on_error,
        timeout: Duration::from_millis(args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
    })
}

fn tcp_fields(p: &CapturedPacket) -> Option<TcpFields> {
    pidcap_packet::headers(&p.data).tcp().map(|t| t.fields())
}

fn ttl_of(p: &CapturedPacket) -> Option<u8> {
    pidcap_packet::headers(&p.data).ip.map(|ip| ip.hop_limit())
}

/// Open the sender for a prepared job (finds/duplicates the socket, connects...).
pub fn open_sender(p: &Prepared) -> Result<Box<dyn Sender>, SendError> {
    Ok(match p.mode {
        Mode::Socket => Box::new(send::SocketSender::open(&p.target)?),
        Mode::Raw => Box::new(send::RawSender::open(&p.target)?),
        Mode::Connect => Box::new(send::ConnectSender::open(&p.target, p.timeout)?),
    })
}

/// The outcome of one send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendStatus {
    /// 1, 2, 3... within the job.
    pub seq: u64,
    pub ok: bool,
    /// Payload bytes sent (0 on error).
    pub bytes: usize,
    /// When it was sent, nanoseconds since the UNIX epoch.
    pub time_ns: u64,
    /// How long the send (and the wait for a reply) took.
    pub elapsed_us: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyInfo>,
}

impl SendStatus {
    fn failed(seq: u64, e: &SendError, started: SystemTime, elapsed: Duration) -> SendStatus {
        SendStatus {
            seq,
            ok: false,
            bytes: 0,
            time_ns: ns(started),
            elapsed_us: elapsed.as_micros() as u64,
            error: Some(e.message.clone()),
            error_kind: Some(e.kind),
            reply: None,
        }
    }
}

impl fmt::Display for SendStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok {
            write!(f, "#{} sent {} bytes in {} us", self.seq, self.bytes, self.elapsed_us)?;
            if let Some(r) = &self.reply {
                write!(f, "; reply {} bytes: {} |{}|", r.bytes, r.hex, r.ascii)?;
            }
            Ok(())
        } else {
            let kind = self
                .error_kind
                .map(|k| serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default());
            write!(f, "#{} FAILED [{}]: {}", self.seq, kind.unwrap_or_default(), self.error.as_deref().unwrap_or("?"))
        }
    }
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Every send was made.
    Done,
    /// Stopped from outside (Ctrl-C, stop_job).
    Stopped,
    /// A send failed and the job stops on errors (or the error is permanent).
    Error,
    /// The job could not start (no socket, no permission...).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub sent: u64,
    pub failed: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub reason: EndReason,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason =
            serde_json::to_value(self.reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        write!(
            f,
            "{} sent, {} failed, {} bytes in {} ms ({reason})",
            self.sent, self.failed, self.bytes, self.duration_ms
        )
    }
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The time between two sends: the interval, but never above the rate cap.
pub fn effective_interval(p: &Prepared) -> Duration {
    p.interval.max(Duration::from_secs_f64(1.0 / p.max_rate))
}

/// Open the sender and run the job: `count` sends (or until `stop` when
/// `forever`), `on_status` after each. Returns the summary. A sender that
/// cannot open gives one failed status (seq 1) and the reason `failed`.
pub fn run_job(p: &Prepared, stop: &AtomicBool, on_status: &mut dyn FnMut(&SendStatus)) -> Summary {
    let started = Instant::now();
    match open_sender(p) {
        Ok(mut s) => run_loop(s.as_mut(), p, stop, on_status),
        Err(e) => {
            on_status(&SendStatus::failed(1, &e, SystemTime::now(), started.elapsed()));
            Summary {
                sent: 0,
                failed: 1,
                bytes: 0,
                duration_ms: started.elapsed().as_millis() as u64,
                reason: EndReason::Failed,
            }
        }
    }
}

/// The loop on an open sender.
pub fn run_loop(
    sender: &mut dyn Sender,
    p: &Prepared,
    stop: &AtomicBool,
    on_status: &mut dyn FnMut(&SendStatus),
) -> Summary {
    let start = Instant::now();
    let every = effective_interval(p);
    let (mut sent, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    let mut seq = 0u64;
    let mut next = start;
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break EndReason::Stopped;
        }
        if !p.forever && seq >= p.count {
            break EndReason::Done;
        }
        // Sleep until the next send, in small steps so a stop is seen at once.
        loop {
            let now = Instant::now();
            if now >= next || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
        }
        if stop.load(Ordering::Relaxed) {
            break EndReason::Stopped;
        }
        seq += 1;
        let last = !p.forever && seq == p.count;
        // Connect mode waits for a reply, but not past the next send.
        let wait = if last { p.timeout } else { p.timeout.min(every) };
        next += every;
        let at = SystemTime::now();
        let t0 = Instant::now();
        let status = match sender.send(&p.payload, wait) {
            Ok(s) => {
                sent += 1;
                bytes += s.bytes as u64;
                SendStatus {
                    seq,
                    ok: true,
                    bytes: s.bytes,
                    time_ns: ns(at),
                    elapsed_us: t0.elapsed().as_micros() as u64,
                    error: None,
                    error_kind: None,
                    reply: s.reply,
                }
            }
            Err(e) => {
                failed += 1;
                SendStatus::failed(seq, &e, at, t0.elapsed())
            }
        };
        on_status(&status);
        if let Some(k) = status.error_kind {
            if p.stop_on_error || k.is_permanent() {
                break EndReason::Error;
            }
        }
        if Instant::now() > next + every * 4 {
            next = Instant::now(); // fell far behind (slow sends): do not burst to catch up
        }
    };
    Summary { sent, failed, bytes, duration_ms: start.elapsed().as_millis() as u64, reason }
}

/// A job as the daemon lists it (`list_jobs`, `inject`'s result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    /// `running`, `done`, `stopped`, `failed` (an `error` ending is `stopped`
    /// when the sender opened, `failed` when it could not).
    pub state: String,
    pub mode: Mode,
    pub proto: Proto,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub payload_len: usize,
    pub count: u64,
    pub forever: bool,
    pub interval_ms: u64,
    pub sent: u64,
    pub failed: u64,
    pub bytes: u64,
    pub started_ns: u64,
    pub last: Option<SendStatus>,
    pub summary: Option<Summary>,
}

impl JobInfo {
    /// A job that has just started.
    pub fn new(id: u64, p: &Prepared) -> JobInfo {
        JobInfo {
            id,
            state: "running".into(),
            mode: p.mode,
            proto: p.target.proto,
            local: p.target.local,
            remote: p.target.remote,
            pid: p.target.pid,
            payload_len: p.payload.len(),
            count: p.count,
            forever: p.forever,
            interval_ms: p.interval.as_millis() as u64,
            sent: 0,
            failed: 0,
            bytes: 0,
            started_ns: ns(SystemTime::now()),
            last: None,
            summary: None,
        }
    }

    /// Count one status.
    pub fn record(&mut self, s: &SendStatus) {
        if s.ok {
            self.sent += 1;
            self.bytes += s.bytes as u64;
        } else {
            self.failed += 1;
        }
        self.last = Some(s.clone());
    }

    /// The job ended.
    pub fn finish(&mut self, s: Summary) {
        self.state = match s.reason {
            EndReason::Done => "done",
            EndReason::Stopped | EndReason::Error => "stopped",
            EndReason::Failed => "failed",
        }
        .into();
        self.summary = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::Verdict;

    fn udp_packet(dir: Direction) -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 33)
            .udp(4000, 53)
            .write(&mut data, b"hello")
            .unwrap();
        CapturedPacket::new(1, 0, 4242, "x".into(), 77, dir, Verdict::Pass, data.len() as u32, data)
    }

    #[test]
    fn prepare_from_a_packet() {
        let t = Some(Box::new(udp_packet(Direction::Outbound)));
        let args = InjectArgs {
            template: t.clone(),
            mode: Some(Mode::Socket),
            patches: vec!["0:4a".into()],
            ..Default::default()
        };
        let p = prepare(&args).unwrap();
        assert_eq!(p.payload, b"Jello");
        assert_eq!(p.target.proto, Proto::Udp);
        assert_eq!(p.target.local, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(p.target.remote, "127.0.0.2:53".parse().unwrap());
        assert_eq!((p.target.pid, p.target.cookie, p.target.ttl), (Some(4242), Some(77), Some(33)));
        assert_eq!((p.count, p.forever), (1, false));
        // Raw mode on an inbound packet replays it towards the process.
        let args = InjectArgs {
            template: Some(Box::new(udp_packet(Direction::Inbound))),
            mode: Some(Mode::Raw),
            ..Default::default()
        };
        let p = prepare(&args).unwrap();
        // Inbound: decoded local is the destination (127.0.0.2:53), remote the source.
        assert_eq!(p.target.remote, "127.0.0.2:53".parse().unwrap());
        assert_eq!(p.target.local, Some("127.0.0.1:4000".parse().unwrap()));
        // A dead pid and no mode: connect.
        let args = InjectArgs { template: t, to: Some("127.0.0.1:9".into()), ..Default::default() };
        let p = prepare(&args).unwrap();
        assert_eq!(p.mode, Mode::Connect);
        assert_eq!(p.target.remote, "127.0.0.1:9".parse().unwrap());
        assert_eq!(p.target.cookie, None);
    }

    #[test]
    fn prepare_refuses_bad_input() {
        let e = |a: InjectArgs| prepare(&a).unwrap_err().0;
        assert!(e(InjectArgs::default()).contains("no payload"));
        assert!(e(InjectArgs { data: Some("4x".into()), ..Default::default() }).contains("position 1"));
        assert!(e(InjectArgs { data: Some("41".into()), ..Default::default() }).contains("no destination"));
        assert!(e(InjectArgs { data: Some("41".into()), to: Some("nowhere".into()), ..Default::default() })
            .contains("invalid address"));
        let base = InjectArgs { data: Some("41".into()), to: Some("127.0.0.1:1".into()), ..Default::default() };
        assert!(e(InjectArgs { mode: Some(Mode::Socket), ..base.clone() }).contains("--pid"));
        assert!(e(InjectArgs { mode: Some(Mode::Raw), ..base.clone() }).contains("--from"));
        assert!(e(InjectArgs { count: Some(0), ..base.clone() }).contains("at least 1"));
        assert!(e(InjectArgs { max_rate: Some(0.0), ..base.clone() }).contains("max-rate"));
        assert!(e(InjectArgs { ascii: Some("A".into()), ..base.clone() }).contains("not both"));
        assert!(e(InjectArgs { patches: vec!["9:41".into()], ..base.clone() }).contains("past the end"));
        let p = prepare(&InjectArgs { interval_ms: Some(0), max_rate: Some(100.0), ..base }).unwrap();
        assert_eq!(effective_interval(&p), Duration::from_millis(10));
    }

    #[test]
    fn raw_packets_have_correct_checksums() {
        for (src, dst) in [("127.0.0.1:4000", "127.0.0.2:53"), ("[::1]:4000", "[::1]:53")] {
            for proto in [Proto::Udp, Proto::Tcp] {
                let t = Target {
                    proto,
                    local: Some(src.parse().unwrap()),
                    remote: dst.parse().unwrap(),
                    pid: None,
                    cookie: None,
                    tcp: Some(TcpFields { seq: 7, ack: 9, flags: 0x18, window: 512 }),
                    ttl: None,
                };
                let pkt = send::build_packet(&t, b"payload!").unwrap();
                let s = etherparse::SlicedPacket::from_ip(&pkt).unwrap();
                match s.transport.unwrap() {
                    etherparse::TransportSlice::Udp(u) => {
                        let h = u.to_header();
                        let want = match s.net.as_ref().unwrap() {
                            etherparse::NetSlice::Ipv4(v4) => {
                                h.calc_checksum_ipv4(&v4.header().to_header(), u.payload()).unwrap()
                            }
                            etherparse::NetSlice::Ipv6(v6) => {
                                h.calc_checksum_ipv6(&v6.header().to_header(), u.payload()).unwrap()
                            }
                            _ => unreachable!(),
                        };
                        assert_eq!(h.checksum, want);
                        assert_eq!(u.payload(), b"payload!");
                    }
                    etherparse::TransportSlice::Tcp(tc) => {
                        assert_eq!(
                            (tc.sequence_number(), tc.acknowledgment_number(), tc.psh(), tc.ack()),
                            (7, 9, true, true)
                        );
                        let h = tc.to_header();
                        let want = match s.net.as_ref().unwrap() {
                            etherparse::NetSlice::Ipv4(v4) => {
                                h.calc_checksum_ipv4(&v4.header().to_header(), tc.payload()).unwrap()
                            }
                            etherparse::NetSlice::Ipv6(v6) => {
                                h.calc_checksum_ipv6(&v6.header().to_header(), tc.payload()).unwrap()
                            }
                            _ => unreachable!(),
                        };
                        assert_eq!(h.checksum, want);
                    }
                    _ => unreachable!(),
                }
                if let Some(etherparse::NetSlice::Ipv4(v4)) = &s.net {
                    let h = v4.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum());
                }
            }
        }
    }

    struct Fake {
        fail_at: Option<u64>,
        n: u64,
    }
    impl Sender for Fake {
        fn send(&mut self, payload: &[u8], _: Duration) -> Result<send::Sent, SendError> {
            self.n += 1;
            if Some(self.n) == self.fail_at {
                return Err(SendError::new(ErrorKind::SocketClosed, "closed"));
            }
            Ok(send::Sent { bytes: payload.len(), reply: None })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn job(count: u64, stop_on_error: bool) -> Prepared {
        let args = InjectArgs {
            data: Some("414243".into()),
            to: Some("127.0.0.1:1".into()),
            count: Some(count),
            interval_ms: Some(10),
            stop_on_error,
            ..Default::default()
        };
        prepare(&args).unwrap()
    }

    #[test]
    fn loop_counts_paces_and_handles_errors() {
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        let t = Instant::now();
        let s = run_loop(&mut Fake { fail_at: Some(2), n: 0 }, &job(4, false), &stop, &mut |st| seen.push(st.clone()));
        assert!(t.elapsed() >= Duration::from_millis(30), "{:?}", t.elapsed());
        assert_eq!((s.sent, s.failed, s.bytes, s.reason), (3, 1, 9, EndReason::Done));
        assert_eq!(
            seen.iter().map(|s| (s.seq, s.ok)).collect::<Vec<_>>(),
            [(1, true), (2, false), (3, true), (4, true)]
        );
        assert_eq!(seen[1].error_kind, Some(ErrorKind::SocketClosed));
        let s = run_loop(&mut Fake { fail_at: Some(2), n: 0 }, &job(4, true), &stop, &mut |_| {});
        assert_eq!((s.sent, s.failed, s.reason), (1, 1, EndReason::Error));
        // Forever, until stopped from another thread.
        let mut p = job(1, false);
        p.forever = true;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let st2 = stop.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            st2.store(true, Ordering::Relaxed);
        });
        let s = run_loop(&mut Fake { fail_at: None, n: 0 }, &p, &stop, &mut |_| {});
        h.join().unwrap();
        assert_eq!(s.reason, EndReason::Stopped);
        assert!((5..=12).contains(&s.sent), "{}", s.sent);
    }

    #[test]
    fn wire_format() {
        let a: InjectArgs =
            serde_json::from_str(r#"{"packet":5,"patches":["0:41"],"mode":"raw","count":3,"interval_ms":100}"#)
                .unwrap();
        assert_eq!((a.packet, a.mode, a.count), (Some(5), Some(Mode::Raw), Some(3)));
        assert!(serde_json::from_str::<InjectArgs>(r#"{"pakcet":5}"#).is_err());
        let st = SendStatus {
            seq: 1,
            ok: false,
            bytes: 0,
            time_ns: 1,
            elapsed_us: 2,
            error: Some("x".into()),
            error_kind: Some(ErrorKind::Blocked),
            reply: None,
        };
        let j = serde_json::to_string(&st).unwrap();
        assert!(j.contains(r#""error_kind":"blocked""#), "{j}");
        assert_eq!(st.to_string(), "#1 FAILED [blocked]: x");
    }
}
