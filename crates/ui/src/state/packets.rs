//! The packet list: the packets this view holds (the newest `capacity`; TLS
//! plaintext records among them, in capture order, beside their
//! connection's packets), the display filter and the rows it lets through, scrolling (virtual: only
//! [`VISIBLE_ROWS`] are drawn), selection, and the packets-per-second chart.

use super::{App, Effect, Level};
use pidcap_packet::dfilter::DisplayFilter;
use pidcap_packet::{CapturedPacket, Direction};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Rows of the packet list drawn at once (the rest is virtual).
pub const VISIBLE_ROWS: usize = 24;
/// Seconds of packets-per-second history in the chart.
pub const CHART_SECONDS: usize = 60;
/// Packets kept in the UI when the daemon does not say (its default ring).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Packets {
    /// Oldest first, ids increasing; shared with the feed (never copied).
    pub held: VecDeque<Arc<CapturedPacket>>,
    /// Most packets held (the daemon's ring size).
    pub capacity: usize,
    pub filter_text: String,
    /// The last valid display filter.
    pub filter: DisplayFilter,
    pub filter_error: Option<String>,
    /// Ids of the packets the display filter lets through, in order.
    pub shown: VecDeque<u64>,
    /// Index in `shown` of the first row drawn.
    pub scroll: usize,
    /// Keep the newest packets in view.
    pub autoscroll: bool,
    pub selected: BTreeSet<u64>,
    /// The packet whose details are shown.
    pub focused: Option<u64>,
    pub rate: Rate,
    /// Packets the daemon skipped for this UI (it read too slowly).
    pub ui_missed: u64,
    /// Packets this view has received live since the capture started: the
    /// daemon's counters come once a second, the packets as they happen.
    pub live_received: u64,
}

impl Default for Packets {
    fn default() -> Self {
        Packets {
            held: VecDeque::new(),
            capacity: DEFAULT_CAPACITY,
            filter_text: String::new(),
            filter: DisplayFilter::default(),
            filter_error: None,
            shown: VecDeque::new(),
            scroll: 0,
            autoscroll: true,
            selected: BTreeSet::new(),
            focused: None,
            rate: Rate::default(),
            ui_missed: 0,
            live_received: 0,
        }
    }
}

/// What happens to the packet list.
#[derive(Debug, Clone)]
pub enum PacketsMsg {
    /// Packets from the live feed (a packet already held is ignored).
    Arrived(Vec<Arc<CapturedPacket>>),
    /// The daemon skipped this many packets for this view.
    Missed(u64),
    /// "Clear buffer": here and in the daemon.
    Clear,
    /// The daemon's buffer was cleared.
    Cleared,
    /// The display filter box changed (a bad filter keeps the last good one).
    SetFilter(String),
    /// Scroll by rows (wheel, keys); scrolling up stops auto-scroll.
    Scroll(i64),
    /// Scroll to a row (the scroll bar).
    ScrollTo(usize),
    ToggleAutoscroll,
    /// A row was clicked; `extend` (ctrl/shift) adds it to the selection.
    Select {
        id: u64,
        extend: bool,
    },
    SelectAllShown,
    /// Download the selection as a pcapng file.
    ExportPcapng,
}

impl Packets {
    pub fn packet(&self, id: u64) -> Option<&Arc<CapturedPacket>> {
        self.held.binary_search_by_key(&id, |p| p.id).ok().map(|i| &self.held[i])
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

    /// Selected packets in capture order (the focused one when none is selected).
    pub fn selection(&self) -> Vec<CapturedPacket> {
        let ids: Vec<u64> = if self.selected.is_empty() {
            self.focused.into_iter().collect()
        } else {
            self.selected.iter().copied().collect()
        };
        ids.iter().filter_map(|id| self.packet(*id)).map(|p| (**p).clone()).collect()
    }

    /// A new capture: nothing held, nothing received yet.
    pub(super) fn restart(&mut self) {
        self.live_received = 0;
        self.clear();
    }

    fn clear(&mut self) {
        self.held.clear();
        self.shown.clear();
        self.selected.clear();
        self.focused = None;
        self.scroll = 0;
        self.rate = Rate::default();
    }

    fn follow(&mut self) {
        if self.autoscroll {
            self.scroll = self.max_scroll();
        } else {
            self.scroll = self.scroll.min(self.max_scroll());
        }
    }

    fn refilter(&mut self) {
        self.shown = self.held.iter().filter(|p| self.filter.matches(p)).map(|p| p.id).collect();
        self.follow();
    }

    fn push(&mut self, packets: Vec<Arc<CapturedPacket>>) {
        for p in packets {
            if self.held.back().is_some_and(|last| last.id >= p.id) {
                continue; // already have it (a backlog overlapping a page)
            }
            self.live_received += 1;
            if !p.is_tls() {
                self.rate.add(&p); // packets per second: records are not packets
            }
            if self.filter.matches(&p) {
                self.shown.push_back(p.id);
            }
            self.held.push_back(p);
        }
        while self.held.len() > self.capacity {
            if let Some(old) = self.held.pop_front() {
                if self.shown.front() == Some(&old.id) {
                    self.shown.pop_front();
                    self.scroll = self.scroll.saturating_sub(1);
                }
                self.selected.remove(&old.id);
            }
        }
        self.follow();
    }
}

pub(super) fn update(app: &mut App, msg: PacketsMsg) -> Vec<Effect> {
    let p = &mut app.packets;
    match msg {
        PacketsMsg::Arrived(packets) => p.push(packets),
        PacketsMsg::Missed(n) => p.ui_missed += n,
        PacketsMsg::Clear => {
            p.clear();
            return vec![Effect::ClearBuffer];
        }
        PacketsMsg::Cleared => p.clear(),
        PacketsMsg::SetFilter(text) => {
            match DisplayFilter::parse(&text) {
                Ok(f) => {
                    p.filter = f;
                    p.filter_error = None;
                    p.refilter();
                }
                Err(e) => p.filter_error = Some(e.to_string()),
            }
            p.filter_text = text;
        }
        PacketsMsg::Scroll(delta) => {
            let to = (p.scroll as i64 + delta).clamp(0, p.max_scroll() as i64) as usize;
            if delta < 0 && p.autoscroll && to < p.max_scroll() {
                p.autoscroll = false;
            }
            p.scroll = to;
            if to == p.max_scroll() && delta > 0 {
                p.autoscroll = true;
            }
        }
        PacketsMsg::ScrollTo(i) => {
            p.scroll = i.min(p.max_scroll());
            p.autoscroll = p.scroll == p.max_scroll();
        }
        PacketsMsg::ToggleAutoscroll => {
            p.autoscroll = !p.autoscroll;
            p.follow();
        }
        PacketsMsg::Select { id, extend } => {
            if extend {
                if !p.selected.remove(&id) {
                    p.selected.insert(id);
                }
            } else {
                p.selected.clear();
                p.selected.insert(id);
            }
            p.focused = Some(id);
            if let Some(focused) = p.packet(id).cloned() {
                app.resend.form.follow(&focused);
            }
        }
        PacketsMsg::SelectAllShown => p.selected = p.shown.iter().copied().collect(),
        PacketsMsg::ExportPcapng => {
            let packets = p.selection();
            if packets.is_empty() {
                app.notify(Level::Error, "Select the packets to export first.");
            } else {
                return vec![Effect::ExportPcapng(packets)];
            }
        }
    }
    Vec::new()
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
