//! The Library tab and its downloads. Times are local (the server's `TZ`
//! respected, as the CLI's); sizes are labelled: "packet B" is the packet's
//! bytes (IP header on), "payload B" the transport payload's (a TLS record's
//! plaintext).

use super::*;

/// `YYYY-MM-DD HH:MM:SS` in the local time zone.
pub(super) fn local_datetime(ns: u64) -> String {
    pidcap_packet::clock::date_time_secs(pidcap_packet::clock::local_wall_ns(ns))
}

pub(super) fn downloads(app: &App) -> Element {
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

pub(super) fn library_tab(app: &App, d: D) -> Element {
    let l = &app.library;
    rsx! {
        div { class: "panel",
            h2 { "Packet library" }
            div { class: "row",
                input { id: "lib-search", style: "flex:1", placeholder: "full-text search: name, description, tags, payload text (tag:x name:x hex:474554); Enter to see errors",
                    class: if l.shown_error().is_some() { "bad" } else { "" },
                    value: "{l.query}", "data-value": "{l.query}",
                    oninput: move |e: FormEvent| d.call(LibraryMsg::SetQuery(e.value())),
                    onkeydown: move |e: KeyboardEvent| if e.key() == Key::Enter { d.call(LibraryMsg::Submit) } }
                button { id: "lib-export", title: "every entry of the library, or the ticked ones", onclick: move |_| d.call(LibraryMsg::ExportDpp),
                    if l.checked.is_empty() { "Export all ({l.total}) to .dpp" } else { "Export {l.checked.len()} checked to .dpp" } }
                button { id: "lib-export-shown", title: "the entries the search shows", disabled: l.items.is_empty(), onclick: move |_| d.call(LibraryMsg::ExportShown),
                    "Export shown ({l.items.len()})" }
                button { class: "danger", disabled: l.checked.is_empty(), onclick: { let ids: Vec<i64> = l.checked.iter().copied().collect(); move |_| d.call(LibraryMsg::Delete(ids.clone())) }, "Delete checked" }
                span { "Import .dpp: " }
                span { dangerous_inner_html: r#"<input id="lib-import" type="file" accept=".dpp" onchange="pidcapUpload(this)">"# }
            }
            if let Some(e) = l.shown_error() { div { class: "err", id: "lib-search-error", "{e}" } }
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
                    thead { tr { th {} th { "name" } th { "tags" } th { "proto" } th { "remote" } th { title: "the whole IP packet on the wire, in bytes (the CLI: packet N B)", "packet B" } th { title: "the transport payload, in bytes (the CLI: payload N B)", "payload B" } th { "captured" } th { "saved" } th { "saved from" } } }
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
                                td { class: "len", "{it.packet.orig_len}" }
                                td { class: "payload", "{it.packet.decoded.payload_size}" }
                                td { class: "muted", {local_datetime(it.packet.timestamp_ns)} }
                                td { class: "muted", {local_datetime(it.saved_at_ns)} }
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
