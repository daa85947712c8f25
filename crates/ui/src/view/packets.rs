//! The packet list and a packet's detail (headers, process, hex view).

use super::*;

pub(super) fn packet_row(i: usize, p: &Arc<CapturedPacket>, selected: bool, d: D) -> Element {
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

pub(super) fn packet_list(app: &App, d: D) -> Element {
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

pub(super) fn detail(app: &App, d: D) -> Element {
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
pub(super) fn record_detail(p: &CapturedPacket, tls: pidcap_packet::TlsInfo, d: D) -> Element {
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
