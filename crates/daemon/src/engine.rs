//! The daemon's engine thread: owns the kernel layer (through a [`Capture`])
//! and the filter list, drains the kernel ring every few milliseconds, and
//! publishes packets and counters on a broadcast channel. Requests reach it
//! over a channel and are answered between two drains, so a slow client
//! never holds up capture.

use pidcap_api::protocol::{
    ApiError, CaptureSettings, ErrorCode, Event, FilterInfo, Filters, Op, PacketPage, Started, State, TargetInfo,
    DEFAULT_PAGE, MAX_PAGE, PAGE_BYTES, VERSION,
};
use pidcap_engine::procfs::Procfs;
use pidcap_engine::rules::{self, Action, Rule};
use pidcap_engine::{Capture, CaptureOptions, EngineError, KernelBackend};
use pidcap_packet::CapturedPacket;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// How often the kernel ring is drained.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often dead targets are pruned.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
/// How often subscribers get counters.
const COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// What goes out on the broadcast channel.
#[derive(Debug, Clone)]
pub enum Published {
    Packet(Arc<CapturedPacket>),
    Counters(Box<Event>),
}

pub type Reply = Result<serde_json::Value, ApiError>;

/// A request for the engine thread.
pub struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Reply>,
}

/// Packets held with an id greater than `since` (for a subscription's backlog).
pub struct Backlog(pub Vec<Arc<CapturedPacket>>);

pub enum Msg {
    Op(Command),
    Backlog { since: u64, reply: oneshot::Sender<Backlog> },
}

struct Filter {
    id: u64,
    rule: Rule,
    /// Hits counted before the last rewrite of the kernel list.
    hits_before: u64,
}

struct Engine {
    cap: Capture,
    running: bool,
    session: u64,
    settings: Option<CaptureSettings>,
    requested: Vec<u32>,
    names: Vec<String>,
    filters: Vec<Filter>,
    next_filter: u64,
    tx: broadcast::Sender<Published>,
    subscribers: Arc<AtomicUsize>,
    procfs: Procfs,
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

fn engine_err(e: EngineError) -> ApiError {
    match e {
        EngineError::NoSuchProcess(pid) => err(ErrorCode::NoSuchProcess, format!("no process with pid {pid}")),
        EngineError::Invalid(m) => err(ErrorCode::InvalidArgument, m.to_string()),
        e => err(ErrorCode::Kernel, e.to_string()),
    }
}

fn to_value<T: Serialize>(v: &T) -> Reply {
    serde_json::to_value(v).map_err(|e| err(ErrorCode::Internal, e.to_string()))
}

/// Start the engine thread on `backend`. Returns the request channel.
pub fn spawn(
    backend: Box<dyn KernelBackend>,
    tx: broadcast::Sender<Published>,
    subscribers: Arc<AtomicUsize>,
) -> Result<(mpsc::Sender<Msg>, std::thread::JoinHandle<()>), EngineError> {
    let cap = Capture::new(backend, CaptureOptions::default())?;
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let mut engine = Engine {
        cap,
        running: false,
        session: 0,
        settings: None,
        requested: Vec::new(),
        names: Vec::new(),
        filters: Vec::new(),
        next_filter: 1,
        tx,
        subscribers,
        procfs: Procfs::default(),
    };
    let handle = std::thread::Builder::new()
        .name("pidcap-engine".into())
        .spawn(move || engine.run(cmd_rx))
        .map_err(|e| EngineError::Io { what: "starting the engine thread".into(), source: e })?;
    Ok((cmd_tx, handle))
}

impl Engine {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let mut last_live = Instant::now();
        let mut last_counters = Instant::now();
        loop {
            loop {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            if self.running {
                self.drain(DRAIN_INTERVAL);
            } else {
                match rx.recv_timeout(DRAIN_INTERVAL * 20) {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return self.shutdown(),
                }
            }
            if self.running && last_live.elapsed() >= LIVENESS_INTERVAL {
                last_live = Instant::now();
                if let Err(e) = self.cap.live_targets() {
                    tracing::warn!("pruning dead targets: {e}");
                }
            }
            if last_counters.elapsed() >= COUNTERS_INTERVAL {
                last_counters = Instant::now();
                if self.subscribers.load(Ordering::Relaxed) > 0 {
                    if let Ok(stats) = self.cap.stats() {
                        let _ = self
                            .tx
                            .send(Published::Counters(Box::new(Event::Counters { stats, running: self.running })));
                    }
                }
            }
        }
    }

    fn shutdown(&mut self) {
        if self.running {
            let _ = self.cap.stop();
        }
    }

    fn drain(&mut self, timeout: Duration) {
        let tx = &self.tx;
        if let Err(e) = self.cap.poll(timeout, &mut |p| {
            let _ = tx.send(Published::Packet(Arc::clone(p)));
        }) {
            tracing::error!("reading the kernel ring: {e}");
            std::thread::sleep(timeout);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Op(Command { op, reply }) => {
                let r = self.op(op);
                let _ = reply.send(r);
            }
            Msg::Backlog { since, reply } => {
                if self.running {
                    self.drain(Duration::ZERO);
                }
                let _ = reply.send(Backlog(self.cap.ring().since(since, usize::MAX)));
            }
        }
    }

    fn op(&mut self, op: Op) -> Reply {
        match op {
            Op::StartCapture { pids, names, snaplen, ring_size, follow_children } => {
                self.start(pids, names, snaplen, ring_size, follow_children)
            }
            Op::StopCapture => {
                if !self.running {
                    return Err(err(ErrorCode::NotRunning, "no capture is running"));
                }
                self.drain(Duration::ZERO);
                self.cap.stop().map_err(engine_err)?;
                self.running = false;
                to_value(&self.state()?)
            }
            Op::GetPackets { since, limit } => {
                if self.running {
                    self.drain(Duration::ZERO);
                }
                to_value(&self.page(since, limit.unwrap_or(DEFAULT_PAGE)))
            }
            Op::Subscribe { .. } | Op::Inject(_) | Op::ListJobs | Op::WatchJob { .. } | Op::StopJob { .. } => {
                Err(err(ErrorCode::Internal, format!("{} is handled by the connection", op.name())))
            }
            Op::AddFilter { rule, action, index } => {
                let rule = Rule::parse_spec(&rule, action.unwrap_or(Action::Block))
                    .map_err(|e| err(ErrorCode::InvalidRule, e.to_string()))?;
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
            Op::RemoveFilter { filter } => {
                let i = self.filter_index(filter)?;
                self.change_filters(|f| {
                    f.remove(i);
                })?;
                self.filters_reply(None)
            }
            Op::SetFilterEnabled { filter, enabled } => {
                let i = self.filter_index(filter)?;
                self.change_filters(|f| f[i].rule.enabled = enabled)?;
                self.filters_reply(Some(filter))
            }
            Op::ClearFilters => {
                self.change_filters(|f| f.clear())?;
                self.filters_reply(None)
            }
            Op::ClearBuffer => {
                if self.running {
                    self.drain(Duration::ZERO);
                }
                let n = self.cap.ring().len();
                self.cap.clear_ring();
                to_value(&serde_json::json!({ "cleared": n, "next_id": self.cap.next_id() }))
            }
            Op::GetState => {
                if self.running {
                    self.drain(Duration::ZERO);
                }
                to_value(&self.state()?)
            }
        }
    }

    fn start(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow: bool,
    ) -> Reply {
        if self.running {
            return Err(err(ErrorCode::AlreadyRunning, "a capture is already running; stop_capture first"));
        }
        if pids.is_empty() && names.is_empty() {
            return Err(err(ErrorCode::InvalidArgument, "give at least one pid or process name"));
        }
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
        if settings.ring_size == 0 || settings.ring_size > 10_000_000 {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!("ring_size {} is not in 1..=10000000", settings.ring_size),
            ));
        }
        // Same kernel layer: fresh ring and counters, ids continuing where
        // the previous capture stopped.
        let first_id = self.cap.next_id();
        let opts = CaptureOptions { snaplen: settings.snaplen, ring_size: settings.ring_size, follow_children: follow };
        self.cap.restart(opts).map_err(engine_err)?;
        let added = pids
            .iter()
            .try_for_each(|&pid| self.cap.add_pid(pid))
            .and_then(|()| names.iter().try_for_each(|n| self.cap.add_name(n)));
        if let Err(e) = added {
            let _ = self.cap.stop();
            return Err(engine_err(e));
        }
        self.session += 1;
        self.running = true;
        self.settings = Some(settings);
        self.requested = pids;
        self.names = names;
        let targets = self.cap.live_targets().map_err(engine_err)?;
        to_value(&Started { session: self.session, first_id, targets })
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
        let hits = self.cap.rule_hits().map_err(engine_err)?;
        for (f, h) in self.filters.iter_mut().zip(&hits) {
            f.hits_before += h;
        }
        let before: Vec<(u64, Rule, u64)> = self.filters.iter().map(|f| (f.id, f.rule, f.hits_before)).collect();
        change(&mut self.filters);
        let list: Vec<Rule> = self.filters.iter().map(|f| f.rule).collect();
        if let Err(e) = self.cap.set_rules(&list) {
            // Keep what the kernel enforces and what we report the same.
            self.filters = before.into_iter().map(|(id, rule, hits_before)| Filter { id, rule, hits_before }).collect();
            let list: Vec<Rule> = self.filters.iter().map(|f| f.rule).collect();
            let _ = self.cap.set_rules(&list);
            return Err(engine_err(e));
        }
        Ok(())
    }

    fn filter_infos(&self) -> Vec<FilterInfo> {
        let hits = self.cap.rule_hits().unwrap_or_default();
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
        to_value(&Filters { filter, filters })
    }

    fn page(&self, since: u64, limit: usize) -> PacketPage {
        let ring = self.cap.ring();
        let mut packets = Vec::new();
        let mut bytes = 0;
        for p in ring.since(since, limit.clamp(1, MAX_PAGE)) {
            if !packets.is_empty() && bytes + p.data.len() > PAGE_BYTES {
                break;
            }
            bytes += p.data.len();
            packets.push(CapturedPacket::clone(&p));
        }
        let newest = self.cap.next_id().saturating_sub(1);
        let (missed, next_since) = match (packets.first(), packets.last()) {
            (Some(first), Some(last)) => (first.id.saturating_sub(since.saturating_add(1)), last.id),
            // Nothing held after `since`: whatever came up to the newest id is gone.
            _ => (newest.saturating_sub(since), since.max(newest)),
        };
        let more = !ring.since(next_since, 1).is_empty();
        PacketPage { packets, next_since, more, missed }
    }

    fn state(&mut self) -> Result<State, ApiError> {
        let stats = self.cap.stats().map_err(engine_err)?;
        let kernel_targets = if self.running { self.cap.live_targets().map_err(engine_err)? } else { Vec::new() };
        let mut targets: Vec<TargetInfo> = self
            .requested
            .iter()
            .filter(|_| self.running)
            .map(|&pid| {
                // Alive by the capture's pidfd (live_targets), not by /proc/PID: the pid may be another process's now.
                let alive = kernel_targets.contains(&pid);
                TargetInfo { pid, comm: alive.then(|| self.procfs.comm(pid)).flatten(), alive, requested: true }
            })
            .collect();
        for pid in kernel_targets {
            if !self.requested.contains(&pid) {
                targets.push(TargetInfo { pid, comm: self.procfs.comm(pid), alive: true, requested: false });
            }
        }
        let ring = self.cap.ring();
        Ok(State {
            running: self.running,
            session: self.session,
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
