//! The Processes tab: the process list and which processes to capture.

use super::*;

pub(super) fn processes_tab(app: &App, d: D) -> Element {
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
