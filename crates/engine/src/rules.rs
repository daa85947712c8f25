//! Filter rules: the model, the SPEC grammar (`tcp:443`, `in:udp:10.0.0.0/8:53`,
//! `[::1]:8080`, ...) and the translation to the kernel's `pidcap_rule`.
//!
//! Semantics (enforced in the kernel, on the target processes' packets and
//! on their connect()/sendmsg() calls):
//! - rules are ordered; the first *enabled* rule that matches decides;
//! - no match = allow;
//! - a rule matches when every field it sets matches: direction, protocol,
//!   port (on the side it names, or either side), remote address/CIDR;
//! - a blocked packet is dropped and still captured with verdict `blocked`;
//!   a blocked outgoing connect() or UDP send fails at once with EPERM.

pub use pidcap_packet::net::{parse_net, IpNet};
use std::fmt;
use std::str::FromStr;

/// The longest rule list the kernel layer holds (one bank of the double-buffered map).
pub const MAX_RULES: usize = 64;

/// How much of a SPEC (outside input) an error message quotes.
pub const QUOTE_CHARS: usize = 64;

/// The SPEC grammar, shown in `--help` and in every parse error.
pub const GRAMMAR: &str = "\
SPEC = PART[:PART]...  (each kind of part at most once, in any order)
  direction:  in | out | both                 (default both)
  protocol:   tcp | udp | any                 (default any)
  address:    IPv4 or IPv4/len, [IPv6] or [IPv6]/len   (the remote address; default any)
  port side:  local | remote                  (default: either side; needs a port)
  port:       0..65535                        (0 or absent = any)
  action:     block | allow                   (default: the option used, --block/--allow)
  state:      disabled                        (default enabled)
  `any` alone matches every packet.
examples: tcp:443  udp:53  10.0.0.0/8  [::1]:8080  out:tcp:80  in:udp:10.0.0.0/8:53  tcp:local:8080";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    #[default]
    Any,
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    In,
    Out,
    #[default]
    Both,
}

/// Which port of the flow a rule's port is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSide {
    /// The local or the remote port.
    #[default]
    Either,
    Local,
    Remote,
}

/// One filter rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub enabled: bool,
    pub action: Action,
    pub protocol: RuleProtocol,
    /// 0 = any port.
    pub port: u16,
    pub port_side: PortSide,
    /// The remote address or network; None = any.
    pub net: Option<IpNet>,
    pub direction: RuleDirection,
}

impl Rule {
    /// A rule that matches every packet.
    pub fn any(action: Action) -> Rule {
        Rule {
            enabled: true,
            action,
            protocol: RuleProtocol::Any,
            port: 0,
            port_side: PortSide::Either,
            net: None,
            direction: RuleDirection::Both,
        }
    }

    /// Parse a SPEC; `default_action` applies when the SPEC names none
    /// (`--block SPEC` passes Block, `--allow SPEC` Allow).
    pub fn parse_spec(spec: &str, default_action: Action) -> Result<Rule, RuleError> {
        parse(spec, default_action)
    }
}

/// `block:out:tcp:10.0.0.0/8:local:80` — the canonical SPEC, action first;
/// [`FromStr`] reads it back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.action {
            Action::Allow => "allow",
            Action::Block => "block",
        })?;
        if !self.enabled {
            f.write_str(":disabled")?;
        }
        f.write_str(":")?;
        f.write_str(&self.spec())
    }
}

impl Rule {
    /// The SPEC without action and state (`out:tcp:80`, `any`).
    pub fn spec(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match self.direction {
            RuleDirection::In => parts.push("in".into()),
            RuleDirection::Out => parts.push("out".into()),
            RuleDirection::Both => {}
        }
        match self.protocol {
            RuleProtocol::Tcp => parts.push("tcp".into()),
            RuleProtocol::Udp => parts.push("udp".into()),
            RuleProtocol::Any => {}
        }
        if let Some(n) = self.net {
            parts.push(n.to_string());
        }
        if self.port != 0 {
            match self.port_side {
                PortSide::Local => parts.push("local".into()),
                PortSide::Remote => parts.push("remote".into()),
                PortSide::Either => {}
            }
            parts.push(self.port.to_string());
        }
        if parts.is_empty() {
            "any".into()
        } else {
            parts.join(":")
        }
    }
}

/// Parses a SPEC; the action defaults to block.
impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Rule, RuleError> {
        parse(s, Action::Block)
    }
}

/// A malformed SPEC: which part is wrong and why; its Display shows the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub spec: String,
    pub part: Option<String>,
    pub reason: String,
}

impl RuleError {
    fn new(spec: &str, part: Option<&str>, reason: impl Into<String>) -> RuleError {
        RuleError { spec: spec.into(), part: part.map(Into::into), reason: reason.into() }
    }

    /// The message without the grammar: the SPEC quoted once (cut after
    /// [`QUOTE_CHARS`] characters), the bad part only when it is not the whole
    /// SPEC nor quoted by the reason.
    pub fn short(&self) -> String {
        use pidcap_packet::ascii::{cut_quotes, quote_cut};
        let spec = quote_cut(&self.spec, QUOTE_CHARS);
        let reason = cut_quotes(&self.reason, QUOTE_CHARS);
        match &self.part {
            Some(part) if part.as_str() != self.spec.trim() && !self.reason.contains(&format!("`{part}`")) => {
                format!("invalid rule {spec}: {} {reason}", quote_cut(part, QUOTE_CHARS))
            }
            _ => format!("invalid rule {spec}: {reason}"),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{GRAMMAR}", self.short())
    }
}

impl std::error::Error for RuleError {}

/// Split on ':' outside brackets.
fn split_parts(spec: &str) -> Result<Vec<&str>, RuleError> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(RuleError::new(spec, None, "has unbalanced brackets [ ]"));
        }
    }
    if depth != 0 {
        return Err(RuleError::new(spec, None, "has an unclosed `[`"));
    }
    parts.push(&spec[start..]);
    Ok(parts)
}

fn looks_like_address(p: &str) -> bool {
    p.starts_with('[') || p.contains('/') || p.contains('.')
}

fn parse(spec: &str, default_action: Action) -> Result<Rule, RuleError> {
    let trimmed = spec.trim();
    if trimmed.is_empty() {
        return Err(RuleError::new(spec, None, "is empty"));
    }
    let mut rule = Rule::any(default_action);
    let (mut dir, mut proto, mut net, mut side, mut port, mut action, mut state) =
        (false, false, false, false, false, false, false);
    let dup = |part: &str, what: &str| {
        RuleError::new(spec, Some(part), format!("is a second {what}; give each at most once"))
    };
    for part in split_parts(trimmed)? {
        let p = part.trim();
        let lower = p.to_ascii_lowercase();
        match lower.as_str() {
            "" => return Err(RuleError::new(spec, None, "has an empty part (two `:` in a row, or one at an end)")),
            "in" | "out" | "both" => {
                if std::mem::replace(&mut dir, true) {
                    return Err(dup(p, "direction"));
                }
                rule.direction = match lower.as_str() {
                    "in" => RuleDirection::In,
                    "out" => RuleDirection::Out,
                    _ => RuleDirection::Both,
                };
            }
            "tcp" | "udp" | "any" => {
                if std::mem::replace(&mut proto, true) {
                    return Err(dup(p, "protocol"));
                }
                rule.protocol = match lower.as_str() {
                    "tcp" => RuleProtocol::Tcp,
                    "udp" => RuleProtocol::Udp,
                    _ => RuleProtocol::Any,
                };
            }
            "local" | "remote" => {
                if std::mem::replace(&mut side, true) {
                    return Err(dup(p, "port side"));
                }
                rule.port_side = if lower == "local" { PortSide::Local } else { PortSide::Remote };
            }
            "block" | "allow" => {
                if std::mem::replace(&mut action, true) {
                    return Err(dup(p, "action"));
                }
                rule.action = if lower == "block" { Action::Block } else { Action::Allow };
            }
            "disabled" | "enabled" => {
                if std::mem::replace(&mut state, true) {
                    return Err(dup(p, "state"));
                }
                rule.enabled = lower == "enabled";
            }
            _ if p.bytes().all(|b| b.is_ascii_digit()) => {
                if std::mem::replace(&mut port, true) {
                    return Err(dup(p, "port"));
                }
                rule.port = p.parse::<u16>().map_err(|_| RuleError::new(spec, Some(p), "is not a port (0..=65535)"))?;
            }
            _ if looks_like_address(p) => {
                if std::mem::replace(&mut net, true) {
                    return Err(dup(p, "address"));
                }
                rule.net = Some(parse_net(p).map_err(|why| RuleError::new(spec, Some(p), why.after(p)))?);
            }
            _ => {
                return Err(RuleError::new(
                    spec,
                    Some(p),
                    "is not a direction, protocol, address, port side, port, action or state",
                ))
            }
        }
    }
    if side && rule.port == 0 {
        return Err(RuleError::new(spec, None, "names a port side (local/remote) but no port"));
    }
    if rule.port == 0 {
        rule.port_side = PortSide::Either;
    }
    Ok(rule)
}

/// Check a list before it goes to the kernel.
pub fn check_list(rules: &[Rule]) -> Result<(), crate::error::InvalidInput> {
    if rules.len() > MAX_RULES {
        return Err(crate::error::InvalidInput::TooManyRules(rules.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn r(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_issue_examples_parse() {
        let x = r("tcp:443");
        assert_eq!(
            (x.protocol, x.port, x.port_side, x.action),
            (RuleProtocol::Tcp, 443, PortSide::Either, Action::Block)
        );
        assert_eq!(r("udp:53").protocol, RuleProtocol::Udp);
        let x = r("10.0.0.0/8");
        assert_eq!(x.net.unwrap().to_string(), "10.0.0.0/8");
        let x = r("[::1]:8080");
        assert_eq!((x.net.unwrap().addr(), x.net.unwrap().prefix(), x.port), ("::1".parse().unwrap(), 128, 8080));
        assert_eq!(r("out:tcp:80").direction, RuleDirection::Out);
        let x = r("in:udp:10.0.0.0/8:53");
        assert_eq!((x.direction, x.protocol, x.port), (RuleDirection::In, RuleProtocol::Udp, 53));
        assert_eq!(r("tcp:local:8080").port_side, PortSide::Local);
        assert_eq!(Rule::parse_spec("tcp:443", Action::Allow).unwrap().action, Action::Allow);
        assert_eq!(r("any"), Rule::any(Action::Block));
        assert_eq!(r("[2001:db8::/32]"), r("[2001:db8::]/32"));
        // Host bits are cleared.
        assert_eq!(r("10.1.2.3/8").net.unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let cases = [
            ("", None, "is empty"),
            ("tcp:foo", Some("foo"), "is not a direction"),
            ("tcp:70000", Some("70000"), "is not a port"),
            ("tcp:udp", Some("udp"), "second protocol"),
            ("10.0.0.0/33", Some("10.0.0.0/33"), "prefix length `33`"),
            ("::1", None, ""),
            ("tcp:local", None, "no port"),
            ("[::1", None, "unclosed"),
            ("tcp::80", None, "empty part"),
            ("1.2.3:80", Some("1.2.3"), "not an IPv4 address"),
            ("[1.2.3.4]", Some("[1.2.3.4]"), "not an IPv6 address"),
        ];
        for (spec, part, why) in cases {
            let e = spec.parse::<Rule>().unwrap_err();
            if part.is_some() {
                assert_eq!(e.part.as_deref(), part, "{spec}: {e}");
            }
            assert!(e.short().contains(why), "{spec}: {}", e.short());
            assert!(e.to_string().contains("examples:"), "the grammar is shown");
        }
    }

    #[test]
    fn a_long_bad_spec_is_quoted_once_and_cut() {
        let spec = format!("tcp:{}", "9".repeat(10_000));
        let short = spec.parse::<Rule>().unwrap_err().short();
        assert!(short.len() < 300, "{} bytes: {short}", short.len());
        assert!(!short.contains(&"9".repeat(100)), "neither the SPEC nor its part is echoed whole: {short}");
        assert!(short.contains("(10004 bytes)"), "{short}");
    }

    /// A small deterministic generator (xorshift), so the property tests need no crate.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn rule(&mut self) -> Rule {
            let net = match self.below(3) {
                0 => None,
                1 => IpNet::new(IpAddr::V4(Ipv4Addr::from(self.next() as u32)), self.below(33) as u8),
                _ => IpNet::new(
                    IpAddr::V6(Ipv6Addr::from(u128::from(self.next()) << 64 | u128::from(self.next()))),
                    self.below(129) as u8,
                ),
            };
            let port = if self.below(3) == 0 { 0 } else { self.next() as u16 };
            Rule {
                enabled: self.below(4) != 0,
                action: if self.below(2) == 0 { Action::Allow } else { Action::Block },
                protocol: [RuleProtocol::Any, RuleProtocol::Tcp, RuleProtocol::Udp][self.below(3) as usize],
                port,
                port_side: if port == 0 {
                    PortSide::Either
                } else {
                    [PortSide::Either, PortSide::Local, PortSide::Remote][self.below(3) as usize]
                },
                net,
                direction: [RuleDirection::In, RuleDirection::Out, RuleDirection::Both][self.below(3) as usize],
            }
        }
    }

    #[test]
    fn display_round_trips_for_generated_rules() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let rule = g.rule();
            let text = rule.to_string();
            assert_eq!(text.parse::<Rule>().as_ref(), Ok(&rule), "{text}");
        }
    }

    #[test]
    fn arbitrary_strings_never_panic() {
        let alphabet: Vec<char> = "0123456789abcdeflnoprtuABx:./[]-+ \u{e9}".chars().collect();
        let words =
            ["tcp", "udp", "in", "out", "local", "remote", "any", "::", "[::1]", "10.0.0.0", "/", "65536", "block"];
        let mut g = Gen(12345);
        for _ in 0..50_000 {
            let mut s = String::new();
            for _ in 0..g.below(24) {
                if g.below(4) == 0 {
                    s.push_str(words[g.below(words.len() as u64) as usize]);
                } else {
                    s.push(alphabet[g.below(alphabet.len() as u64) as usize]);
                }
            }
            if let Ok(rule) = s.parse::<Rule>() {
                // Whatever parses displays to something that parses to the same rule.
                assert_eq!(rule.to_string().parse::<Rule>().unwrap(), rule, "{s}");
            }
        }
    }
}
