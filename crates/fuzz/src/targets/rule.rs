//! Rule specs (`pidcap_engine::rules::Rule`: `FromStr`, `parse_spec`) and the
//! CIDRs inside them (`pidcap_packet::net::parse_net`, `parse_net_lenient`):
//! a rule's `Display` parses back to the same rule, its `spec()` with its
//! action to the same rule (enabled), a CIDR's `Display` to the same network;
//! errors stay in proportion to the spec.

use super::{outcome, text, text_shape};
use pidcap_engine::rules::{Action, Rule};
use pidcap_packet::net::{parse_net, parse_net_lenient, IpNet};

pub fn run(data: &[u8]) -> u64 {
    let Some(s) = text(data) else { return 0 };
    let as_block = check_rule(s, Action::Block);
    let as_allow = check_rule(s, Action::Allow);
    let nets = [check_net(s, parse_net(s).ok()), check_net(s, parse_net_lenient(s).ok())];
    // Each whole part of a spec, as the rule parser sees it, on its own.
    for part in s.split(':').take(64) {
        check_net(part, parse_net(part).ok());
    }
    outcome(&[as_block, as_allow, nets[0], nets[1]])
}

fn check_rule(s: &str, default: Action) -> u64 {
    match Rule::parse_spec(s, default) {
        Ok(rule) => {
            let shown = rule.to_string();
            let back: Rule = shown.parse().unwrap_or_else(|e| panic!("{shown:?} (the Display of {s:?}) fails: {e}"));
            assert_eq!(back, rule, "{s:?} shows as {shown:?}, which parses to another rule");
            let spec = rule.spec();
            let plain = Rule::parse_spec(&spec, rule.action).unwrap_or_else(|e| panic!("spec {spec:?}: {e}"));
            assert_eq!(plain, Rule { enabled: true, ..rule }, "spec {spec:?} of {s:?}");
            if rule.port == 0 {
                assert_eq!(rule.port_side, Default::default(), "a port side without a port: {s:?}");
            }
            outcome(&[1, rule.action as u64, rule.protocol as u64, rule.direction as u64, rule.net.is_some() as u64])
        }
        Err(e) => {
            let (short, long) = (e.short(), e.to_string());
            assert!(long.starts_with(&short), "the message starts with its short form");
            // The spec is quoted in the message, and its bad part; nothing grows faster.
            assert!(short.len() <= 4 * s.len() + 512, "a {}-byte spec gives a {}-byte message", s.len(), short.len());
            outcome(&[2, text_shape(&e.reason)])
        }
    }
}

fn check_net(s: &str, net: Option<IpNet>) -> u64 {
    let Some(n) = net else { return 0 };
    assert!(n.prefix() <= n.max_prefix(), "{s:?}: prefix {} of {}", n.prefix(), n.max_prefix());
    assert!(n.contains(n.addr()), "{s:?}: {n} does not contain its own address");
    let shown = n.to_string();
    assert_eq!(parse_net(&shown).ok(), Some(n), "{s:?} shows as {shown:?}, which parses to another network");
    assert_eq!(IpNet::new(n.addr(), n.prefix()), Some(n), "{s:?}: host bits are not cleared");
    outcome(&[n.addr().is_ipv4() as u64, u64::from(n.prefix())])
}

/// The SPEC grammar's words and the shapes of its addresses.
pub const DICTIONARY: &[&[u8]] = &[
    b"in",
    b"out",
    b"both",
    b"tcp",
    b"udp",
    b"any",
    b"local",
    b"remote",
    b"block",
    b"allow",
    b"disabled",
    b"enabled",
    b":",
    b"[",
    b"]",
    b"/",
    b".",
    b"::",
    b"[::1]",
    b"[::ffff:1.2.3.4]",
    b"[fe80::1%lo]",
    b"10.0.0.0/8",
    b"0.0.0.0/0",
    b"255.255.255.255/32",
    b"/128",
    b"/33",
    b"/+8",
    b"65535",
    b"65536",
    b"0",
    b"00000000000000000000443",
    b" ",
    b"\t",
    b"\xc3\xa9",
];
