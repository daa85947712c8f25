//! The Filters tab: the kernel rules (added, enabled, moved up and down,
//! removed); [`rules_in_force`] shows them on the Capture tab with their hits,
//! and, once a capture has ended, that they are still in force.

use super::*;

pub(super) fn filters_tab(app: &App, d: D) -> Element {
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
            for (i, r) in app.rules.filters.iter().enumerate() {
                {
                    let (id, en) = (r.id, r.rule.enabled);
                    let (first, last) = (i == 0, i + 1 == app.rules.filters.len());
                    let class = if !en { "tag disabled" } else if r.rule.action == RuleAction::Block { "tag block" } else { "tag allow" };
                    rsx! {
                        span { key: "{id}", class: "{class}", "data-rule": "{r.spec}",
                            "#{r.index} {r.spec}"
                            b { title: "hits", "{r.hits} hits" }
                            button { class: "rule-up", title: "move up: decide before the rule above (its hit count restarts)", disabled: first || app.rules.moving,
                                onclick: move |_| d.call(RulesMsg::Move { id, up: true }), "▲" }
                            button { class: "rule-down", title: "move down: decide after the rule below (its hit count restarts)", disabled: last || app.rules.moving,
                                onclick: move |_| d.call(RulesMsg::Move { id, up: false }), "▼" }
                            button { title: if en { "disable" } else { "enable" }, onclick: move |_| d.call(RulesMsg::SetEnabled(id, !en)), if en { "off" } else { "on" } }
                            button { title: "remove", onclick: move |_| d.call(RulesMsg::Remove(id)), "✕" }
                        }
                    }
                }
            }
        }
    }
}

/// After a capture (shown on every tab, under the header): the rules still
/// in force, with the offer to clear them.
pub(super) fn rules_after_capture(app: &App, d: D) -> Element {
    let rules = &app.rules;
    let n = rules.filters.len();
    rsx! {
        if rules.offer_clear {
            div { class: "rules-after", id: "rules-after-capture",
                span {
                    {format!("The capture has ended, but {n} rule{} stay{} in the daemon and will apply to the next capture's processes: ",
                        if n == 1 { "" } else { "s" }, if n == 1 { "s" } else { "" })}
                    for r in rules.filters.iter() {
                        span { key: "{r.id}", class: if r.rule.enabled { "rule-chip" } else { "rule-chip disabled" }, "#{r.index} {r.spec}" }
                    }
                }
                button { id: "rules-clear-after", class: "danger", onclick: move |_| d.call(RulesMsg::ClearAfterCapture), "Clear them" }
                button { id: "rules-keep-after", onclick: move |_| d.call(RulesMsg::KeepAfterCapture), "Keep them" }
            }
        }
    }
}

/// The rules on the Capture tab, each with its hits.
pub(super) fn rules_in_force(app: &App, d: D) -> Element {
    let rules = &app.rules;
    let on = rules.in_force();
    let n = rules.filters.len();
    rsx! {
        if n > 0 {
            div { class: "rules-strip", id: "capture-rules",
                span { class: "muted", {format!("Rules ({} of {n} enabled; the first match decides): ", on.len())} }
                for (r, class) in rules.filters.iter().map(|r| (r, chip_class(r))) {
                    span { key: "{r.id}", class: "{class}", "data-rule": "{r.spec}", "data-hits": "{r.hits}",
                        "#{r.index} {r.spec} · {r.hits} hits" }
                }
                a { href: "#", onclick: move |e: MouseEvent| { e.prevent_default(); d.call(AppMsg::SetTab(Tab::Filters)) }, "edit" }
            }
        }
    }
}

fn chip_class(r: &pidcap_api::protocol::FilterInfo) -> &'static str {
    if !r.rule.enabled {
        "rule-chip disabled"
    } else if r.rule.action == RuleAction::Block {
        "rule-chip block"
    } else {
        "rule-chip allow"
    }
}
