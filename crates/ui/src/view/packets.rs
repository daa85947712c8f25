//! The packet list (Wireshark's columns, colours, sorting, keyboard), the
//! display filter box (its error marked where it is), and a packet's detail:
//! the process, the layers as a tree ([`pidcap_packet::dissect`]; the
//! headers field by field when it has none) whose fields highlight their
//! bytes in the hex view.

use super::*;
use crate::state::packets::{length, source_destination, Column, Row, Sort, TimeFormat};
use pidcap_packet::dissect::{dissect, Field};
use std::ops::Range;

/// What one row shows, worked out before the list's rsx (whose `for` keys
/// each row by its element: a row that stays is diffed in place, never redrawn).
pub(super) struct RowView {
    id: u64,
    class: String,
    ts: u64,
    library: String,
    /// Its cells as one line ([`rowline`]).
    line: String,
}

pub(super) fn row_view(row: Row<'_>, app: &App) -> RowView {
    let p = row.packet;
    let id = p.id;
    let packets = &app.packets;
    let mut class = format!("pkt {}", row.info.colour.class());
    if packets.selected.contains(&id) {
        class.push_str(" sel");
    }
    if packets.cursor == Some(id) {
        class.push_str(" cursor");
    }
    if packets.focused == Some(id) {
        class.push_str(" open");
    }
    if p.verdict == Verdict::Blocked {
        class.push_str(" blocked");
    }
    if p.is_tls() {
        class.push_str(" tls");
    }
    let (src, dst) = source_destination(p);
    let transport = p.decoded.protocol.name();
    let library = p.tls.map(|t| t.library.to_string()).unwrap_or_default();
    // A TLS record says so (its row is coloured as one too); else the
    // application protocol, when one is recognised, and the transport.
    let protocol = if p.is_tls() {
        format!("TLS {library}")
    } else if row.info.protocol != transport {
        format!("{} {transport}", row.info.protocol)
    } else {
        transport
    };
    let line = rowline::line(&[
        &id.to_string(),
        &time_text(packets.time_format, p.timestamp_ns, packets.first_ts, row.previous_ts),
        &format!("{}/{}", p.pid, p.comm),
        p.direction.as_str(),
        &protocol,
        &endpoint(src.0, src.1),
        &endpoint(dst.0, dst.1),
        &length(p).to_string(),
        &p.decoded.payload_size.to_string(),
        p.verdict.as_str(),
        &row.info.info,
    ]);
    RowView { id, class, ts: p.timestamp_ns, library, line }
}

/// The Time column's text for a packet at `ts`.
pub(super) fn time_text(format: TimeFormat, ts: u64, first: Option<u64>, previous: Option<u64>) -> String {
    let seconds = |from: u64| {
        let (d, sign) = if ts >= from { (ts - from, "") } else { (from - ts, "-") };
        format!("{sign}{}.{:06}", d / 1_000_000_000, (d / 1000) % 1_000_000)
    };
    match format {
        TimeFormat::Absolute => fmt_time(local_ns(ts)),
        TimeFormat::Relative => seconds(first.unwrap_or(ts)),
        TimeFormat::Delta => seconds(previous.unwrap_or(ts)),
    }
}

/// `unix_ns` on the local wall clock (the C library's zone, so TZ is
/// respected), still counted from the epoch: times of day as `pidcap` prints them.
pub(super) fn local_ns(unix_ns: u64) -> u64 {
    pidcap_packet::clock::local_wall_ns(unix_ns)
}

fn list_keys(e: &KeyboardEvent) -> Option<PacketsMsg> {
    Some(match e.key() {
        Key::ArrowDown => PacketsMsg::MoveCursor(1),
        Key::ArrowUp => PacketsMsg::MoveCursor(-1),
        Key::PageDown => PacketsMsg::MoveCursor(VISIBLE_ROWS as i64),
        Key::PageUp => PacketsMsg::MoveCursor(-(VISIBLE_ROWS as i64)),
        Key::Home => PacketsMsg::MoveCursor(i64::MIN / 2),
        Key::End => PacketsMsg::MoveCursor(i64::MAX / 2),
        Key::Enter => PacketsMsg::OpenCursor,
        Key::Escape => PacketsMsg::CloseDetail,
        _ => return None,
    })
}

pub(super) fn packet_list(app: &App, d: D) -> Element {
    let packets = &app.packets;
    let rows: Vec<RowView> = packets.visible().into_iter().map(|r| row_view(r, app)).collect();
    let max = packets.max_scroll();
    let sort = packets.sort;
    rsx! {
        div { class: "row listbar",
            label { "Time: "
                select { id: "time-format", value: "{packets.time_format.key()}", "data-value": "{packets.time_format.key()}",
                    onchange: move |e: FormEvent| {
                        if let Some(f) = TimeFormat::from_key(&e.value()) { d.call(PacketsMsg::SetTimeFormat(f)) }
                    },
                    for f in TimeFormat::ALL {
                        option { value: "{f.key()}", selected: f == packets.time_format, "{f.label()}" }
                    }
                }
            }
            span { class: "muted", "click a header to sort · ↑/↓ select · Enter opens · Esc closes" }
        }
        div { class: "list",
            div { class: "rows", id: "packet-list", tabindex: "0", "data-sort": "{sort.column.key()}", "data-descending": "{sort.descending}",
                onwheel: move |e: WheelEvent| {
                    let dy = e.delta().strip_units().y;
                    let rows = if dy.abs() < 1.0 { 0 } else if dy.abs() < 10.0 { dy as i64 * 3 } else { (dy / 22.0).round() as i64 };
                    d.call(PacketsMsg::Scroll(if rows == 0 { dy.signum() as i64 } else { rows }))
                },
                onkeydown: move |e: KeyboardEvent| {
                    if let Some(m) = list_keys(&e) { d.call(m) }
                },
                div { class: "pkthead",
                    for (c, order, arrow) in Column::ALL.map(|c| header_order(sort, c)) {
                        span { id: "col-{c.key()}",
                            class: if order.is_empty() { "" } else { "sorted" },
                            style: "{header_place(c)}",
                            "data-order": "{order}",
                            title: "{column_help(c)}",
                            onclick: move |_| d.call(PacketsMsg::SortBy(c)),
                            "{c.title()}{arrow}"
                        }
                    }
                }
                for r in rows {
                    div { key: "{r.id}", class: "{r.class}", "data-id": "{r.id}", "data-ts": "{r.ts}", "data-tls": "{r.library}",
                        onclick: { let id = r.id; move |e: MouseEvent| {
                            let m = e.modifiers();
                            d.call(PacketsMsg::Select { id, extend: m.ctrl() || m.shift() || m.meta() })
                        } },
                        "{r.line}"
                    }
                }
                if packets.shown.is_empty() {
                    div { class: "muted", id: "list-empty", style: "padding:12px", "{packets.empty_text(app.capture.running)}" }
                }
            }
            input { class: "vscroll", r#type: "range", min: "0", max: "{max}", value: "{packets.scroll}", title: "scroll",
                oninput: move |e: FormEvent| d.call(PacketsMsg::ScrollTo(e.value().parse().unwrap_or(0))) }
        }
        div { class: "muted", id: "list-info", "rows {packets.scroll + 1}–{(packets.scroll + VISIBLE_ROWS).min(packets.shown.len())} of {packets.shown.len()} shown ({packets.held.len()} held)" }
    }
}

/// Where a header's cell sits: over its column of the rows' lines.
fn header_place(c: Column) -> String {
    let at = rowline::offset(c);
    let align = if rowline::right_aligned(c) { "text-align:right;" } else { "" };
    match rowline::width(c) {
        Some(w) => format!("{align}left:calc(6px + {at}ch);width:{w}ch"),
        None => format!("left:calc(6px + {at}ch);right:6px"),
    }
}

/// A header's sort order (`ascending`, `descending`, or empty) and its arrow.
fn header_order(sort: Sort, c: Column) -> (Column, &'static str, &'static str) {
    match (sort.column == c, sort.descending) {
        (false, _) => (c, "", ""),
        (true, false) => (c, "ascending", " ▲"),
        (true, true) => (c, "descending", " ▼"),
    }
}

fn column_help(c: Column) -> &'static str {
    match c {
        Column::No => "the packet's number (its id in the capture)",
        Column::Time => "when the kernel saw it (the format is picked above the list)",
        Column::Process => "the process that sent or received it",
        Column::Direction => "out: sent by the process; in: received by it",
        Column::Protocol => "the application protocol when one is recognised, and the transport",
        Column::Source => "where the packet came from",
        Column::Destination => "where the packet went",
        Column::Length => "bytes of the packet on the wire, IP header included (a TLS record: of plaintext)",
        Column::Payload => "bytes of transport payload (what `pidcap` prints as len)",
        Column::Verdict => "pass, or blocked by a rule",
        Column::Info => "what the packet says (Wireshark's Info column)",
    }
}

// -- the display filter box (issue 14) --
/// The display filter's box: green when what it holds is a filter, red when not.
pub(super) fn filter_input(app: &App, d: D) -> Element {
    let p = &app.packets;
    let state = if p.filter_error.is_some() {
        "bad"
    } else if p.filter_text.trim().is_empty() {
        ""
    } else {
        "good"
    };
    rsx! {
        input { id: "display-filter", style: "flex:1; min-width: 260px", class: "{state}", "data-state": "{state}",
            spellcheck: "false",
            placeholder: "display filter: tcp.port == 80 && !dns, ip.addr == 10.0.0.0/8, http, frame.len > 100 (or pidcap's words: tcp in port:80 pid:123 text)",
            value: "{p.filter_text}", "data-value": "{p.filter_text}",
            oninput: move |e: FormEvent| d.call(PacketsMsg::SetFilter(e.value())) }
    }
}

/// Why the text in the filter box is not a filter: the message, the text
/// with the bad part marked, and which rows are shown meanwhile.
pub(super) fn filter_error(app: &App) -> Element {
    let p = &app.packets;
    let Some(e) = &p.filter_error else { return rsx! {} };
    let (before, bad, after) = split_chars(&p.filter_text, e.at, e.len);
    let kept = if p.filter_applied.is_empty() {
        "Showing every packet meanwhile (no valid filter yet).".to_string()
    } else {
        format!("Showing the rows of the last valid filter `{}` meanwhile.", p.filter_applied)
    };
    rsx! {
        div { class: "err filter-error", id: "filter-error", "data-at": "{e.at}", "data-len": "{e.len}",
            div { class: "filter-text", "{before}" u { class: "filter-bad", id: "filter-bad", if bad.is_empty() { "\u{2038}" } else { "{bad}" } } "{after}" }
            div { id: "filter-message", "{e.message}" }
            div { class: "muted", "{kept}" }
        }
    }
}

/// `text` cut at characters `at` and `at + len`.
pub(super) fn split_chars(text: &str, at: usize, len: usize) -> (String, String, String) {
    let chars: Vec<char> = text.chars().collect();
    let at = at.min(chars.len());
    let end = (at + len).min(chars.len());
    (chars[..at].iter().collect(), chars[at..end].iter().collect(), chars[end..].iter().collect())
}

/// The packet's headers, field by field (from [`pidcap_packet::headers`]).
pub(super) fn header_fields(p: &CapturedPacket) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    use pidcap_packet::decode::{IpHeader, TransportHeader};
    let h = pidcap_packet::headers(&p.data);
    let proto = p.decoded.protocol;
    let mut out = Vec::new();
    match h.ip {
        Some(IpHeader::V4(ip)) => out.push((
            "IPv4",
            vec![
                ("source", ip.source.to_string()),
                ("destination", ip.destination.to_string()),
                ("header length", format!("{} bytes", ip.header_len)),
                ("total length", ip.total_len.to_string()),
                ("id", format!("0x{:04x}", ip.identification)),
                (
                    "flags",
                    format!(
                        "{}{}",
                        if ip.dont_fragment { "DF " } else { "" },
                        if ip.more_fragments { "MF" } else { "" }
                    ),
                ),
                ("TTL", ip.ttl.to_string()),
                ("protocol", format!("{proto} ({})", ip.protocol)),
                ("checksum", format!("0x{:04x}", ip.checksum)),
            ],
        )),
        Some(IpHeader::V6(ip)) => out.push((
            "IPv6",
            vec![
                ("source", ip.source.to_string()),
                ("destination", ip.destination.to_string()),
                ("payload length", ip.payload_len.to_string()),
                ("next header", format!("{proto} ({})", ip.next_header)),
                ("hop limit", ip.hop_limit.to_string()),
                ("flow label", format!("0x{:05x}", ip.flow_label)),
            ],
        )),
        None => {}
    }
    match h.transport {
        Some(TransportHeader::Tcp(t)) => out.push((
            "TCP",
            vec![
                ("source port", t.source_port.to_string()),
                ("destination port", t.destination_port.to_string()),
                ("sequence", t.seq.to_string()),
                ("acknowledgment", t.ack.to_string()),
                ("flags", p.decoded.tcp_flags_str()),
                ("window", t.window.to_string()),
                ("header length", format!("{} bytes", t.header_len)),
                ("checksum", format!("0x{:04x}", t.checksum)),
            ],
        )),
        Some(TransportHeader::Udp(u)) => out.push((
            "UDP",
            vec![
                ("source port", u.source_port.to_string()),
                ("destination port", u.destination_port.to_string()),
                ("length", u.length.to_string()),
                ("checksum", format!("0x{:04x}", u.checksum)),
            ],
        )),
        Some(TransportHeader::Icmp { .. }) | None => {}
    }
    out
}

/// Offsets + hex, and ASCII, side by side (16 bytes a line), with a line saying what the bytes are.
pub(super) fn hex_view(bytes: &[u8], label: String) -> Element {
    hex_view_marked(bytes, label, None)
}

/// [`hex_view`] with the bytes `mark` highlighted (in both columns).
pub(super) fn hex_view_marked(bytes: &[u8], label: String, mark: Option<Range<usize>>) -> Element {
    let (hex, ascii) = hex_segments(bytes, mark.clone());
    let marked = mark.filter(|m| m.start < m.end).map(|m| format!("{}-{}", m.start, m.end)).unwrap_or_default();
    rsx! {
        div { class: "hex", id: "hex-view", "data-mark": "{marked}",
            pre { class: "hexcol",
                for (text, hl) in hex {
                    if hl { mark { "{text}" } } else { "{text}" }
                }
            }
            pre { class: "asciicol",
                for (text, hl) in ascii {
                    if hl { mark { "{text}" } } else { "{text}" }
                }
            }
        }
        div { class: "muted", id: "hex-label", "{label}" }
    }
}

/// The hex and ASCII columns' text as runs, each marked or not (the bytes
/// in `mark`): `0000  45 00 ...\n` lines, and 16 characters a line.
pub(super) fn hex_segments(bytes: &[u8], mark: Option<Range<usize>>) -> (Vec<Run>, Vec<Run>) {
    let mark = mark.unwrap_or(0..0);
    let (mut hex, mut ascii) = (Runs::default(), Runs::default());
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let base = n * 16;
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("{:04x}  {:<47}", base, line.join(" "));
        let chars: Vec<char> = pidcap_packet::ascii::dots(chunk).chars().collect();
        // The marked bytes of this line, as indices into it.
        let (from, to) = (mark.start.max(base), mark.end.min(base + chunk.len()));
        if from < to {
            let (a, b) = (from - base, to - base);
            let (hs, he) = (6 + a * 3, 6 + b * 3 - 1);
            hex.push(&text[..hs], false);
            hex.push(&text[hs..he], true);
            hex.push(&text[he..], false);
            ascii.push(&chars[..a].iter().collect::<String>(), false);
            ascii.push(&chars[a..b].iter().collect::<String>(), true);
            ascii.push(&chars[b..].iter().collect::<String>(), false);
        } else {
            hex.push(&text, false);
            ascii.push(&chars.iter().collect::<String>(), false);
        }
        hex.push("\n", false);
        ascii.push("\n", false);
    }
    (hex.0, ascii.0)
}

/// A run of text, marked or not.
pub(super) type Run = (String, bool);

/// Text runs, consecutive ones of the same kind joined.
#[derive(Default)]
struct Runs(Vec<Run>);

impl Runs {
    fn push(&mut self, text: &str, marked: bool) {
        if text.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((t, m)) if *m == marked => t.push_str(text),
            _ => self.0.push((text.to_string(), marked)),
        }
    }
}

/// What a packet's hex view shows: the bytes captured and where the payload starts.
pub(super) fn packet_bytes_label(p: &CapturedPacket) -> String {
    format!("{} bytes captured; payload from offset {}", p.data.len(), p.decoded.payload_offset)
}

/// What a TLS record's hex view shows: its plaintext, from the library.
pub(super) fn plaintext_label(p: &CapturedPacket, library: pidcap_packet::TlsLibrary) -> String {
    let kept = p.payload().len();
    let whole = p.decoded.payload_size as usize;
    let of = if whole > kept { format!(" (of {whole}: cut at the snap length)") } else { String::new() };
    format!("{kept} bytes of plaintext{of}, taken from the TLS library ({library}), not from the wire")
}

// -- the whole process (issue 12) --
/// The "Process" section of a packet's detail: who sent or received it, as
/// far as pidcap read the process (once, when it first saw it).
pub fn process_fields(p: &CapturedPacket) -> Vec<(&'static str, String)> {
    let mut f = vec![("process", format!("{} ({})", p.pid, p.comm))];
    let tid = if p.tid != 0 { p.tid } else { p.tls.map_or(0, |t| t.tid) };
    if tid != 0 || !p.thread.is_empty() {
        let name = if p.thread.is_empty() { String::new() } else { format!(" ({})", p.thread) };
        f.push(("thread", format!("{tid}{name}")));
    }
    if let Some(m) = &p.process {
        f.push(("executable", m.exe.clone()));
        f.push(("command line", m.cmdline.join(" ")));
        f.push(("parent", format!("{} ({})", m.ppid, m.parent_comm)));
        f.push(("user", if m.user.is_empty() { m.uid.to_string() } else { format!("{} ({})", m.uid, m.user) }));
        f.push(("cgroup", m.cgroup.clone()));
        if let Some(c) = &m.container {
            f.push(("container", c.to_string()));
        }
    }
    f
}

pub(super) fn process_section(p: &CapturedPacket) -> Element {
    rsx! {
        b { "Process" }
        dl { class: "hdr", id: "packet-process",
            for (k, v) in process_fields(p) {
                dt { "{k}" } dd { "{v}" }
            }
        }
    }
}

// -- packet detail tree (issue 14) --
/// The packet's layers as a tree ([`pidcap_packet::dissect::dissect`]):
/// a line per field, closed or open (the state remembers), a click
/// highlights its bytes in the hex view. `base` is where the hex view's
/// bytes start in the packet's data (a TLS record's: its plaintext).
fn tree(fields: &[Field], app: &App, d: D) -> Element {
    rsx! {
        div { class: "tree", id: "packet-tree",
            {tree_lines(fields, "", app, d)}
        }
    }
}

fn tree_lines(fields: &[Field], parent: &str, app: &App, d: D) -> Element {
    let packets = &app.packets;
    let lit = packets.highlight.as_ref().filter(|h| Some(h.packet) == packets.focused).map(|h| h.path.as_str());
    rsx! {
        for (i, f) in fields.iter().enumerate() {
            {
                let path = if parent.is_empty() { format!("{}#{i}", f.name) } else { format!("{parent}/{}#{i}", f.name) };
                let open = !packets.collapsed.contains(&path);
                let has_children = !f.children.is_empty();
                let class = if lit == Some(path.as_str()) { "tl lit" } else { "tl" };
                let range = f.range.clone();
                let (toggle, pick) = (path.clone(), path.clone());
                rsx! {
                    div { key: "{path}", class: "tnode",
                        div { class: "{class}", "data-name": "{f.name}", "data-path": "{path}", "data-range": "{range.start}-{range.end}",
                            span { class: "twisty",
                                onclick: move |e: MouseEvent| {
                                    e.stop_propagation();
                                    if has_children { d.call(PacketsMsg::ToggleField(toggle.clone())) }
                                },
                                if has_children { if open { "▾" } else { "▸" } } else { "" }
                            }
                            span { class: "tlabel",
                                onclick: move |_| {
                                    let r = range.clone();
                                    d.call(PacketsMsg::HighlightField((r.start < r.end).then(|| (pick.clone(), r))))
                                },
                                "{f.label}"
                            }
                        }
                        if has_children && open {
                            div { class: "tchildren", {tree_lines(&f.children, &path, app, d)} }
                        }
                    }
                }
            }
        }
    }
}

/// The highlighted bytes of the packet shown, as offsets into `data[base..]`.
fn marked(app: &App, id: u64, base: usize) -> Option<Range<usize>> {
    let h = app.packets.highlight.as_ref().filter(|h| h.packet == id)?;
    Some(h.range.start.saturating_sub(base)..h.range.end.saturating_sub(base))
}

fn close_button(d: D) -> Element {
    rsx! {
        button { class: "close", id: "close-detail", title: "close (Esc)", onclick: move |_| d.call(PacketsMsg::CloseDetail), "×" }
    }
}

pub(super) fn detail(app: &App, d: D) -> Element {
    let Some(p) = app.packets.focused_packet() else {
        return rsx! { div { class: "panel", id: "packet-detail-none", h2 { "Packet" } p { class: "muted", "Click a packet (or select it with ↑/↓ and press Enter) to see its layers and bytes." } } };
    };
    if let Some(tls) = p.tls {
        return record_detail(p, tls, app, d);
    }
    let layers = dissect(p);
    let dir = if p.direction == Direction::Inbound { "received by" } else { "sent by" };
    rsx! {
        div { class: "panel", id: "packet-detail", "data-id": "{p.id}",
            div { class: "row detail-head",
                h2 { "Packet #{p.id} — {dir} {p.pid}/{p.comm}" }
                {close_button(d)}
            }
            {process_section(p)}
            if layers.is_empty() {
                // No tree for it: its headers, field by field.
                for (name, f) in header_fields(p) {
                    b { "{name}" }
                    dl { class: "hdr",
                        for (k, v) in f {
                            dt { "{k}" } dd { "{v}" }
                        }
                    }
                }
            } else {
                {tree(&layers, app, d)}
            }
            {hex_view_marked(&p.data, packet_bytes_label(p), marked(app, p.id, 0))}
            div { class: "row", style: "margin-top:6px",
                button { id: "edit-packet", onclick: move |_| d.call(EditorMsg::Open), "Edit payload" }
                button { id: "export-pcapng", onclick: move |_| d.call(PacketsMsg::ExportPcapng), "Export selection to pcapng" }
            }
        }
    }
}

/// A TLS plaintext record: its connection, the library call, and the plaintext
/// (the synthesized headers that carry it inside pidcap are not shown: they
/// never crossed the wire).
pub(super) fn record_detail(p: &CapturedPacket, tls: pidcap_packet::TlsInfo, app: &App, d: D) -> Element {
    let dec = &p.decoded;
    let (dir, arrow) = if p.direction == Direction::Inbound { ("read by", "from") } else { ("written by", "to") };
    let fields = vec![
        ("library", tls.library.to_string()),
        ("thread", tls.tid.to_string()),
        (
            "connection",
            format!(
                "{} {arrow} {}",
                endpoint(dec.local_addr, dec.local_port),
                endpoint(dec.remote_addr, dec.remote_port)
            ),
        ),
        ("socket cookie", p.socket_cookie.to_string()),
        ("plaintext length", dec.payload_size.to_string()),
        ("offset in the stream", dec.tcp_seq.unwrap_or(0).to_string()),
    ];
    let layers = dissect(p);
    let base = dec.payload_offset as usize;
    rsx! {
        div { class: "panel record", id: "packet-detail", "data-id": "{p.id}", "data-tls": "{tls.library}",
            div { class: "row detail-head",
                h2 { "TLS plaintext record #{p.id} — {dir} {p.pid}/{p.comm} " span { class: "badge tls", "decrypted" } }
                {close_button(d)}
            }
            p { class: "muted", "Plaintext the process handed to (or got from) its TLS library, {tls.library}; on the wire these bytes were encrypted." }
            dl { class: "hdr",
                for (k, v) in fields {
                    dt { "{k}" } dd { "{v}" }
                }
            }
            {process_section(p)}
            if !layers.is_empty() {
                {tree(&layers, app, d)}
            }
            {hex_view_marked(p.payload(), plaintext_label(p, tls.library), marked(app, p.id, base))}
            div { class: "row", style: "margin-top:6px",
                button { id: "edit-packet", onclick: move |_| d.call(EditorMsg::Open), "Edit plaintext" }
                button { id: "export-pcapng", onclick: move |_| d.call(PacketsMsg::ExportPcapng), "Export selection to pcapng" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_section_shows_what_was_read() {
        let mut p = CapturedPacket::new(
            1,
            1,
            42,
            "dig".into(),
            7,
            Direction::Outbound,
            pidcap_packet::Verdict::Pass,
            3,
            vec![0x45, 0, 3],
        );
        assert_eq!(process_fields(&p), [("process", "42 (dig)".to_string())]);
        (p.tid, p.thread) = (43, "isc-net-0000".into());
        p.process = Some(std::sync::Arc::new(pidcap_packet::ProcessMeta {
            exe: "/usr/bin/dig".into(),
            cmdline: vec!["dig".into(), "@127.0.0.1".into()],
            ppid: 1,
            parent_comm: "sh".into(),
            uid: 0,
            user: "root".into(),
            cgroup: "/x".into(),
            container: pidcap_packet::ContainerRef::parse("docker:ab"),
            ..Default::default()
        }));
        let f: Vec<String> = process_fields(&p).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert_eq!(
            f,
            [
                "process: 42 (dig)",
                "thread: 43 (isc-net-0000)",
                "executable: /usr/bin/dig",
                "command line: dig @127.0.0.1",
                "parent: 1 (sh)",
                "user: 0 (root)",
                "cgroup: /x",
                "container: docker:ab"
            ]
        );
    }

    #[test]
    fn the_hex_view_marks_a_fields_bytes_in_both_columns() {
        let bytes: Vec<u8> = (0u8..20).map(|b| b + 0x41).collect(); // "ABCDEFGHIJKLMNOPQRST"
        let join = |runs: &[(String, bool)]| runs.iter().map(|(t, _)| t.as_str()).collect::<String>();
        let lit = |runs: &[(String, bool)]| runs.iter().filter(|r| r.1).map(|r| r.0.clone()).collect::<Vec<_>>();
        // Unmarked, the text is the plain dump.
        let (hex, ascii) = hex_segments(&bytes, None);
        assert_eq!(join(&ascii), "ABCDEFGHIJKLMNOP\nQRST\n");
        assert!(join(&hex).starts_with("0000  41 42 43"), "{}", join(&hex));
        assert!(lit(&hex).is_empty() && lit(&ascii).is_empty());
        // Bytes 14..18 cross a line: marked on both lines, the text unchanged.
        let (hex_m, ascii_m) = hex_segments(&bytes, Some(14..18));
        assert_eq!((join(&hex_m), join(&ascii_m)), (join(&hex), join(&ascii)));
        assert_eq!(lit(&ascii_m), ["OP", "QR"]);
        assert_eq!(lit(&hex_m), ["4f 50", "51 52"]);
        // A range past the end marks what there is; an empty one nothing.
        assert_eq!(lit(&hex_segments(&bytes, Some(19..99)).1), ["T"]);
        assert!(lit(&hex_segments(&bytes, Some(3..3)).0).is_empty());
    }

    #[test]
    fn the_filter_error_is_cut_where_it_is() {
        assert_eq!(split_chars("tcp.port == x", 12, 1), ("tcp.port == ".into(), "x".into(), String::new()));
        assert_eq!(split_chars("é == 1", 0, 1), (String::new(), "é".into(), " == 1".into()), "characters, not bytes");
        assert_eq!(split_chars("tcp &&", 6, 0), ("tcp &&".into(), String::new(), String::new()), "at the end");
        assert_eq!(split_chars("ab", 5, 3), ("ab".into(), String::new(), String::new()));
    }

    #[test]
    fn time_column_formats() {
        let t = 1_700_000_000_123_456_789;
        assert_eq!(time_text(TimeFormat::Relative, t, Some(t - 2_500_000_000), None), "2.500000");
        assert_eq!(time_text(TimeFormat::Delta, t, None, Some(t - 1_000)), "0.000001");
        assert_eq!(time_text(TimeFormat::Delta, t, None, None), "0.000000", "the first row");
        assert_eq!(time_text(TimeFormat::Delta, t, None, Some(t + 3_000_000_000)), "-3.000000", "sorted otherwise");
        let abs = time_text(TimeFormat::Absolute, t, None, None);
        assert_eq!(abs.len(), "00:00:00.123456".len(), "{abs}");
        assert!(abs.ends_with(".123456"), "{abs}");
    }
}
