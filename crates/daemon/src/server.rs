//! The daemon: one kernel layer, served on a Unix socket.
//!
//! Access: the socket is mode 0660, owned by root and the `pidcap` group
//! when that group exists (else root's group); a directory the daemon
//! creates for it (and always the default /run/pidcap) is mode 0750 with the
//! same group. On top of the file permissions, every client's credentials
//! (SO_PEERCRED) are checked: root, the daemon's own user, and members of
//! the group get in; anyone else gets a `permission_denied` error.
//!
//! One daemon per socket: a socket file someone answers on means a live
//! daemon (refused); one nobody answers on is stale (removed).
//!
//! Bounds: at most [`DaemonConfig::max_clients`] connections (one more gets
//! a `busy` line and is closed); each reads its next request only once the
//! last reply is written, and writes replies [`CHUNK_BYTES`] at a time as
//! the client reads (`get_packets` pages are streamed, never built whole);
//! memory freed by clients that left is handed back to the system.
//!
//! Fan-out: a packet is serialized once for every subscriber (the shared
//! JSON of [`SharedPacket`]); each subscription puts its own event head
//! (made once) before it in a batch of whatever is queued for it, written in
//! one write; its queue is bounded ([`SUBSCRIBER_QUEUE`]): one that falls
//! further behind skips the oldest and is told how many (`missed`). The
//! counters are not queued: each subscriber gets the latest when it changes.
//!
//! Lifetime: every kernel attachment is a BPF link held by this process;
//! when it dies, however it dies, programs, maps and rules go with it.

use crate::engine::{self, Command, Counters, EngineReply, HeldPage, Msg, Published, SharedPacket, QUOTE_CHARS};
use crate::error::{DaemonError, Result};
use crate::jobs::{JobEvent, Jobs};
use pidcap_api::protocol::{
    cut_quotes, packet_event_head, parse_request, ApiError, ConnectionOp, EngineOp, ErrorCode, Event, InjectArgs,
    JobReply, Jobs as JobList, Op, Reply, Subscribed, Watching, DEFAULT_GROUP, DEFAULT_SOCKET, MAX_REQUEST_BYTES,
    PACKET_EVENT_TAIL,
};
use pidcap_engine::procfs::Procfs;
use pidcap_engine::{EngineError, KernelBackend};
use pidcap_packet::CapturedPacket;
use serde::Serialize;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc as tmpsc, oneshot, watch};

/// Packets a subscriber may fall behind by before it is told it missed some.
pub const SUBSCRIBER_QUEUE: usize = 8192;
/// Clients served at once unless configured otherwise ([`DaemonConfig::max_clients`]).
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// A reply is written in chunks of about this size, each once the socket
/// has taken the one before: what a client that does not read costs the daemon.
pub const CHUNK_BYTES: usize = 64 << 10;
/// How often freed memory is handed back to the system after clients left.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    /// The group allowed in besides root (None: root only). Ignored when it does not exist.
    pub group: Option<String>,
    /// Stop cleanly on SIGINT/SIGTERM (the `pidcap daemon` command); tests say no.
    pub handle_signals: bool,
    /// Clients served at once (at least 1); one more is told `busy` and closed.
    pub max_clients: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: DEFAULT_SOCKET.into(),
            group: Some(DEFAULT_GROUP.into()),
            handle_signals: true,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// A bound daemon, ready to [`Daemon::serve`].
pub struct Daemon {
    listener: std::os::unix::net::UnixListener,
    socket: PathBuf,
    gid: Option<u32>,
    shared: Arc<Shared>,
    engine: std::thread::JoinHandle<()>,
    handle_signals: bool,
    max_clients: usize,
}

struct Shared {
    cmd: mpsc::Sender<Msg>,
    tx: broadcast::Sender<Published>,
    /// The latest counters (the engine holds the sender).
    counters: watch::Receiver<Option<Counters>>,
    subscribers: Arc<AtomicUsize>,
    gid: Option<u32>,
    jobs: Jobs,
    /// Connections being served.
    clients: AtomicUsize,
    /// A connection ended since memory was last trimmed.
    released: std::sync::atomic::AtomicBool,
}

/// The gid of group `name`, from /etc/group.
pub fn group_gid(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

fn chown_group(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| DaemonError::io(format!("chmod {mode:o} {}", path.display()), e))
}

/// Refuse a live daemon on `path`, remove a stale socket file.
fn claim_socket_path(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(DaemonError::AlreadyRunning(path.into())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!("removing the stale socket {}", path.display());
                std::fs::remove_file(path)
                    .map_err(|e| DaemonError::io(format!("removing the stale socket {}", path.display()), e))
            }
            Err(e) => Err(DaemonError::io(format!("checking for a daemon on {}", path.display()), e)),
        },
        Ok(_) => Err(DaemonError::NotASocket(path.into())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DaemonError::io(format!("checking {}", path.display()), e)),
    }
}

/// Create the socket's directory (0750, group `gid`) if missing; the default
/// directory gets those permissions even if it exists.
fn prepare_dir(path: &Path, gid: Option<u32>) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    let ours = !dir.exists() || Some(dir) == Path::new(DEFAULT_SOCKET).parent();
    std::fs::create_dir_all(dir).map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
    if ours {
        set_mode(dir, 0o750)?;
        if let Some(gid) = gid {
            chown_group(dir, gid).map_err(|e| DaemonError::io(format!("chgrp {}", dir.display()), e))?;
        }
    }
    Ok(())
}

impl Daemon {
    /// Check the socket path (a second daemon is refused before anything is
    /// loaded), load the kernel layer with `load`, bind the socket.
    pub fn bind(
        config: DaemonConfig,
        load: impl FnOnce() -> Result<Box<dyn KernelBackend>, EngineError>,
    ) -> Result<Daemon> {
        claim_socket_path(&config.socket)?;
        Daemon::bind_with_backend(config, load()?)
    }

    /// As [`Daemon::bind`], on a kernel layer already loaded (or a fake).
    pub fn bind_with_backend(config: DaemonConfig, backend: Box<dyn KernelBackend>) -> Result<Daemon> {
        let path = config.socket;
        claim_socket_path(&path)?;
        let gid = config.group.as_deref().and_then(group_gid);
        if let (Some(g), None) = (&config.group, gid) {
            tracing::info!("group {g} does not exist: only root may use the daemon");
        }
        prepare_dir(&path, gid)?;
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(|e| {
            if e.kind() == ErrorKind::AddrInUse {
                DaemonError::AlreadyRunning(path.clone())
            } else {
                DaemonError::io(format!("binding {}", path.display()), e)
            }
        })?;
        set_mode(&path, 0o660)?;
        if let Some(gid) = gid {
            chown_group(&path, gid).map_err(|e| DaemonError::io(format!("chgrp {}", path.display()), e))?;
        }
        let (tx, _) = broadcast::channel(SUBSCRIBER_QUEUE);
        let subscribers = Arc::new(AtomicUsize::new(0));
        let (counters_tx, counters) = watch::channel(None);
        let (cmd, engine) = engine::spawn(backend, tx.clone(), counters_tx, Arc::clone(&subscribers))?;
        Ok(Daemon {
            listener,
            socket: path,
            gid,
            shared: Arc::new(Shared {
                cmd,
                tx,
                counters,
                subscribers,
                gid,
                jobs: Jobs::default(),
                clients: AtomicUsize::new(0),
                released: Default::default(),
            }),
            engine,
            handle_signals: config.handle_signals,
            max_clients: config.max_clients.max(1),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The group allowed in, if any.
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }

    /// Serve clients until SIGINT/SIGTERM (with `handle_signals`), then clean up.
    pub fn run(self) -> Result<()> {
        let (_keep, stop) = oneshot::channel();
        self.serve(stop)
    }

    /// Serve clients until `stop` fires (or is dropped), or SIGINT/SIGTERM
    /// when handling signals. Then stop the capture, unload and remove the socket.
    pub fn serve(self, stop: oneshot::Receiver<()>) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DaemonError::io("starting the async runtime", e))?;
        let Daemon { listener, socket, shared, engine, handle_signals, max_clients, .. } = self;
        let result = rt.block_on(async {
            listener.set_nonblocking(true).map_err(|e| DaemonError::io("socket", e))?;
            let listener = UnixListener::from_std(listener).map_err(|e| DaemonError::io("socket", e))?;
            let signals = async {
                if !handle_signals {
                    return std::future::pending::<()>().await;
                }
                use tokio::signal::unix::{signal, SignalKind};
                match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                    (Ok(mut i), Ok(mut t)) => {
                        tokio::select! { _ = i.recv() => {}, _ = t.recv() => {} }
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            tokio::pin!(signals);
            tokio::pin!(stop);
            let mut trim = tokio::time::interval(TRIM_EVERY);
            trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut signals => break,
                    _ = &mut stop => break,
                    _ = trim.tick() => {
                        if shared.released.swap(false, Ordering::Relaxed) {
                            release_memory();
                        }
                    }
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) if shared.clients.load(Ordering::Relaxed) >= max_clients => {
                            refuse_busy(&stream, max_clients);
                        }
                        Ok((stream, _)) => {
                            shared.clients.fetch_add(1, Ordering::Relaxed);
                            let guard = ClientGuard(Arc::clone(&shared));
                            tokio::spawn(async move {
                                connection(stream, &guard.0).await;
                                drop(guard);
                            });
                        }
                        Err(e) => {
                            tracing::warn!("accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            Ok(())
        });
        drop(rt); // ends every connection task
        shared.jobs.stop_all();
        drop(shared); // the engine thread sees its channel close, stops and unloads
        let _ = engine.join();
        let _ = std::fs::remove_file(&socket);
        result
    }
}

/// One connection being served: counted while it lives.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        self.0.released.store(true, Ordering::Relaxed);
    }
}

/// One client too many: one `busy` line, written without waiting (the
/// socket's buffer is empty), then the connection is closed.
fn refuse_busy(stream: &UnixStream, max: usize) {
    let e = ApiError::new(
        ErrorCode::Busy,
        format!("the daemon is serving its maximum of {max} clients (--max-clients); try again later"),
    );
    let mut line = Vec::new();
    encode(&mut line, &Line::err(None, e));
    let _ = stream.try_write(&line);
    tracing::debug!("refused a client: {max} connected");
}

/// Hand memory freed by clients that left back to the system: glibc keeps
/// freed heap memory for reuse unless asked.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Is the peer root, the daemon's user, or in the allowed group?
fn peer_allowed(stream: &UnixStream, gid: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else { return false };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        return true;
    }
    let Some(gid) = gid else { return false };
    if cred.gid() == gid {
        return true;
    }
    // A supplementary group: SO_PEERCRED has only the primary one.
    let Some(pid) = cred.pid().and_then(|p| u32::try_from(p).ok()) else { return false };
    Procfs::default().status(pid).is_ok_and(|s| s.groups.contains(&gid))
}

enum Frame {
    Line(Vec<u8>),
    TooLarge,
    Eof,
}

/// Reads request lines of at most [`MAX_REQUEST_BYTES`]; cancel-safe (its
/// state lives here, and the only await is `fill_buf`).
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    discarding: bool,
}

impl LineReader {
    async fn next<R: AsyncBufRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<Frame> {
        loop {
            let avail = rd.fill_buf().await?;
            if avail.is_empty() {
                return Ok(if self.discarding || self.buf.is_empty() {
                    Frame::Eof
                } else {
                    Frame::Line(std::mem::take(&mut self.buf))
                });
            }
            let (chunk, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], Some(i + 1)),
                None => (avail, None),
            };
            let n = end.unwrap_or(chunk.len());
            if !self.discarding {
                if self.buf.len() + chunk.len() > MAX_REQUEST_BYTES {
                    self.discarding = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            rd.consume(n);
            if end.is_some() {
                if std::mem::take(&mut self.discarding) {
                    return Ok(Frame::TooLarge);
                }
                return Ok(Frame::Line(std::mem::take(&mut self.buf)));
            }
        }
    }
}

/// A connection's own results (see [`ConnectionOp`]).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ConnectionReply {
    Subscribed(Subscribed),
    Job(Box<JobReply>),
    Jobs(JobList),
    Watching(Box<Watching>),
}

/// Every result a connection writes.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer {
    Engine(EngineReply),
    Connection(ConnectionReply),
}

/// A line the daemon writes.
type Line = Reply<Answer>;

/// Append `reply`'s line to `out`.
fn encode(out: &mut Vec<u8>, reply: &Line) {
    if let Err(e) = serde_json::to_writer(&mut *out, reply) {
        let e = ApiError::new(ErrorCode::Internal, format!("encoding the reply: {e}"));
        // An error reply of plain strings always encodes.
        let _ = serde_json::to_writer(&mut *out, &Line::err(reply.id, e));
    }
    out.push(b'\n');
}

/// Append a packet event's line (protocol version `v`, request `id`, whose
/// [`packet_event_head`] is `head`) to `out`, from the packet's shared JSON:
/// no allocation, one copy of the JSON into the subscriber's batch.
fn encode_packet(
    out: &mut Vec<u8>,
    (v, id, head): (u32, u64, &[u8]),
    json: std::result::Result<&[u8], Arc<serde_json::Error>>,
) {
    match json {
        Ok(json) => {
            out.extend_from_slice(head);
            out.extend_from_slice(json);
            out.extend_from_slice(PACKET_EVENT_TAIL);
        }
        Err(e) => encode(
            out,
            &Line::err(Some(id), ApiError::new(ErrorCode::Internal, format!("encoding a packet: {e}"))).at_version(v),
        ),
    }
}

/// Does a client of protocol version `v` get this packet? TLS plaintext
/// records are version 2's: a version 1 client would take one for a packet
/// seen on the wire.
fn for_version(v: u32, p: &CapturedPacket) -> bool {
    v >= 2 || !p.is_tls()
}

/// Write a `get_packets` reply: the same line serde writes for it, built and
/// written [`CHUNK_BYTES`] at a time, so a page (up to 2 MiB of packets,
/// twice that in hex) is never held whole in memory.
///
/// For a version 1 client the page leaves out TLS records (`next_since` and
/// `more` still count them, so paging goes on past them).
async fn write_page<W: AsyncWrite + Unpin>(wr: &mut W, v: u32, id: u64, page: &HeldPage) -> std::io::Result<()> {
    use std::io::Write;
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + (8 << 10));
    write!(chunk, r#"{{"v":{v},"id":{id},"ok":true,"result":{{"packets":["#)?;
    for (i, p) in page.packets.iter().filter(|p| for_version(v, p)).enumerate() {
        if i > 0 {
            chunk.push(b',');
        }
        // Half a line is out already: a packet that does not encode (a bug) ends the connection.
        serde_json::to_writer(&mut chunk, &**p).map_err(std::io::Error::other)?;
        if chunk.len() >= CHUNK_BYTES {
            wr.write_all(&chunk).await?;
            chunk.clear();
        }
    }
    writeln!(chunk, r#"],"next_since":{},"more":{},"missed":{}}}}}"#, page.next_since, page.more, page.missed)?;
    wr.write_all(&chunk).await
}

async fn write_reply<W: AsyncWrite + Unpin>(wr: &mut W, reply: &Line) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    encode(&mut bytes, reply);
    wr.write_all(&bytes).await
}

struct Subscription {
    id: u64,
    /// The protocol version of the subscribe request: its events speak it.
    v: u32,
    /// [`packet_event_head`] of (`v`, `id`): made once, put before each packet's shared JSON.
    head: Vec<u8>,
    rx: broadcast::Receiver<Published>,
    /// The latest counters; `None` once the engine has stopped.
    counters: Option<watch::Receiver<Option<Counters>>>,
    /// Packets up to this id were sent as the backlog.
    sent_upto: u64,
    _guard: SubscriberGuard,
}

/// Events written to a subscriber in one write, at most (a lagging one
/// catches up in big writes, a live one gets each event at once).
const EVENTS_PER_WRITE: usize = 256;
/// ... and at most about this many bytes.
const BYTES_PER_WRITE: usize = 256 << 10;

impl Subscription {
    /// Append one published item's line to `out`; false when there is nothing to write.
    fn encode(
        &mut self,
        out: &mut Vec<u8>,
        published: std::result::Result<Published, broadcast::error::RecvError>,
    ) -> bool {
        match published {
            Ok(Published::Packet(p)) if p.packet.id <= self.sent_upto || !for_version(self.v, &p.packet) => {
                return false
            }
            Ok(Published::Packet(p)) => encode_packet(out, (self.v, self.id, &self.head), p.json()),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                encode(out, &Line::event(self.id, Event::Missed { count: n }).at_version(self.v))
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }

    /// After `first`, whatever else is already queued, up to one write's worth.
    fn encode_batch(&mut self, out: &mut Vec<u8>, first: std::result::Result<Published, broadcast::error::RecvError>) {
        self.encode(out, first);
        for _ in 1..EVENTS_PER_WRITE {
            if out.len() >= BYTES_PER_WRITE {
                break;
            }
            let next = match self.rx.try_recv() {
                Ok(p) => Ok(p),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => break,
            };
            self.encode(out, next);
        }
    }
}

struct SubscriberGuard(Arc<AtomicUsize>);
impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a subscription has for its client next.
enum SubEvent {
    Published(std::result::Result<Published, broadcast::error::RecvError>),
    /// New counters (None: the engine has stopped; nothing to write).
    Counters(Option<Counters>),
}

/// The subscription's next packet (or lag) or new counters; never, without a subscription.
async fn next_sub_event(sub: &mut Option<Subscription>) -> SubEvent {
    let Some(Subscription { rx, counters, .. }) = sub else { return std::future::pending().await };
    tokio::select! {
        p = rx.recv() => SubEvent::Published(p),
        c = changed(counters) => SubEvent::Counters(c),
    }
}

/// The latest counters once they change; never once the engine has stopped.
async fn changed(counters: &mut Option<watch::Receiver<Option<Counters>>>) -> Option<Counters> {
    let Some(rx) = counters.as_mut() else { return std::future::pending().await };
    if rx.changed().await.is_err() {
        *counters = None;
        return None;
    }
    rx.borrow_and_update().clone()
}

fn engine_stopped() -> ApiError {
    ApiError::new(ErrorCode::Internal, "the engine thread has stopped")
}

async fn ask_engine(shared: &Shared, op: EngineOp) -> std::result::Result<EngineReply, ApiError> {
    let (reply, rx) = oneshot::channel();
    shared.cmd.send(Msg::Op(Command { op, reply })).map_err(|_| engine_stopped())?;
    rx.await.map_err(|_| engine_stopped())?
}

/// What a request line comes to.
enum Handled {
    Reply(Box<Line>),
    /// The connection wrote its answer itself (a subscription or a watch started).
    Written,
    /// The connection is gone.
    Closed,
}

async fn connection(stream: UnixStream, shared: &Shared) {
    let allowed = peer_allowed(&stream, shared.gid);
    let (rd, mut wr) = stream.into_split();
    if !allowed {
        let e = ApiError::new(ErrorCode::PermissionDenied, "only root and members of the daemon's group may use it");
        let _ = write_reply(&mut wr, &Line::err(None, e)).await;
        return;
    }
    let mut rd = BufReader::new(rd);
    let mut lines = LineReader::default();
    let mut sub: Option<Subscription> = None;
    // Events of watched jobs (request id, event), forwarded by one task per watch.
    let (watch_tx, mut watch_rx) = tmpsc::channel::<(u32, u64, Event)>(1024);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            frame = lines.next(&mut rd) => {
                let reply = match frame {
                    Err(_) | Ok(Frame::Eof) => break,
                    Ok(Frame::TooLarge) => Line::err(None, ApiError::new(ErrorCode::TooLarge,
                        format!("request longer than {MAX_REQUEST_BYTES} bytes; ignored"))),
                    Ok(Frame::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                    Ok(Frame::Line(line)) => match parse_request(&line) {
                        Err((id, e)) => Line::err(id, e),
                        Ok(req) => match req.op {
                            Op::Engine(op) => match ask_engine(shared, op).await {
                                Ok(EngineReply::Packets(page)) => {
                                    if write_page(&mut wr, req.v, req.id, &page).await.is_err() {
                                        break;
                                    }
                                    continue;
                                }
                                Ok(r) => Line::ok(req.id, Answer::Engine(r)).at_version(req.v),
                                Err(e) => Line::err(Some(req.id), e).at_version(req.v),
                            },
                            Op::Connection(op) => {
                                match connection_op(shared, &mut wr, &mut sub, (req.v, req.id), op, &watch_tx).await {
                                    Handled::Reply(r) => *r,
                                    Handled::Written => continue,
                                    Handled::Closed => break,
                                }
                            }
                        },
                    },
                };
                if write_reply(&mut wr, &reply).await.is_err() {
                    break;
                }
            }
            Some((v, id, event)) = watch_rx.recv() => {
                if write_reply(&mut wr, &Line::event(id, event).at_version(v)).await.is_err() {
                    break;
                }
            }
            event = next_sub_event(&mut sub) => {
                let Some(s) = sub.as_mut() else { continue };
                let published = match event {
                    SubEvent::Counters(None) => continue,
                    SubEvent::Counters(Some(Counters { stats, running })) => {
                        let line = Line::event(s.id, Event::Counters { stats, running }).at_version(s.v);
                        if write_reply(&mut wr, &line).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    SubEvent::Published(published) => published,
                };
                if let Err(broadcast::error::RecvError::Closed) = published {
                    break;
                }
                out.clear();
                s.encode_batch(&mut out, published);
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Answer a [`ConnectionOp`] of request `(v, id)` on this connection.
async fn connection_op<W: AsyncWrite + Unpin>(
    shared: &Shared,
    wr: &mut W,
    sub: &mut Option<Subscription>,
    (v, id): (u32, u64),
    op: ConnectionOp,
    watch_tx: &tmpsc::Sender<(u32, u64, Event)>,
) -> Handled {
    let answer = |r: std::result::Result<ConnectionReply, ApiError>| match r {
        Ok(r) => Handled::Reply(Box::new(Line::ok(id, Answer::Connection(r)).at_version(v))),
        Err(e) => Handled::Reply(Box::new(Line::err(Some(id), e).at_version(v))),
    };
    match op {
        ConnectionOp::Subscribe { since } => match subscribe(shared, wr, v, id, since).await {
            Ok(s) => {
                *sub = Some(s);
                Handled::Written
            }
            Err(_) => Handled::Closed,
        },
        ConnectionOp::Inject(args) => answer(inject(shared, *args).await.map(|j| ConnectionReply::Job(Box::new(j)))),
        ConnectionOp::ListJobs => answer(Ok(ConnectionReply::Jobs(JobList { jobs: shared.jobs.list() }))),
        ConnectionOp::StopJob { job } => answer(stop_job(shared, job).await.map(|j| ConnectionReply::Job(Box::new(j)))),
        ConnectionOp::WatchJob { job } => match watch_job(shared, wr, (v, id), job, watch_tx.clone()).await {
            Ok(true) => Handled::Written,
            Ok(false) => answer(Err(no_such_job(job))),
            Err(_) => Handled::Closed,
        },
    }
}

/// Start a subscription: receiver first, then the backlog, so nothing falls
/// between. Its events speak version `v` (version 1: no TLS records).
async fn subscribe<W: AsyncWrite + Unpin>(
    shared: &Shared,
    wr: &mut W,
    v: u32,
    id: u64,
    since: Option<u64>,
) -> std::io::Result<Subscription> {
    let rx = shared.tx.subscribe();
    let mut counters = shared.counters.clone();
    counters.mark_unchanged(); // from the next counters on, as the packets
    shared.subscribers.fetch_add(1, Ordering::Relaxed);
    let head = packet_event_head(v, id).into_bytes();
    let mut s = Subscription {
        id,
        v,
        head,
        rx,
        counters: Some(counters),
        sent_upto: 0,
        _guard: SubscriberGuard(Arc::clone(&shared.subscribers)),
    };
    let backlog = match since {
        Some(since) => {
            let (reply, rx) = oneshot::channel();
            let _ = shared.cmd.send(Msg::Backlog { since, reply });
            rx.await.map(|b| b.0).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let backlog: Vec<_> = backlog.into_iter().filter(|p| for_version(v, p)).collect();
    let result = Subscribed { subscribed: true, backlog: backlog.len(), protocol: v };
    write_reply(wr, &Line::ok(id, Answer::Connection(ConnectionReply::Subscribed(result))).at_version(v)).await?;
    let mut out = Vec::new();
    for p in backlog {
        s.sent_upto = p.id;
        encode_packet(&mut out, (v, id, &s.head), SharedPacket::new(p).json());
        if out.len() >= BYTES_PER_WRITE {
            wr.write_all(&out).await?;
            out.clear();
        }
    }
    wr.write_all(&out).await?;
    Ok(s)
}

fn no_such_job(job: u64) -> ApiError {
    ApiError::new(ErrorCode::NoSuchJob, format!("no job {job} (see list_jobs)"))
}

/// A held packet, by id.
async fn held_packet(shared: &Shared, id: u64) -> std::result::Result<Option<Arc<CapturedPacket>>, ApiError> {
    let (reply, rx) = oneshot::channel();
    shared.cmd.send(Msg::Packet { id, reply }).map_err(|_| engine_stopped())?;
    rx.await.map_err(|_| engine_stopped())
}

/// `inject`: resolve the packet id, check everything, start the job.
async fn inject(shared: &Shared, mut args: InjectArgs) -> std::result::Result<JobReply, ApiError> {
    if let Some(id) = args.packet.take() {
        let p = held_packet(shared, id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("packet {id} is not held by the daemon (evicted, cleared, or never captured)"),
            )
        })?;
        args.template = Some(Box::new(CapturedPacket::clone(&p)));
    }
    check_inject_ranges(&args)?;
    let prepared = pidcap_resend::prepare(&args)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, cut_quotes(&e.to_string(), QUOTE_CHARS)))?;
    let job = shared
        .jobs
        .start(prepared)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("starting the job thread: {e}")))?;
    Ok(JobReply { job })
}

/// `inject`'s numbers out of range: `invalid_argument`, in the API's words
/// (pidcap-resend's own checks name the CLI's flags).
fn check_inject_ranges(args: &InjectArgs) -> std::result::Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::new(ErrorCode::InvalidArgument, m));
    if let Some(rate) = args.max_rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
        return bad(format!("`max_rate` must be a positive number of packets per second, not {rate}"));
    }
    if args.count == Some(0) && !args.forever {
        return bad("`count` must be at least 1 (or `forever`: true)".into());
    }
    Ok(())
}

/// `stop_job`: ask, then wait until the job has ended.
async fn stop_job(shared: &Shared, job: u64) -> std::result::Result<JobReply, ApiError> {
    if !shared.jobs.request_stop(job) {
        return Err(no_such_job(job));
    }
    loop {
        match shared.jobs.get(job) {
            Some(info) if info.summary.is_none() => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            Some(info) => return Ok(JobReply { job: info }),
            None => return Err(no_such_job(job)),
        }
    }
}

/// `watch_job`: reply, statuses so far, then a task forwards the live ones. Ok(false): no such job.
async fn watch_job<W: AsyncWrite + Unpin>(
    shared: &Shared,
    wr: &mut W,
    (v, id): (u32, u64),
    job: u64,
    out: tmpsc::Sender<(u32, u64, Event)>,
) -> std::io::Result<bool> {
    let Some(w) = shared.jobs.watch(job) else { return Ok(false) };
    let summary = w.info.summary.clone();
    let watching = Watching { watching: job, job: w.info };
    let reply = Line::ok(id, Answer::Connection(ConnectionReply::Watching(Box::new(watching))));
    write_reply(wr, &reply.at_version(v)).await?;
    let mut last_seq = 0;
    for status in w.history {
        last_seq = status.seq;
        write_reply(wr, &Line::event(id, Event::SendStatus { job, status }).at_version(v)).await?;
    }
    match (w.rx, summary) {
        (_, Some(summary)) => {
            write_reply(wr, &Line::event(id, Event::JobDone { job, summary }).at_version(v)).await?;
        }
        (Some(mut rx), None) => {
            tokio::spawn(async move {
                loop {
                    let event = match rx.recv().await {
                        Ok(JobEvent::Status(status)) if status.seq <= last_seq => continue,
                        Ok(JobEvent::Status(status)) => Event::SendStatus { job, status },
                        Ok(JobEvent::Done(summary)) => Event::JobDone { job, summary },
                        Err(broadcast::error::RecvError::Lagged(n)) => Event::Missed { count: n },
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    let done = matches!(event, Event::JobDone { .. });
                    if out.send((v, id, event)).await.is_err() || done {
                        break;
                    }
                }
            });
        }
        (None, None) => {}
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_api::protocol::VERSION;

    #[test]
    fn a_page_written_in_chunks_is_the_line_serde_writes() {
        let packet = |id: u64, n: usize| {
            Arc::new(CapturedPacket::new(
                id,
                1_700_000_000_000_000_000 + id,
                42,
                "curl".into(),
                7,
                pidcap_packet::Direction::Outbound,
                pidcap_packet::Verdict::Pass,
                3,
                vec![0x45; n],
            ))
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for page in [
            HeldPage { packets: vec![], next_since: 9, more: false, missed: 3 },
            HeldPage { packets: vec![packet(1, 20)], next_since: 1, more: true, missed: 0 },
            // More than one chunk.
            HeldPage { packets: (1..200).map(|i| packet(i, 1400)).collect(), next_since: 199, more: true, missed: 0 },
        ] {
            let mut want =
                serde_json::to_vec(&Line::ok(7, Answer::Engine(EngineReply::Packets(page.clone())))).unwrap();
            want.push(b'\n');
            let mut got = Vec::new();
            rt.block_on(write_page(&mut got, VERSION, 7, &page)).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
        // A TLS record is in a version 2 page and left out of a version 1 one.
        let record = Arc::new(CapturedPacket::tls_record(pidcap_packet::TlsRecord {
            id: 2,
            timestamp_ns: 1,
            pid: 42,
            comm: "curl".into(),
            socket_cookie: 7,
            direction: pidcap_packet::Direction::Outbound,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:443".parse().unwrap(),
            info: pidcap_packet::TlsInfo { tid: 42, library: pidcap_packet::TlsLibrary::Openssl },
            plaintext: b"GET /",
            true_len: 5,
            stream_offset: 0,
        }));
        let page =
            HeldPage { packets: vec![packet(1, 20), record, packet(3, 20)], next_since: 3, more: false, missed: 0 };
        let v1 = HeldPage { packets: vec![packet(1, 20), packet(3, 20)], ..page.clone() };
        for (v, shown) in [(VERSION, &page), (1, &v1)] {
            let line = Line::ok(7, Answer::Engine(EngineReply::Packets(shown.clone()))).at_version(v);
            let mut want = serde_json::to_vec(&line).unwrap();
            want.push(b'\n');
            let mut got = Vec::new();
            rt.block_on(write_page(&mut got, v, 7, &page)).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
    }
}
