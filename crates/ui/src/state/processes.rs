//! The Processes tab: the running processes, the search box, which ones are
//! ticked for capture, and the "run a command" box.

use super::Effect;
use crate::procs::ProcInfo;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Processes {
    /// Every process, as last listed.
    pub list: Vec<ProcInfo>,
    /// The search box.
    pub query: String,
    /// Ticked for capture.
    pub selected: BTreeSet<u32>,
    /// The "run a command" box.
    pub run_command: String,
    /// Also capture the processes they start.
    pub follow_children: bool,
}

/// What happens on the Processes tab.
#[derive(Debug, Clone)]
pub enum ProcessesMsg {
    /// List the processes again.
    Refresh,
    /// The process list (gone processes are unticked).
    Loaded(Vec<ProcInfo>),
    /// The search box changed.
    SetQuery(String),
    /// A process row was clicked: tick or untick it.
    Toggle(u32),
    /// The "run a command" box changed.
    SetRunCommand(String),
    /// "also the processes they start".
    SetFollowChildren(bool),
}

impl Processes {
    /// The processes the search box lets through.
    pub fn visible(&self) -> Vec<&ProcInfo> {
        self.list.iter().filter(|p| crate::procs::matches(p, &self.query)).collect()
    }

    pub(super) fn update(&mut self, msg: ProcessesMsg) -> Vec<Effect> {
        match msg {
            ProcessesMsg::Refresh => return vec![Effect::ListProcesses],
            ProcessesMsg::Loaded(list) => {
                let alive: BTreeSet<u32> = list.iter().map(|p| p.pid).collect();
                self.selected.retain(|pid| alive.contains(pid));
                self.list = list;
            }
            ProcessesMsg::SetQuery(q) => self.query = q,
            ProcessesMsg::Toggle(pid) => {
                if !self.selected.remove(&pid) {
                    self.selected.insert(pid);
                }
            }
            ProcessesMsg::SetRunCommand(c) => self.run_command = c,
            ProcessesMsg::SetFollowChildren(f) => self.follow_children = f,
        }
        Vec::new()
    }
}
