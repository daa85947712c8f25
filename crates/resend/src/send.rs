//! The three ways to send ([`Sender`]): the owning process's socket, a raw
//! socket, a new connection (over TLS: [`crate::tls`]); and why a send failed ([`SendError`]).

use crate::sys;
use crate::{ErrorKind, Proto, ReplyInfo, Target};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a send (or opening a sender) failed: the kind for programs, the
/// message for people (it goes into [`crate::SendStatus::error`]), and the
/// OS error behind it when there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Arc<io::Error>>,
}

impl SendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SendError {
        SendError { kind, message: message.into(), source: None }
    }

    /// A system call interrupted by a signal (EINTR).
    pub fn is_interrupted(&self) -> bool {
        self.source.as_ref().is_some_and(|e| e.kind() == io::ErrorKind::Interrupted)
    }

    /// The same error, caused by `e`.
    pub fn with_source(mut self, e: io::Error) -> SendError {
        self.source = Some(Arc::new(e));
        self
    }
}

/// What one successful send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub bytes: usize,
    pub reply: Option<ReplyInfo>,
}

/// A way to send a payload, opened once per job and used for every send.
pub trait Sender: Send {
    /// Send one payload. `wait`: how long to wait for a reply (connect mode).
    fn send(&mut self, payload: &[u8], wait: Duration) -> Result<Sent, SendError>;
    /// Describe the socket in use (`fd 5 of pid 1234, cookie 8812`).
    fn describe(&self) -> String;
}

fn classify(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::EPERM) => ErrorKind::Blocked,
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ESHUTDOWN | libc::EBADF) => {
            ErrorKind::SocketClosed
        }
        Some(libc::ECONNREFUSED) => ErrorKind::Refused,
        Some(libc::ETIMEDOUT | libc::EAGAIN) => ErrorKind::Timeout,
        Some(libc::EACCES) => ErrorKind::Permission,
        _ => ErrorKind::Io,
    }
}

/// A send error from an OS error, explained.
pub(crate) fn os_error(what: &str, e: io::Error) -> SendError {
    let kind = classify(&e);
    let hint = match kind {
        ErrorKind::Blocked => " (EPERM: a pidcap block rule, or a firewall, refused it)",
        ErrorKind::SocketClosed => " (the connection is closed)",
        ErrorKind::Refused => " (nothing listens there)",
        _ => "",
    };
    let message = format!("{what}: {e}{hint}");
    SendError::new(kind, message).with_source(e)
}

/// Write all of `buf` on a socket we share with its process, without ever
/// changing its flags: MSG_DONTWAIT, and poll while its send buffer is full.
fn send_all(fd: BorrowedFd<'_>, buf: &[u8], to: Option<&SocketAddr>, timeout: Duration) -> Result<usize, SendError> {
    let deadline = Instant::now() + timeout;
    let mut off = 0;
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    while off < buf.len() || (buf.is_empty() && off == 0) {
        let r = match to {
            Some(a) => sys::send_to(fd, &buf[off..], flags, a),
            None => sys::send(fd, &buf[off..], flags),
        };
        match r {
            Ok(n) => {
                off += n;
                if buf.is_empty() || to.is_some() {
                    break; // a datagram goes whole or not at all
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !sys::wait_writable(fd, left.as_millis().min(i32::MAX as u128) as i32) {
                    return Err(SendError::new(
                        ErrorKind::Timeout,
                        format!("send buffer full for {timeout:?}: {off} of {} bytes sent", buf.len()),
                    ));
                }
            }
            Err(e) => return Err(os_error("send", e)),
        }
    }
    Ok(off)
}

// ---------------------------------------------------------------- socket mode

/// The owning process's own socket, duplicated with pidfd_getfd.
pub struct SocketSender {
    pid: u32,
    pidfd: OwnedFd,
    sock: OwnedFd,
    /// The descriptor number in the process, and the socket's inode.
    their_fd: i32,
    inode: u64,
    cookie: u64,
    proto: Proto,
    remote: SocketAddr,
    /// UDP: connected to `remote`, so plain send() (no sendmsg hook, no re-attribution).
    connected: bool,
}

fn socket_inode(pid: u32, fd: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn same_addr(a: &SocketAddr, b: &SocketAddr) -> bool {
    fn canon(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
    }
    a.port() == b.port() && (canon(a.ip()) == canon(b.ip()) || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl SocketSender {
    /// Find the socket of `t.pid` that matches `t` (cookie first, else local and remote address) and duplicate it.
    pub fn open(t: &Target) -> Result<SocketSender, SendError> {
        let pid = t.pid.ok_or_else(|| {
            SendError::new(ErrorKind::NoSocket, "socket mode needs the process: a captured packet, or --pid")
        })?;
        let pidfd = sys::pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => {
                SendError::new(ErrorKind::ProcessGone, format!("process {pid} does not exist (it has exited)"))
                    .with_source(e)
            }
            _ => os_error(&format!("pidfd_open({pid})"), e),
        })?;
        let want_ty = match t.proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp => libc::SOCK_DGRAM,
        };
        let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| {
            SendError::new(ErrorKind::ProcessGone, format!("cannot list /proc/{pid}/fd: {e}")).with_source(e)
        })?;
        let mut by_addr: Option<(OwnedFd, i32, u64)> = None;
        let mut seen = 0;
        for ent in dir.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(inode) = socket_inode(pid, name) else { continue };
            let Ok(their_fd) = name.parse::<i32>() else { continue };
            let fd = match sys::pidfd_getfd(&pidfd, their_fd) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(SendError::new(
                        ErrorKind::Permission,
                        format!("pidfd_getfd on process {pid}: {e} (needs root, or CAP_SYS_PTRACE over that process)"),
                    )
                    .with_source(e))
                }
                Err(_) => continue, // closed meanwhile
            };
            let raw = fd.as_fd();
            if sys::getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_TYPE).ok() != Some(want_ty) {
                continue;
            }
            seen += 1;
            let cookie = sys::socket_cookie(raw).unwrap_or(0);
            if t.cookie.is_some_and(|c| c != 0 && c == cookie) {
                return Ok(SocketSender::new(pid, pidfd, fd, their_fd, inode, cookie, t));
            }
            let local_ok = t.local.is_none_or(|l| sys::local_addr(raw).is_some_and(|a| same_addr(&a, &l)));
            let peer = sys::peer_addr(raw);
            let remote_ok = match (t.proto, peer) {
                (Proto::Tcp, Some(p)) => same_addr(&p, &t.remote),
                (Proto::Tcp, None) => false, // listening, or not connected
                (Proto::Udp, Some(p)) => same_addr(&p, &t.remote),
                (Proto::Udp, None) => t.local.is_some(), // unconnected: the local address must say which
            };
            if local_ok && remote_ok && by_addr.is_none() {
                by_addr = Some((fd, their_fd, inode));
            }
        }
        match by_addr {
            Some((fd, their_fd, inode)) => {
                let cookie = sys::socket_cookie(fd.as_fd()).unwrap_or(0);
                Ok(SocketSender::new(pid, pidfd, fd, their_fd, inode, cookie, t))
            }
            None => {
                let what = match (t.cookie, t.local) {
                    (Some(c), Some(l)) => format!("with cookie {c} or local {l} and remote {}", t.remote),
                    (Some(c), None) => format!("with cookie {c} or remote {}", t.remote),
                    (None, Some(l)) => format!("with local {l} and remote {}", t.remote),
                    (None, None) => format!("with remote {}", t.remote),
                };
                Err(SendError::new(
                    ErrorKind::NoSocket,
                    format!(
                        "process {pid} has no {} socket {what} ({seen} {} sockets looked at; closed?)",
                        t.proto, t.proto
                    ),
                ))
            }
        }
    }

    fn new(
        pid: u32,
        pidfd: OwnedFd,
        sock: OwnedFd,
        their_fd: i32,
        inode: u64,
        cookie: u64,
        t: &Target,
    ) -> SocketSender {
        let connected = sys::peer_addr(sock.as_fd()).is_some_and(|p| same_addr(&p, &t.remote));
        SocketSender { pid, pidfd, sock, their_fd, inode, cookie, proto: t.proto, remote: t.remote, connected }
    }

    /// The socket cookie of the socket in use.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }
}

impl Sender for SocketSender {
    fn send(&mut self, payload: &[u8], wait: Duration) -> Result<Sent, SendError> {
        if sys::pidfd_exited(&self.pidfd) {
            return Err(SendError::new(ErrorKind::ProcessGone, format!("process {} has exited", self.pid)));
        }
        if socket_inode(self.pid, &self.their_fd.to_string()) != Some(self.inode) {
            return Err(SendError::new(
                ErrorKind::SocketClosed,
                format!(
                    "process {} closed the socket (fd {} is no longer socket:[{}])",
                    self.pid, self.their_fd, self.inode
                ),
            ));
        }
        let fd = self.sock.as_fd();
        let to = match self.proto {
            Proto::Udp if !self.connected => Some(&self.remote),
            _ => None,
        };
        let bytes = send_all(fd, payload, to, wait.max(Duration::from_secs(1)))?;
        Ok(Sent { bytes, reply: None })
    }

    fn describe(&self) -> String {
        format!(
            "fd {} of pid {} ({} socket:[{}], cookie {})",
            self.their_fd, self.pid, self.proto, self.inode, self.cookie
        )
    }
}

// ---------------------------------------------------------------- raw mode

/// A raw socket (header included): the whole IP packet is ours.
pub struct RawSender {
    sock: OwnedFd,
    t: Target,
}

/// Build the IP packet for `payload` from `t` (src = `t.local`, dst = `t.remote`)
/// with [`pidcap_packet::build::build`]: lengths and checksums computed.
pub fn build_packet(t: &Target, payload: &[u8]) -> Result<Vec<u8>, SendError> {
    use pidcap_packet::build::{build, BuildError, Transport, DEFAULT_TTL};
    let src =
        t.local.ok_or_else(|| SendError::new(ErrorKind::Io, "raw mode needs a source address (--from ADDR:PORT)"))?;
    let dst = t.remote;
    let transport = match t.proto {
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp(t.tcp.unwrap_or_default()),
    };
    build(src, dst, t.ttl.unwrap_or(DEFAULT_TTL), transport, payload).map_err(|e| match e {
        BuildError::MixedVersions { .. } => SendError::new(
            ErrorKind::Io,
            format!("raw mode: source {src} and destination {dst} are not the same IP version"),
        ),
        BuildError::Write(e) => SendError::new(ErrorKind::Io, format!("building the packet: {e}")),
    })
}

impl RawSender {
    pub fn open(t: &Target) -> Result<RawSender, SendError> {
        let domain = sys::domain_of(&t.remote.ip());
        let sock = sys::socket(domain, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                SendError::new(ErrorKind::Permission, format!("raw socket: {e} (needs root or CAP_NET_RAW)"))
                    .with_source(e)
            } else {
                os_error("raw socket", e)
            }
        })?;
        build_packet(t, b"")?; // check the addresses now, not at the first send
        Ok(RawSender { sock, t: t.clone() })
    }
}

impl Sender for RawSender {
    fn send(&mut self, payload: &[u8], _wait: Duration) -> Result<Sent, SendError> {
        let pkt = build_packet(&self.t, payload)?;
        let to = SocketAddr::new(self.t.remote.ip(), 0);
        sys::send_to(self.sock.as_fd(), &pkt, 0, &to).map_err(|e| os_error("raw sendto", e))?;
        Ok(Sent { bytes: payload.len(), reply: None })
    }

    fn describe(&self) -> String {
        format!("raw {} {} -> {}", self.t.proto, self.t.local.map_or("?".into(), |a| a.to_string()), self.t.remote)
    }
}

// ---------------------------------------------------------------- connect mode

/// A new TCP connection to `t.remote` (bound to `t.local` when given), Nagle off.
pub(crate) fn tcp_connect(t: &Target, timeout: Duration) -> Result<TcpStream, SendError> {
    let domain = sys::domain_of(&t.remote.ip());
    let stream = match t.local {
        None => TcpStream::connect_timeout(&t.remote, timeout)
            .map_err(|e| os_error(&format!("connect to {}", t.remote), e))?,
        Some(local) => {
            let fd = sys::socket(domain, libc::SOCK_STREAM, 0).map_err(|e| os_error("socket", e))?;
            let _ = sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            sys::bind(fd.as_fd(), &local).map_err(|e| os_error(&format!("bind {local}"), e))?;
            let (ss, len) = sys::to_sockaddr(&t.remote);
            // SAFETY: the address is valid for len bytes; blocking connect on our own socket.
            let r = unsafe { libc::connect(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len) };
            if r < 0 {
                return Err(os_error(&format!("connect to {}", t.remote), io::Error::last_os_error()));
            }
            // SAFETY: fd is a connected TCP socket we own; ownership moves to the stream.
            unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

enum Conn {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// Connect mode: a new TCP connection or UDP socket per send (a client's
/// request each time), or with `keep` one for the whole job, reopened after
/// an error.
pub struct ConnectSender {
    t: Target,
    timeout: Duration,
    /// One connection for every send.
    keep: bool,
    conn: Option<Conn>,
    /// Why connecting at open failed: the first send's outcome.
    pending: Option<SendError>,
    /// The local end of the last connection (for `describe`).
    last_local: Option<SocketAddr>,
}

/// Keeping the connection, a reply is over once nothing more came for this long.
const QUIET: Duration = Duration::from_millis(100);

impl ConnectSender {
    /// Open the sender: with `keep`, connect now. Only a
    /// [permanent](ErrorKind::is_permanent) failure (no permission) is an
    /// error here: a refused or timed-out connect is the first send's failed
    /// status, and each later send connects again, so a loop goes on as for
    /// any failed send. Without `keep` every send connects.
    pub fn open(t: &Target, timeout: Duration, keep: bool) -> Result<ConnectSender, SendError> {
        let mut s = ConnectSender { t: t.clone(), timeout, keep, conn: None, pending: None, last_local: None };
        if keep {
            match s.connect() {
                Ok(c) => s.conn = Some(c),
                Err(e) if e.kind.is_permanent() => return Err(e),
                Err(e) => s.pending = Some(e),
            }
        }
        Ok(s)
    }

    fn connect(&mut self) -> Result<Conn, SendError> {
        let t = &self.t;
        let c = match t.proto {
            Proto::Tcp => Conn::Tcp(tcp_connect(t, self.timeout)?),
            Proto::Udp => {
                let local = t.local.unwrap_or_else(|| {
                    SocketAddr::new(if t.remote.is_ipv4() { [0, 0, 0, 0].into() } else { IpAddr::V6(0.into()) }, 0)
                });
                let s = UdpSocket::bind(local).map_err(|e| os_error(&format!("bind {local}"), e))?;
                s.connect(t.remote).map_err(|e| os_error(&format!("connect to {}", t.remote), e))?;
                Conn::Udp(s)
            }
        };
        self.last_local = match &c {
            Conn::Tcp(s) => s.local_addr().ok(),
            Conn::Udp(s) => s.local_addr().ok(),
        };
        Ok(c)
    }
}

/// Read what comes back within `wait`, whole: until the peer closes, `wait`
/// has passed, [`MAX_REPLY_BYTES`](crate::wire::MAX_REPLY_BYTES) (then the
/// reply says it was cut), or, with `quiet` (a kept connection, which the
/// peer does not close), once nothing more came for that long. None: nothing
/// came (or a stop cut the wait short).
fn read_reply<R: Read>(
    r: &mut R,
    set_timeout: &dyn Fn(Option<Duration>) -> io::Result<()>,
    wait: Duration,
    quiet: Option<Duration>,
) -> io::Result<Option<ReplyInfo>> {
    if wait.is_zero() {
        return Ok(None);
    }
    let max = crate::wire::MAX_REPLY_BYTES;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    let mut closed = false;
    while got.len() <= max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let step = match quiet {
            Some(q) if !got.is_empty() => left.min(q),
            _ => left,
        };
        set_timeout(Some(step))?;
        match r.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // The wait (or the quiet gap) is over, or a signal (a stop:
            // SIGINT/SIGTERM) cut it short: the reply is what came.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                break
            }
            // Reset after its answer (some servers): the answer is what came.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    if got.is_empty() && !closed {
        return Ok(None);
    }
    let truncated = got.len() > max;
    got.truncate(max);
    let mut info = ReplyInfo::new(&got);
    info.truncated = truncated;
    Ok(Some(info))
}

impl Sender for ConnectSender {
    fn send(&mut self, payload: &[u8], wait: Duration) -> Result<Sent, SendError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if self.conn.is_none() {
            let c = self.connect()?;
            self.conn = Some(c);
        }
        let quiet = self.keep.then_some(QUIET);
        let result = match self.conn.as_mut() {
            Some(Conn::Tcp(s)) => s.write_all(payload).map_err(|e| os_error("send", e)).and_then(|_| {
                let st = s.try_clone().map_err(|e| os_error("socket", e))?;
                read_reply(s, &|d| st.set_read_timeout(d), wait, quiet).map_err(|e| os_error("receive", e))
            }),
            Some(Conn::Udp(s)) => s.send(payload).map_err(|e| os_error("send", e)).and_then(|_| {
                let mut buf = vec![0u8; 65536];
                if wait.is_zero() {
                    return Ok(None);
                }
                s.set_read_timeout(Some(wait)).map_err(|e| os_error("socket", e))?;
                match s.recv(&mut buf) {
                    Ok(n) => Ok(Some(ReplyInfo::new(&buf[..n]))),
                    // A signal (a stop: SIGINT/SIGTERM) cut the wait short: sent, no reply.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(os_error("receive", e)),
                }
            }),
            None => unreachable!("connected above"),
        };
        if !self.keep || (result.is_err() && matches!(self.t.proto, Proto::Tcp)) {
            self.conn = None; // a new connection at the next send (closed now)
        }
        result.map(|reply| Sent { bytes: payload.len(), reply })
    }

    fn describe(&self) -> String {
        if self.keep {
            let local = self.last_local.map_or("?".into(), |a| a.to_string());
            format!("one {} socket {local} -> {} for every send", self.t.proto, self.t.remote)
        } else {
            format!("a new {} socket per send -> {}", self.t.proto, self.t.remote)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TcpFields;

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
                let pkt = build_packet(&t, b"payload!").unwrap();
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
}
