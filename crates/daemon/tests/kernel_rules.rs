//! The kernel enforces the filter rules (real kernel, as root): block and
//! allow by port, address (IPv4 and IPv6 CIDR), protocol and direction,
//! first match wins, changes take effect without restarting the capture,
//! blocked packets are captured with verdict `blocked` and counted.

mod common;

use common::{NetNs, Outcome, Prober, Server};
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::rules::Rule;
use pidcap_engine::{Capture, CaptureOptions};
use pidcap_packet::{Direction, Verdict};
use std::time::Duration;

const PORT: u16 = 8080;

fn rules(specs: &[&str]) -> Vec<Rule> {
    specs.iter().map(|s| s.parse().unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn setup() -> (NetNs, Server, Prober, Prober, Capture) {
    let ns = NetNs::new("rules");
    let server = Server::start(&ns, PORT);
    let target = Prober::start(&ns);
    let other = Prober::start(&ns);
    let backend = EbpfBackend::load(LoadOptions::with_ring(1 << 20)).expect("load the kernel layer");
    let mut cap = Capture::new(Box::new(backend), CaptureOptions::default()).unwrap();
    cap.add_pid(target.pid()).unwrap();
    (ns, server, target, other, cap)
}

#[test]
fn a_port_block_refuses_the_target_at_once_and_removing_it_lets_it_through() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let (_ns, _server, mut target, mut other, mut cap) = setup();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok, "no rules yet");

    cap.set_rules(&rules(&["tcp:8080"])).unwrap();
    let o = target.try_("tcp4", PORT);
    assert!(o.is_eperm_at_once(), "the target is refused with EPERM at once: {o:?}");
    assert_eq!(other.try_("tcp4", PORT), Outcome::Ok, "an untargeted process reaches the same port");
    assert!(!target.try_("tcp4", PORT + 1).is_eperm_at_once(), "another port is not blocked");
    let s = cap.stats().unwrap();
    assert!(s.kernel.connect_blocked >= 1, "{s:?}");
    assert!(cap.rule_hits().unwrap()[0] >= 1);

    cap.set_rules(&[]).unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok, "through again, same capture");
}

#[test]
fn a_udp_send_block_is_an_error_to_the_sender() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let (_ns, _server, mut target, mut other, mut cap) = setup();
    assert_eq!(target.try_("udp4", PORT), Outcome::Ok);
    cap.set_rules(&rules(&["out:udp:8080"])).unwrap();
    let o = target.try_("udp4", PORT);
    assert!(o.is_eperm_at_once(), "{o:?}");
    assert_eq!(other.try_("udp4", PORT), Outcome::Ok);
}

#[test]
fn first_match_decides_allow_before_block_and_ipv6_cidrs() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let (_ns, _server, mut target, _other, mut cap) = setup();
    // allow [::1] first, then block the port: IPv6 passes, IPv4 is refused.
    cap.set_rules(&rules(&["allow:[::1]", "tcp:8080"])).unwrap();
    assert_eq!(target.try_("tcp6", PORT), Outcome::Ok);
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    // The other order: the block comes first and decides for both.
    cap.set_rules(&rules(&["tcp:8080", "allow:[::1]"])).unwrap();
    assert!(target.try_("tcp6", PORT).is_eperm_at_once());
    // An IPv6 CIDR block leaves IPv4 alone (IPv4 is ::ffff:a.b.c.d, outside ::/96).
    cap.set_rules(&rules(&["[::]/96"])).unwrap();
    assert!(target.try_("tcp6", PORT).is_eperm_at_once());
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    // IPv4 CIDR: 127.0.0.0/8 blocks, 10.0.0.0/8 does not.
    cap.set_rules(&rules(&["10.0.0.0/8", "allow:tcp"])).unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    assert_eq!(cap.rule_hits().unwrap()[0], 0);
    assert!(cap.rule_hits().unwrap()[1] >= 1, "the allow rule decided");
    cap.set_rules(&rules(&["127.0.0.0/8"])).unwrap();
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    // Disabled rules are skipped; direction `in` does not refuse a connect.
    cap.set_rules(&rules(&["disabled:tcp:8080", "in:tcp:remote:9999"])).unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    // 64 rules: only the last one matches.
    let mut many = rules(&["udp:1"; 63]);
    many.extend(rules(&["tcp:8080"]));
    cap.set_rules(&many).unwrap();
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    assert_eq!(cap.rule_hits().unwrap()[63], 1);
    assert!(cap.set_rules(&rules(&["udp:1"; 65])).is_err(), "65 rules are refused");
}

#[test]
fn blocked_packets_are_dropped_but_captured_with_the_verdict_and_rule() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let (_ns, _server, mut target, _other, mut cap) = setup();
    // Inbound UDP from the server is dropped: the echo never arrives.
    cap.set_rules(&rules(&["allow:out", "in:udp:127.0.0.1:8080"])).unwrap();
    let o = target.try_("udp4", PORT);
    assert!(matches!(o, Outcome::Err(_, _)), "the reply was dropped: {o:?}");
    let mut got = vec![];
    cap.poll(Duration::from_millis(50), &mut |p| got.push(p.clone())).unwrap();
    let out = got.iter().find(|p| p.direction == Direction::Outbound).expect("the request is captured");
    assert_eq!((out.verdict, out.rule), (Verdict::Pass, Some(0)));
    let inb = got.iter().find(|p| p.direction == Direction::Inbound).expect("the dropped reply is captured");
    assert_eq!((inb.verdict, inb.rule), (Verdict::Blocked, Some(1)));
    assert_eq!(inb.payload(), b"ping");
    let s = cap.stats().unwrap();
    assert!(s.kernel.blocked >= 1, "{s:?}");
}
