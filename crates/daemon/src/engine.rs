//! The daemon's engine thread: owns the kernel layer (a [`Capture`] in the
//! capture [`Session`] loop it shares with the CLI) and the filter list,
//! drains the kernel ring every few milliseconds (at a raised priority, see
//! [`ENGINE_NICE`]), and publishes packets on a broadcast channel (each
//! subscriber's bounded queue) and the latest counters on a watch channel
//! (never queued: a subscriber that lags gets the newest, and its `missed`
//! counts packets only). Requests ([`EngineOp`]s, nothing else) reach it over a channel
//! and are answered between two drains with a typed [`EngineReply`], so a
//! slow client never holds up capture.
//!
//! Where the programs are ([`KernelBackend::set_attach`]): nowhere while no
//! capture runs or the running one has no live target, so an idle daemon
//! costs the machine's other processes nothing; while capturing, at the
//! deepest cgroup holding every live target when all targets are pids
//! ([`Cgroupfs::attach_point`], the computation `pidcap capture --pid`
//! uses), else at the root. The point follows the live targets (a target's
//! exit, a followed child that moved elsewhere), new point first.

use pidcap_api::protocol::CgroupSpec;
use pidcap_api::protocol::{
    ApiError, CaptureSettings, Cleared, EngineOp, ErrorCode, FilterInfo, Filters, Started, State, TargetInfo,
    DEFAULT_PAGE, MAX_PAGE, PAGE_BYTES, VERSION,
};
use pidcap_engine::cgroup::{AttachPoint, CgroupTarget, Cgroupfs};
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
    // -- attach point (issue 13) --
    /// The hierarchy attach points are computed in (None: the system's,
    /// looked up at each computation; tests give a fake tree).
    hierarchy: Option<Cgroupfs>,
    /// The running capture has name or cgroup targets (the programs stay at the root).
    by_name_or_cgroup: bool,
    /// The live targets the attach point was last computed for.
    scoped: Vec<u32>,
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

/// Where the programs are, for messages.
fn describe(at: Option<&AttachPoint>) -> String {
    at.map_or_else(|| "nowhere".to_string(), ToString::to_string)
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
    let mut engine = Engine::new(backend, tx, counters, subscribers)?;
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("pidcap-engine".into())
        .spawn(move || {
            raise_priority();
            engine.run(cmd_rx)
        })
        .map_err(|e| EngineError::Io { what: "starting the engine thread".into(), source: e })?;
    Ok((cmd_tx, handle))
}

impl Engine {
    /// An engine on `backend`, idle: nothing attached, whatever the backend was loaded with.
    fn new(
        backend: Box<dyn KernelBackend>,
        tx: broadcast::Sender<Published>,
        counters: watch::Sender<Option<Counters>>,
        subscribers: Arc<AtomicUsize>,
    ) -> Result<Engine, EngineError> {
        let session = Session::new(Capture::new(backend, CaptureOptions::default())?, Schedule::DAEMON);
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
            hierarchy: None,
            by_name_or_cgroup: false,
            scoped: Vec::new(),
        };
        engine.session.capture_mut().set_attach(None)?;
        Ok(engine)
    }
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
            match tick.live {
                Some(Err(e)) => tracing::warn!("pruning dead targets: {e}"),
                Some(Ok(live)) => self.live_targets_seen(live),
                _ => {}
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
        self.detach();
    }

    /// Where a capture of `pids` (with names or cgroups when `by_name_or_cgroup`)
    /// puts the programs; None: no target, nothing attached.
    fn attach_point(&self, pids: &[u32], by_name_or_cgroup: bool) -> Option<AttachPoint> {
        let pids = pids.iter().copied();
        match &self.hierarchy {
            Some(fs) => fs.attach_point(pids, by_name_or_cgroup),
            None => match Cgroupfs::system() {
                Ok(fs) => fs.attach_point(pids, by_name_or_cgroup),
                // No hierarchy of ours to look in (the kernel layer finds or mounts one for the root).
                Err(_) => (pids.len() != 0 || by_name_or_cgroup).then_some(AttachPoint::Root),
            },
        }
    }

    /// The session's liveness check found `live` (sorted): the programs
    /// follow them when they changed.
    fn live_targets_seen(&mut self, live: Vec<u32>) {
        if self.running && live != self.scoped {
            self.rescope(live);
        }
    }

    /// Move the programs to where the live targets `live` are (nothing
    /// attached when there are none). A move to a cgroup that fails goes to
    /// the root instead (which holds every target); one that fails there
    /// keeps the old point.
    fn rescope(&mut self, live: Vec<u32>) {
        let at = self.attach_point(&live, self.by_name_or_cgroup);
        match self.attach_or_root(at) {
            Ok(at) => {
                tracing::debug!(at = ?at, targets = live.len(), "the programs follow the live targets");
                self.scoped = live;
            }
            Err(e) => tracing::warn!("moving the programs: {e}"),
        }
    }

    /// Put the programs at `at`; if that is a cgroup that refuses (it went
    /// meanwhile), at the root, which holds every target. Where they are now.
    fn attach_or_root(&mut self, at: Option<AttachPoint>) -> Result<Option<AttachPoint>, EngineError> {
        match self.session.capture_mut().set_attach(at.as_ref()) {
            Err(e) if matches!(at, Some(AttachPoint::Cgroup(_))) => {
                tracing::warn!("attaching at {}: {e}; attaching at the cgroup2 root", describe(at.as_ref()));
                let root = Some(AttachPoint::Root);
                self.session.capture_mut().set_attach(root.as_ref())?;
                Ok(root)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(at),
        }
    }

    /// Take every program off (no capture, or one with no target left).
    fn detach(&mut self) {
        if let Err(e) = self.session.capture_mut().set_attach(None) {
            tracing::warn!("detaching the programs: {e}");
        }
        self.scoped.clear();
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
                self.detach();
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
        // -- attach point (issue 13) --
        // Attached before the targets are added: a socket a target makes
        // from then on is seen by the hooks, those it has already by sock_diag.
        let by_name_or_cgroup = !names.is_empty() || cgroups.as_ref().is_some_and(|(_, c)| !c.is_empty());
        let at = self.attach_point(&pids, by_name_or_cgroup);
        let at = self.attach_or_root(at).map_err(engine_err)?;
        tracing::info!("capture programs attached at {}", describe(at.as_ref()));
        self.by_name_or_cgroup = by_name_or_cgroup;
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
        if let Err(e) = self.session.capture_mut().restart(opts) {
            self.detach();
            return Err(engine_err(e));
        }
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
            self.detach();
            return Err(engine_err(e));
        }
        self.captures += 1;
        self.running = true;
        self.settings = Some(settings);
        let mut scoped = pids.clone();
        scoped.sort_unstable();
        self.scoped = scoped;
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

#[cfg(test)]
mod tests {
    //! Where the engine puts the kernel layer's programs, on the fake kernel
    //! (no root): a fake cgroup tree and a fake /proc place real processes
    //! (`sleep`, held by pidfds as the real daemon holds its targets).
    use super::*;
    use pidcap_engine::fake::{FakeHandle, FakeKernel};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command};

    /// A fake hierarchy (`root/<dir>` with a cgroup.procs each) and a fake
    /// /proc (`proc/<pid>/cgroup`); removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str, dirs: &[&str]) -> Tree {
            let base = std::env::temp_dir().join(format!("pidcap-daemon-attach-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            for d in dirs.iter().chain(&["/"]) {
                let dir = base.join("root").join(d.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).unwrap();
                // Every directory of a cgroup2 tree is a cgroup.
                for a in dir.ancestors().take_while(|a| a.starts_with(base.join("root"))) {
                    std::fs::write(a.join("cgroup.procs"), "").unwrap();
                }
            }
            Tree(base)
        }
        fn dir(&self, path: &str) -> PathBuf {
            self.0.join("root").join(path.trim_start_matches('/'))
        }
        /// Say that `pid` is in cgroup `path`.
        fn place(&self, pid: u32, path: &str) {
            let d = self.0.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup"), format!("0::{path}\n")).unwrap();
        }
        fn fs(&self) -> Cgroupfs {
            Cgroupfs::at(self.0.join("root")).with_proc(self.0.join("proc"))
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A process to capture; killed on drop.
    struct Proc(Child);

    impl Proc {
        fn start() -> Proc {
            Proc(Command::new("sleep").arg("60").spawn().expect("sleep"))
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
        fn end(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            self.end();
        }
    }

    fn engine(tree: &Tree) -> (Engine, FakeHandle) {
        let kernel = FakeKernel::default();
        let fake = kernel.handle();
        let (tx, _) = broadcast::channel(16);
        let (counters, _) = watch::channel(None);
        let mut e = Engine::new(Box::new(kernel), tx, counters, Arc::new(AtomicUsize::new(0))).unwrap();
        e.hierarchy = Some(tree.fs());
        (e, fake)
    }

    fn start(pids: Vec<u32>, names: Vec<String>) -> EngineOp {
        EngineOp::StartCapture {
            pids,
            names,
            snaplen: None,
            ring_size: None,
            follow_children: false,
            filter: None,
            cgroups: Vec::new(),
        }
    }

    fn attached(fake: &FakeHandle) -> Option<AttachPoint> {
        fake.state().attached.clone()
    }

    fn at(dir: &Path) -> Option<AttachPoint> {
        Some(AttachPoint::Cgroup(dir.to_path_buf()))
    }

    #[test]
    fn an_idle_daemon_has_nothing_attached_even_on_a_backend_loaded_attached() {
        let tree = Tree::new("idle", &[]);
        let kernel = FakeKernel::default();
        assert_eq!(kernel.handle().state().attached, Some(AttachPoint::Root), "the fake starts attached");
        let (_e, fake) = engine(&tree);
        assert_eq!(attached(&fake), None);
        assert_eq!(fake.state().attach_changes, [None]);
    }

    #[test]
    fn a_capture_attaches_at_its_pids_deepest_common_cgroup_and_stop_detaches() {
        let tree = Tree::new("start", &["/svc/a", "/svc/b", "/other"]);
        let (a, b) = (Proc::start(), Proc::start());
        tree.place(a.pid(), "/svc/a");
        tree.place(b.pid(), "/svc/b");
        let (mut e, fake) = engine(&tree);

        e.op(start(vec![a.pid()], vec![])).unwrap();
        assert_eq!(attached(&fake), at(&tree.dir("/svc/a")), "one pid: its own cgroup");
        e.op(EngineOp::StopCapture).unwrap();
        assert_eq!(attached(&fake), None, "stopped: nothing attached");

        e.op(start(vec![a.pid(), b.pid()], vec![])).unwrap();
        assert_eq!(attached(&fake), at(&tree.dir("/svc")), "two pids: the cgroup holding both");
        e.op(EngineOp::StopCapture).unwrap();
        assert_eq!(attached(&fake), None);
        let svc_a = at(&tree.dir("/svc/a"));
        let svc = at(&tree.dir("/svc"));
        assert_eq!(fake.state().attach_changes, [None, svc_a, None, svc, None]);
    }

    #[test]
    fn names_cgroups_and_pids_in_the_root_cgroup_attach_at_the_root() {
        let tree = Tree::new("root", &["/svc/a", "/other"]);
        let (a, b, r) = (Proc::start(), Proc::start(), Proc::start());
        tree.place(a.pid(), "/svc/a");
        tree.place(b.pid(), "/other");
        tree.place(r.pid(), "/");
        let (mut e, fake) = engine(&tree);
        for op in [
            start(vec![a.pid()], vec!["nginx".into()]),
            start(vec![a.pid(), b.pid()], vec![]),
            start(vec![r.pid()], vec![]),
        ] {
            e.op(op).unwrap();
            assert_eq!(attached(&fake), Some(AttachPoint::Root));
            e.op(EngineOp::StopCapture).unwrap();
            assert_eq!(attached(&fake), None);
        }
    }

    #[test]
    fn a_cgroup_that_cannot_be_attached_to_gives_the_root() {
        let tree = Tree::new("refused", &["/svc/a", "/svc/b"]);
        let (a, mut b) = (Proc::start(), Proc::start());
        tree.place(a.pid(), "/svc/a");
        tree.place(b.pid(), "/svc/b");
        let (mut e, fake) = engine(&tree);
        fake.state().refuse_attach = vec![AttachPoint::Cgroup(tree.dir("/svc/a"))];
        e.op(start(vec![a.pid()], vec![])).unwrap();
        assert_eq!(attached(&fake), Some(AttachPoint::Root), "a start falls back to the root");
        e.op(EngineOp::StopCapture).unwrap();

        e.op(start(vec![a.pid(), b.pid()], vec![])).unwrap();
        assert_eq!(attached(&fake), at(&tree.dir("/svc")));
        b.end();
        let live = e.session.capture_mut().live_targets().unwrap();
        e.live_targets_seen(live);
        assert_eq!(attached(&fake), Some(AttachPoint::Root), "so does a move");
    }

    #[test]
    fn the_programs_follow_the_live_targets_and_go_when_none_is_left() {
        let tree = Tree::new("follow", &["/svc/a", "/svc/b"]);
        let (mut a, mut b) = (Proc::start(), Proc::start());
        tree.place(a.pid(), "/svc/a");
        tree.place(b.pid(), "/svc/b");
        let (mut e, fake) = engine(&tree);
        e.op(start(vec![a.pid(), b.pid()], vec![])).unwrap();
        assert_eq!(attached(&fake), at(&tree.dir("/svc")));

        // The same live set: no move.
        let live = e.session.capture_mut().live_targets().unwrap();
        e.live_targets_seen(live);
        assert_eq!(fake.state().attach_changes.len(), 2);

        // b exits: the programs narrow to a's cgroup.
        b.end();
        let live = e.session.capture_mut().live_targets().unwrap();
        assert_eq!(live, [a.pid()]);
        e.live_targets_seen(live);
        assert_eq!(attached(&fake), at(&tree.dir("/svc/a")));

        // A followed child (the kernel added it) in another cgroup: widened to hold it.
        let child = Proc::start();
        tree.place(child.pid(), "/elsewhere");
        fake.insert_target(child.pid());
        let live = e.session.capture_mut().live_targets().unwrap();
        e.live_targets_seen(live);
        assert_eq!(attached(&fake), Some(AttachPoint::Root));
        fake.exit(child.pid());
        let live = e.session.capture_mut().live_targets().unwrap();
        e.live_targets_seen(live);
        assert_eq!(attached(&fake), at(&tree.dir("/svc/a")));

        // The last target exits: the capture still runs, with nothing attached.
        a.end();
        let live = e.session.capture_mut().live_targets().unwrap();
        assert!(live.is_empty());
        e.live_targets_seen(live);
        assert_eq!(attached(&fake), None);
        assert!(e.running);
        e.op(EngineOp::StopCapture).unwrap();
        assert_eq!(attached(&fake), None);
    }
}
