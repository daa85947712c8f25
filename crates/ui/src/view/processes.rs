//! The Processes tab: the process list (toggles, sortable columns, tree by
//! parent, auto-refresh) and which processes to capture.

use super::*;
use crate::state::SortKey;

/// Rows drawn at most.
const MAX_ROWS: usize = 500;

pub(super) fn processes_tab(app: &App, d: D) -> Element {
    let p = &app.processes;
    let rows = p.rows();
    let shown = rows.len().min(MAX_ROWS);
    let to_capture = p.to_capture();
    let hidden = p.hidden_selected();
    let capture_label = match to_capture.len() {
        0 => "Capture (tick a process)".to_string(),
        1 => format!("Capture 1 selected (pid {})", to_capture[0]),
        n => format!("Capture {n} selected"),
    };
    let head = |key: SortKey, name: &'static str| {
        let arrow = if p.sort != key {
            ""
        } else if p.descending {
            " ▼"
        } else {
            " ▲"
        };
        rsx! {
            th { class: "sortable", id: "proc-sort-{name.to_lowercase().replace(' ', \"-\")}", title: "sort by {name}",
                onclick: move |_| d.call(ProcessesMsg::SortBy(key)), "{name}{arrow}" }
        }
    };
    rsx! {
        div { class: "panel",
            h2 { "Capture a running process" }
            div { class: "row",
                input { id: "proc-search", placeholder: "search: name, pid, user, command line, port", value: "{p.query}", "data-value": "{p.query}",
                    oninput: move |e: FormEvent| d.call(ProcessesMsg::SetQuery(e.value())) }
                button { id: "refresh-procs", onclick: move |_| d.call(ProcessesMsg::Refresh), "Refresh" }
                label { input { id: "proc-auto-refresh", r#type: "checkbox", checked: p.auto_refresh, "data-value": "{p.auto_refresh}",
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetAutoRefresh(e.checked())) } " auto-refresh" }
                label { input { id: "proc-kernel", r#type: "checkbox", checked: p.show_kernel, "data-value": "{p.show_kernel}",
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetShowKernel(e.checked())) } " kernel threads" }
                label { input { id: "proc-sockets", r#type: "checkbox", checked: p.with_sockets, "data-value": "{p.with_sockets}",
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetWithSockets(e.checked())) } " with sockets only" }
                label { input { id: "proc-tree", r#type: "checkbox", checked: p.tree, "data-value": "{p.tree}",
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetTree(e.checked())) } " tree" }
                label { input { r#type: "checkbox", checked: p.follow_children,
                    onchange: move |e: FormEvent| d.call(ProcessesMsg::SetFollowChildren(e.checked())) } " also the processes they start" }
                button { id: "start-capture", class: "primary", disabled: to_capture.is_empty(),
                    "data-pids": to_capture.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "),
                    title: "captures exactly the ticked processes shown in the list",
                    onclick: move |_| d.call(CaptureMsg::Start),
                    "{capture_label}" }
                if app.capture.running {
                    button { id: "stop-capture", class: "danger", onclick: move |_| d.call(CaptureMsg::Stop), "Stop capture" }
                }
            }
            if hidden > 0 {
                div { class: "muted", id: "proc-hidden-ticked",
                    {format!("{hidden} ticked process{} hidden by the search or the toggles: not captured. ", if hidden == 1 { "" } else { "es" })}
                    a { href: "#", onclick: move |e: MouseEvent| { e.prevent_default(); d.call(ProcessesMsg::ClearSelection) }, "untick all" }
                }
            }
            div { class: "procs",
                table {
                    thead { tr {
                        th {}
                        {head(SortKey::Pid, "PID")}
                        {head(SortKey::Name, "Name")}
                        {head(SortKey::User, "User")}
                        {head(SortKey::Sockets, "Sockets")}
                        {head(SortKey::Ports, "Listening")}
                        {head(SortKey::Cmdline, "Command line")}
                    } }
                    tbody {
                        for r in rows.into_iter().take(MAX_ROWS) {
                            {
                                let q = r.proc;
                                let sel = p.is_selected(q);
                                let class = match (sel, q.kernel) {
                                    (true, _) => "sel",
                                    (false, true) => "kernel",
                                    _ => "",
                                };
                                let indent = format!("padding-left: {}px", 6 + r.depth * 14);
                                rsx! {
                                    tr { key: "{q.pid}-{q.start}", class: "{class}", "data-pid": "{q.pid}", "data-kernel": "{q.kernel}", "data-depth": "{r.depth}",
                                        onclick: { let pid = q.pid; move |_| d.call(ProcessesMsg::Toggle(pid)) },
                                        td { input { r#type: "checkbox", checked: sel } }
                                        td { "{q.pid}" }
                                        td { style: "{indent}", if r.depth > 0 { span { class: "muted", "└ " } } "{q.name}" if q.kernel { span { class: "muted", " [kernel]" } } }
                                        td { "{q.user}" }
                                        td { {q.sockets.map_or("?".to_string(), |s| s.to_string())} }
                                        td { class: "ports", {q.ports_text()} }
                                        td { class: "muted", {q.cmdline.chars().take(90).collect::<String>()} }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p { class: "muted", id: "proc-count",
                {format!("{shown} of {} processes shown{}.", p.list.len(),
                    if p.show_kernel { "" } else { " (kernel threads hidden)" })}
            }
        }
        div { class: "panel",
            h2 { "Or run a command and capture it, and what it starts, from its first packet" }
            div { class: "row",
                input { id: "run-command", style: "flex:1", placeholder: "curl -s http://127.0.0.1:8080/", value: "{p.run_command}", "data-value": "{p.run_command}",
                    oninput: move |e: FormEvent| d.call(ProcessesMsg::SetRunCommand(e.value())) }
                button { id: "run-capture", class: "primary", onclick: move |_| d.call(CaptureMsg::Run), "Run and capture" }
            }
        }
    }
}
