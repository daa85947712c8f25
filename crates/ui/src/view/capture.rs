//! The Capture tab: targets, counters, the chart, and where it all goes.

use super::*;

pub(super) fn counters(app: &App) -> Element {
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
pub(super) fn tls_coverage(app: &App) -> Element {
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

pub(super) fn chart(app: &App) -> Element {
    // Complete seconds only: the chart's points change once a second.
    let series = app.packets.rate.completed();
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

pub(super) fn capture_tab(app: &App, d: D) -> Element {
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
                {filter_input(app, d)}
                button { onclick: move |_| d.call(PacketsMsg::SelectAllShown), "Select all shown" }
            }
            {filter_error(app)}
            div { class: "row", style: "margin-top:8px; justify-content: space-between",
                {counters(app)}
                {chart(app)}
            }
            {tls_coverage(app)}
            {rules_in_force(app, d)}
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
