//! The wire types of send jobs (serde, JSON on the daemon's protocol and in
//! `pidcap send --json`): the arguments of a job ([`InjectArgs`], TLS
//! replay's [`TlsOptions`]), what each send did ([`SendStatus`], a reply's
//! [`ReplyInfo`]), how a job ended ([`Summary`]) and a job as the daemon
//! lists it ([`JobInfo`]). `docs/API.md` describes them.

use pidcap_packet::CapturedPacket;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// TLS (connect mode with `tls`): the server's certificate was not
    /// accepted (unknown issuer, not valid for the name, expired), or the CA
    /// file could not be used. No later send of the job can get past it.
    Certificate,
    /// TLS: the handshake or the session failed otherwise (the server
    /// refused it with an alert, spoke no TLS, broke the protocol).
    Tls,
    Io,
}

impl ErrorKind {
    /// The name serde writes (`process_gone`, `socket_closed`...; also what `Display` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ProcessGone => "process_gone",
            ErrorKind::SocketClosed => "socket_closed",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Permission => "permission",
            ErrorKind::NoSocket => "no_socket",
            ErrorKind::Certificate => "certificate",
            ErrorKind::Tls => "tls",
            ErrorKind::Io => "io",
        }
    }

    /// Errors that no later send of the same job can get past.
    pub fn is_permanent(self) -> bool {
        matches!(self, ErrorKind::ProcessGone | ErrorKind::NoSocket | ErrorKind::Permission | ErrorKind::Certificate)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most bytes of one reply a connect-mode send reads and reports
/// (1 MiB); a longer reply is cut there and [`ReplyInfo::truncated`] says so.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// What the peer sent back (connect mode), whole: every byte read for this
/// send, up to [`MAX_REPLY_BYTES`] (`hex` and `ascii` were cut to 64
/// bytes before; `bytes` is still the size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyInfo {
    /// Bytes received (those in `hex`).
    pub bytes: usize,
    /// The whole reply, hex.
    pub hex: String,
    /// The whole reply, printable ASCII, others as `.`.
    pub ascii: String,
    /// More came than [`MAX_REPLY_BYTES`] (or than a daemon keeps for an
    /// older status): `hex`/`ascii` hold the first `bytes`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// TLS replay: the whole decrypted reply (up to [`MAX_REPLY_BYTES`]),
    /// escaped as the ASCII editor shows bytes ([`pidcap_packet::ascii::escape`]:
    /// `\r \n \t \0 \xHH \\`), so that `ascii::unescape` gives the bytes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// TLS replay: the session the reply came over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSession>,
}

impl ReplyInfo {
    /// The reply `b`, whole.
    pub fn new(b: &[u8]) -> ReplyInfo {
        ReplyInfo {
            bytes: b.len(),
            hex: pidcap_packet::to_hex(b),
            ascii: pidcap_packet::ascii::dots(b),
            truncated: false,
            text: None,
            tls: None,
        }
    }

    /// The reply's bytes (from `hex`).
    pub fn data(&self) -> Vec<u8> {
        pidcap_packet::hex::parse(&self.hex).unwrap_or_default()
    }

    /// The same reply cut to its first `max` bytes (`truncated` set when
    /// something was cut): what a daemon keeps of older statuses.
    pub fn cut(&self, max: usize) -> ReplyInfo {
        if self.bytes <= max {
            return self.clone();
        }
        let data = self.data();
        let mut r = ReplyInfo::new(&data[..max.min(data.len())]);
        r.truncated = true;
        r.tls = self.tls.clone();
        r.text = self.text.as_ref().map(|_| pidcap_packet::ascii::escape(&data[..max.min(data.len())]));
        r
    }
}

/// TLS options of a connect-mode job (`tls` in [`InjectArgs`] and
/// [`crate::Prepared`]): each send opens a fresh TCP connection, makes a TLS
/// handshake (rustls), writes the payload as application data and reads the
/// decrypted reply until the server closes, the timeout passes, or
/// [`crate::tls::MAX_REPLY_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// The server name to send (SNI) and to check the certificate against.
    /// None: the destination's IP address is checked against the
    /// certificate's addresses, and no SNI is sent. (`pidcap send --to
    /// NAME:PORT` resolves the name itself and puts it here.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Do not verify the server's certificate at all (anyone on the path can
    /// then read and change the replay). Handshake signatures are still checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Trust the certificates of this PEM file instead of the system's roots.
    /// Read by the process that sends: a client of the daemon should send
    /// `ca_pem` instead (the daemon runs as root and elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The same as `ca`, given as the PEM text itself (`-----BEGIN CERTIFICATE-----...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// The TLS session of one TLS send, as negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSession {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: String,
    /// `TLS13_AES_256_GCM_SHA384`...
    pub cipher: String,
    /// The name sent as SNI (none for an IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// False with `insecure`: the certificate was not checked.
    pub verified: bool,
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
    /// Connect mode over TLS (see [`TlsOptions`]); absent: plain TCP/UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    // -- resend that replays what you mean (issue 14) --
    /// Connect mode: keep one connection (one UDP socket) for every send of
    /// the job, reopened after an error. Default: a new connection per send,
    /// as a client makes one per request (an HTTP/1.0 server closes after
    /// its answer). Not with `tls` (always a connection per send).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_connection: bool,
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

impl fmt::Display for SendStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok {
            write!(f, "#{} sent {} bytes in {} us", self.seq, self.bytes, self.elapsed_us)?;
            if let Some(r) = &self.reply {
                // The reply itself is shown whole elsewhere (`pidcap send` below the line, the UI's reply view).
                write!(f, "; reply {} bytes", r.bytes)?;
                if r.truncated {
                    f.write_str(" (cut)")?;
                }
                if let Some(t) = &r.tls {
                    write!(f, " over {} {}", t.version, t.cipher)?;
                    if !t.verified {
                        f.write_str(" (certificate NOT verified)")?;
                    }
                }
            }
            Ok(())
        } else {
            let kind = self.error_kind.map_or("", ErrorKind::as_str);
            write!(f, "#{} FAILED [{kind}]: {}", self.seq, self.error.as_deref().unwrap_or("?"))
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

impl EndReason {
    /// The name serde writes: `done`, `stopped`, `error`, `failed` (also what `Display` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Done => "done",
            EndReason::Stopped => "stopped",
            EndReason::Error => "error",
            EndReason::Failed => "failed",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
        write!(
            f,
            "{} sent, {} failed, {} bytes in {} ms ({})",
            self.sent, self.failed, self.bytes, self.duration_ms, self.reason
        )
    }
}

/// Where a job stands: `running`, `done`, `stopped`, `failed` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// Every send was made.
    Done,
    /// Stopped from outside, or by an error after the sender opened.
    Stopped,
    /// The sender could not open (no socket, no permission...).
    Failed,
}

impl JobState {
    /// The name serde writes (also what `Display` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EndReason> for JobState {
    /// The state of a job that ended so: an `error` ending is `stopped` (the
    /// sender opened), a `failed` one `failed` (it could not).
    fn from(r: EndReason) -> JobState {
        match r {
            EndReason::Done => JobState::Done,
            EndReason::Stopped | EndReason::Error => JobState::Stopped,
            EndReason::Failed => JobState::Failed,
        }
    }
}

/// A job as the daemon lists it (`list_jobs`, `inject`'s result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    pub state: JobState,
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_reply_is_whole_and_cut_only_when_asked() {
        let body: Vec<u8> = (0..300u32).map(|i| (i % 256) as u8).collect();
        let r = ReplyInfo::new(&body);
        assert_eq!((r.bytes, r.data(), r.ascii.len(), r.truncated), (300, body.clone(), 300, false));
        let j = serde_json::to_string(&r).unwrap();
        assert!(!j.contains("truncated"), "absent when whole: {j}");
        let c = r.cut(100);
        assert_eq!((c.bytes, c.data(), c.truncated), (100, body[..100].to_vec(), true));
        assert!(serde_json::to_string(&c).unwrap().contains(r#""truncated":true"#));
        assert_eq!(r.cut(300), r, "nothing to cut");
        let mut tls = r.clone();
        tls.text = Some(pidcap_packet::ascii::escape(&body));
        assert_eq!(pidcap_packet::ascii::unescape(tls.cut(10).text.as_deref().unwrap()).unwrap(), body[..10]);
        let st = SendStatus {
            seq: 2,
            ok: true,
            bytes: 3,
            time_ns: 0,
            elapsed_us: 7,
            error: None,
            error_kind: None,
            reply: Some(r),
        };
        assert_eq!(st.to_string(), "#2 sent 3 bytes in 7 us; reply 300 bytes");
        assert_eq!(SendStatus { reply: Some(c), ..st }.to_string(), "#2 sent 3 bytes in 7 us; reply 100 bytes (cut)");
    }

    #[test]
    fn names_are_the_serde_names() {
        let name = |v: serde_json::Value| v.as_str().unwrap().to_string();
        for k in [
            ErrorKind::ProcessGone,
            ErrorKind::SocketClosed,
            ErrorKind::Blocked,
            ErrorKind::Refused,
            ErrorKind::Timeout,
            ErrorKind::Permission,
            ErrorKind::NoSocket,
            ErrorKind::Certificate,
            ErrorKind::Tls,
            ErrorKind::Io,
        ] {
            assert_eq!(k.to_string(), name(serde_json::to_value(k).unwrap()));
        }
        for r in [EndReason::Done, EndReason::Stopped, EndReason::Error, EndReason::Failed] {
            assert_eq!(r.to_string(), name(serde_json::to_value(r).unwrap()));
        }
        for s in [JobState::Running, JobState::Done, JobState::Stopped, JobState::Failed] {
            assert_eq!(s.to_string(), name(serde_json::to_value(s).unwrap()));
            assert_eq!(serde_json::from_value::<JobState>(serde_json::to_value(s).unwrap()).unwrap(), s);
        }
        assert_eq!(JobState::from(EndReason::Error), JobState::Stopped);
        assert_eq!(JobState::from(EndReason::Failed), JobState::Failed);
        assert_eq!(JobState::from(EndReason::Done), JobState::Done);
    }
}
