//! Follow stream (issue 14): one conversation's payload put back together,
//! each message coloured by the side that sent it (client, server), as
//! ASCII, hex or both, gaps said with their size, TLS plaintext records
//! instead of the wire bytes when the connection has some (a toggle), and a
//! message sent to the payload editor. Also the bar above the Capture tab's
//! list that follows (or filters to) the conversation of the packet shown.

use super::conversations::conv_title;
use super::*;
use crate::state::{ConversationsMsg, Format};
use pidcap_packet::stream::{Chunk, Data, GapReason, Side, Stream};

/// Bytes drawn at most (the rest is said, not drawn: a bulk transfer would
/// make the page huge).
pub(super) const MAX_FOLLOW_BYTES: usize = 256 * 1024;
/// Chunks drawn at most (a conversation of many small messages).
pub(super) const MAX_FOLLOW_CHUNKS: usize = 1_000;

/// How many of `chunks` are drawn: up to [`MAX_FOLLOW_CHUNKS`], and none
/// after the one that spends the last of [`MAX_FOLLOW_BYTES`].
pub(super) fn chunks_drawn(chunks: &[Chunk]) -> usize {
    let mut budget = MAX_FOLLOW_BYTES;
    let mut n = 0;
    for c in chunks.iter().take(MAX_FOLLOW_CHUNKS) {
        if budget == 0 {
            break;
        }
        budget -= c.bytes().len().min(budget);
        n += 1;
    }
    n
}

/// Text as Follow shows it: printable ASCII, tabs and line ends as they are
/// (CRLF as one line end), every other byte as `.`.
pub(super) fn ascii_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' | b'\t' | 0x20..=0x7e => s.push(b as char),
            _ => s.push('.'),
        }
    }
    s
}

/// Offset (in the direction's stream), hex, and with `ascii` the bytes as
/// dots, 16 bytes a line.
pub(super) fn hex_lines(bytes: &[u8], offset: u64, ascii: bool) -> String {
    let mut s = String::new();
    for (n, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&format!("{:08x}  {:<47}", offset + n as u64 * 16, hex.join(" ")));
        if ascii {
            s.push_str("  ");
            s.push_str(&pidcap_packet::ascii::dots(line));
        }
        s.push('\n');
    }
    s
}

/// What a gap says: `[123 bytes not captured]`, `[6 bytes not captured: cut by the snap length]`.
pub(super) fn gap_text(len: u64, reason: GapReason) -> String {
    let bytes = if len == 1 { "byte" } else { "bytes" };
    match reason {
        GapReason::NotCaptured => format!("[{len} {bytes} not captured]"),
        GapReason::Truncated => format!("[{len} {bytes} not captured: cut by the snap length]"),
    }
}

/// `packet #4`, `packets #4, #5, #6`, `packets #4, #5 … #9 (6)`.
pub(super) fn packets_text(ids: &[u64]) -> String {
    match ids {
        [] => "no packet".into(),
        [one] => format!("packet #{one}"),
        [a, b] => format!("packets #{a}, #{b}"),
        [a, b, c] => format!("packets #{a}, #{b}, #{c}"),
        [a, b, .., z] => format!("packets #{a}, #{b} … #{z} ({})", ids.len()),
    }
}

fn chunk_view(i: usize, c: &Chunk, budget: &mut usize, format: Format, record: bool, endpoint: &str, d: D) -> Element {
    let side = c.from.as_str();
    let arrow = if c.from == Side::Client { "→" } else { "←" };
    let ids = c.packets.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
    match &c.data {
        Data::Gap { len, reason } => rsx! {
            div { key: "{i}", class: "chunk gap {side}", "data-side": "{side}", "data-gap": "{len}", "data-packets": "{ids}",
                "{arrow} " {gap_text(*len, *reason)}
            }
        },
        Data::Bytes(b) => {
            let shown = &b[..b.len().min(*budget)];
            *budget -= shown.len();
            let text = match format {
                Format::Ascii => ascii_text(shown),
                Format::Hex => hex_lines(shown, c.offset, false),
                Format::Both => hex_lines(shown, c.offset, true),
            };
            let what = if record { "bytes of plaintext" } else { "bytes" };
            let more = b.len() - shown.len();
            rsx! {
                div { key: "{i}", class: "chunk {side}", id: "follow-chunk-{i}", "data-side": "{side}", "data-len": "{b.len()}", "data-packets": "{ids}",
                    div { class: "chunkhead",
                        span { "{arrow} {side} {endpoint}: {b.len()} {what}, " {packets_text(&c.packets)} }
                        button { class: "to-editor", id: "follow-edit-{i}", title: "open this message in the payload editor (to edit and resend it)",
                            onclick: move |_| d.call(ConversationsMsg::ToEditor(i)), "To editor" }
                    }
                    pre { "{text}" }
                    if more > 0 { div { class: "muted", "… {more} more bytes not drawn" } }
                }
            }
        }
    }
}

pub(super) fn follow_pane(app: &App, d: D) -> Element {
    let Some(f) = &app.conversations.follow else {
        return rsx! {
            div { class: "panel", id: "follow-none", h2 { "Follow stream" }
                p { class: "muted", "Pick \"Follow\" on a conversation (or on the Capture tab, on a packet) to read its stream." } }
        };
    };
    let conv = app.conversations.table.get(&f.key);
    let has_plain = conv.is_some_and(|c| c.has_plaintext());
    let has_wire = conv.is_some_and(|c| !c.packet_ids.is_empty());
    let v = &f.view;
    let (cb, cg) = v.totals(Side::Client);
    let (sb, sg) = v.totals(Side::Server);
    let stream = if f.stream == Stream::Plaintext { "plaintext" } else { "wire" };
    let record = f.stream == Stream::Plaintext;
    let what = if record { "TLS plaintext" } else { "bytes" };
    let proto = f.key.protocol;
    let title = conv.map_or_else(|| f.key.to_string(), conv_title);
    let (client, server) = (v.client.to_string(), v.server.to_string());
    let gaps = |g: u64| if g > 0 { format!(", {g} not captured") } else { String::new() };
    let drawn = chunks_drawn(&v.chunks);
    let left = v.chunks.len() - drawn;
    let left_bytes: usize = v.chunks[drawn..].iter().map(|c| c.bytes().len()).sum();
    let mut budget = MAX_FOLLOW_BYTES;
    let formats =
        [(Format::Ascii, "ASCII", "ascii"), (Format::Hex, "Hex", "hex"), (Format::Both, "Hex + ASCII", "both")];
    rsx! {
        div { class: "panel", id: "follow", "data-key": "{f.key}", "data-stream": "{stream}", "data-chunks": "{v.chunks.len()}",
            h2 { "Follow {proto} stream — {title}" if record { " " span { class: "badge tls", "decrypted" } } }
            div { class: "row",
                span { class: "legend-side client", id: "follow-client", "→ client {client}: {cb} {what}{gaps(cg)}" }
                span { class: "legend-side server", id: "follow-server", "← server {server}: {sb} {what}{gaps(sg)}" }
            }
            div { class: "row", style: "margin-top:6px",
                if has_plain {
                    span { class: "toggle",
                        button { id: "follow-wire", class: if !record { "active" } else { "" }, disabled: !has_wire,
                            title: "the bytes that crossed the wire (encrypted)",
                            onclick: move |_| d.call(ConversationsMsg::SetStream(Stream::Wire)), "Wire bytes" }
                        button { id: "follow-plaintext", class: if record { "active" } else { "" },
                            title: "the TLS plaintext records taken from the TLS library",
                            onclick: move |_| d.call(ConversationsMsg::SetStream(Stream::Plaintext)), "TLS plaintext" }
                    }
                }
                span { class: "toggle",
                    for (fmt, label, name) in formats {
                        button { id: "follow-format-{name}", class: if f.format == fmt { "active" } else { "" },
                            onclick: move |_| d.call(ConversationsMsg::SetFormat(fmt)), "{label}" }
                    }
                }
                button { id: "follow-close", onclick: move |_| d.call(ConversationsMsg::CloseFollow), "Close" }
            }
            if record {
                p { class: "muted", "Plaintext the process handed to (or got from) its TLS library; on the wire these bytes were encrypted." }
            }
            if f.not_held > 0 {
                p { class: "muted", id: "follow-not-held", "{f.not_held} packets of this conversation are no longer held by the list (it keeps the newest {app.packets.capacity}): their bytes are not shown." }
            }
            if f.stale {
                p { class: "muted", "New packets: the stream is brought up to date every second." }
            }
            div { class: "stream", id: "follow-stream",
                for (i, c) in v.chunks.iter().take(drawn).enumerate() {
                    {chunk_view(i, c, &mut budget, f.format, record, if c.from == Side::Client { &client } else { &server }, d)}
                }
                if v.chunks.is_empty() {
                    p { class: "muted", "No payload in this conversation yet." }
                }
            }
            if left > 0 {
                p { class: "muted", id: "follow-not-drawn",
                    "{left} more messages ({left_bytes} bytes) not drawn: at most {MAX_FOLLOW_CHUNKS} messages and {MAX_FOLLOW_BYTES} bytes are." }
            }
        }
    }
}

/// Above the Capture tab's list: the conversation of the packet shown, to follow or filter to.
pub(super) fn follow_bar(app: &App, d: D) -> Element {
    let found = app.packets.focused_packet().and_then(|p| app.conversations.table.of(p).map(|c| (p.id, c)));
    rsx! {
        div { class: "follow-bar", id: "follow-bar",
            if let Some((id, c)) = found {
                span { "Packet #{id} is in " b { {conv_title(c)} } " ({c.packet_ids.len()} packets" if c.has_plaintext() { ", {c.record_ids.len()} TLS plaintext records" } ")" }
                button { id: "follow-focused", onclick: move |_| d.call(ConversationsMsg::FollowFocused), "Follow stream" }
                button { id: "filter-focused", title: "filter the packet list to this conversation",
                    onclick: move |_| d.call(ConversationsMsg::ChooseFocused), "Filter to its conversation" }
            } else {
                span { class: "muted", "Pick a packet to follow its stream or to filter the list to its conversation (all of them: the Conversations tab)." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_keeps_lines_and_dots_the_rest() {
        assert_eq!(ascii_text(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"), "GET / HTTP/1.0\nHost: x\n\n");
        assert_eq!(ascii_text(b"a\rb\x00\xff\tc"), "a.b..\tc");
    }

    #[test]
    fn hex_lines_count_offsets_in_the_stream() {
        let b: Vec<u8> = (0x41..0x41 + 18).collect();
        assert_eq!(
            hex_lines(&b, 32, true),
            "00000020  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  ABCDEFGHIJKLMNOP\n\
             00000030  51 52                                            QR\n"
        );
        assert_eq!(hex_lines(b"\x01", 0, false), format!("00000000  {:<47}\n", "01"));
    }

    #[test]
    fn a_long_stream_is_drawn_in_part() {
        use pidcap_packet::stream::Side;
        let chunk =
            |n: usize| Chunk { from: Side::Client, data: Data::Bytes(vec![b'x'; n]), packets: vec![1], offset: 0 };
        assert_eq!(chunks_drawn(&[chunk(10), chunk(10)]), 2);
        assert_eq!(chunks_drawn(&vec![chunk(1); MAX_FOLLOW_CHUNKS + 5]), MAX_FOLLOW_CHUNKS);
        // The chunk that spends the budget is drawn (cut), none after it.
        assert_eq!(chunks_drawn(&[chunk(10), chunk(MAX_FOLLOW_BYTES), chunk(1)]), 2);
        let gap = Chunk {
            from: Side::Server,
            data: Data::Gap { len: 5, reason: GapReason::NotCaptured },
            packets: vec![],
            offset: 0,
        };
        assert_eq!(chunks_drawn(&[gap.clone(), chunk(MAX_FOLLOW_BYTES), gap]), 2);
    }

    #[test]
    fn gaps_and_packets_say_what_they_are() {
        assert_eq!(gap_text(123, GapReason::NotCaptured), "[123 bytes not captured]");
        assert_eq!(gap_text(1, GapReason::Truncated), "[1 byte not captured: cut by the snap length]");
        assert_eq!(packets_text(&[]), "no packet");
        assert_eq!(packets_text(&[4]), "packet #4");
        assert_eq!(packets_text(&[4, 5, 6]), "packets #4, #5, #6");
        assert_eq!(packets_text(&[4, 5, 6, 9]), "packets #4, #5 … #9 (4)");
    }
}
