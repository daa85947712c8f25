//! The payload editor, the resend form and the save-to-library form.

use super::*;

pub(super) fn editor(app: &App, d: D) -> Element {
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

pub(super) fn resend(app: &App, d: D) -> Element {
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
    // -- resend that replays what you mean (issue 14) --
    let dest_default = crate::state::resend::default_destination(app).map(|a| a.to_string()).unwrap_or_default();
    let dest_hint =
        if dest_default.is_empty() { "ADDR:PORT".to_string() } else { format!("{dest_default} (server side)") };
    let reply = r.shown_reply().and_then(|s| s.reply.as_ref().map(|rep| (s.seq, rep)));
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
            if r.form.mode != Mode::Socket {
                div { class: "row", id: "resend-to-row",
                    label { title: "where to send: empty for the server side of the packet's conversation (for a packet the target received, its own address and port)",
                        "to " input { id: "resend-to", size: "22", placeholder: "{dest_hint}", value: "{r.form.to}", "data-value": "{r.form.to}", "data-default": "{dest_default}",
                            oninput: move |e: FormEvent| d.call(ResendMsg::SetTo(e.value())) } }
                    if r.form.mode == Mode::Connect && !r.form.tls {
                        label { title: "one connection for every send (default: a new connection per send, as a client makes one per request)",
                            input { id: "resend-keep", r#type: "checkbox", checked: r.form.keep_connection, "data-value": "{r.form.keep_connection}",
                                onchange: move |e: FormEvent| d.call(ResendMsg::SetKeepConnection(e.checked())) } " keep one connection" }
                    }
                }
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
                    div { key: "{s.seq}", class: if s.ok { "ok" } else { "err" }, "data-seq": "{s.seq}",
                        style: if s.reply.is_some() { "cursor:pointer" } else { "" },
                        title: if s.reply.is_some() { "show this reply below" } else { "" },
                        onclick: { let seq = s.seq; move |_| d.call(ResendMsg::ShowReply(seq)) },
                        "{s}"
                        // A TLS replay's decrypted reply as text, at a glance (whole in the reply view).
                        if let Some(text) = s.reply.as_ref().and_then(|r| r.text.as_deref()) {
                            pre { class: "reply", title: "the decrypted reply (escapes as in the editor)",
                                {text.chars().take(2000).collect::<String>()} }
                        }
                    }
                }
            }
            if let Some((seq, rep)) = reply {
                {reply_view(seq, rep)}
            }
        }
    }
}

/// Bytes of a reply drawn in the hex/ASCII view (the whole reply is in the state; 1 MiB of DOM would stall the page).
const REPLY_VIEW_BYTES: usize = 256 * 1024;

/// The reply of send `seq`, whole: its size, then a scrollable hex/ASCII dump
/// (a TLS replay's decrypted reply: that plaintext).
fn reply_view(seq: u64, rep: &pidcap_resend::ReplyInfo) -> Element {
    let data = match rep.text.as_deref() {
        Some(t) => pidcap_packet::ascii::unescape(t).unwrap_or_else(|_| rep.data()),
        None => rep.data(),
    };
    let shown = &data[..data.len().min(REPLY_VIEW_BYTES)];
    let what = if rep.tls.is_some() { "decrypted reply" } else { "reply" };
    let cut = match (rep.truncated, rep.bytes >= pidcap_resend::MAX_REPLY_BYTES) {
        (true, true) => " (cut at the 1 MiB a send reads)",
        (true, false) => " (an older send's: its first bytes kept)",
        _ => "",
    };
    let dump = pidcap_packet::hex_dump(shown);
    rsx! {
        div { id: "resend-reply", "data-seq": "{seq}", "data-bytes": "{data.len()}",
            h2 { "{what} to send #{seq}: {data.len()} bytes{cut}" }
            if shown.len() < data.len() {
                div { class: "muted", "the first {shown.len()} bytes shown; pidcap send --json gives them all" }
            }
            pre { id: "resend-reply-dump", class: "reply", style: "max-height:320px; overflow:auto; white-space:pre; word-break:normal",
                "{dump}" }
        }
    }
}

pub(super) fn save_form(app: &App, d: D) -> Element {
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
