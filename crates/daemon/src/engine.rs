//! The daemon's engine thread: owns the kernel layer (a [`Capture`] in the
//! capture [`Session`] loop it shares with the CLI) and the filter list,
//! drains the kernel ring every few milliseconds (at a raised priority, see
//! [`ENGINE_NICE`]), and publishes packets on a broadcast channel (each
//! subscriber's bounded queue) and the latest counters on a watch channel
//! (never queued: a subscriber that lags gets the newest, and its `missed`
//! counts packets only). Requests ([`EngineOp`]s, nothing else) reach it over a channel
//! and are answered between two drains with a typed [`EngineReply`], so a
//! slow client never holds up capture.

use pidcap_api::protocol::CgroupSpec;
use pidcap_api::protocol::{
    ApiError, CaptureSettings, Cleared, EngineOp, ErrorCode, FilterInfo, Filters, Started, State, TargetInfo,
    DEFAULT_PAGE, MAX_PAGE, PAGE_BYTES, VERSION,
};
use pidcap_engine::cgroup::{CgroupTarget, Cgroupfs};
use pidcap_engine::procfs::Procfs;
use pidcap_engine::rules::{self, Action, Rule, RuleError};
use pidcap_engine::{Capture, CaptureOptions, CaptureStats, Drain, EngineError, KernelBackend, Schedule, Session};
use pidcap_packet::CapturedPacket;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};

/// How long the engine waits for a request while no capture runs (the
/// session's timers, counters included, run after each wait).
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// The engine thread's nice value. It is woken when a quarter of the kernel
/// ring is full; if the scheduler then keeps it waiting behind other work
/// for as long as the rest takes to fill (tens of milliseconds on a busy
/// two-core machine), packets are lost. It uses little CPU (it sleeps while
/// the ring fills), so running it before the rest costs others little.
pub const ENGINE_NICE: i32 = -10;

/// What goes out on the broadcast channel.
#[derive(Debug, Clone)]
pub enum Published {
    Packet(Arc<SharedPacket>),
}

/// The counters, about once a second while someone is subscribed: the
/// latest only, on a watch channel (None before the first).
#[derive(Debug, Clone, PartialEq)]
pub struct Counters {
    pub stats: CaptureStats,
    pub running: bool,
}

/// A packet as every subscriber receives it: the ring's packet, and its JSON,
/// made once by the first connection that writes it.
#[derive(Debug)]
pub struct SharedPacket {
    pub packet: Arc<CapturedPacket>,
    json: OnceLock<Result<Vec<u8>, Arc<serde_json::Error>>>,
}

impl SharedPacket {
    pub fn new(packet: Arc<CapturedPacket>) -> SharedPacket {
        SharedPacket { packet, json: OnceLock::new() }
    }

    /// The packet's JSON (as in [`pidcap_api::protocol::Event::Packet`]), serialized on first use.
    pub fn json(&self) -> Result<&[u8], Arc<serde_json::Error>> {
        match self.json.get_or_init(|| serde_json::to_vec(&*self.packet).map_err(Arc::new)) {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(Arc::clone(e)),
        }
    }
}

/// The engine thread's answer to each [`EngineOp`] (see each op for which).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EngineReply {
    Started(Started),
    State(Box<State>),
    Packets(HeldPage),
    Filters(Filters),
    Cleared(Cleared),
}

/// `get_packets`' result as the engine hands it over: the ring's packets
/// themselves (shared, not copied), written as a [`PacketPage`] (same JSON)
/// by the connection, a chunk at a time as its socket drains.
///
/// [`PacketPage`]: pidcap_api::protocol::PacketPage
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldPage {
    pub packets: Vec<Arc<CapturedPacket>>,
    pub next_since: u64,
    pub more: bool,
    pub missed: u64,
}

pub type Reply = Result<EngineReply, ApiError>;

/// A request for the engine thread.
pub struct Command {
    pub op: EngineOp,
    pub reply: oneshot::Sender<Reply>,
}

/// Packets held with an id greater than `since` (for a subscription's backlog).
pub struct Backlog(pub Vec<Arc<CapturedPacket>>);

pub enum Msg {
    Op(Command),
    /// A subscription's backlog.
    Backlog {
        since: u64,
        reply: oneshot::Sender<Backlog>,
    },
    /// One held packet, by id (`inject` of a captured packet).
    Packet {
        id: u64,
        reply: oneshot::Sender<Option<Arc<CapturedPacket>>>,
    },
}

struct Filter {
    id: u64,
    rule: Rule,
    /// Hits counted before the last rewrite of the kernel list.
    hits_before: u64,
}

struct Engine {
    /// The capture and its loop's timing, shared with the CLI.
    session: Session,
    running: bool,
    /// Captures started since the daemon started (`Started::session`).
    captures: u64,
    settings: Option<CaptureSettings>,
    requested: Vec<u32>,
    names: Vec<String>,
    filters: Vec<Filter>,
    next_filter: u64,
    tx: broadcast::Sender<Published>,
    counters: watch::Sender<Option<Counters>>,
    subscribers: Arc<AtomicUsize>,
    procfs: Procfs,
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

/// The API's code for each kind of engine error.
fn engine_err(e: EngineError) -> ApiError {
    let code = match &e {
        EngineError::NoSuchProcess(_) => ErrorCode::NoSuchProcess,
        EngineError::Invalid(_) => ErrorCode::InvalidArgument,
        EngineError::Permission { .. }
        | EngineError::Verifier { .. }
        | EngineError::Kernel { .. }
        | EngineError::Unsupported(_)
        | EngineError::Cgroup { .. }
        | EngineError::Io { .. } => ErrorCode::Kernel,
    };
    match e {
        // The input's own message: the code says it is an argument.
        EngineError::Invalid(m) => err(code, m.to_string()),
        e => err(code, e.to_string()),
    }
}

/// The cgroups of `start_capture` (None when none is given), resolved as
/// `pidcap capture --cgroup/--unit/--container` does; one that cannot be
/// found is an invalid argument.
fn resolve_cgroups(specs: &[CgroupSpec]) -> Result<Option<(Cgroupfs, Vec<CgroupTarget>)>, ApiError> {
    if specs.is_empty() {
        return Ok(None);
    }
    let invalid = |e: pidcap_engine::cgroup::CgroupError| err(ErrorCode::InvalidArgument, e.to_string());
    let fs = Cgroupfs::system().map_err(invalid)?;
    let mut out: Vec<CgroupTarget> = Vec::new();
    for spec in specs {
        let t = match spec {
            CgroupSpec::Path(p) => fs.resolve(p),
            CgroupSpec::Unit(u) => fs.unit(u),
            CgroupSpec::Container(c) => fs.container(c),
        }
        .map_err(invalid)?;
        if !out.iter().any(|o| o.id == t.id) {
            out.push(t);
        }
    }
    Ok(Some((fs, out)))
}

/// The longest part of a client's input an error message quotes.
pub use pidcap_engine::rules::QUOTE_CHARS;

/// A bad SPEC's message: [`RuleError::short`] and the grammar.
fn rule_error(e: &RuleError) -> String {
    e.to_string()
}

/// Start the engine thread on `backend`. Returns the request channel.
pub fn spawn(
    backend: Box<dyn KernelBackend>,
    tx: broadcast::Sender<Published>,
    counters: watch::Sender<Option<Counters>>,
    subscribers: Arc<AtomicUsize>,
) -> Result<(mpsc::Sender<Msg>, std::thread::JoinHandle<()>), EngineError> {
    let session = Session::new(Capture::new(backend, CaptureOptions::default())?, Schedule::DAEMON);
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let mut engine = Engine {
        session,
        running: false,
        captures: 0,
        settings: None,
        requested: Vec::new(),
        names: Vec::new(),
        filters: Vec::new(),
        next_filter: 1,
        tx,
        counters,
        subscribers,
        procfs: Procfs::default(),
    };
    let handle = std::thread::Builder::new()
        .name("pidcap-engine".into())
        .spawn(move || {
            raise_priority();
            engine.run(cmd_rx)
        })
        .map_err(|e| EngineError::Io { what: "starting the engine thread".into(), source: e })?;
    Ok((cmd_tx, handle))
}

/// Give the calling thread [`ENGINE_NICE`], when allowed (root, CAP_SYS_NICE).
fn raise_priority() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority only reads its integer arguments; PRIO_PROCESS with a
    // thread id changes that thread alone on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, ENGINE_NICE) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!("the engine thread keeps its priority (nice {ENGINE_NICE} refused: {e})");
    }
}

/// What a drain does with each packet besides keeping it in the ring:
/// publish it to the subscribers, if there are any.
fn publisher(tx: &broadcast::Sender<Published>) -> impl FnMut(&Arc<CapturedPacket>) + '_ {
    // Nobody to tell: no per-packet work beyond the ring's.
    let publish = tx.receiver_count() > 0;
    move |p| {
        if publish {
            let _ = tx.send(Published::Packet(Arc::new(SharedPacket::new(Arc::clone(p)))));
        }
    }
}

impl Engine {
    /// The session loop: answer what is pending, then one step (drain for up
    /// to [`Schedule::drain`] while capturing, else wait for a request), then
    /// what the step says is due.
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            let tick = if self.running {
                let tx = &self.tx;
                let mut publish = publisher(tx);
                self.session.step(Drain::Decoded(&mut publish))
            } else {
                match rx.recv_timeout(IDLE_WAIT) {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return self.shutdown(),
                }
                self.session.idle()
            };
            if let Err(e) = tick.drained {
                tracing::error!("reading the kernel ring: {e}");
                std::thread::sleep(self.session.schedule().drain);
            }
            if let Some(Err(e)) = tick.live {
                tracing::warn!("pruning dead targets: {e}");
            }
            if tick.counters_due && self.subscribers.load(Ordering::Relaxed) > 0 {
                if let Ok(stats) = self.session.capture().stats() {
                    self.counters.send_replace(Some(Counters { stats, running: self.running }));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        if self.running {
            let _ = self.session.capture_mut().stop();
        }
    }

    /// Take what the kernel has pushed so far (before answering a request).
    fn drain_now(&mut self) {
        if !self.running {
            return;
        }
        let mut publish = publisher(&self.tx);
        if let Err(e) = self.session.drain_now(Drain::Decoded(&mut publish)) {
            tracing::error!("reading the kernel ring: {e}");
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Op(Command { op, reply }) => {
                let r = self.op(op);
                let _ = reply.send(r);
            }
            Msg::Backlog { since, reply } => {
                self.drain_now();
                let _ = reply.send(Backlog(self.session.capture().ring().since(since, usize::MAX)));
            }
            Msg::Packet { id, reply } => {
                self.drain_now();
                let held =
                    self.session.capture().ring().since(id.saturating_sub(1), 1).into_iter().find(|p| p.id == id);
                let _ = reply.send(held);
            }
        }
    }

    fn op(&mut self, op: EngineOp) -> Reply {
        match op {
            EngineOp::StartCapture { pids, names, snaplen, ring_size, follow_children, filter, cgroups } => {
                self.start(pids, names, snaplen, ring_size, follow_children, filter, &cgroups).map(EngineReply::Started)
            }
            EngineOp::StopCapture => {
                if !self.running {
                    return Err(err(ErrorCode::NotRunning, "no capture is running"));
                }
                let mut publish = publisher(&self.tx);
                let finished = self.session.finish(Drain::Decoded(&mut publish));
                drop(publish);
                finished.map_err(engine_err)?;
                self.running = false;
                Ok(EngineReply::State(Box::new(self.state()?)))
            }
            EngineOp::GetPackets { since, limit } => {
                self.drain_now();
                Ok(EngineReply::Packets(self.page(since, limit.unwrap_or(DEFAULT_PAGE))))
            }
            EngineOp::AddFilter { rule, action, index } => {
                let rule = Rule::parse_spec(&rule, action.unwrap_or(Action::Block))
                    .map_err(|e| err(ErrorCode::InvalidRule, rule_error(&e)))?;
                if self.filters.len() >= rules::MAX_RULES {
                    return Err(err(
                        ErrorCode::InvalidArgument,
                        format!("the list is full ({} rules)", rules::MAX_RULES),
                    ));
                }
                let index = index.unwrap_or(self.filters.len());
                if index > self.filters.len() {
                    return Err(err(
                        ErrorCode::InvalidArgument,
                        format!("index {index} is past the end of the list ({} rules)", self.filters.len()),
                    ));
                }
                let id = self.next_filter;
                self.next_filter += 1;
                self.change_filters(|f| f.insert(index, Filter { id, rule, hits_before: 0 }))?;
                self.filters_reply(Some(id))
            }
            EngineOp::RemoveFilter { filter } => {
                let i = self.filter_index(filter)?;
                self.change_filters(|f| {
                    f.remove(i);
                })?;
                self.filters_reply(None)
            }
            EngineOp::SetFilterEnabled { filter, enabled } => {
                let i = self.filter_index(filter)?;
                self.change_filters(|f| f[i].rule.enabled = enabled)?;
                self.filters_reply(Some(filter))
            }
            EngineOp::ClearFilters => {
                self.change_filters(|f| f.clear())?;
                self.filters_reply(None)
            }
            EngineOp::ClearBuffer => {
                self.drain_now();
                let cleared = self.session.capture().ring().len();
                self.session.capture_mut().clear_ring();
                Ok(EngineReply::Cleared(Cleared { cleared, next_id: self.session.capture().next_id() }))
            }
            EngineOp::GetState => {
                self.drain_now();
                Ok(EngineReply::State(Box::new(self.state()?)))
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the fields of the start_capture request, one by one
    fn start(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow: bool,
        filter: Option<String>,
        cgroups: &[CgroupSpec],
    ) -> Result<Started, ApiError> {
        if self.running {
            return Err(err(ErrorCode::AlreadyRunning, "a capture is already running; stop_capture first"));
        }
        if pids.is_empty() && names.is_empty() && cgroups.is_empty() {
            return Err(err(ErrorCode::InvalidArgument, "give at least one pid, process name or cgroup"));
        }
        // -- capture by cgroup: resolved before anything changes --
        let cgroups = resolve_cgroups(cgroups)?;
        for &pid in &pids {
            if !self.procfs.is_alive(pid) {
                return Err(err(ErrorCode::NoSuchProcess, format!("no process with pid {pid}")));
            }
        }
        let settings = CaptureSettings {
            snaplen: snaplen.unwrap_or(pidcap_engine::DEFAULT_SNAPLEN),
            ring_size: ring_size.unwrap_or(pidcap_engine::DEFAULT_RING_SIZE),
            follow_children: follow,
        };
        pidcap_engine::capture::check_snaplen(settings.snaplen).map_err(engine_err)?;
        pidcap_engine::capture::check_ring_size(settings.ring_size).map_err(engine_err)?;
        // -- filter expressions --
        let filter = match filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => {
                Some(pidcap_filter::Filter::compile(f).map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?)
            }
            None => None,
        };
        // Same kernel layer: fresh ring and counters, ids continuing where
        // the previous capture stopped.
        let first_id = self.session.capture().next_id();
        let opts = CaptureOptions {
            snaplen: settings.snaplen,
            ring_size: settings.ring_size,
            follow_children: follow,
            tls: true,
            filter: filter.map(|f| Arc::new(f) as Arc<dyn pidcap_engine::PacketFilter>),
        };
        self.session.capture_mut().restart(opts).map_err(engine_err)?;
        self.session.resume();
        let added = pids
            .iter()
            .try_for_each(|&pid| self.session.capture_mut().add_pid(pid))
            .and_then(|()| names.iter().try_for_each(|n| self.session.capture_mut().add_name(n)))
            .and_then(|()| match &cgroups {
                Some((fs, list)) => {
                    list.iter().try_for_each(|c| self.session.capture_mut().add_cgroup(fs, c).map(drop))
                }
                None => Ok(()),
            });
        if let Err(e) = added {
            let _ = self.session.capture_mut().stop();
            return Err(engine_err(e));
        }
        self.captures += 1;
        self.running = true;
        self.settings = Some(settings);
        self.requested = pids;
        self.names = names;
        let targets = self.session.capture_mut().live_targets().map_err(engine_err)?;
        Ok(Started { session: self.captures, first_id, targets })
    }

    fn filter_index(&self, id: u64) -> Result<usize, ApiError> {
        self.filters
            .iter()
            .position(|f| f.id == id)
            .ok_or_else(|| err(ErrorCode::NoSuchFilter, format!("no filter with id {id} (see get_state)")))
    }

    /// Apply `change` to the list and write the whole list to the kernel,
    /// carrying the hit counts over (the kernel's restart at 0).
    fn change_filters(&mut self, change: impl FnOnce(&mut Vec<Filter>)) -> Result<(), ApiError> {
        let hits = self.session.capture().rule_hits().map_err(engine_err)?;
        for (f, h) in self.filters.iter_mut().zip(&hits) {
            f.hits_before += h;
        }
        let before: Vec<(u64, Rule, u64)> = self.filters.iter().map(|f| (f.id, f.rule, f.hits_before)).collect();
        change(&mut self.filters);
        let list: Vec<Rule> = self.filters.iter().map(|f| f.rule).collect();
        if let Err(e) = self.session.capture_mut().set_rules(&list) {
            // Keep what the kernel enforces and what we report the same.
            self.filters = before.into_iter().map(|(id, rule, hits_before)| Filter { id, rule, hits_before }).collect();
            let list: Vec<Rule> = self.filters.iter().map(|f| f.rule).collect();
            let _ = self.session.capture_mut().set_rules(&list);
            return Err(engine_err(e));
        }
        Ok(())
    }

    fn filter_infos(&self) -> Vec<FilterInfo> {
        let hits = self.session.capture().rule_hits().unwrap_or_default();
        self.filters
            .iter()
            .enumerate()
            .map(|(index, f)| FilterInfo {
                id: f.id,
                index,
                spec: f.rule.to_string(),
                rule: f.rule,
                hits: f.hits_before + hits.get(index).copied().unwrap_or(0),
            })
            .collect()
    }

    fn filters_reply(&self, id: Option<u64>) -> Reply {
        let filters = self.filter_infos();
        let filter = id.and_then(|id| filters.iter().find(|f| f.id == id).cloned());
        Ok(EngineReply::Filters(Filters { filter, filters }))
    }

    fn page(&self, since: u64, limit: usize) -> HeldPage {
        let ring = self.session.capture().ring();
        let mut packets = Vec::new();
        let mut bytes = 0;
        for p in ring.since(since, limit.clamp(1, MAX_PAGE)) {
            if !packets.is_empty() && bytes + p.data.len() > PAGE_BYTES {
                break;
            }
            bytes += p.data.len();
            packets.push(p);
        }
        let newest = self.session.capture().next_id().saturating_sub(1);
        let (missed, next_since) = match (packets.first(), packets.last()) {
            (Some(first), Some(last)) => (first.id.saturating_sub(since.saturating_add(1)), last.id),
            // Nothing held after `since`: whatever came up to the newest id is gone.
            _ => (newest.saturating_sub(since), since.max(newest)),
        };
        let more = !ring.since(next_since, 1).is_empty();
        HeldPage { packets, next_since, more, missed }
    }

    fn state(&mut self) -> Result<State, ApiError> {
        let stats = self.session.capture().stats().map_err(engine_err)?;
        let kernel_targets =
            if self.running { self.session.capture_mut().live_targets().map_err(engine_err)? } else { Vec::new() };
        let coverage = if self.running {
            self.session.capture_mut().tls_coverage().unwrap_or_else(|e| {
                tracing::warn!("reading the targets' TLS coverage: {e}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let tls = |pid: u32| coverage.iter().find(|c| c.pid == pid).map(|c| c.libraries.clone());
        let mut targets: Vec<TargetInfo> = self
            .requested
            .iter()
            .filter(|_| self.running)
            .map(|&pid| {
                // Alive by the capture's pidfd (live_targets), not by /proc/PID: the pid may be another process's now.
                let alive = kernel_targets.contains(&pid);
                TargetInfo {
                    pid,
                    comm: alive.then(|| self.procfs.comm(pid)).flatten(),
                    alive,
                    requested: true,
                    tls: alive.then(|| tls(pid)).flatten(),
                }
            })
            .collect();
        for pid in kernel_targets {
            if !self.requested.contains(&pid) {
                targets.push(TargetInfo {
                    pid,
                    comm: self.procfs.comm(pid),
                    alive: true,
                    requested: false,
                    tls: tls(pid),
                });
            }
        }
        let ring = self.session.capture().ring();
        Ok(State {
            running: self.running,
            session: self.captures,
            settings: self.settings,
            targets,
            names: if self.running { self.names.clone() } else { Vec::new() },
            stats,
            oldest_id: ring.iter().next().map(|p| p.id),
            newest_id: ring.iter().last().map(|p| p.id),
            filters: self.filter_infos(),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            daemon_pid: std::process::id(),
            protocol: VERSION,
        })
    }
}
