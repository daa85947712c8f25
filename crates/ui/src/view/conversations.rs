//! The Conversations tab (issue 14): the connections of the capture, one row
//! each (protocol, client and server, process, packets and bytes each way,
//! start, duration, TCP state), sorted by the column clicked; "Packets"
//! filters the packet list to one, "Follow" shows its stream below
//! ([`super::follow`]).

use super::follow::follow_pane;
use super::*;
use crate::state::conversations::process_label;
use crate::state::{Column, ConversationsMsg};
use pidcap_packet::stream::{Conversation, Stream};

/// Rows drawn at most (sorted first, so the ones that matter are in).
pub(super) const MAX_CONVERSATION_ROWS: usize = 500;

/// `12 ms`, `1.250 s`, `2 min 05 s`.
pub(super) fn fmt_duration(ns: u64) -> String {
    let ms = ns / 1_000_000;
    if ms < 1_000 {
        if ns < 1_000_000 {
            format!("{} µs", ns / 1_000)
        } else {
            format!("{ms} ms")
        }
    } else if ms < 60_000 {
        format!("{}.{:03} s", ms / 1_000, ms % 1_000)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms / 1_000) % 60)
    }
}

/// `TCP 10.0.0.1:40000 → 10.0.0.2:80`: client first (`#2` for a later use of the 5-tuple).
pub(super) fn conv_title(c: &Conversation) -> String {
    let again = if c.key.instance > 0 { format!(" #{}", c.key.instance + 1) } else { String::new() };
    format!("{} {} → {}{again}", c.key.protocol, c.client, c.server())
}

fn conversation_row(c: &Conversation, followed: bool, d: D) -> Element {
    let key = c.key;
    let (up, down) = c.flows(Stream::Wire);
    let (pup, pdown) = c.flows(Stream::Plaintext);
    let state = c.state().map_or_else(|| "—".to_string(), |s| s.to_string());
    let class = if followed { "conv sel" } else { "conv" };
    let plain = |n: u64| if c.has_plaintext() { format!(" +{n} TLS") } else { String::new() };
    rsx! {
        tr { key: "{key}", class: "{class}", "data-key": "{key}", "data-client": "{c.client}", "data-server": "{c.server()}",
            "data-client-packets": "{up.packets}", "data-client-bytes": "{up.bytes}",
            "data-server-packets": "{down.packets}", "data-server-bytes": "{down.bytes}",
            "data-records": "{c.record_ids.len()}",
            td { "{key.protocol}" if c.has_plaintext() { " " span { class: "badge tls", title: "has TLS plaintext records", "TLS" } } }
            td { "{c.client}" }
            td { "{c.server()}" }
            td { {process_label(c)} }
            td { class: "num", "{up.packets}" span { class: "muted", title: "TLS plaintext records", {plain(pup.packets)} } }
            td { class: "num", title: "bytes of IP packets (payload {up.payload})", "{up.bytes}" }
            td { class: "num", "{down.packets}" span { class: "muted", title: "TLS plaintext records", {plain(pdown.packets)} } }
            td { class: "num", title: "bytes of IP packets (payload {down.payload})", "{down.bytes}" }
            td { {fmt_time(c.first_ns)} }
            td { {fmt_duration(c.duration_ns())} }
            td { class: "state", "{state}" }
            td { class: "actions",
                button { class: "conv-packets", title: "filter the packet list to this conversation",
                    onclick: move |_| d.call(ConversationsMsg::Choose(key)), "Packets" }
                button { class: "conv-follow", title: "follow its stream",
                    onclick: move |_| d.call(ConversationsMsg::Follow(key)), "Follow" }
            }
        }
    }
}

pub(super) fn conversations_tab(app: &App, d: D) -> Element {
    let c = &app.conversations;
    let rows = c.sorted();
    let n = rows.len();
    let followed = c.follow.as_ref().map(|f| f.key);
    // The list is filtered to a conversation while its filter is the one typed.
    let chosen = c
        .chosen
        .as_ref()
        .filter(|(_, text)| *text == app.packets.filter_text)
        .and_then(|(key, text)| Some((conv_title(c.table.get(key)?), text)));
    rsx! {
        div { class: "panel", id: "conversations", "data-count": "{n}",
            h2 { "Conversations — {n}" }
            p { class: "muted",
                "The connections of the captured processes, counted as packets arrive (→ sent by the client, ← by the server; bytes of IP packets). "
                "Click a heading to sort. \"Packets\" filters the packet list to a conversation, \"Follow\" shows its stream."
            }
            if let Some((title, text)) = chosen {
                div { class: "row", id: "conv-chosen",
                    span { "The packet list shows {title} only: " code { "{text}" } }
                    button { onclick: move |_| d.call(AppMsg::SetTab(Tab::Capture)), "Show packets" }
                    button { id: "conv-clear-filter", onclick: move |_| d.call(PacketsMsg::SetFilter(String::new())), "Clear the filter" }
                }
            }
            div { class: "convs",
                table { id: "conv-list",
                    thead {
                        tr {
                            for col in Column::ALL {
                                th { id: "conv-sort-{col.name()}",
                                    class: if c.sort == col { "sorted" } else { "" },
                                    "data-order": if c.sort == col { if c.descending { "desc" } else { "asc" } } else { "" },
                                    title: "sort by {col.label()}",
                                    onclick: move |_| d.call(ConversationsMsg::SortBy(col)),
                                    "{col.label()}"
                                    if c.sort == col { if c.descending { " ▼" } else { " ▲" } }
                                }
                            }
                            th { "" }
                        }
                    }
                    tbody {
                        for conv in rows.iter().take(MAX_CONVERSATION_ROWS) {
                            {conversation_row(conv, followed == Some(conv.key), d)}
                        }
                    }
                }
                if n == 0 {
                    p { class: "muted", style: "padding:8px", "No conversations yet: start a capture on the Processes tab." }
                }
                if n > MAX_CONVERSATION_ROWS {
                    p { class: "muted", "{n - MAX_CONVERSATION_ROWS} more not drawn: sort to bring others to the top." }
                }
            }
        }
        {follow_pane(app, d)}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(fmt_duration(0), "0 µs");
        assert_eq!(fmt_duration(250_000), "250 µs");
        assert_eq!(fmt_duration(12_000_000), "12 ms");
        assert_eq!(fmt_duration(1_250_000_000), "1.250 s");
        assert_eq!(fmt_duration(125_000_000_000), "2 min 05 s");
    }
}
