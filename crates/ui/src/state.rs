//! The UI's state machine: [`App`] (everything the screen shows), [`Action`]
//! (everything that can happen: a click, a key, a daemon reply, a tick) and
//! [`update`], which applies an action and returns the [`Effect`]s (daemon
//! and library calls) to run. Plain Rust: no Dioxus, no I/O, unit-tested.
//! Components only render an `App` and dispatch actions; the runner
//! (`runner.rs`) executes effects and turns their results into actions.

use crate::editor::Editor;
use crate::filter::DisplayFilter;
use crate::procs::ProcInfo;
use pidcap_api::protocol::{FilterInfo, State, TargetInfo};
use pidcap_engine::rules::{Action as RuleAction, Rule};
use pidcap_engine::CaptureStats;
use pidcap_library::{SavedPacket, TagCount};
use pidcap_packet::{CapturedPacket, Direction};
use serde::Deserialize;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Rows of the packet list drawn at once (the rest is virtual).
pub const VISIBLE_ROWS: usize = 24;
/// Seconds of packets-per-second history in the chart.
pub const CHART_SECONDS: usize = 60;
/// Send statuses kept for the resend view.
pub const MAX_STATUSES: usize = 200;
/// Packets kept in the UI when the daemon does not say (its default ring).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Processes,
    Capture,
    Filters,
    Library,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: u64,
    pub level: Level,
    pub text: String,
}

/// The add-rule form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleForm {
    pub action: RuleAction,
    /// any | tcp | udp
    pub protocol: String,
    pub port: String,
    /// IP or CIDR; empty = any.
    pub address: String,
    /// both | in | out
    pub direction: String,
    pub error: Option<String>,
}

impl Default for RuleForm {
    fn default() -> Self {
        RuleForm {
            action: RuleAction::Block,
            protocol: "any".into(),
            port: String::new(),
            address: String::new(),
            direction: "both".into(),
            error: None,
        }
    }
}

impl RuleForm {
    /// The SPEC the form describes (`block:out:tcp:10.0.0.0/8:443`), checked with the engine's parser.
    pub fn spec(&self) -> Result<String, String> {
        let mut parts = vec![match self.action {
            RuleAction::Block => "block".to_string(),
            RuleAction::Allow => "allow".to_string(),
        }];
        if self.direction != "both" {
            parts.push(self.direction.clone());
        }
        if self.protocol != "any" {
            parts.push(self.protocol.clone());
        }
        let addr = self.address.trim();
        if !addr.is_empty() {
            let v6 = addr.contains(':') && !addr.starts_with('[');
            parts.push(if v6 {
                match addr.split_once('/') {
                    Some((a, l)) => format!("[{a}]/{l}"),
                    None => format!("[{addr}]"),
                }
            } else {
                addr.to_string()
            });
        }
        let port = self.port.trim();
        if !port.is_empty() {
            let p: u16 = port.parse().map_err(|_| format!("the port `{port}` is not a number from 0 to 65535"))?;
            parts.push(p.to_string());
        }
        if parts.len() == 1 {
            parts.push("any".into());
        }
        let spec = parts.join(":");
        Rule::parse_spec(&spec, self.action).map_err(|e| e.short())?;
        Ok(spec)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResendMode {
    #[default]
    Socket,
    Raw,
    Connect,
}

impl ResendMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResendMode::Socket => "socket",
            ResendMode::Raw => "raw",
            ResendMode::Connect => "connect",
        }
    }
    pub fn parse(s: &str) -> ResendMode {
        match s {
            "raw" => ResendMode::Raw,
            "connect" => ResendMode::Connect,
            _ => ResendMode::Socket,
        }
    }
}

/// A send job as the daemon reports it (docs/API.md, `inject`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct JobView {
    pub id: u64,
    pub state: String,
    pub mode: String,
    pub proto: String,
    pub local: Option<String>,
    pub remote: Option<String>,
    pub count: u64,
    pub forever: bool,
    pub sent: u64,
    pub failed: u64,
    pub bytes: u64,
    pub summary: Option<SummaryView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ReplyView {
    pub bytes: u64,
    pub ascii: String,
}

/// One send's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SendStatusView {
    pub seq: u64,
    pub ok: bool,
    pub bytes: u64,
    pub time_ns: u64,
    pub elapsed_us: u64,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub reply: Option<ReplyView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SummaryView {
    pub sent: u64,
    pub failed: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendForm {
    pub mode: ResendMode,
    pub count: String,
    pub interval_ms: String,
    pub forever: bool,
}

impl Default for ResendForm {
    fn default() -> Self {
        ResendForm { mode: ResendMode::Socket, count: "1".into(), interval_ms: "1000".into(), forever: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resend {
    pub form: ResendForm,
    pub starting: bool,
    pub job: Option<JobView>,
    pub statuses: VecDeque<SendStatusView>,
    pub summary: Option<SummaryView>,
    pub error: Option<String>,
}

impl Resend {
    pub fn running(&self) -> bool {
        self.starting || self.job.as_ref().is_some_and(|j| j.state == "running" && self.summary.is_none())
    }
}

/// What to save in the library.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaveForm {
    pub name: String,
    pub description: String,
    /// Comma-separated.
    pub tags: String,
}

/// A library entry being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibEdit {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub tags: String,
    /// The tags it had when opened (to compute what to add/remove).
    pub old_tags: Vec<String>,
    pub packet: Box<CapturedPacket>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LibraryView {
    pub query: String,
    pub tag: Option<String>,
    pub items: Vec<SavedPacket>,
    pub tags: Vec<TagCount>,
    pub checked: BTreeSet<i64>,
    pub open: Option<LibEdit>,
    pub save: SaveForm,
    pub downloads: Vec<Download>,
    pub loaded: bool,
}

/// Packets per second, in and out, by second (wall clock of the packets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rate {
    /// (second since the epoch, in, out), oldest first.
    pub buckets: VecDeque<(u64, u32, u32)>,
    /// The last second shown (advanced by ticks).
    pub now_s: u64,
}

impl Rate {
    pub fn add(&mut self, p: &CapturedPacket) {
        let s = p.timestamp_ns / 1_000_000_000;
        let i = match self.buckets.iter().rposition(|b| b.0 <= s) {
            Some(i) if self.buckets[i].0 == s => i,
            Some(i) => {
                self.buckets.insert(i + 1, (s, 0, 0));
                i + 1
            }
            None => {
                self.buckets.push_front((s, 0, 0));
                0
            }
        };
        match p.direction {
            Direction::Inbound => self.buckets[i].1 += 1,
            Direction::Outbound => self.buckets[i].2 += 1,
        }
        self.now_s = self.now_s.max(s);
        self.trim();
    }

    pub fn tick(&mut self, now_s: u64) {
        self.now_s = self.now_s.max(now_s);
        self.trim();
    }

    fn trim(&mut self) {
        let oldest = self.now_s.saturating_sub(CHART_SECONDS as u64 - 1);
        while self.buckets.front().is_some_and(|b| b.0 < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The last [`CHART_SECONDS`] seconds, zeros included: (in, out) per second, oldest first.
    pub fn series(&self) -> Vec<(u32, u32)> {
        let start = self.now_s.saturating_sub(CHART_SECONDS as u64 - 1);
        (start..=self.now_s).map(|s| self.buckets.iter().find(|b| b.0 == s).map_or((0, 0), |b| (b.1, b.2))).collect()
    }
}

/// Everything the UI shows.
#[derive(Debug, Clone)]
pub struct App {
    pub tab: Tab,
    /// Daemon connection: None = connected; Some(why not).
    pub daemon_error: Option<String>,
    pub notices: Vec<Notice>,
    next_notice: u64,

    // Processes.
    pub procs: Vec<ProcInfo>,
    pub proc_query: String,
    pub proc_selected: BTreeSet<u32>,
    pub run_command: String,
    pub follow_children: bool,

    // Capture.
    pub running: bool,
    pub targets: Vec<TargetInfo>,
    pub stats: CaptureStats,
    /// Packets the daemon skipped for this UI (it read too slowly).
    pub ui_missed: u64,
    /// Packets this view has received live since the capture started: the
    /// daemon's counters come once a second, the packets as they happen.
    pub live_received: u64,
    pub autoscroll: bool,

    // Packets.
    pub packets: VecDeque<Arc<CapturedPacket>>,
    pub capacity: usize,
    pub filter_text: String,
    pub filter: DisplayFilter,
    pub filter_error: Option<String>,
    /// Ids of the packets the display filter lets through, in order.
    pub shown: VecDeque<u64>,
    /// Index in `shown` of the first row drawn.
    pub scroll: usize,
    pub selected: BTreeSet<u64>,
    pub focused: Option<u64>,
    pub rate: Rate,

    pub editor: Option<Editor>,
    pub resend: Resend,

    pub filters: Vec<FilterInfo>,
    pub rule_form: RuleForm,

    pub library: LibraryView,
}

impl Default for App {
    fn default() -> Self {
        App {
            tab: Tab::Processes,
            daemon_error: None,
            notices: Vec::new(),
            next_notice: 1,
            procs: Vec::new(),
            proc_query: String::new(),
            proc_selected: BTreeSet::new(),
            run_command: String::new(),
            follow_children: false,
            running: false,
            targets: Vec::new(),
            stats: CaptureStats::default(),
            ui_missed: 0,
            live_received: 0,
            autoscroll: true,
            packets: VecDeque::new(),
            capacity: DEFAULT_CAPACITY,
            filter_text: String::new(),
            filter: DisplayFilter::default(),
            filter_error: None,
            shown: VecDeque::new(),
            scroll: 0,
            selected: BTreeSet::new(),
            focused: None,
            rate: Rate::default(),
            editor: None,
            resend: Resend::default(),
            filters: Vec::new(),
            rule_form: RuleForm::default(),
            library: LibraryView::default(),
        }
    }
}

/// Everything that can happen.
#[derive(Debug, Clone)]
pub enum Action {
    /// The UI just opened: load everything.
    Init,
    SetTab(Tab),
    DismissNotice(u64),
    /// Once a second: the chart advances, the counters/filters refresh.
    Tick {
        now_ns: u64,
    },

    // Processes.
    RefreshProcesses,
    ProcessesLoaded(Vec<ProcInfo>),
    SetProcQuery(String),
    ToggleProc(u32),
    SetRunCommand(String),
    SetFollowChildren(bool),
    StartCapture,
    RunCommand,
    StopCapture,
    ClearBuffer,
    ToggleAutoscroll,

    // Daemon results and events.
    DaemonConnected,
    DaemonState(Box<State>),
    CaptureStarted {
        targets: Vec<u32>,
    },
    BufferCleared,
    Packets(Vec<CapturedPacket>),
    Counters {
        stats: CaptureStats,
        running: bool,
    },
    Missed(u64),
    /// A call failed: `what` was being done, `error` says why in plain words.
    Failed {
        what: String,
        error: String,
    },
    /// The daemon cannot be reached.
    Disconnected(String),

    // Packet list.
    SetDisplayFilter(String),
    Scroll(i64),
    ScrollTo(usize),
    SelectPacket {
        id: u64,
        extend: bool,
    },
    SelectAllShown,

    // Editor.
    OpenEditor,
    EditHex(String),
    EditAscii(String),
    ResetEditor,
    CloseEditor,

    // Resend.
    SetResendMode(ResendMode),
    SetResendCount(String),
    SetResendInterval(String),
    SetResendForever(bool),
    StartResend,
    StopResend,
    JobStarted(JobView),
    SendStatus {
        job: u64,
        status: SendStatusView,
    },
    JobDone {
        job: u64,
        summary: SummaryView,
    },

    // Filter rules.
    SetRuleAction(RuleAction),
    SetRuleProtocol(String),
    SetRulePort(String),
    SetRuleAddress(String),
    SetRuleDirection(String),
    AddRule,
    FiltersChanged(Vec<FilterInfo>),
    SetRuleEnabled(u64, bool),
    RemoveRule(u64),
    ClearRules,

    // Library.
    SetSaveName(String),
    SetSaveDescription(String),
    SetSaveTags(String),
    SaveSelected,
    Saved(usize),
    SetLibQuery(String),
    SetLibTag(Option<String>),
    LibraryLoaded {
        items: Vec<SavedPacket>,
        tags: Vec<TagCount>,
    },
    ToggleLibChecked(i64),
    LibOpen(i64),
    SetLibEditName(String),
    SetLibEditDescription(String),
    SetLibEditTags(String),
    LibSaveEdit,
    LibClose,
    LibDelete(Vec<i64>),
    LibExportDpp,
    ExportPcapng,
    DownloadReady(Download),
    /// A file was imported (by the upload route): refresh, say so.
    Imported(String),
    /// Edit a library entry's payload and resend it.
    LibEditPayload,
}

/// What the runner does for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    ListProcesses,
    GetState,
    StartCapture { pids: Vec<u32>, follow_children: bool },
    RunCommand { command: String, follow_children: bool },
    StopCapture,
    ClearBuffer,
    AddFilter { spec: String },
    RemoveFilter(u64),
    SetFilterEnabled(u64, bool),
    ClearFilters,
    Inject(InjectRequest),
    StopJob(u64),
    LibraryQuery { query: String, tag: Option<String> },
    LibrarySave { packets: Vec<CapturedPacket>, name: String, description: String, tags: Vec<String> },
    LibraryEdit { id: i64, name: String, description: String, add_tags: Vec<String>, remove_tags: Vec<String> },
    LibraryDelete(Vec<i64>),
    LibraryExportDpp(Vec<i64>),
    ExportPcapng(Vec<CapturedPacket>),
}

/// An `inject` request (docs/API.md).
#[derive(Debug, Clone, PartialEq)]
pub struct InjectRequest {
    /// The packet the daemon holds (None: `template` is sent).
    pub packet: Option<u64>,
    pub template: Option<Box<CapturedPacket>>,
    pub data_hex: String,
    pub mode: ResendMode,
    pub count: u64,
    pub forever: bool,
    pub interval_ms: u64,
}

pub fn split_tags(s: &str) -> Vec<String> {
    s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

impl App {
    pub fn new() -> App {
        App::default()
    }

    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        let id = self.next_notice;
        self.next_notice += 1;
        self.notices.push(Notice { id, level, text: text.into() });
        if self.notices.len() > 5 {
            self.notices.remove(0);
        }
    }

    pub fn packet(&self, id: u64) -> Option<&Arc<CapturedPacket>> {
        self.packets.binary_search_by_key(&id, |p| p.id).ok().map(|i| &self.packets[i])
    }

    pub fn focused_packet(&self) -> Option<&Arc<CapturedPacket>> {
        self.focused.and_then(|id| self.packet(id))
    }

    /// The rows drawn now: (index in the shown list, packet).
    pub fn visible_rows(&self) -> Vec<(usize, Arc<CapturedPacket>)> {
        (self.scroll..(self.scroll + VISIBLE_ROWS).min(self.shown.len()))
            .filter_map(|i| self.packet(self.shown[i]).map(|p| (i, p.clone())))
            .collect()
    }

    pub fn max_scroll(&self) -> usize {
        self.shown.len().saturating_sub(VISIBLE_ROWS)
    }

    pub fn visible_procs(&self) -> Vec<&ProcInfo> {
        self.procs.iter().filter(|p| crate::procs::matches(p, &self.proc_query)).collect()
    }

    fn follow(&mut self) {
        if self.autoscroll {
            self.scroll = self.max_scroll();
        } else {
            self.scroll = self.scroll.min(self.max_scroll());
        }
    }

    fn refilter(&mut self) {
        self.shown = self.packets.iter().filter(|p| self.filter.matches(p)).map(|p| p.id).collect();
        self.follow();
    }

    /// The "captured" counter: the daemon's count, never behind what this view
    /// has already received (or been told it missed) since the last refresh.
    pub fn captured_count(&self) -> u64 {
        self.stats.received.max(self.live_received + self.ui_missed)
    }

    fn push_packets(&mut self, packets: Vec<CapturedPacket>) {
        for p in packets {
            if self.packets.back().is_some_and(|last| last.id >= p.id) {
                continue; // already have it (a backlog overlapping a page)
            }
            self.live_received += 1;
            self.rate.add(&p);
            if self.filter.matches(&p) {
                self.shown.push_back(p.id);
            }
            self.packets.push_back(Arc::new(p));
        }
        while self.packets.len() > self.capacity {
            if let Some(old) = self.packets.pop_front() {
                if self.shown.front() == Some(&old.id) {
                    self.shown.pop_front();
                    self.scroll = self.scroll.saturating_sub(1);
                }
                self.selected.remove(&old.id);
            }
        }
        self.follow();
    }

    fn clear_packets(&mut self) {
        self.packets.clear();
        self.shown.clear();
        self.selected.clear();
        self.focused = None;
        self.scroll = 0;
        self.rate = Rate::default();
    }

    /// Selected packets in capture order (the focused one when none is selected).
    pub fn selection(&self) -> Vec<CapturedPacket> {
        let ids: Vec<u64> = if self.selected.is_empty() {
            self.focused.into_iter().collect()
        } else {
            self.selected.iter().copied().collect()
        };
        ids.iter().filter_map(|id| self.packet(*id)).map(|p| (**p).clone()).collect()
    }

    fn library_query(&self) -> Effect {
        Effect::LibraryQuery { query: self.library.query.clone(), tag: self.library.tag.clone() }
    }

    fn apply_state(&mut self, st: State) {
        self.running = st.running;
        self.targets = st.targets;
        self.capacity = if st.stats.ring_capacity > 0 { st.stats.ring_capacity } else { DEFAULT_CAPACITY };
        self.stats = st.stats;
        self.filters = st.filters;
    }
}

/// Apply `action` to `app`; the effects to run.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    use Action as A;
    let mut fx = Vec::new();
    match action {
        A::Init => {
            fx.push(Effect::GetState);
            fx.push(Effect::ListProcesses);
            fx.push(app.library_query());
        }
        A::SetTab(t) => {
            app.tab = t;
            match t {
                Tab::Processes => fx.push(Effect::ListProcesses),
                Tab::Library => fx.push(app.library_query()),
                Tab::Filters => fx.push(Effect::GetState),
                Tab::Capture => {}
            }
        }
        A::DismissNotice(id) => app.notices.retain(|n| n.id != id),
        A::Tick { now_ns } => {
            app.rate.tick(now_ns / 1_000_000_000);
            fx.push(Effect::GetState);
        }
        A::RefreshProcesses => fx.push(Effect::ListProcesses),
        A::ProcessesLoaded(p) => {
            let alive: BTreeSet<u32> = p.iter().map(|p| p.pid).collect();
            app.proc_selected.retain(|pid| alive.contains(pid));
            app.procs = p;
        }
        A::SetProcQuery(q) => app.proc_query = q,
        A::ToggleProc(pid) => {
            if !app.proc_selected.remove(&pid) {
                app.proc_selected.insert(pid);
            }
        }
        A::SetRunCommand(c) => app.run_command = c,
        A::SetFollowChildren(f) => app.follow_children = f,
        A::StartCapture => {
            if app.proc_selected.is_empty() {
                app.notify(Level::Error, "Pick at least one process to capture (tick it in the list).");
            } else {
                fx.push(Effect::StartCapture {
                    pids: app.proc_selected.iter().copied().collect(),
                    follow_children: app.follow_children,
                });
            }
        }
        A::RunCommand => {
            let command = app.run_command.trim().to_string();
            if command.is_empty() {
                app.notify(Level::Error, "Type a command to run first.");
            } else {
                fx.push(Effect::RunCommand { command, follow_children: true });
            }
        }
        A::StopCapture => fx.push(Effect::StopCapture),
        A::ClearBuffer => {
            app.clear_packets();
            fx.push(Effect::ClearBuffer);
        }
        A::ToggleAutoscroll => {
            app.autoscroll = !app.autoscroll;
            app.follow();
        }
        A::DaemonConnected => app.daemon_error = None,
        A::DaemonState(st) => {
            app.daemon_error = None;
            app.apply_state(*st);
        }
        A::CaptureStarted { targets } => {
            app.running = true;
            app.live_received = 0;
            app.clear_packets();
            app.tab = Tab::Capture;
            let list = targets.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            app.notify(Level::Info, format!("Capturing process {list}."));
            fx.push(Effect::GetState);
        }
        A::BufferCleared => app.clear_packets(),
        A::Packets(p) => app.push_packets(p),
        A::Counters { stats, running } => {
            app.stats = stats;
            app.running = running;
        }
        A::Missed(n) => app.ui_missed += n,
        A::Failed { what, error } => {
            if what == "add the rule" {
                app.rule_form.error = Some(error.clone());
            }
            if what == "resend" {
                app.resend.starting = false;
                app.resend.error = Some(error.clone());
            }
            app.notify(Level::Error, format!("Could not {what}: {error}"));
        }
        A::Disconnected(why) => app.daemon_error = Some(why),
        A::SetDisplayFilter(text) => {
            match DisplayFilter::parse(&text) {
                Ok(f) => {
                    app.filter = f;
                    app.filter_error = None;
                    app.refilter();
                }
                Err(e) => app.filter_error = Some(e),
            }
            app.filter_text = text;
        }
        A::Scroll(delta) => {
            let to = (app.scroll as i64 + delta).clamp(0, app.max_scroll() as i64) as usize;
            if delta < 0 && app.autoscroll && to < app.max_scroll() {
                app.autoscroll = false;
            }
            app.scroll = to;
            if to == app.max_scroll() && delta > 0 {
                app.autoscroll = true;
            }
        }
        A::ScrollTo(i) => {
            app.scroll = i.min(app.max_scroll());
            app.autoscroll = app.scroll == app.max_scroll();
        }
        A::SelectPacket { id, extend } => {
            if extend {
                if !app.selected.remove(&id) {
                    app.selected.insert(id);
                }
            } else {
                app.selected.clear();
                app.selected.insert(id);
            }
            app.focused = Some(id);
        }
        A::SelectAllShown => app.selected = app.shown.iter().copied().collect(),
        A::OpenEditor => match app.focused_packet() {
            Some(p) => app.editor = Some(Editor::new(p.id, p.payload())),
            None => app.notify(Level::Error, "Pick a packet in the list first."),
        },
        A::LibEditPayload => {
            if let Some(e) = &app.library.open {
                let mut ed = Editor::new(0, e.packet.payload());
                ed.packet_id = 0;
                app.editor = Some(ed);
                app.tab = Tab::Capture;
            }
        }
        A::EditHex(t) => {
            if let Some(e) = &mut app.editor {
                e.edit_hex(t)
            }
        }
        A::EditAscii(t) => {
            if let Some(e) = &mut app.editor {
                e.edit_ascii(t)
            }
        }
        A::ResetEditor => {
            if let Some(e) = &mut app.editor {
                e.reset()
            }
        }
        A::CloseEditor => app.editor = None,
        A::SetResendMode(m) => app.resend.form.mode = m,
        A::SetResendCount(c) => app.resend.form.count = c,
        A::SetResendInterval(i) => app.resend.form.interval_ms = i,
        A::SetResendForever(f) => app.resend.form.forever = f,
        A::StartResend => {
            let form = app.resend.form.clone();
            let count = form.count.trim().parse::<u64>().ok().filter(|c| *c >= 1);
            let interval = form.interval_ms.trim().parse::<u64>().ok();
            let err = |app: &mut App, e: &str| {
                app.resend.error = Some(e.to_string());
                app.notify(Level::Error, e.to_string());
            };
            let (packet, template, payload) = match &app.editor {
                Some(e) if !e.is_valid() => {
                    return {
                        err(app, "The hex payload is not valid; fix it before sending.");
                        fx
                    }
                }
                Some(e) if e.packet_id != 0 => (Some(e.packet_id), None, e.payload.clone()),
                Some(e) => match &app.library.open {
                    Some(l) => (None, Some(l.packet.clone()), e.payload.clone()),
                    None => (None, None, e.payload.clone()),
                },
                None => match app.focused_packet() {
                    Some(p) => (Some(p.id), None, p.payload().to_vec()),
                    None => (None, None, Vec::new()),
                },
            };
            if packet.is_none() && template.is_none() {
                err(app, "Pick a packet to resend first.");
            } else if count.is_none() && !form.forever {
                err(app, "The count is a whole number of sends, 1 or more.");
            } else if interval.is_none() {
                err(app, "The interval is a number of milliseconds.");
            } else {
                app.resend.error = None;
                app.resend.starting = true;
                app.resend.job = None;
                app.resend.summary = None;
                app.resend.statuses.clear();
                fx.push(Effect::Inject(InjectRequest {
                    packet,
                    template,
                    data_hex: pidcap_packet::to_hex(&payload),
                    mode: form.mode,
                    count: count.unwrap_or(1),
                    forever: form.forever,
                    interval_ms: interval.unwrap_or(1000),
                }));
            }
        }
        A::StopResend => {
            if let Some(j) = &app.resend.job {
                fx.push(Effect::StopJob(j.id));
            }
        }
        A::JobStarted(job) => {
            app.resend.starting = false;
            if let Some(s) = job.summary.clone() {
                app.resend.summary = Some(s);
            }
            app.resend.job = Some(job);
        }
        A::SendStatus { job, status } => {
            if let Some(j) = app.resend.job.as_mut().filter(|j| j.id == job) {
                if status.ok {
                    j.sent = j.sent.max(status.seq);
                    j.bytes += status.bytes;
                } else {
                    j.failed += 1;
                }
                app.resend.statuses.push_back(status);
                while app.resend.statuses.len() > MAX_STATUSES {
                    app.resend.statuses.pop_front();
                }
            }
        }
        A::JobDone { job, summary } => {
            if let Some(j) = app.resend.job.as_mut().filter(|j| j.id == job) {
                j.state = if summary.reason == "done" { "done".into() } else { summary.reason.clone() };
                j.sent = summary.sent;
                j.failed = summary.failed;
                app.resend.summary = Some(summary);
            }
        }
        A::SetRuleAction(a) => app.rule_form.action = a,
        A::SetRuleProtocol(p) => app.rule_form.protocol = p,
        A::SetRulePort(p) => app.rule_form.port = p,
        A::SetRuleAddress(a) => app.rule_form.address = a,
        A::SetRuleDirection(d) => app.rule_form.direction = d,
        A::AddRule => match app.rule_form.spec() {
            Ok(spec) => {
                app.rule_form.error = None;
                fx.push(Effect::AddFilter { spec });
            }
            Err(e) => app.rule_form.error = Some(e),
        },
        A::FiltersChanged(f) => app.filters = f,
        A::SetRuleEnabled(id, en) => fx.push(Effect::SetFilterEnabled(id, en)),
        A::RemoveRule(id) => fx.push(Effect::RemoveFilter(id)),
        A::ClearRules => fx.push(Effect::ClearFilters),
        A::SetSaveName(s) => app.library.save.name = s,
        A::SetSaveDescription(s) => app.library.save.description = s,
        A::SetSaveTags(s) => app.library.save.tags = s,
        A::SaveSelected => {
            let mut packets = app.selection();
            if let (Some(e), [one]) = (&app.editor, packets.as_mut_slice()) {
                // Save what the editor shows: the edited payload replaces the captured one.
                if e.is_valid() && e.is_modified() && e.packet_id == one.id {
                    let off = (one.decoded.payload_offset as usize).min(one.data.len());
                    one.data.truncate(off);
                    one.data.extend_from_slice(&e.payload);
                    one.orig_len = one.data.len() as u32;
                }
            }
            if packets.is_empty() {
                app.notify(Level::Error, "Select the packets to save first.");
            } else if app.library.save.name.trim().is_empty() {
                app.notify(Level::Error, "Give the saved packet a name.");
            } else {
                let s = &app.library.save;
                fx.push(Effect::LibrarySave {
                    packets,
                    name: s.name.trim().to_string(),
                    description: s.description.clone(),
                    tags: split_tags(&s.tags),
                });
            }
        }
        A::Saved(n) => {
            app.notify(Level::Info, format!("Saved {n} packet{} in the library.", if n == 1 { "" } else { "s" }));
            app.library.save = SaveForm::default();
            fx.push(app.library_query());
        }
        A::SetLibQuery(q) => {
            app.library.query = q;
            fx.push(app.library_query());
        }
        A::SetLibTag(t) => {
            app.library.tag = if app.library.tag == t { None } else { t };
            fx.push(app.library_query());
        }
        A::LibraryLoaded { items, tags } => {
            let ids: BTreeSet<i64> = items.iter().map(|i| i.id).collect();
            app.library.checked.retain(|id| ids.contains(id));
            app.library.items = items;
            app.library.tags = tags;
            app.library.loaded = true;
        }
        A::ToggleLibChecked(id) => {
            if !app.library.checked.remove(&id) {
                app.library.checked.insert(id);
            }
        }
        A::LibOpen(id) => {
            if let Some(p) = app.library.items.iter().find(|p| p.id == id) {
                app.library.open = Some(LibEdit {
                    id,
                    name: p.name.clone(),
                    description: p.description.clone(),
                    tags: p.tags.join(", "),
                    old_tags: p.tags.clone(),
                    packet: Box::new(p.packet.clone()),
                });
            }
        }
        A::SetLibEditName(s) => {
            if let Some(e) = &mut app.library.open {
                e.name = s
            }
        }
        A::SetLibEditDescription(s) => {
            if let Some(e) = &mut app.library.open {
                e.description = s
            }
        }
        A::SetLibEditTags(s) => {
            if let Some(e) = &mut app.library.open {
                e.tags = s
            }
        }
        A::LibSaveEdit => {
            if let Some(e) = &app.library.open {
                let new = split_tags(&e.tags);
                let lower = |v: &[String]| v.iter().map(|t| t.to_lowercase()).collect::<BTreeSet<_>>();
                let (old_l, new_l) = (lower(&e.old_tags), lower(&new));
                fx.push(Effect::LibraryEdit {
                    id: e.id,
                    name: e.name.clone(),
                    description: e.description.clone(),
                    add_tags: new.iter().filter(|t| !old_l.contains(&t.to_lowercase())).cloned().collect(),
                    remove_tags: e.old_tags.iter().filter(|t| !new_l.contains(&t.to_lowercase())).cloned().collect(),
                });
                app.library.open = None;
                fx.push(app.library_query());
            }
        }
        A::LibClose => app.library.open = None,
        A::LibDelete(ids) => {
            if app.library.open.as_ref().is_some_and(|e| ids.contains(&e.id)) {
                app.library.open = None;
            }
            fx.push(Effect::LibraryDelete(ids));
            fx.push(app.library_query());
        }
        A::LibExportDpp => {
            let ids: Vec<i64> = if app.library.checked.is_empty() {
                app.library.items.iter().map(|i| i.id).collect()
            } else {
                app.library.checked.iter().copied().collect()
            };
            if ids.is_empty() {
                app.notify(Level::Error, "The library has nothing to export.");
            } else {
                fx.push(Effect::LibraryExportDpp(ids));
            }
        }
        A::ExportPcapng => {
            let packets = app.selection();
            if packets.is_empty() {
                app.notify(Level::Error, "Select the packets to export first.");
            } else {
                fx.push(Effect::ExportPcapng(packets));
            }
        }
        A::DownloadReady(d) => {
            app.notify(Level::Info, format!("{} is ready to download.", d.name));
            app.library.downloads.insert(0, d);
            app.library.downloads.truncate(5);
        }
        A::Imported(msg) => {
            app.notify(Level::Info, msg);
            fx.push(app.library_query());
        }
    }
    fx
}
