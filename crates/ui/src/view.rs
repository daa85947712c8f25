//! The Dioxus components. They only render an [`App`] and dispatch
//! [`Msg`]s; [`Root`] owns the state, the message loop and the runner.
//!
//! Every form field also carries the value the state machine holds as
//! `data-value` (the library list: the query it answers as `data-query`),
//! so that a test can wait for what it typed to have arrived.

use crate::editor::format_hex;
use crate::runner::{spawn_feed, Context, Runner};
use crate::state::{
    update, App, AppMsg, CaptureMsg, EditorMsg, Level, LibraryMsg, Msg, PacketsMsg, ProcessesMsg, ResendMsg, RulesMsg,
    Tab, VISIBLE_ROWS,
};
use dioxus::prelude::*;
use pidcap_engine::rules::Action as RuleAction;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_resend::Mode;
use std::sync::Arc;

/// Dispatches a message of any area.
#[derive(Clone, Copy)]
struct D(Callback<Msg>);

impl D {
    fn call(&self, m: impl Into<Msg>) {
        self.0.call(m.into())
    }
}

#[derive(Props, Clone)]
pub struct RootProps {
    pub ctx: Context,
}

impl PartialEq for RootProps {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The whole UI, one per browser tab (or window).
#[allow(non_snake_case)]
pub fn Root(props: RootProps) -> Element {
    let mut app = use_signal(App::new);
    let ctx = props.ctx.clone();
    let (tx, rx) = use_hook(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
        let _ = tx.send(AppMsg::Init.into());
        (tx, std::rc::Rc::new(std::cell::RefCell::new(Some(rx))))
    });
    let d = D(use_callback({
        let tx = tx.clone();
        move |m: Msg| {
            let _ = tx.send(m);
        }
    }));
    // The message loop: apply messages in batches (consecutive packets as one), hand effects to the runner thread.
    use_future({
        let (ctx, tx) = (ctx.clone(), tx.clone());
        move || {
            let rx = rx.borrow_mut().take();
            let (ctx, tx) = (ctx.clone(), tx.clone());
            async move {
                let Some(mut rx) = rx else { return };
                let runner = Runner::new(ctx.clone(), tx.clone());
                let (etx, erx) = std::sync::mpsc::channel::<crate::state::Effect>();
                std::thread::Builder::new()
                    .name("pidcap-ui-effects".into())
                    .spawn(move || {
                        while let Ok(e) = erx.recv() {
                            runner.run(e);
                        }
                    })
                    .ok();
                spawn_feed(ctx.clone(), tx.clone());
                while let Some(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while let Ok(a) = rx.try_recv() {
                        batch.push(a);
                        if batch.len() >= 20_000 {
                            break;
                        }
                    }
                    let mut effects = Vec::new();
                    {
                        let mut st = app.write();
                        let mut packets = Vec::new();
                        for m in batch {
                            match m {
                                Msg::Packets(PacketsMsg::Arrived(p)) => packets.extend(p),
                                other => {
                                    if !packets.is_empty() {
                                        let arrived = PacketsMsg::Arrived(std::mem::take(&mut packets));
                                        effects.extend(update(&mut st, arrived));
                                    }
                                    effects.extend(update(&mut st, other));
                                }
                            }
                        }
                        if !packets.is_empty() {
                            effects.extend(update(&mut st, PacketsMsg::Arrived(packets)));
                        }
                    }
                    for e in effects {
                        let _ = etx.send(e);
                    }
                }
            }
        }
    });
    // Once a second: the chart moves on, counters and rule hits refresh.
    use_future({
        let tx = tx.clone();
        move || {
            let tx = tx.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if tx.send(AppMsg::Tick { now_ns: now_ns() }.into()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Imports made through the upload route.
    use_future({
        let (ctx, tx) = (ctx.clone(), tx.clone());
        move || {
            let mut sub = ctx.imports.subscribe();
            let tx = tx.clone();
            async move {
                while let Ok(msg) = sub.recv().await {
                    let _ = tx.send(LibraryMsg::Imported(msg).into());
                }
            }
        }
    });

    let app = app.read();
    rsx! {
        {header(&app, d)}
        if let Some(e) = &app.daemon_error {
            div { class: "banner", id: "daemon-error", "⚠ {e}" }
        }
        main {
            match app.tab {
                Tab::Processes => processes_tab(&app, d),
                Tab::Capture => capture_tab(&app, d),
                Tab::Filters => filters_tab(&app, d),
                Tab::Library => library_tab(&app, d),
            }
        }
        div { class: "notices",
            for n in app.notices.iter() {
                div {
                    key: "{n.id}",
                    class: if n.level == Level::Error { "notice error" } else { "notice info" },
                    title: "click to dismiss",
                    onclick: { let id = n.id; move |_| d.call(AppMsg::DismissNotice(id)) },
                    "{n.text}"
                }
            }
        }
    }
}

fn header(app: &App, d: D) -> Element {
    let tabs = [
        (Tab::Processes, "Processes"),
        (Tab::Capture, "Capture"),
        (Tab::Filters, "Filters"),
        (Tab::Library, "Library"),
    ];
    let status = if app.capture.running {
        let t: Vec<String> = app
            .capture
            .targets
            .iter()
            .filter(|t| t.alive)
            .map(|t| format!("{} {}", t.pid, t.comm.clone().unwrap_or_default()))
            .collect();
        format!("● capturing {} — {} packets", t.join(", "), app.captured_count())
    } else {
        "○ idle".to_string()
    };
    rsx! {
        header {
            h1 { "pidcap" }
            nav {
                for (t, name) in tabs {
                    button {
                        id: "tab-{name.to_lowercase()}",
                        class: if app.tab == t { "active" } else { "" },
                        onclick: move |_| d.call(AppMsg::SetTab(t)),
                        "{name}"
                    }
                }
            }
            span { class: "status", id: "status", "{status}" }
        }
    }
}

fn processes_tab(app: &App, d: D) -> Element {
    let procs = app.processes.visible();
    let shown = procs.len().min(500);
    rsx! {
        div { class: "panel",
            h2 { "Capture a running process" }
            div { class: "row",
                input { id: "proc-search", placeholder: "search: name, pid, user, command line", value: "{app.processes.query}", "data-value": "{app.processes.query}",
                    oninput: move |e: FormEvent| d.call(ProcessesMsg::SetQuery(e.value())) }
                button { id: "refresh-procs", onclick: move |_| d.call(ProcessesMsg::Refresh), "Refresh" }
                label { input { r#type: "checkbox", checked: app.processes.follow_children,
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetFollowChildren(e.checked())) } " also the processes they start" }
                button { id: "start-capture", class: "primary", disabled: app.processes.selected.is_empty(),
                    onclick: move |_| d.call(CaptureMsg::Start),
                    "Capture {app.processes.selected.len()} selected" }
                if app.capture.running {
                    button { id: "stop-capture", class: "danger", onclick: move |_| d.call(CaptureMsg::Stop), "Stop capture" }
                }
            }
            div { class: "procs",
                table {
                    thead { tr { th {} th { "PID" } th { "Name" } th { "User" } th { "Sockets" } th { "Command line" } } }
                    tbody {
                        for p in procs.into_iter().take(500) {
                            tr { key: "{p.pid}", class: if app.processes.selected.contains(&p.pid) { "sel" } else { "" },
                                "data-pid": "{p.pid}",
                                onclick: { let pid = p.pid; move |_| d.call(ProcessesMsg::Toggle(pid)) },
                                td { input { r#type: "checkbox", checked: app.processes.selected.contains(&p.pid) } }
                                td { "{p.pid}" }
                                td { "{p.name}" }
                                td { "{p.user}" }
                                td { {p.sockets.map_or("?".to_string(), |s| s.to_string())} }
                                td { class: "muted", {p.cmdline.chars().take(90).collect::<String>()} }
                            }
                        }
                    }
                }
            }
            p { class: "muted", "{shown} of {app.processes.list.len()} processes shown." }
        }
        div { class: "panel",
            h2 { "Or run a command and capture it, and what it starts, from its first packet" }
            div { class: "row",
                input { id: "run-command", style: "flex:1", placeholder: "curl -s http://127.0.0.1:8080/", value: "{app.processes.run_command}", "data-value": "{app.processes.run_command}",
                    oninput: move |e: FormEvent| d.call(ProcessesMsg::SetRunCommand(e.value())) }
                button { id: "run-capture", class: "primary", onclick: move |_| d.call(CaptureMsg::Run), "Run and capture" }
            }
        }
    }
}

fn counters(app: &App) -> Element {
    let k = &app.capture.stats.kernel;
    let items = [
        ("captured", app.captured_count(), "packets read from the kernel"),
        ("shown", app.packets.shown.len() as u64, "packets the display filter lets through"),
        ("dropped", k.ring_full + k.load_failed, "lost in the kernel ring (userspace too slow)"),
        ("evicted", app.capture.stats.evicted + app.packets.ui_missed, "pushed out of the 10,000-packet ring"),
        ("blocked", k.blocked + k.connect_blocked, "packets and connects refused by a block rule"),
        ("not attributed", k.unattributed, "packets of sockets with no known owner (system-wide)"),
        ("TLS records", k.tls_records, "TLS plaintext records taken from the targets' TLS libraries"),
        ("TLS dropped", k.tls_dropped, "TLS plaintext records of targets lost in the kernel"),
    ];
    rsx! {
        div { class: "counters", id: "counters",
            for (name, v, help) in items {
                div { class: "counter", title: "{help}", id: "counter-{name.replace(' ', \"-\")}", b { "{v}" } span { "{name}" } }
            }
        }
    }
}

/// Per target: where its TLS plaintext comes from, or that it has none.
fn tls_coverage(app: &App) -> Element {
    let notices = app.capture.tls_notices();
    rsx! {
        if !notices.is_empty() {
            div { class: "tls-coverage", id: "tls-coverage",
                for n in notices {
                    div { key: "{n.pid}", class: if n.covered { "covered" } else { "uncovered" }, "data-pid": "{n.pid}",
                        "{n.text}"
                    }
                }
            }
        }
    }
}

fn chart(app: &App) -> Element {
    let series = app.packets.rate.series();
    let (w, h) = (360.0f64, 70.0f64);
    let max = series.iter().map(|(i, o)| (*i).max(*o)).max().unwrap_or(0).max(1) as f64;
    let n = series.len().max(2) as f64;
    let pts = |f: &dyn Fn(&(u32, u32)) -> u32| {
        series
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:.1},{:.1}", i as f64 * w / (n - 1.0), h - 2.0 - f64::from(f(s)) * (h - 6.0) / max))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (pin, pout) = (pts(&|s| s.0), pts(&|s| s.1));
    let last = series.last().copied().unwrap_or((0, 0));
    rsx! {
        div {
            svg { class: "chart", id: "rate-chart", width: "{w}", height: "{h}", view_box: "0 0 {w} {h}",
                polyline { points: "{pin}", fill: "none", stroke: "#2f6fde", stroke_width: "1.5" }
                polyline { points: "{pout}", fill: "none", stroke: "#e07b16", stroke_width: "1.5" }
            }
            div { class: "legend", span { style: "color:#2f6fde", "■ in {last.0}/s" } "  " span { style: "color:#e07b16", "■ out {last.1}/s" } "  (max {max}/s, last 60 s)" }
        }
    }
}

fn fmt_time(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}.{:06}", (ns / 1000) % 1_000_000)
}

fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        a => format!("{a}:{port}"),
    }
}

fn packet_row(i: usize, p: &Arc<CapturedPacket>, selected: bool, d: D) -> Element {
    let id = p.id;
    let dec = &p.decoded;
    let mut class = String::from("pkt");
    if selected {
        class.push_str(" sel");
    }
    if p.verdict == Verdict::Blocked {
        class.push_str(" blocked");
    }
    if p.is_tls() {
        class.push_str(" tls");
    }
    let library = p.tls.map(|t| t.library.to_string()).unwrap_or_default();
    rsx! {
        div { key: "{id}", class: "{class}", "data-id": "{id}", "data-ts": "{p.timestamp_ns}", "data-row": "{i}", "data-tls": "{library}",
            onclick: move |e: MouseEvent| {
                let m = e.modifiers();
                d.call(PacketsMsg::Select { id, extend: m.ctrl() || m.shift() || m.meta() })
            },
            span { {fmt_time(p.timestamp_ns)} }
            span { "{p.pid}/{p.comm}" }
            span { "{p.direction}" }
            if p.is_tls() {
                span { class: "badge tls", title: "TLS plaintext ({library}), decrypted: taken from the TLS library, not the wire", "TLS {library}" }
            } else {
                span { "{dec.protocol}" }
            }
            span { {endpoint(dec.local_addr, dec.local_port)} }
            span { {endpoint(dec.remote_addr, dec.remote_port)} }
            if p.is_tls() {
                span { title: "bytes of plaintext", "{dec.payload_size}" }
            } else {
                span { "{p.orig_len}" }
            }
            span { "{p.verdict}" }
        }
    }
}

fn packet_list(app: &App, d: D) -> Element {
    let rows = app.packets.visible_rows();
    let max = app.packets.max_scroll();
    rsx! {
        div { class: "list",
            div { class: "rows", id: "packet-list", tabindex: "0",
                onwheel: move |e: WheelEvent| {
                    let dy = e.delta().strip_units().y;
                    let rows = if dy.abs() < 1.0 { 0 } else if dy.abs() < 10.0 { dy as i64 * 3 } else { (dy / 22.0).round() as i64 };
                    d.call(PacketsMsg::Scroll(if rows == 0 { dy.signum() as i64 } else { rows }))
                },
                onkeydown: move |e: KeyboardEvent| {
                    let step = match e.key() {
                        Key::ArrowDown => 1,
                        Key::ArrowUp => -1,
                        Key::PageDown => VISIBLE_ROWS as i64,
                        Key::PageUp => -(VISIBLE_ROWS as i64),
                        Key::Home => i64::MIN / 2,
                        Key::End => i64::MAX / 2,
                        _ => 0,
                    };
                    if step != 0 { d.call(PacketsMsg::Scroll(step)) }
                },
                div { class: "pkthead", span { "time" } span { "pid/comm" } span { "dir" } span { "proto" } span { "local" } span { "remote" } span { "len" } span { "verdict" } }
                for (i, p) in rows.iter() {
                    {packet_row(*i, p, app.packets.selected.contains(&p.id), d)}
                }
                if app.packets.shown.is_empty() {
                    div { class: "muted", style: "padding:12px", if app.capture.running { "Waiting for packets…" } else { "No packets. Start a capture on the Processes tab." } }
                }
            }
            input { class: "vscroll", r#type: "range", min: "0", max: "{max}", value: "{app.packets.scroll}", title: "scroll",
                oninput: move |e: FormEvent| d.call(PacketsMsg::ScrollTo(e.value().parse().unwrap_or(0))) }
        }
        div { class: "muted", id: "list-info", "rows {app.packets.scroll + 1}–{(app.packets.scroll + VISIBLE_ROWS).min(app.packets.shown.len())} of {app.packets.shown.len()} shown ({app.packets.held.len()} held)" }
    }
}

/// The packet's headers, field by field (from [`pidcap_packet::headers`]).
fn header_fields(p: &CapturedPacket) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
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
fn hex_view(bytes: &[u8], label: String) -> Element {
    let mut hex = String::new();
    let mut ascii = String::new();
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let line: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        hex.push_str(&format!("{:04x}  {:<47}\n", n * 16, line.join(" ")));
        ascii.push_str(&pidcap_packet::ascii::dots(chunk));
        ascii.push('\n');
    }
    rsx! {
        div { class: "hex", id: "hex-view",
            pre { class: "hexcol", "{hex}" }
            pre { class: "asciicol", "{ascii}" }
        }
        div { class: "muted", id: "hex-label", "{label}" }
    }
}

/// What a packet's hex view shows: the bytes captured and where the payload starts.
fn packet_bytes_label(p: &CapturedPacket) -> String {
    format!("{} bytes captured; payload from offset {}", p.data.len(), p.decoded.payload_offset)
}

/// What a TLS record's hex view shows: its plaintext, from the library.
fn plaintext_label(p: &CapturedPacket, library: pidcap_packet::TlsLibrary) -> String {
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

fn process_section(p: &CapturedPacket) -> Element {
    rsx! {
        b { "Process" }
        dl { class: "hdr", id: "packet-process",
            for (k, v) in process_fields(p) {
                dt { "{k}" } dd { "{v}" }
            }
        }
    }
}

fn detail(app: &App, d: D) -> Element {
    let Some(p) = app.packets.focused_packet() else {
        return rsx! { div { class: "panel", h2 { "Packet" } p { class: "muted", "Click a packet to see its headers and bytes." } } };
    };
    if let Some(tls) = p.tls {
        return record_detail(p, tls, d);
    }
    let fields = header_fields(p);
    let dir = if p.direction == Direction::Inbound { "received by" } else { "sent by" };
    rsx! {
        div { class: "panel", id: "packet-detail",
            h2 { "Packet #{p.id} — {dir} {p.pid}/{p.comm}" }
            {process_section(p)}
            for (name, f) in fields {
                b { "{name}" }
                dl { class: "hdr",
                    for (k, v) in f {
                        dt { "{k}" } dd { "{v}" }
                    }
                }
            }
            {hex_view(&p.data, packet_bytes_label(p))}
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
fn record_detail(p: &CapturedPacket, tls: pidcap_packet::TlsInfo, d: D) -> Element {
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
    rsx! {
        div { class: "panel record", id: "packet-detail", "data-tls": "{tls.library}",
            h2 { "TLS plaintext record #{p.id} — {dir} {p.pid}/{p.comm} " span { class: "badge tls", "decrypted" } }
            p { class: "muted", "Plaintext the process handed to (or got from) its TLS library, {tls.library}; on the wire these bytes were encrypted." }
            dl { class: "hdr",
                for (k, v) in fields {
                    dt { "{k}" } dd { "{v}" }
                }
            }
            {process_section(p)}
            {hex_view(p.payload(), plaintext_label(p, tls.library))}
            div { class: "row", style: "margin-top:6px",
                button { id: "edit-packet", onclick: move |_| d.call(EditorMsg::Open), "Edit plaintext" }
                button { id: "export-pcapng", onclick: move |_| d.call(PacketsMsg::ExportPcapng), "Export selection to pcapng" }
            }
        }
    }
}

fn editor(app: &App, d: D) -> Element {
    let Some(e) = &app.editor else { return rsx! {} };
    let hex_class = if e.hex_error.is_some() { "bad" } else { "" };
    let ascii_class = if e.ascii_error.is_some() { "bad" } else { "" };
    let modified = if e.is_modified() { "modified" } else { "as captured" };
    let from = match (e.packet_id, e.record) {
        (0, None) => "library entry".to_string(),
        (0, Some(t)) => format!("TLS plaintext ({}) of a library entry", t.library),
        (id, None) => format!("packet #{id}"),
        (id, Some(t)) => format!("TLS plaintext record #{id} ({})", t.library),
    };
    let what = if e.record.is_some() { "plaintext" } else { "payload" };
    rsx! {
        div { class: "panel", id: "editor", "data-tls": e.record.map(|t| t.library.to_string()).unwrap_or_default(),
            h2 { "Edit {what} of {from} — {e.payload.len()} bytes, {modified}" }
            div { class: "editor",
                div { b { "hex" }
                    textarea { id: "edit-hex", class: "{hex_class}", spellcheck: "false", value: "{e.hex_text}", "data-value": "{e.hex_text}",
                        oninput: move |ev: FormEvent| d.call(EditorMsg::Hex(ev.value())) } }
                div { b { "ASCII" } span { class: "muted", "  (\\r \\n \\t \\0 \\\\ \\xHH escapes)" }
                    textarea { id: "edit-ascii", class: "{ascii_class}", spellcheck: "false", value: "{e.ascii_text}", "data-value": "{e.ascii_text}",
                        oninput: move |ev: FormEvent| d.call(EditorMsg::Ascii(ev.value())) } }
            }
            if let Some(err) = &e.hex_error {
                div { class: "err", id: "hex-error", "Invalid hex, not sent: {err}" }
            }
            if let Some(err) = &e.ascii_error {
                div { class: "err", id: "ascii-error", "Invalid escape, not sent: {err}" }
            }
            div { class: "row",
                button { onclick: move |_| d.call(EditorMsg::Reset), "Reset" }
                button { onclick: move |_| d.call(EditorMsg::Close), "Close" }
            }
        }
    }
}

fn resend(app: &App, d: D) -> Element {
    let r = &app.resend;
    let can =
        (app.packets.focused.is_some() || app.editor.is_some()) && app.editor.as_ref().is_none_or(|e| e.is_valid());
    let modes = [Mode::Socket, Mode::Raw, Mode::Connect];
    let job_line = r.job.as_ref().map(|j| {
        format!(
            "job {} {}: {} {} {} → {}; sent {}, failed {}, {} bytes",
            j.id,
            j.state,
            j.mode,
            j.proto,
            j.local.map(|a| a.to_string()).unwrap_or_default(),
            j.remote,
            j.sent,
            j.failed,
            j.bytes
        )
    });
    rsx! {
        div { class: "panel", id: "resend",
            h2 { "Resend" }
            div { class: "row",
                label { "mode " select { id: "resend-mode", "data-value": "{r.form.mode}",
                    onchange: move |e: FormEvent| d.call(ResendMsg::SetMode(e.value().parse().unwrap_or(Mode::Socket))),
                    for m in modes { option { value: "{m}", selected: r.form.mode == m, "{m}" } } } }
                label { "count " input { id: "resend-count", size: "4", value: "{r.form.count}", "data-value": "{r.form.count}", disabled: r.form.forever,
                    oninput: move |e: FormEvent| d.call(ResendMsg::SetCount(e.value())) } }
                label { input { r#type: "checkbox", checked: r.form.forever,
                    onchange: move |e: FormEvent| d.call(ResendMsg::SetForever(e.checked())) } " loop until stopped" }
                label { "every " input { id: "resend-interval", size: "5", value: "{r.form.interval_ms}", "data-value": "{r.form.interval_ms}",
                    oninput: move |e: FormEvent| d.call(ResendMsg::SetInterval(e.value())) } " ms" }
                button { id: "resend-start", class: "primary", disabled: !can || r.running(), onclick: move |_| d.call(ResendMsg::Start),
                    if app.editor.as_ref().is_some_and(|e| e.is_modified()) { "Send edited" } else { "Send" } }
                button { id: "resend-stop", disabled: !r.running(), onclick: move |_| d.call(ResendMsg::Stop), "Stop" }
            }
            if r.form.mode == Mode::Connect {
                div { class: "row", id: "resend-tls-row",
                    label { input { id: "resend-tls", r#type: "checkbox", checked: r.form.tls, "data-value": "{r.form.tls}",
                        onchange: move |e: FormEvent| d.call(ResendMsg::SetTls(e.checked())) } " over TLS" }
                    if r.form.tls {
                        label { "SNI " input { id: "resend-sni", size: "18", placeholder: "server name (none for an IP)", value: "{r.form.sni}", "data-value": "{r.form.sni}",
                            oninput: move |e: FormEvent| d.call(ResendMsg::SetSni(e.value())) } }
                        label { "CA " input { id: "resend-ca", size: "18", placeholder: "PEM file (system roots)", value: "{r.form.ca}", "data-value": "{r.form.ca}",
                            oninput: move |e: FormEvent| d.call(ResendMsg::SetCa(e.value())) } }
                        label { title: "do not check the server's certificate", input { id: "resend-insecure", r#type: "checkbox", checked: r.form.insecure, "data-value": "{r.form.insecure}",
                            onchange: move |e: FormEvent| d.call(ResendMsg::SetInsecure(e.checked())) } " insecure" }
                    }
                }
            }
            if let Some(e) = &r.error { div { class: "err", "{e}" } }
            if let Some(l) = job_line { div { id: "resend-job", "{l}" } }
            if let Some(s) = &r.summary {
                div { id: "resend-summary", class: if s.failed == 0 { "ok" } else { "err" },
                    "Summary: {s}" }
            }
            div { class: "statuses", id: "resend-statuses",
                for s in r.statuses.iter().rev().take(50) {
                    div { key: "{s.seq}", class: if s.ok { "ok" } else { "err" }, "{s}"
                        if let Some(text) = s.reply.as_ref().and_then(|r| r.text.as_deref()) {
                            pre { class: "reply", title: "the decrypted reply (escapes as in the editor)",
                                {text.chars().take(2000).collect::<String>()} }
                        }
                    }
                }
            }
        }
    }
}

fn save_form(app: &App, d: D) -> Element {
    let n = if app.packets.selected.is_empty() {
        usize::from(app.packets.focused.is_some())
    } else {
        app.packets.selected.len()
    };
    let s = &app.library.save;
    rsx! {
        div { class: "panel", id: "save-form",
            h2 { "Save {n} packet(s) to the library" }
            div { class: "row",
                input { id: "save-name", placeholder: "name", value: "{s.name}", "data-value": "{s.name}", oninput: move |e: FormEvent| d.call(LibraryMsg::SetSaveName(e.value())) }
                input { id: "save-tags", placeholder: "tags, comma separated", value: "{s.tags}", "data-value": "{s.tags}", oninput: move |e: FormEvent| d.call(LibraryMsg::SetSaveTags(e.value())) }
            }
            div { class: "row", style: "margin-top:4px",
                input { id: "save-description", style: "flex:1", placeholder: "description", value: "{s.description}", "data-value": "{s.description}",
                    oninput: move |e: FormEvent| d.call(LibraryMsg::SetSaveDescription(e.value())) }
                button { id: "save-library", class: "primary", disabled: n == 0, onclick: move |_| d.call(LibraryMsg::SaveSelected), "Save" }
            }
        }
    }
}

fn capture_tab(app: &App, d: D) -> Element {
    rsx! {
        div { class: "panel",
            div { class: "row",
                if app.capture.running {
                    button { id: "stop-capture", class: "danger", onclick: move |_| d.call(CaptureMsg::Stop), "Stop capture" }
                } else {
                    button { id: "goto-processes", class: "primary", onclick: move |_| d.call(AppMsg::SetTab(Tab::Processes)), "Start a capture…" }
                }
                button { id: "clear-buffer", onclick: move |_| d.call(PacketsMsg::Clear), "Clear buffer" }
                label { input { id: "autoscroll", r#type: "checkbox", checked: app.packets.autoscroll, onchange: move |_| d.call(PacketsMsg::ToggleAutoscroll) } " auto-scroll" }
                input { id: "display-filter", style: "flex:1; min-width: 260px", class: if app.packets.filter_error.is_some() { "bad" } else { "" },
                    placeholder: "display filter: tcp udp in out blocked port:80 10.0.0.0/8 pid:123 text…", value: "{app.packets.filter_text}", "data-value": "{app.packets.filter_text}",
                    oninput: move |e: FormEvent| d.call(PacketsMsg::SetFilter(e.value())) }
                button { onclick: move |_| d.call(PacketsMsg::SelectAllShown), "Select all shown" }
            }
            if let Some(e) = &app.packets.filter_error { div { class: "err", "{e}" } }
            div { class: "row", style: "margin-top:8px; justify-content: space-between",
                {counters(app)}
                {chart(app)}
            }
            {tls_coverage(app)}
        }
        div { class: "grid",
            div { {packet_list(app, d)} }
            div {
                {detail(app, d)}
                {editor(app, d)}
                {resend(app, d)}
                {save_form(app, d)}
                {downloads(app)}
            }
        }
    }
}

fn filters_tab(app: &App, d: D) -> Element {
    let f = &app.rules.form;
    let sel = |v: &str, cur: &str| v == cur;
    rsx! {
        div { class: "panel",
            h2 { "Add a rule (applies to the captured processes; the first enabled match decides)" }
            div { class: "row",
                select { id: "rule-action", "data-value": if f.action == RuleAction::Allow { "allow" } else { "block" }, onchange: move |e: FormEvent| d.call(RulesMsg::SetAction(if e.value() == "allow" { RuleAction::Allow } else { RuleAction::Block })),
                    option { value: "block", selected: f.action == RuleAction::Block, "block" }
                    option { value: "allow", selected: f.action == RuleAction::Allow, "allow" } }
                select { id: "rule-protocol", "data-value": "{f.protocol}", onchange: move |e: FormEvent| d.call(RulesMsg::SetProtocol(e.value())),
                    for p in ["any", "tcp", "udp"] { option { value: "{p}", selected: sel(p, &f.protocol), "{p}" } } }
                input { id: "rule-port", size: "6", placeholder: "port", value: "{f.port}", "data-value": "{f.port}", oninput: move |e: FormEvent| d.call(RulesMsg::SetPort(e.value())) }
                input { id: "rule-address", placeholder: "remote IP or CIDR", value: "{f.address}", "data-value": "{f.address}", oninput: move |e: FormEvent| d.call(RulesMsg::SetAddress(e.value())) }
                select { id: "rule-direction", "data-value": "{f.direction}", onchange: move |e: FormEvent| d.call(RulesMsg::SetDirection(e.value())),
                    for p in ["both", "in", "out"] { option { value: "{p}", selected: sel(p, &f.direction), "{p}" } } }
                button { id: "rule-add", class: "primary", onclick: move |_| d.call(RulesMsg::Add), "Add rule" }
                button { id: "rule-clear", class: "danger", disabled: app.rules.filters.is_empty(), onclick: move |_| d.call(RulesMsg::Clear), "Clear all" }
            }
            if let Some(e) = &f.error { div { class: "err", id: "rule-error", "{e}" } }
        }
        div { class: "panel", id: "rules",
            h2 { "Rules ({app.rules.filters.len()})" }
            if app.rules.filters.is_empty() { p { class: "muted", "No rules: every packet passes." } }
            for r in app.rules.filters.iter() {
                {
                    let (id, en) = (r.id, r.rule.enabled);
                    let class = if !en { "tag disabled" } else if r.rule.action == RuleAction::Block { "tag block" } else { "tag allow" };
                    rsx! {
                        span { key: "{id}", class: "{class}", "data-rule": "{r.spec}",
                            "#{r.index} {r.spec}"
                            b { title: "hits", "{r.hits} hits" }
                            button { title: if en { "disable" } else { "enable" }, onclick: move |_| d.call(RulesMsg::SetEnabled(id, !en)), if en { "off" } else { "on" } }
                            button { title: "remove", onclick: move |_| d.call(RulesMsg::Remove(id)), "✕" }
                        }
                    }
                }
            }
        }
    }
}

fn downloads(app: &App) -> Element {
    rsx! {
        if !app.library.downloads.is_empty() {
            div { class: "panel", id: "downloads",
                h2 { "Downloads" }
                for dl in app.library.downloads.iter() {
                    div { a { class: "download", href: "{dl.url}", download: "{dl.name}", "⬇ {dl.name}" } }
                }
            }
        }
    }
}

fn library_tab(app: &App, d: D) -> Element {
    let l = &app.library;
    rsx! {
        div { class: "panel",
            h2 { "Packet library" }
            div { class: "row",
                input { id: "lib-search", style: "flex:1", placeholder: "full-text search: name, description, tags, payload text", value: "{l.query}", "data-value": "{l.query}",
                    oninput: move |e: FormEvent| d.call(LibraryMsg::SetQuery(e.value())) }
                button { id: "lib-export", onclick: move |_| d.call(LibraryMsg::ExportDpp),
                    if l.checked.is_empty() { "Export all to .dpp" } else { "Export {l.checked.len()} to .dpp" } }
                button { class: "danger", disabled: l.checked.is_empty(), onclick: { let ids: Vec<i64> = l.checked.iter().copied().collect(); move |_| d.call(LibraryMsg::Delete(ids.clone())) }, "Delete checked" }
                span { "Import .dpp: " }
                span { dangerous_inner_html: r#"<input id="lib-import" type="file" accept=".dpp" onchange="pidcapUpload(this)">"# }
            }
            div { style: "margin-top:6px",
                for t in l.tags.iter() {
                    span { key: "{t.name}", class: if l.tag.as_deref() == Some(t.name.as_str()) { "chip on" } else { "chip" },
                        onclick: { let n = t.name.clone(); move |_| d.call(LibraryMsg::SetTag(Some(n.clone()))) },
                        "{t.name} ({t.count})" }
                }
            }
        }
        div { class: "grid",
            div { class: "panel", id: "lib-list", "data-query": l.listed.clone().unwrap_or_default(),
                table {
                    thead { tr { th {} th { "name" } th { "tags" } th { "proto" } th { "remote" } th { "bytes" } th { "saved from" } } }
                    tbody {
                        for it in l.items.iter() {
                            tr { key: "{it.id}", class: "lib-item", "data-lib-id": "{it.id}",
                                td { input { r#type: "checkbox", checked: l.checked.contains(&it.id),
                                    onchange: { let id = it.id; move |_| d.call(LibraryMsg::ToggleChecked(id)) } } }
                                td { a { href: "#", onclick: { let id = it.id; move |e: MouseEvent| { e.prevent_default(); d.call(LibraryMsg::Open(id)) } }, "{it.name}" } }
                                td { for t in it.tags.iter() { span { class: "chip", "{t}" } } }
                                if let Some(t) = it.packet.tls {
                                    td { span { class: "badge tls", title: "a TLS plaintext record: taken from the TLS library, not the wire", "TLS {t.library}" } }
                                } else {
                                    td { "{it.packet.decoded.protocol}" }
                                }
                                td { {endpoint(it.packet.decoded.remote_addr, it.packet.decoded.remote_port)} }
                                td { "{it.packet.data.len()}" }
                                td { class: "muted", "{it.packet.pid}/{it.packet.comm}" }
                            }
                        }
                    }
                }
                if l.listed.is_some() && l.items.is_empty() { p { class: "muted", "Nothing here yet: select packets on the Capture tab and save them." } }
            }
            div {
                if let Some(e) = &l.open {
                    div { class: "panel", id: "lib-edit",
                        h2 { "Library entry #{e.id}" }
                        div { class: "row", input { id: "lib-edit-name", value: "{e.name}", "data-value": "{e.name}", oninput: move |ev: FormEvent| d.call(LibraryMsg::SetEditName(ev.value())) } }
                        div { class: "row", style: "margin-top:4px", input { id: "lib-edit-tags", style: "flex:1", value: "{e.tags}", "data-value": "{e.tags}", oninput: move |ev: FormEvent| d.call(LibraryMsg::SetEditTags(ev.value())) } }
                        div { class: "row", style: "margin-top:4px",
                            textarea { id: "lib-edit-description", style: "flex:1", value: "{e.description}", "data-value": "{e.description}", oninput: move |ev: FormEvent| d.call(LibraryMsg::SetEditDescription(ev.value())) } }
                        {match e.packet.tls {
                            Some(t) => hex_view(e.packet.payload(), plaintext_label(&e.packet, t.library)),
                            None => hex_view(&e.packet.data, packet_bytes_label(&e.packet)),
                        }}
                        div { class: "row", style: "margin-top:6px",
                            button { id: "lib-save-edit", class: "primary", onclick: move |_| d.call(LibraryMsg::SaveEdit), "Save changes" }
                            button { onclick: move |_| d.call(EditorMsg::OpenLibraryEntry), "Edit payload and resend…" }
                            button { class: "danger", onclick: { let id = e.id; move |_| d.call(LibraryMsg::Delete(vec![id])) }, "Delete" }
                            button { onclick: move |_| d.call(LibraryMsg::Close), "Close" }
                        }
                        div { class: "muted", {format!("payload: {}", format_hex(e.packet.payload()).replace('\n', " ").chars().take(200).collect::<String>())} }
                    }
                }
                {downloads(app)}
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
}
