//! The packet list: the packets this view holds (the newest `capacity`; TLS
//! plaintext records among them, in capture order, beside their
//! connection's packets), the display filter and the rows it lets through, scrolling (virtual: only
//! [`VISIBLE_ROWS`] are drawn), selection, and the packets-per-second chart.
//!
//! Like Wireshark's list (issue 14): each held packet's Info line, protocol
//! name and colour are decoded once, when it arrives ([`RowInfo`]), never per
//! render; the rows can be sorted by any [`Column`] (new packets are inserted
//! at their place); the Time column has a [`TimeFormat`]; the keyboard moves
//! a cursor (the selection) that Enter opens and Esc closes; the detail's tree
//! remembers which lines are closed and which field's bytes are highlighted.

use super::{App, Effect, Level};
use pidcap_packet::dfilter::{DisplayFilter, FilterError};
use pidcap_packet::{CapturedPacket, Direction, Protocol, Verdict};
use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;
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
    /// Why the text in the box is not a filter, and where (the last valid one stays in force).
    pub filter_error: Option<FilterError>,
    /// Ids of the packets the display filter lets through, in the order shown (the sort's).
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
    // -- packet list (issue 14) --
    /// What each held packet's row shows that needs decoding, decoded on
    /// arrival: same order as `held`.
    pub rows: VecDeque<RowInfo>,
    /// The text of the filter in force (`filter`): the last valid one typed.
    pub filter_applied: String,
    pub sort: Sort,
    pub time_format: TimeFormat,
    /// The time of the first packet since the list began (the capture
    /// started, the buffer was cleared): relative times count from it.
    pub first_ts: Option<u64>,
    /// The row the keyboard is on (↑/↓ move it; Enter opens it).
    pub cursor: Option<u64>,
    /// Lines of the detail tree the user closed (their paths, `tcp/tcp.flags`).
    pub collapsed: BTreeSet<String>,
    /// The tree line whose bytes the hex view highlights.
    pub highlight: Option<Highlight>,
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
            rows: VecDeque::new(),
            filter_applied: String::new(),
            sort: Sort::default(),
            time_format: TimeFormat::default(),
            first_ts: None,
            cursor: None,
            collapsed: BTreeSet::new(),
            highlight: None,
        }
    }
}

// -- packet list (issue 14) --
/// A column of the packet list (what a header click sorts by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Column {
    /// The packet's number (its id): capture order.
    #[default]
    No,
    Time,
    /// pid/comm.
    Process,
    Direction,
    Protocol,
    Source,
    Destination,
    /// Bytes of the packet on the wire (a TLS record: of plaintext).
    Length,
    /// Bytes of transport payload.
    Payload,
    Verdict,
    Info,
}

impl Column {
    /// Every column, in the order the list shows them.
    pub const ALL: [Column; 11] = [
        Column::No,
        Column::Time,
        Column::Process,
        Column::Direction,
        Column::Protocol,
        Column::Source,
        Column::Destination,
        Column::Length,
        Column::Payload,
        Column::Verdict,
        Column::Info,
    ];

    /// The header's text.
    pub fn title(self) -> &'static str {
        match self {
            Column::No => "No.",
            Column::Time => "Time",
            Column::Process => "pid/comm",
            Column::Direction => "Dir",
            Column::Protocol => "Protocol",
            Column::Source => "Source",
            Column::Destination => "Destination",
            Column::Length => "Length",
            Column::Payload => "Payload",
            Column::Verdict => "Verdict",
            Column::Info => "Info",
        }
    }

    /// A name for ids and test hooks: `no`, `time`, ... `info`.
    pub fn key(self) -> &'static str {
        match self {
            Column::No => "no",
            Column::Time => "time",
            Column::Process => "process",
            Column::Direction => "dir",
            Column::Protocol => "protocol",
            Column::Source => "source",
            Column::Destination => "destination",
            Column::Length => "length",
            Column::Payload => "payload",
            Column::Verdict => "verdict",
            Column::Info => "info",
        }
    }
}

/// How the rows are ordered: by a column, one way or the other (ties in capture order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

impl Sort {
    /// Capture order, oldest first: new packets go at the end.
    pub fn is_capture_order(self) -> bool {
        self == Sort::default()
    }
}

/// What the Time column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// The time of day, local (as `pidcap` and tcpdump print it).
    #[default]
    Absolute,
    /// Seconds since the first packet of the list.
    Relative,
    /// Seconds since the row shown above it.
    Delta,
}

impl TimeFormat {
    pub const ALL: [TimeFormat; 3] = [TimeFormat::Absolute, TimeFormat::Relative, TimeFormat::Delta];

    /// Its name in the format picker (and its value there).
    pub fn key(self) -> &'static str {
        match self {
            TimeFormat::Absolute => "absolute",
            TimeFormat::Relative => "relative",
            TimeFormat::Delta => "delta",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TimeFormat::Absolute => "time of day",
            TimeFormat::Relative => "since the first packet",
            TimeFormat::Delta => "since the previous row",
        }
    }

    pub fn from_key(key: &str) -> Option<TimeFormat> {
        TimeFormat::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// A row's colour, as Wireshark's default colouring rules pick it (the
/// first that matches): TCP RST, HTTP, TCP SYN/FIN, TCP, UDP, ICMP; TLS on
/// the wire and TLS plaintext records have their own. A blocked packet is
/// marked by its verdict on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    TcpRst,
    Http,
    TcpSynFin,
    Tcp,
    Dns,
    Udp,
    Icmp,
    /// TLS records on the wire (handshake, application data).
    Tls,
    /// A TLS plaintext record (taken from the library, not the wire).
    Record,
    Other,
}

impl Colour {
    /// The row's CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Colour::TcpRst => "c-rst",
            Colour::Http => "c-http",
            Colour::TcpSynFin => "c-synfin",
            Colour::Tcp => "c-tcp",
            Colour::Dns => "c-dns",
            Colour::Udp => "c-udp",
            Colour::Icmp => "c-icmp",
            Colour::Tls => "c-tls",
            Colour::Record => "c-record",
            Colour::Other => "c-other",
        }
    }
}

/// What a packet's row shows that needs decoding: decoded once, on arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowInfo {
    /// Wireshark's Info column ([`pidcap_packet::info::info`]); a TLS
    /// record's: its application message, else its size.
    pub info: String,
    /// The Protocol column: the application protocol when one is
    /// recognised (DNS, HTTP, TLS), else the transport's (TCP, UDP, ICMP);
    /// a TLS record's: `TLS <library>`.
    pub protocol: String,
    pub colour: Colour,
}

impl RowInfo {
    pub fn of(p: &CapturedPacket) -> RowInfo {
        use pidcap_packet::info::{self, App};
        // One decode of the headers and one of the payload per packet (this
        // runs on every arrival): the column's app message gives the colour.
        let c = info::column(p);
        if let Some(t) = p.tls {
            let info = match &c.app {
                Some(a) => a.info(),
                None => format!("{} bytes of plaintext", p.decoded.payload_size),
            };
            return RowInfo { info, protocol: format!("TLS {}", t.library), colour: Colour::Record };
        }
        let flags = p.decoded.tcp_flags.unwrap_or(0);
        let transport = p.decoded.protocol;
        let colour = match &c.app {
            Some(App::Dns(_)) => Colour::Dns,
            Some(App::HttpRequest(_) | App::HttpStatus(_)) => Colour::Http,
            Some(App::Tls(_)) => Colour::Tls,
            Some(App::Quic(_)) => Colour::Udp,
            None => match transport {
                Protocol::Tcp if flags & 0x04 != 0 => Colour::TcpRst,
                Protocol::Tcp if flags & 0x03 != 0 => Colour::TcpSynFin,
                Protocol::Tcp => Colour::Tcp,
                Protocol::Udp => Colour::Udp,
                Protocol::Icmp | Protocol::Icmpv6 => Colour::Icmp,
                Protocol::Other(_) => Colour::Other,
            },
        };
        // A reset is a reset whatever the port says (Wireshark's first rule).
        let colour = if transport == Protocol::Tcp && flags & 0x04 != 0 { Colour::TcpRst } else { colour };
        RowInfo { info: c.info, protocol: c.protocol, colour }
    }
}

/// A field of the detail tree whose bytes the hex view highlights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highlight {
    pub packet: u64,
    /// The line's path in the tree (`tcp/tcp.srcport`).
    pub path: String,
    /// Offsets into the packet's data.
    pub range: Range<usize>,
}

/// A row drawn now.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// Its index in the shown list.
    pub index: usize,
    pub packet: &'a Arc<CapturedPacket>,
    pub info: &'a RowInfo,
    /// The time of the row shown above it (the Delta format).
    pub previous_ts: Option<u64>,
}

/// Source and destination of a packet, as it went (not local and remote).
pub fn source_destination(p: &CapturedPacket) -> ((std::net::IpAddr, u16), (std::net::IpAddr, u16)) {
    let d = &p.decoded;
    let (local, remote) = ((d.local_addr, d.local_port), (d.remote_addr, d.remote_port));
    match p.direction {
        Direction::Outbound => (local, remote),
        Direction::Inbound => (remote, local),
    }
}

/// Bytes the Length column shows: on the wire; a TLS record's plaintext.
pub fn length(p: &CapturedPacket) -> u64 {
    if p.is_tls() {
        u64::from(p.decoded.payload_size)
    } else {
        u64::from(p.orig_len)
    }
}

fn compare(column: Column, a: (&CapturedPacket, &RowInfo), b: (&CapturedPacket, &RowInfo)) -> Ordering {
    let ((pa, ra), (pb, rb)) = (a, b);
    let by = match column {
        Column::No => Ordering::Equal,
        Column::Time => pa.timestamp_ns.cmp(&pb.timestamp_ns),
        Column::Process => (pa.pid, &pa.comm).cmp(&(pb.pid, &pb.comm)),
        Column::Direction => pa.direction.as_str().cmp(pb.direction.as_str()),
        Column::Protocol => ra.protocol.cmp(&rb.protocol),
        Column::Source => source_destination(pa).0.cmp(&source_destination(pb).0),
        Column::Destination => source_destination(pa).1.cmp(&source_destination(pb).1),
        Column::Length => length(pa).cmp(&length(pb)),
        Column::Payload => pa.decoded.payload_size.cmp(&pb.decoded.payload_size),
        Column::Verdict => {
            let v = |p: &CapturedPacket| p.verdict == Verdict::Blocked;
            v(pa).cmp(&v(pb))
        }
        Column::Info => ra.info.cmp(&rb.info),
    };
    by.then(pa.id.cmp(&pb.id))
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
    // -- packet list (issue 14) --
    /// A column's header was clicked: sort by it; clicked again, the other way.
    SortBy(Column),
    SetTimeFormat(TimeFormat),
    /// ↑/↓ (±1), PageUp/PageDown (± a page), Home/End (± a lot): move the
    /// cursor (and the selection) by rows, scrolled into view; an open detail
    /// follows it. With no cursor, ↓ starts at the first row drawn, ↑ at the last.
    MoveCursor(i64),
    /// Enter: open the detail of the row the cursor is on.
    OpenCursor,
    /// Esc: close the detail.
    CloseDetail,
    /// A line of the detail tree was opened or closed (its path).
    ToggleField(String),
    /// A line of the detail tree was clicked: highlight its bytes in the hex
    /// view (`None`: none); the packet is the one shown.
    HighlightField(Option<(String, Range<usize>)>),
}

impl Packets {
    pub fn packet(&self, id: u64) -> Option<&Arc<CapturedPacket>> {
        self.index(id).map(|i| &self.held[i])
    }

    /// Where packet `id` is in `held` (and `rows`).
    fn index(&self, id: u64) -> Option<usize> {
        self.held.binary_search_by_key(&id, |p| p.id).ok()
    }

    /// The decoded row of packet `id`.
    pub fn row_info(&self, id: u64) -> Option<&RowInfo> {
        self.index(id).and_then(|i| self.rows.get(i))
    }

    /// The rows drawn now, with what they show.
    pub fn visible(&self) -> Vec<Row<'_>> {
        let end = (self.scroll + VISIBLE_ROWS).min(self.shown.len());
        (self.scroll..end)
            .filter_map(|i| {
                let at = self.index(self.shown[i])?;
                let previous_ts = i
                    .checked_sub(1)
                    .and_then(|j| self.shown.get(j))
                    .and_then(|id| self.packet(*id))
                    .map(|p| p.timestamp_ns);
                Some(Row { index: i, packet: &self.held[at], info: &self.rows[at], previous_ts })
            })
            .collect()
    }

    /// The order of two held packets under the current sort.
    fn order(&self, a: u64, b: u64) -> Ordering {
        let (Some(ia), Some(ib)) = (self.index(a), self.index(b)) else { return a.cmp(&b) };
        let o = compare(self.sort.column, (&self.held[ia], &self.rows[ia]), (&self.held[ib], &self.rows[ib]));
        if self.sort.descending {
            o.reverse()
        } else {
            o
        }
    }

    /// Put `shown` in the sort's order.
    fn resort(&mut self) {
        let mut ids: Vec<u64> = self.shown.iter().copied().collect();
        if self.sort.is_capture_order() {
            ids.sort_unstable();
        } else {
            ids.sort_by(|a, b| self.order(*a, *b));
        }
        self.shown = ids.into();
    }

    /// Where the cursor is in `shown`.
    pub fn cursor_index(&self) -> Option<usize> {
        let c = self.cursor?;
        self.shown.iter().position(|id| *id == c)
    }

    /// True when the newest packets are at the top (capture order reversed):
    /// auto-scroll then keeps the top in view.
    fn newest_first(&self) -> bool {
        self.sort.descending && matches!(self.sort.column, Column::No | Column::Time)
    }

    /// Scroll so that row `i` of the shown list is drawn.
    fn scroll_into_view(&mut self, i: usize) {
        if i < self.scroll {
            self.scroll = i;
        } else if i >= self.scroll + VISIBLE_ROWS {
            self.scroll = i + 1 - VISIBLE_ROWS;
        }
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// What the list says when it shows no row.
    pub fn empty_text(&self, running: bool) -> String {
        if !self.held.is_empty() {
            let mut s = format!("{} captured, 0 match the filter `{}`", self.held.len(), self.filter_applied);
            if self.filter_error.is_some() {
                s.push_str(" (the last valid filter: the one typed is not one)");
            }
            s
        } else if running {
            "Waiting for packets…".into()
        } else {
            "No packets. Start a capture on the Processes tab.".into()
        }
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
        self.rows.clear();
        self.shown.clear();
        self.selected.clear();
        self.focused = None;
        self.cursor = None;
        self.highlight = None;
        self.first_ts = None;
        self.scroll = 0;
        self.rate = Rate::default();
    }

    fn follow(&mut self) {
        if self.autoscroll {
            self.scroll = if self.newest_first() { 0 } else { self.max_scroll() };
        } else {
            self.scroll = self.scroll.min(self.max_scroll());
        }
    }

    fn refilter(&mut self) {
        self.shown = self.held.iter().filter(|p| self.filter.matches(p)).map(|p| p.id).collect();
        if !self.sort.is_capture_order() {
            self.resort();
        }
        self.follow();
    }

    fn push(&mut self, packets: Vec<Arc<CapturedPacket>>) {
        let sorted = !self.sort.is_capture_order();
        for p in packets {
            if self.held.back().is_some_and(|last| last.id >= p.id) {
                continue; // already have it (a backlog overlapping a page)
            }
            self.live_received += 1;
            self.first_ts.get_or_insert(p.timestamp_ns);
            if !p.is_tls() {
                self.rate.add(&p); // packets per second: records are not packets
            }
            let shown = self.filter.matches(&p);
            let id = p.id;
            self.rows.push_back(RowInfo::of(&p));
            self.held.push_back(p);
            if shown {
                if sorted {
                    let at = self.shown.partition_point(|x| self.order(*x, id) == Ordering::Less);
                    self.shown.insert(at, id);
                    if at < self.scroll {
                        self.scroll += 1; // the rows in view stay in view
                    }
                } else {
                    self.shown.push_back(id);
                }
            }
        }
        let excess = self.held.len().saturating_sub(self.capacity);
        if excess == 0 {
            return self.follow();
        }
        self.held.drain(..excess);
        self.rows.drain(..excess);
        let oldest = self.held.front().map_or(u64::MAX, |p| p.id);
        if sorted {
            // The evicted rows may be anywhere: the view keeps its rows.
            let before = self.shown.iter().take(self.scroll).filter(|id| **id < oldest).count();
            self.shown.retain(|id| *id >= oldest);
            self.scroll -= before;
        } else {
            while self.shown.front().is_some_and(|id| *id < oldest) {
                self.shown.pop_front();
                self.scroll = self.scroll.saturating_sub(1);
            }
        }
        self.selected.retain(|id| *id >= oldest);
        if self.cursor.is_some_and(|c| c < oldest) {
            self.cursor = None;
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
                    p.filter_applied = text.trim().to_string();
                    p.refilter();
                }
                Err(e) => p.filter_error = Some(e),
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
            p.cursor = Some(id);
            focus(app, id);
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
        PacketsMsg::SortBy(column) => {
            p.sort = if p.sort.column == column {
                Sort { column, descending: !p.sort.descending }
            } else {
                Sort { column, descending: false }
            };
            p.resort();
            match p.cursor_index() {
                Some(i) if !p.autoscroll => p.scroll_into_view(i),
                _ => p.follow(),
            }
        }
        PacketsMsg::SetTimeFormat(f) => p.time_format = f,
        PacketsMsg::MoveCursor(delta) => {
            if p.shown.is_empty() {
                return Vec::new();
            }
            let last = p.shown.len() - 1;
            let to = match p.cursor_index() {
                Some(i) => (i as i64).saturating_add(delta).clamp(0, last as i64) as usize,
                None if delta > 0 => p.scroll.min(last),
                None => (p.scroll + VISIBLE_ROWS - 1).min(last),
            };
            let id = p.shown[to];
            p.cursor = Some(id);
            p.selected = BTreeSet::from([id]);
            p.scroll_into_view(to);
            // Away from the newest row the view stays on the cursor; back on it, it follows again.
            p.autoscroll = if p.newest_first() { to == 0 } else { to == last };
            if p.focused.is_some() {
                focus(app, id);
            }
        }
        PacketsMsg::OpenCursor => {
            if let Some(id) = p.cursor.filter(|id| p.packet(*id).is_some()) {
                focus(app, id);
            }
        }
        PacketsMsg::CloseDetail => {
            p.focused = None;
            p.highlight = None;
        }
        PacketsMsg::ToggleField(path) => {
            if !p.collapsed.remove(&path) {
                p.collapsed.insert(path);
            }
        }
        PacketsMsg::HighlightField(field) => {
            p.highlight = match (field, p.focused) {
                (Some((path, range)), Some(packet)) => Some(Highlight { packet, path, range }),
                _ => None,
            };
        }
    }
    Vec::new()
}

/// Show packet `id`'s detail; the resend form follows it.
fn focus(app: &mut App, id: u64) {
    let p = &mut app.packets;
    if p.focused != Some(id) {
        p.highlight = None;
    }
    p.focused = Some(id);
    if let Some(focused) = p.packet(id).cloned() {
        app.resend.form.follow(&focused);
    }
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

    /// [`Rate::series`] without the second still counting: what the chart
    /// draws, so that it changes once a second, not with every packet (its
    /// points were a kilobyte of edits in every render: issue 13).
    pub fn completed(&self) -> Vec<(u32, u32)> {
        let mut s = self.series();
        s.pop();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{update, CaptureMsg};

    #[test]
    fn the_charts_seconds_change_once_a_second_not_with_every_packet() {
        let mut r = Rate::default();
        let at = |id: u64, s: u64, dir: Direction| {
            CapturedPacket::new(id, s * 1_000_000_000 + 5, 1, "x".into(), 1, dir, Verdict::Pass, 1, vec![0x45])
        };
        r.add(&at(1, 1000, Direction::Outbound));
        r.add(&at(2, 1001, Direction::Outbound));
        let before = r.completed();
        assert_eq!(before.last(), Some(&(0, 1)), "second 1000 is complete");
        assert_eq!(before.len(), CHART_SECONDS - 1);
        r.add(&at(3, 1001, Direction::Inbound));
        assert_eq!(r.completed(), before, "a packet of the second still counting");
        assert_eq!(r.series().last(), Some(&(1, 1)));
        r.tick(1002);
        assert_eq!(r.completed().last(), Some(&(1, 1)), "second 1001, complete at the tick");
    }
    use pidcap_api::protocol::Started;
    use pidcap_packet::build::{build, flags, TcpFields, Transport};
    use pidcap_packet::{TlsInfo, TlsLibrary, TlsRecord};

    const T0: u64 = 1_700_000_000_000_000_000;

    fn packet(id: u64, dst: &str, transport: Transport, dir: Direction, payload: &[u8]) -> Arc<CapturedPacket> {
        let data = build("127.0.0.1:40000".parse().unwrap(), dst.parse().unwrap(), 64, transport, payload).unwrap();
        let len = data.len() as u32;
        let ts = T0 + id * 1_000_000;
        Arc::new(CapturedPacket::new(id, ts, 42, "target".into(), 7, dir, Verdict::Pass, len, data))
    }

    fn tcp(id: u64, flags: u8, payload: &[u8]) -> Arc<CapturedPacket> {
        let t = Transport::Tcp(TcpFields { seq: 1000, ack: 2000, flags, window: 512 });
        packet(id, "10.0.0.9:80", t, Direction::Outbound, payload)
    }

    fn udp(id: u64, port: u16, payload: &[u8]) -> Arc<CapturedPacket> {
        packet(id, &format!("10.0.0.53:{port}"), Transport::Udp, Direction::Outbound, payload)
    }

    /// A DNS query for `example.com` A, id 0x1234.
    fn dns_query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    fn record(id: u64, plaintext: &[u8]) -> Arc<CapturedPacket> {
        Arc::new(CapturedPacket::tls_record(TlsRecord {
            id,
            timestamp_ns: T0 + id * 1_000_000,
            pid: 42,
            comm: "target".into(),
            socket_cookie: 7,
            direction: Direction::Outbound,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "10.0.0.9:443".parse().unwrap(),
            info: TlsInfo { tid: 42, library: TlsLibrary::Openssl },
            plaintext,
            true_len: plaintext.len() as u64,
            stream_offset: 0,
        }))
    }

    fn app_with(packets: Vec<Arc<CapturedPacket>>) -> App {
        let mut app = App::new();
        update(&mut app, PacketsMsg::Arrived(packets));
        app
    }

    fn shown(app: &App) -> Vec<u64> {
        app.packets.shown.iter().copied().collect()
    }

    #[test]
    fn each_row_is_decoded_once_on_arrival_info_protocol_and_colour() {
        let app = app_with(vec![
            tcp(1, flags::PSH | flags::ACK, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"),
            udp(2, 53, &dns_query()),
            tcp(3, flags::SYN, b""),
            tcp(4, flags::RST | flags::ACK, b""),
            tcp(5, flags::ACK, b"not a protocol"),
            udp(6, 9999, b"hello"),
            record(7, b"GET /secret HTTP/1.1\r\n\r\n"),
            record(8, b"\x00\x01binary"),
        ]);
        let p = &app.packets;
        assert_eq!(p.rows.len(), p.held.len(), "one row per held packet");
        let row = |id| p.row_info(id).unwrap().clone();
        let (http, dns) = (row(1), row(2));
        assert_eq!(
            (http.info.as_str(), http.protocol.as_str(), http.colour),
            ("GET /index.html HTTP/1.1", "HTTP", Colour::Http)
        );
        assert_eq!(
            (dns.info.as_str(), dns.protocol.as_str(), dns.colour),
            ("Standard query 0x1234 A example.com", "DNS", Colour::Dns)
        );
        assert_eq!((row(3).protocol.as_str(), row(3).colour), ("TCP", Colour::TcpSynFin));
        assert!(row(3).info.starts_with("40000 → 80 [SYN] Seq=1000"), "{}", row(3).info);
        assert_eq!(row(4).colour, Colour::TcpRst);
        assert_eq!((row(5).protocol.as_str(), row(5).colour), ("TCP", Colour::Tcp));
        assert!(row(5).info.contains("Len=14"), "{}", row(5).info);
        assert_eq!(
            (row(6).protocol.as_str(), row(6).info.as_str(), row(6).colour),
            ("UDP", "40000 → 9999 Len=5", Colour::Udp)
        );
        // A TLS record: its library, its own colour; its plaintext's message, else its size.
        assert_eq!(
            (row(7).protocol.as_str(), row(7).info.as_str(), row(7).colour),
            ("TLS openssl", "GET /secret HTTP/1.1", Colour::Record)
        );
        assert_eq!(row(8).info, "8 bytes of plaintext");
        // Evicted with their packets.
        let mut app = app;
        app.packets.capacity = 3;
        update(&mut app, PacketsMsg::Arrived(vec![udp(9, 9999, b"x")]));
        assert_eq!(app.packets.rows.len(), 3);
        assert_eq!(app.packets.row_info(9).unwrap().info, "40000 → 9999 Len=1");
        assert!(app.packets.row_info(6).is_none());
    }

    #[test]
    fn sorting_by_a_column_and_back_and_new_packets_go_to_their_place() {
        let sizes = [30usize, 10, 20, 10];
        let mut app =
            app_with(sizes.iter().enumerate().map(|(i, n)| udp(i as u64 + 1, 9999, &vec![b'x'; *n])).collect());
        assert_eq!(shown(&app), [1, 2, 3, 4]);
        update(&mut app, PacketsMsg::SortBy(Column::Payload));
        assert_eq!(app.packets.sort, Sort { column: Column::Payload, descending: false });
        assert_eq!(shown(&app), [2, 4, 3, 1], "ties in capture order");
        update(&mut app, PacketsMsg::SortBy(Column::Payload));
        assert_eq!(app.packets.sort, Sort { column: Column::Payload, descending: true });
        assert_eq!(shown(&app), [1, 3, 4, 2]);
        update(&mut app, PacketsMsg::Arrived(vec![udp(5, 9999, &[b'x'; 25])]));
        assert_eq!(shown(&app), [1, 5, 3, 4, 2], "inserted at its place");
        // The filter keeps the order.
        update(&mut app, PacketsMsg::SetFilter("1".into())); // not a port of these: the text "1"
        update(&mut app, PacketsMsg::SetFilter("".into()));
        assert_eq!(shown(&app), [1, 5, 3, 4, 2]);
        // Another column starts ascending; No. brings capture order back.
        update(&mut app, PacketsMsg::SortBy(Column::Info));
        assert!(!app.packets.sort.descending);
        assert_eq!(shown(&app), [2, 4, 3, 5, 1], "Len=10, Len=10, Len=20, Len=25, Len=30");
        update(&mut app, PacketsMsg::SortBy(Column::No));
        assert_eq!(shown(&app), [1, 2, 3, 4, 5]);
        update(&mut app, PacketsMsg::SortBy(Column::No));
        assert_eq!(shown(&app), [5, 4, 3, 2, 1], "newest first");
        update(&mut app, PacketsMsg::Arrived(vec![udp(6, 9999, b"x")]));
        assert_eq!(shown(&app)[0], 6);
        assert_eq!(app.packets.scroll, 0, "auto-scroll keeps the newest, at the top, in view");
    }

    #[test]
    fn every_column_sorts() {
        let mut blocked = (*udp(3, 7, b"b")).clone();
        blocked.verdict = Verdict::Blocked;
        let data = build(
            "10.0.0.1:5".parse().unwrap(),
            "127.0.0.1:40000".parse().unwrap(),
            64,
            Transport::Udp,
            b"a longer one",
        )
        .unwrap();
        let len = data.len() as u32;
        let inbound = CapturedPacket::new(
            2,
            T0 + 2_000_000,
            42,
            "target".into(),
            7,
            Direction::Inbound,
            Verdict::Pass,
            len,
            data,
        );
        let mut app = app_with(vec![tcp(1, flags::SYN, b""), Arc::new(inbound), Arc::new(blocked)]);
        for (column, want) in [
            (Column::Time, [1, 2, 3]),
            (Column::Process, [1, 2, 3]),
            (Column::Direction, [2, 1, 3]),
            (Column::Protocol, [1, 2, 3]),
            (Column::Source, [2, 1, 3]),
            (Column::Destination, [1, 3, 2]),
            (Column::Length, [3, 1, 2]),
            (Column::Payload, [1, 3, 2]),
            (Column::Verdict, [1, 2, 3]),
        ] {
            update(&mut app, PacketsMsg::SortBy(column));
            assert_eq!(shown(&app), want, "{column:?}");
        }
        // Source and destination are the packet's own: an inbound packet comes from the remote end.
        let (src, dst) = source_destination(app.packets.packet(2).unwrap());
        assert_eq!(
            (src.0.to_string(), src.1, dst.0.to_string(), dst.1),
            ("10.0.0.1".into(), 5, "127.0.0.1".into(), 40000)
        );
    }

    #[test]
    fn a_sorted_list_evicts_its_oldest_rows_wherever_they_are() {
        let mut app = App::new();
        app.packets.capacity = 4;
        update(&mut app, PacketsMsg::SortBy(Column::Payload));
        update(&mut app, PacketsMsg::SortBy(Column::Payload)); // largest first
        update(&mut app, PacketsMsg::Arrived((1..=4).map(|i| udp(i, 9999, &vec![b'x'; i as usize])).collect()));
        assert_eq!(shown(&app), [4, 3, 2, 1]);
        update(&mut app, PacketsMsg::Arrived(vec![udp(5, 9999, b"")]));
        assert_eq!(shown(&app), [4, 3, 2, 5]);
        assert_eq!(app.packets.held.front().unwrap().id, 2);
    }

    #[test]
    fn time_formats_count_from_the_first_packet_and_the_row_above() {
        let mut app = app_with(vec![udp(5, 1, b""), udp(7, 1, b""), udp(8, 1, b"")]);
        assert_eq!(app.packets.time_format, TimeFormat::Absolute);
        update(&mut app, PacketsMsg::SetTimeFormat(TimeFormat::Delta));
        assert_eq!(app.packets.time_format, TimeFormat::Delta);
        assert_eq!(app.packets.first_ts, Some(T0 + 5_000_000));
        let prev: Vec<Option<u64>> = app.packets.visible().iter().map(|r| r.previous_ts).collect();
        assert_eq!(prev, [None, Some(T0 + 5_000_000), Some(T0 + 7_000_000)]);
        // The first packet stays the first when it is evicted; a cleared list starts again.
        app.packets.capacity = 1;
        update(&mut app, PacketsMsg::Arrived(vec![udp(9, 1, b"")]));
        assert_eq!(app.packets.first_ts, Some(T0 + 5_000_000));
        update(&mut app, PacketsMsg::Cleared);
        assert_eq!(app.packets.first_ts, None);
        update(&mut app, PacketsMsg::Arrived(vec![udp(10, 1, b"")]));
        assert_eq!(app.packets.first_ts, Some(T0 + 10_000_000));
        assert_eq!(TimeFormat::from_key("relative"), Some(TimeFormat::Relative));
        assert_eq!(TimeFormat::from_key("nope"), None);
    }

    #[test]
    fn arrows_move_the_cursor_enter_opens_esc_closes() {
        let mut app = app_with((1..=100).map(|i| udp(i, 9999, b"x")).collect());
        let p = &app.packets;
        assert_eq!((p.scroll, p.cursor, p.focused), (100 - VISIBLE_ROWS, None, None));
        // Up from nowhere: the last row drawn; down: the next.
        update(&mut app, PacketsMsg::MoveCursor(-1));
        assert_eq!(app.packets.cursor, Some(100));
        assert!(app.packets.autoscroll, "on the newest row the list still follows");
        update(&mut app, PacketsMsg::MoveCursor(-1));
        update(&mut app, PacketsMsg::MoveCursor(-1));
        assert_eq!(
            (app.packets.cursor, app.packets.selected.iter().copied().collect::<Vec<_>>()),
            (Some(98), vec![98])
        );
        assert!(!app.packets.autoscroll, "away from the newest row the view stays");
        assert_eq!(app.packets.focused, None, "arrows do not open the detail");
        // New packets do not move the view from the cursor.
        let at = app.packets.scroll;
        update(&mut app, PacketsMsg::Arrived(vec![udp(101, 9999, b"x")]));
        assert_eq!(app.packets.scroll, at);
        // Enter opens it, arrows then move the detail along, Esc closes it.
        update(&mut app, PacketsMsg::OpenCursor);
        assert_eq!(app.packets.focused, Some(98));
        update(&mut app, PacketsMsg::MoveCursor(1));
        assert_eq!((app.packets.cursor, app.packets.focused), (Some(99), Some(99)));
        update(&mut app, PacketsMsg::CloseDetail);
        assert_eq!(app.packets.focused, None);
        update(&mut app, PacketsMsg::MoveCursor(1));
        assert_eq!((app.packets.cursor, app.packets.focused), (Some(100), None));
        // Scrolled into view, clamped at the ends.
        update(&mut app, PacketsMsg::MoveCursor(i64::MIN / 2));
        assert_eq!((app.packets.cursor, app.packets.scroll), (Some(1), 0));
        update(&mut app, PacketsMsg::MoveCursor(-1));
        assert_eq!(app.packets.cursor, Some(1));
        update(&mut app, PacketsMsg::MoveCursor(VISIBLE_ROWS as i64));
        assert_eq!(app.packets.cursor, Some(1 + VISIBLE_ROWS as u64));
        assert_eq!(app.packets.scroll, 1, "the cursor's row is drawn");
        update(&mut app, PacketsMsg::MoveCursor(i64::MAX / 2));
        assert_eq!((app.packets.cursor, app.packets.scroll), (Some(101), 101 - VISIBLE_ROWS));
        assert!(app.packets.autoscroll);
        // A click puts the cursor where it clicked, and opens.
        update(&mut app, PacketsMsg::Select { id: 50, extend: false });
        assert_eq!((app.packets.cursor, app.packets.focused), (Some(50), Some(50)));
        update(&mut app, PacketsMsg::MoveCursor(1));
        assert_eq!(app.packets.focused, Some(51));
        // Down from nowhere: the first row drawn. Nothing to move over: nothing happens.
        app.packets.cursor = None;
        update(&mut app, PacketsMsg::ScrollTo(10));
        update(&mut app, PacketsMsg::MoveCursor(1));
        assert_eq!(app.packets.cursor, Some(11));
        let mut empty = App::new();
        update(&mut empty, PacketsMsg::MoveCursor(1));
        update(&mut empty, PacketsMsg::OpenCursor);
        assert_eq!((empty.packets.cursor, empty.packets.focused), (None, None));
    }

    #[test]
    fn a_bad_filter_says_where_and_keeps_the_last_good_ones_rows() {
        let mut app = app_with((1..=15).map(|i| udp(i, 9999, b"x")).collect());
        update(&mut app, PacketsMsg::SetFilter("tcp".into()));
        assert!(app.packets.shown.is_empty());
        assert_eq!(app.packets.empty_text(true), "15 captured, 0 match the filter `tcp`");
        update(&mut app, PacketsMsg::SetFilter("port:99999".into()));
        let e = app.packets.filter_error.clone().expect("an error");
        assert!(e.at + e.len <= "port:99999".chars().count() && e.len > 0, "{e:?}");
        assert!(!e.message.is_empty());
        assert_eq!(app.packets.filter_applied, "tcp", "the last valid filter stays in force");
        assert_eq!(app.packets.filter_text, "port:99999");
        assert!(app.packets.empty_text(true).starts_with("15 captured, 0 match the filter `tcp` (the last valid"));
        update(&mut app, PacketsMsg::SetFilter(" udp ".into()));
        assert_eq!((app.packets.filter_error.clone(), app.packets.shown.len()), (None, 15));
        assert_eq!(app.packets.filter_applied, "udp");
        // Nothing held: it waits for packets, or says how to start.
        let empty = App::new();
        assert_eq!(empty.packets.empty_text(true), "Waiting for packets…");
        assert!(empty.packets.empty_text(false).starts_with("No packets."));
    }

    #[test]
    fn tree_lines_close_and_open_and_a_field_highlights_its_bytes() {
        let mut app = app_with(vec![tcp(1, flags::SYN, b""), tcp(2, flags::ACK, b"")]);
        update(&mut app, PacketsMsg::ToggleField("tcp#1".into()));
        assert!(app.packets.collapsed.contains("tcp#1"));
        update(&mut app, PacketsMsg::ToggleField("tcp#1".into()));
        assert!(app.packets.collapsed.is_empty());
        // Nothing shown: nothing to highlight.
        update(&mut app, PacketsMsg::HighlightField(Some(("ip#0/ip.src#9".into(), 12..16))));
        assert_eq!(app.packets.highlight, None);
        update(&mut app, PacketsMsg::Select { id: 1, extend: false });
        update(&mut app, PacketsMsg::HighlightField(Some(("ip#0/ip.src#9".into(), 12..16))));
        assert_eq!(app.packets.highlight, Some(Highlight { packet: 1, path: "ip#0/ip.src#9".into(), range: 12..16 }));
        update(&mut app, PacketsMsg::HighlightField(None));
        assert_eq!(app.packets.highlight, None);
        // Another packet shown: no highlight carried over; closing the detail drops it too.
        update(&mut app, PacketsMsg::HighlightField(Some(("ip#0".into(), 0..20))));
        update(&mut app, PacketsMsg::Select { id: 2, extend: false });
        assert_eq!(app.packets.highlight, None);
        update(&mut app, PacketsMsg::HighlightField(Some(("ip#0".into(), 0..20))));
        update(&mut app, PacketsMsg::CloseDetail);
        assert_eq!((app.packets.highlight.clone(), app.packets.focused), (None, None));
    }

    #[test]
    fn a_new_capture_starts_the_list_again() {
        let mut app = app_with(vec![udp(1, 1, b""), udp(2, 1, b"")]);
        update(&mut app, PacketsMsg::MoveCursor(1));
        update(&mut app, CaptureMsg::Started(Started { session: 2, first_id: 3, targets: vec![42] }));
        let p = &app.packets;
        assert!(p.held.is_empty() && p.rows.is_empty() && p.cursor.is_none() && p.first_ts.is_none());
    }
}
