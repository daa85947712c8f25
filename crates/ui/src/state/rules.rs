//! The Filters tab: the daemon's filter rules (its list is the truth: every
//! change goes to the daemon, whose answer replaces ours) and the add-rule
//! form, checked with the engine's SPEC parser before anything is sent.
//! Rules move up and down (the daemon has no move operation: the rule's copy
//! is added at its new place, then the rule removed; see
//! [`Effect::MoveFilter`]). When a capture ends with rules in the daemon,
//! they stay in force for the next capture: [`Rules::offer_clear`] asks
//! whether to clear them.

use super::{App, Effect};
use pidcap_api::protocol::FilterInfo;
use pidcap_engine::rules::{Action as RuleAction, Rule};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// The daemon's rules, in order.
    pub filters: Vec<FilterInfo>,
    pub form: RuleForm,
    // -- rules after the capture (issue 14) --
    /// A capture ended with these rules in the daemon: the UI says they are
    /// still in force and offers to clear them.
    pub offer_clear: bool,
    /// A move was sent and the daemon's list has not come back yet: further
    /// moves wait (one computed from the old list would name a removed rule).
    pub moving: bool,
}

/// The add-rule form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleForm {
    pub action: RuleAction,
    /// any | tcp | udp
    pub protocol: String,
    pub port: String,
    /// IP or CIDR; empty = any.
    pub address: String,
    /// both | in | out
    pub direction: String,
    /// Why the form's rule is refused (here or by the daemon).
    pub error: Option<String>,
}

impl Default for RuleForm {
    fn default() -> Self {
        RuleForm {
            action: RuleAction::Block,
            protocol: "any".into(),
            port: String::new(),
            address: String::new(),
            direction: "both".into(),
            error: None,
        }
    }
}

impl RuleForm {
    /// The SPEC the form describes (`block:out:tcp:10.0.0.0/8:443`), checked with the engine's parser.
    pub fn spec(&self) -> Result<String, String> {
        let mut parts = vec![match self.action {
            RuleAction::Block => "block".to_string(),
            RuleAction::Allow => "allow".to_string(),
        }];
        if self.direction != "both" {
            parts.push(self.direction.clone());
        }
        if self.protocol != "any" {
            parts.push(self.protocol.clone());
        }
        let addr = self.address.trim();
        if !addr.is_empty() {
            let v6 = addr.contains(':') && !addr.starts_with('[');
            parts.push(if v6 {
                match addr.split_once('/') {
                    Some((a, l)) => format!("[{a}]/{l}"),
                    None => format!("[{addr}]"),
                }
            } else {
                addr.to_string()
            });
        }
        let port = self.port.trim();
        if !port.is_empty() {
            let p: u16 = port.parse().map_err(|_| format!("the port `{port}` is not a number from 0 to 65535"))?;
            parts.push(p.to_string());
        }
        if parts.len() == 1 {
            parts.push("any".into());
        }
        let spec = parts.join(":");
        Rule::parse_spec(&spec, self.action).map_err(|e| e.short())?;
        Ok(spec)
    }
}

/// What happens on the Filters tab.
#[derive(Debug, Clone)]
pub enum RulesMsg {
    SetAction(RuleAction),
    SetProtocol(String),
    SetPort(String),
    SetAddress(String),
    SetDirection(String),
    /// Add the form's rule (when it parses).
    Add,
    /// The daemon's list after a change.
    Changed(Vec<FilterInfo>),
    SetEnabled(u64, bool),
    Remove(u64),
    Clear,
    // -- reorder, rules after the capture (issue 14) --
    /// Move a rule one place up (earlier: it decides before the others) or down.
    Move {
        id: u64,
        up: bool,
    },
    /// "Keep them": the end-of-capture offer is answered without clearing.
    KeepAfterCapture,
    /// "Clear them": the end-of-capture offer is taken.
    ClearAfterCapture,
}

pub(super) fn update(app: &mut App, msg: RulesMsg) -> Vec<Effect> {
    app.rules.update(msg)
}

impl Rules {
    /// The rules that decide (enabled), in order.
    pub fn in_force(&self) -> Vec<&FilterInfo> {
        self.filters.iter().filter(|f| f.rule.enabled).collect()
    }

    /// No rules left: nothing to offer.
    pub(super) fn forget_offer_when_empty(&mut self) {
        if self.filters.is_empty() {
            self.offer_clear = false;
        }
    }

    /// The effect moving rule `id` one place up or down (None at either end).
    fn move_effect(&self, id: u64, up: bool) -> Option<Effect> {
        let from = self.filters.iter().position(|f| f.id == id)?;
        let to = if up { from.checked_sub(1)? } else { from + 1 };
        if to >= self.filters.len() {
            return None;
        }
        let r = &self.filters[from];
        // Up: the copy goes before the rule above; down: after the rule below.
        let insert_at = if up { to } else { to + 1 };
        Some(Effect::MoveFilter { id, spec: r.spec.clone(), action: r.rule.action, enabled: r.rule.enabled, insert_at })
    }

    fn update(&mut self, msg: RulesMsg) -> Vec<Effect> {
        let f = &mut self.form;
        match msg {
            RulesMsg::SetAction(a) => f.action = a,
            RulesMsg::SetProtocol(p) => f.protocol = p,
            RulesMsg::SetPort(p) => f.port = p,
            RulesMsg::SetAddress(a) => f.address = a,
            RulesMsg::SetDirection(d) => f.direction = d,
            RulesMsg::Add => match f.spec() {
                Ok(spec) => {
                    f.error = None;
                    return vec![Effect::AddFilter { spec }];
                }
                Err(e) => f.error = Some(e),
            },
            RulesMsg::Changed(list) => {
                self.filters = list;
                self.moving = false;
                self.forget_offer_when_empty();
            }
            RulesMsg::SetEnabled(id, en) => return vec![Effect::SetFilterEnabled(id, en)],
            RulesMsg::Remove(id) => return vec![Effect::RemoveFilter(id)],
            RulesMsg::Clear => return vec![Effect::ClearFilters],
            RulesMsg::Move { id, up } => {
                if self.moving {
                    return Vec::new();
                }
                let fx: Vec<Effect> = self.move_effect(id, up).into_iter().collect();
                self.moving = !fx.is_empty();
                return fx;
            }
            RulesMsg::KeepAfterCapture => self.offer_clear = false,
            RulesMsg::ClearAfterCapture => {
                self.offer_clear = false;
                return vec![Effect::ClearFilters];
            }
        }
        Vec::new()
    }
}
