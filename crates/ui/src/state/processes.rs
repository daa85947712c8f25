//! The Processes tab: the running processes (user processes by default,
//! kernel threads behind a toggle, "with sockets only"), sorted by a column or
//! shown as a tree by parent, refreshed on the tick, the search box, which
//! ones are ticked for capture, and the "run a command" box.
//!
//! A tick names a process by pid and start time, so a refresh keeps it on the
//! same process and drops it when that process is gone (its pid reused or not).
//! Only the ticked rows that are shown are captured: [`Processes::to_capture`];
//! the button counts those, and says how many ticked rows are hidden.

use super::Effect;
use crate::procs::ProcInfo;
use std::collections::{BTreeSet, HashMap};

/// A process: its pid and its start time (a pid names a process only while it lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcKey {
    pub pid: u32,
    pub start: u64,
}

impl ProcKey {
    pub fn of(p: &ProcInfo) -> ProcKey {
        ProcKey { pid: p.pid, start: p.start }
    }
}

/// The column the list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Pid,
    Name,
    User,
    Sockets,
    Ports,
    Cmdline,
}

/// The list refreshes every this many ticks (seconds) while the Processes tab is shown.
pub const REFRESH_TICKS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    /// Every process, as last listed.
    pub list: Vec<ProcInfo>,
    /// The search box.
    pub query: String,
    /// Ticked for capture (only those shown are captured).
    pub selected: BTreeSet<ProcKey>,
    /// The "run a command" box.
    pub run_command: String,
    /// Also capture the processes they start.
    pub follow_children: bool,
    /// Kernel threads are listed too.
    pub show_kernel: bool,
    /// Only processes with an open socket.
    pub with_sockets: bool,
    pub sort: SortKey,
    pub descending: bool,
    /// Shown as a tree by parent (siblings sorted by the column).
    pub tree: bool,
    /// Refresh on the tick while the tab is shown.
    pub auto_refresh: bool,
    /// Ticks since the last refresh.
    pub(super) ticks: u32,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            list: Vec::new(),
            query: String::new(),
            selected: BTreeSet::new(),
            run_command: String::new(),
            follow_children: false,
            show_kernel: false,
            with_sockets: false,
            sort: SortKey::Pid,
            descending: false,
            tree: false,
            auto_refresh: true,
            ticks: 0,
        }
    }
}

/// A row of the list: a process and its depth in the tree (0 when flat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    pub proc: &'a ProcInfo,
    pub depth: usize,
}

/// What happens on the Processes tab.
#[derive(Debug, Clone)]
pub enum ProcessesMsg {
    /// List the processes again.
    Refresh,
    /// The process list (ticks of gone processes are dropped).
    Loaded(Vec<ProcInfo>),
    /// The search box changed.
    SetQuery(String),
    /// A process row was clicked: tick or untick it.
    Toggle(u32),
    /// The "run a command" box changed.
    SetRunCommand(String),
    /// "also the processes they start".
    SetFollowChildren(bool),
    /// "kernel threads".
    SetShowKernel(bool),
    /// "with sockets only".
    SetWithSockets(bool),
    /// A column header was clicked: sort by it (again: the other way).
    SortBy(SortKey),
    /// "tree".
    SetTree(bool),
    /// "auto-refresh".
    SetAutoRefresh(bool),
    /// Untick everything.
    ClearSelection,
}

impl Processes {
    /// Is `p` shown (the toggles and the search box let it through)?
    fn shows(&self, p: &ProcInfo) -> bool {
        (self.show_kernel || !p.kernel)
            && (!self.with_sockets || p.sockets.is_some_and(|n| n > 0))
            && crate::procs::matches(p, &self.query)
    }

    fn cmp(&self, a: &ProcInfo, b: &ProcInfo) -> std::cmp::Ordering {
        let o = match self.sort {
            SortKey::Pid => a.pid.cmp(&b.pid),
            SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortKey::User => a.user.cmp(&b.user),
            SortKey::Sockets => a.sockets.cmp(&b.sockets),
            SortKey::Ports => a.listening.len().cmp(&b.listening.len()).then_with(|| a.listening.cmp(&b.listening)),
            SortKey::Cmdline => a.cmdline.cmp(&b.cmdline),
        }
        .then(a.pid.cmp(&b.pid));
        if self.descending {
            o.reverse()
        } else {
            o
        }
    }

    /// The rows shown, in order: sorted by the column, or as a tree by parent
    /// (a shown process whose parent is not shown is a root).
    pub fn rows(&self) -> Vec<Row<'_>> {
        let mut shown: Vec<&ProcInfo> = self.list.iter().filter(|p| self.shows(p)).collect();
        shown.sort_by(|a, b| self.cmp(a, b));
        if !self.tree {
            return shown.into_iter().map(|proc| Row { proc, depth: 0 }).collect();
        }
        let pids: BTreeSet<u32> = shown.iter().map(|p| p.pid).collect();
        let mut children: HashMap<u32, Vec<&ProcInfo>> = HashMap::new();
        let mut roots = Vec::new();
        for p in shown {
            if p.ppid != p.pid && pids.contains(&p.ppid) {
                children.entry(p.ppid).or_default().push(p);
            } else {
                roots.push(p);
            }
        }
        let mut out = Vec::with_capacity(pids.len());
        let mut stack: Vec<(&ProcInfo, usize)> = roots.into_iter().rev().map(|p| (p, 0)).collect();
        while let Some((p, depth)) = stack.pop() {
            out.push(Row { proc: p, depth });
            if let Some(c) = children.get(&p.pid) {
                stack.extend(c.iter().rev().map(|c| (*c, depth + 1)));
            }
        }
        out
    }

    /// The processes shown, in order.
    pub fn visible(&self) -> Vec<&ProcInfo> {
        self.rows().into_iter().map(|r| r.proc).collect()
    }

    pub fn is_selected(&self, p: &ProcInfo) -> bool {
        self.selected.contains(&ProcKey::of(p))
    }

    /// What "Capture" captures: the ticked processes that are shown.
    pub fn to_capture(&self) -> Vec<u32> {
        let mut pids: Vec<u32> =
            self.list.iter().filter(|p| self.shows(p) && self.is_selected(p)).map(|p| p.pid).collect();
        pids.sort_unstable();
        pids
    }

    /// Ticked processes the search or the toggles hide (not captured).
    pub fn hidden_selected(&self) -> usize {
        self.selected.len() - self.to_capture().len()
    }

    pub(super) fn update(&mut self, msg: ProcessesMsg) -> Vec<Effect> {
        match msg {
            ProcessesMsg::Refresh => {
                self.ticks = 0;
                return vec![Effect::ListProcesses];
            }
            ProcessesMsg::Loaded(list) => {
                let alive: BTreeSet<ProcKey> = list.iter().map(ProcKey::of).collect();
                self.selected.retain(|k| alive.contains(k));
                self.list = list;
            }
            ProcessesMsg::SetQuery(q) => self.query = q,
            ProcessesMsg::Toggle(pid) => {
                if let Some(key) = self.list.iter().find(|p| p.pid == pid).map(ProcKey::of) {
                    if !self.selected.remove(&key) {
                        self.selected.insert(key);
                    }
                }
            }
            ProcessesMsg::SetRunCommand(c) => self.run_command = c,
            ProcessesMsg::SetFollowChildren(f) => self.follow_children = f,
            ProcessesMsg::SetShowKernel(v) => self.show_kernel = v,
            ProcessesMsg::SetWithSockets(v) => self.with_sockets = v,
            ProcessesMsg::SortBy(k) => {
                self.descending = self.sort == k && !self.descending;
                self.sort = k;
            }
            ProcessesMsg::SetTree(v) => self.tree = v,
            ProcessesMsg::SetAutoRefresh(v) => self.auto_refresh = v,
            ProcessesMsg::ClearSelection => self.selected.clear(),
        }
        Vec::new()
    }

    /// A tick while the tab is shown: refresh every [`REFRESH_TICKS`].
    pub(super) fn tick(&mut self) -> Option<Effect> {
        if !self.auto_refresh {
            return None;
        }
        self.ticks += 1;
        (self.ticks >= REFRESH_TICKS).then(|| {
            self.ticks = 0;
            Effect::ListProcesses
        })
    }
}
