//! The Filters tab: the kernel rules.

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
