//! The UI's state machine, one area at a time. [`App`] is everything the
//! screen shows, one struct per area; [`Msg`] is everything that can happen
//! (a click, a key, a daemon reply or event, a tick), one documented enum per
//! area; [`update`] applies a message and returns the [`Effect`]s (daemon and
//! library calls) to run. Plain Rust: no Dioxus, no I/O, unit-tested.
//! Components only render an `App` and dispatch messages; the runner
//! (`runner.rs`) executes effects and turns their results into messages.
//!
//! The areas, each a module with its state, its message enum and its update:
//! - [`AppMsg`] (here): tabs, notices, the daemon connection, ticks, failures;
//! - [`processes`]: the process list and which processes to capture;
//! - [`capture`]: starting and stopping a capture, its targets and counters;
//! - [`packets`]: the packets held, the display filter, scrolling, selection, the chart;
//! - [`editor`]: the payload editor (hex and ASCII);
//! - [`resend`]: the resend form and its job;
//! - [`rules`]: the filter rules;
//! - [`library`]: the packet library, saving and downloads;
//! - [`conversations`]: the connections of the capture (counted as packets
//!   arrive) and the followed stream of one (issue 14).
//!
//! State changes only through [`update`]. An area's update reads the other
//! areas it needs (resending reads the editor) and, where one event spans
//! areas (a started capture empties the packet list), calls their methods.

pub mod capture;
pub mod editor;
pub mod library;
pub mod packets;
pub mod processes;
pub mod resend;
pub mod rules;

pub use capture::{Capture, CaptureMsg, TlsNotice, TLS_LIBRARIES_LOOKED_FOR};
pub use editor::EditorMsg;
pub use library::{Download, LibEdit, Library, LibraryMsg, SaveForm};
pub use packets::{Packets, PacketsMsg, Rate, CHART_SECONDS, DEFAULT_CAPACITY, VISIBLE_ROWS};
pub use processes::{ProcKey, Processes, ProcessesMsg, Row, SortKey, REFRESH_TICKS};
pub use resend::{Resend, ResendForm, ResendMsg, MAX_STATUSES};
pub use rules::{RuleForm, Rules, RulesMsg};
// -- conversations and follow (issue 14) --
pub mod conversations;
pub use conversations::{Column, Conversations, ConversationsMsg, Follow, Format};

use crate::editor::Editor;
use crate::error::{Problem, Task};
use pidcap_api::protocol::{InjectArgs, State};
use pidcap_packet::CapturedPacket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Processes,
    Capture,
    Filters,
    Library,
    // -- conversations and follow (issue 14) --
    Conversations,
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
    // -- notices (issue 14) --
    /// When it goes by itself.
    pub until: Until,
}

/// Notices kept on screen (the oldest go first).
pub const MAX_NOTICES: usize = 5;

// -- notices (issue 14) --
/// An information notice goes after this many ticks (seconds).
pub const INFO_TICKS: u32 = 6;

/// When a notice goes away by itself (besides being clicked away, and the
/// oldest going when there are more than [`MAX_NOTICES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Only when dismissed (errors).
    Dismissed,
    /// After this many more ticks (information).
    Ticks(u32),
    /// While it is true: it goes as soon as [`While::holds`] is false.
    While(While),
}

/// What a notice says is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum While {
    /// "Capturing process N.": a capture is running.
    Capturing,
    /// "Pick at least one process": none is ticked and shown.
    NoProcessPicked,
    /// "Type a command to run first": the box is empty.
    NoCommand,
    /// "Select the packets to save first": no packet is selected.
    NoPacketSelected,
}

impl While {
    pub fn holds(self, app: &App) -> bool {
        match self {
            While::Capturing => app.capture.running,
            While::NoProcessPicked => app.processes.to_capture().is_empty(),
            While::NoCommand => app.processes.run_command.trim().is_empty(),
            While::NoPacketSelected => app.packets.selection().is_empty(),
        }
    }
}
// -- end notices --

/// Everything the UI shows.
#[derive(Debug, Clone)]
pub struct App {
    pub tab: Tab,
    /// Daemon connection: None = connected; Some(why not).
    pub daemon_error: Option<Problem>,
    pub notices: Vec<Notice>,
    next_notice: u64,

    pub processes: Processes,
    pub capture: Capture,
    pub packets: Packets,
    /// The payload editor, when open.
    pub editor: Option<Editor>,
    pub resend: Resend,
    pub rules: Rules,
    pub library: Library,
    // -- conversations and follow (issue 14) --
    pub conversations: Conversations,
}

impl Default for App {
    fn default() -> Self {
        App {
            tab: Tab::Processes,
            daemon_error: None,
            notices: Vec::new(),
            next_notice: 1,
            processes: Processes::default(),
            capture: Capture::default(),
            packets: Packets::default(),
            editor: None,
            resend: Resend::default(),
            rules: Rules::default(),
            library: Library::default(),
            // -- conversations and follow (issue 14) --
            conversations: Conversations::default(),
        }
    }
}

/// Everything that can happen: one enum per area.
#[derive(Debug, Clone)]
pub enum Msg {
    App(AppMsg),
    Processes(ProcessesMsg),
    Capture(CaptureMsg),
    Packets(PacketsMsg),
    Editor(EditorMsg),
    Resend(ResendMsg),
    Rules(RulesMsg),
    Library(LibraryMsg),
    // -- conversations and follow (issue 14) --
    Conversations(ConversationsMsg),
}

macro_rules! into_msg {
    ($($area:ident($t:ty)),+ $(,)?) => {
        $(impl From<$t> for Msg {
            fn from(m: $t) -> Msg {
                Msg::$area(m)
            }
        })+
    };
}

into_msg!(
    App(AppMsg),
    Processes(ProcessesMsg),
    Capture(CaptureMsg),
    Packets(PacketsMsg),
    Editor(EditorMsg),
    Resend(ResendMsg),
    Rules(RulesMsg),
    Library(LibraryMsg),
    // -- conversations and follow (issue 14) --
    Conversations(ConversationsMsg),
);

/// What concerns the whole UI rather than one area.
#[derive(Debug, Clone)]
pub enum AppMsg {
    /// The UI just opened: load everything.
    Init,
    /// A tab was picked; what it shows is refreshed.
    SetTab(Tab),
    /// A notice was clicked away.
    DismissNotice(u64),
    /// Once a second: the chart advances, the counters and rule hits refresh.
    Tick { now_ns: u64 },
    /// The live feed is subscribed (again).
    Connected,
    /// The daemon cannot be reached.
    Disconnected(Problem),
    /// The daemon's state (`get_state`, `stop_capture`): capture, ring size, rules.
    DaemonState(Box<State>),
    /// An effect failed: the notice says what and why; the area that asked is told.
    Failed { task: Task, error: Problem },
}

/// What the runner does for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    ListProcesses,
    GetState,
    StartCapture {
        pids: Vec<u32>,
        follow_children: bool,
    },
    RunCommand {
        command: String,
        follow_children: bool,
    },
    StopCapture,
    ClearBuffer,
    AddFilter {
        spec: String,
    },
    RemoveFilter(u64),
    SetFilterEnabled(u64, bool),
    ClearFilters,
    /// Start a send job (the daemon's `inject`), then watch it.
    Inject(Box<InjectArgs>),
    StopJob(u64),
    LibraryQuery {
        query: String,
        tag: Option<String>,
    },
    LibrarySave {
        packets: Vec<CapturedPacket>,
        name: String,
        description: String,
        tags: Vec<String>,
    },
    LibraryEdit {
        id: i64,
        name: String,
        description: String,
        add_tags: Vec<String>,
        remove_tags: Vec<String>,
    },
    LibraryDelete(Vec<i64>),
    LibraryExportDpp(Vec<i64>),
    ExportPcapng(Vec<CapturedPacket>),
    // -- rules, library (issue 14) --
    /// Move a rule: add its copy at `insert_at` (an index of the list as it
    /// is, the rule still in it), then remove the rule `id`, then disable the
    /// copy when the rule was disabled. The daemon has no move operation; this
    /// order keeps the rule in force throughout (its hit count restarts).
    MoveFilter {
        id: u64,
        spec: String,
        action: pidcap_engine::rules::Action,
        enabled: bool,
        insert_at: usize,
    },
    /// Export every packet of the library to `.dpp`.
    LibraryExportAll,
    // -- end rules, library --
}

impl App {
    pub fn new() -> App {
        App::default()
    }

    /// A notice: an error stays until dismissed, information fades after [`INFO_TICKS`].
    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        let until = match level {
            Level::Error => Until::Dismissed,
            Level::Info => Until::Ticks(INFO_TICKS),
        };
        self.notice(level, text, until);
    }

    // -- notices (issue 14) --
    /// A notice that goes as soon as `what` stops being true.
    pub fn notify_while(&mut self, level: Level, text: impl Into<String>, what: While) {
        self.notice(level, text, Until::While(what));
    }

    fn notice(&mut self, level: Level, text: impl Into<String>, until: Until) {
        let id = self.next_notice;
        self.next_notice += 1;
        self.notices.push(Notice { id, level, text: text.into(), until });
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
    }

    /// Drop the notices that are no longer true.
    fn prune_notices(&mut self) {
        let gone: Vec<u64> = self
            .notices
            .iter()
            .filter(|n| matches!(n.until, Until::While(w) if !w.holds(self)))
            .map(|n| n.id)
            .collect();
        if !gone.is_empty() {
            self.notices.retain(|n| !gone.contains(&n.id));
        }
    }

    /// A tick: information notices age, the old ones go.
    fn age_notices(&mut self) {
        for n in &mut self.notices {
            if let Until::Ticks(t) = &mut n.until {
                *t = t.saturating_sub(1);
            }
        }
        self.notices.retain(|n| n.until != Until::Ticks(0));
    }
    // -- end notices --

    /// The "captured" counter: the daemon's count, never behind what this view
    /// has already received (or been told it missed) since the last refresh.
    pub fn captured_count(&self) -> u64 {
        self.capture.stats.received.max(self.packets.live_received + self.packets.ui_missed)
    }

    fn apply_state(&mut self, st: State) {
        // -- rules after the capture (issue 14) --
        if st.session < self.capture.session {
            return; // from before the capture this UI started: overtaken
        }
        self.capture.session = st.session;
        // -- end rules after the capture --
        self.packets.capacity =
            if st.stats.ring_capacity > 0 { st.stats.ring_capacity } else { packets::DEFAULT_CAPACITY };
        // -- rules after the capture (issue 14) --
        let was_running = self.capture.running;
        self.rules.filters = st.filters;
        self.capture.apply_state(st.running, st.targets, st.stats);
        if was_running && !self.capture.running {
            capture::ended(self);
        }
        self.rules.forget_offer_when_empty();
        // -- end rules after the capture --
    }
}

/// Apply `msg` to `app`; the effects to run.
pub fn update(app: &mut App, msg: impl Into<Msg>) -> Vec<Effect> {
    let fx = update_area(app, msg.into());
    // -- notices (issue 14) --
    app.prune_notices();
    // -- end notices --
    fx
}

fn update_area(app: &mut App, msg: Msg) -> Vec<Effect> {
    // -- conversations and follow (issue 14) --: packets are counted in their conversations first
    let after = conversations::observe(app, &msg);
    let fx = match msg {
        Msg::App(m) => update_app(app, m),
        Msg::Processes(m) => app.processes.update(m),
        Msg::Capture(m) => capture::update(app, m),
        Msg::Packets(m) => packets::update(app, m),
        Msg::Editor(m) => editor::update(app, m),
        Msg::Resend(m) => resend::update(app, m),
        Msg::Rules(m) => rules::update(app, m),
        Msg::Library(m) => library::update(app, m),
        // -- conversations and follow (issue 14) --
        Msg::Conversations(m) => conversations::update(app, m),
    };
    // -- conversations and follow (issue 14) --: the followed stream, once the list holds the new packets
    conversations::observed(app, after);
    fx
}

fn update_app(app: &mut App, msg: AppMsg) -> Vec<Effect> {
    let mut fx = Vec::new();
    match msg {
        AppMsg::Init => {
            fx.push(Effect::GetState);
            fx.push(Effect::ListProcesses);
            fx.push(app.library.query());
        }
        AppMsg::SetTab(t) => {
            app.tab = t;
            match t {
                Tab::Processes => fx.push(Effect::ListProcesses),
                Tab::Library => fx.push(app.library.query()),
                Tab::Filters => fx.push(Effect::GetState),
                Tab::Capture => {}
                // -- conversations and follow (issue 14) --
                Tab::Conversations => {}
            }
        }
        AppMsg::DismissNotice(id) => app.notices.retain(|n| n.id != id),
        AppMsg::Tick { now_ns } => {
            app.packets.rate.tick(now_ns / 1_000_000_000);
            fx.push(Effect::GetState);
            // -- notices, process picker (issue 14) --
            app.age_notices();
            if app.tab == Tab::Processes {
                fx.extend(app.processes.tick());
            }
            // -- end notices, process picker --
        }
        AppMsg::Connected => app.daemon_error = None,
        AppMsg::Disconnected(why) => app.daemon_error = Some(why),
        AppMsg::DaemonState(st) => {
            app.daemon_error = None;
            app.apply_state(*st);
        }
        AppMsg::Failed { task, error } => {
            match task {
                Task::AddRule => app.rules.form.error = Some(error.to_string()),
                Task::Resend => app.resend.failed(&error),
                // -- rules, library search (issue 14) --
                Task::ChangeRule => app.rules.moving = false,
                // A query the library cannot read is the search box's error, not a notice.
                Task::ReadLibrary if library::is_query_error(&error) => {
                    app.library.search_error = Some(error.to_string());
                    return fx;
                }
                // -- end rules, library search --
                _ => {}
            }
            app.notify(Level::Error, format!("Could not {task}: {error}"));
        }
    }
    fx
}
