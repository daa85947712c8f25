//! The UI's display filter (`pidcap_ui::filter::DisplayFilter`, its public
//! API only: `parse`, `terms`, `matches`).
//!
//! Checked, for every filter that parses, on packets made to fit each term:
//! a packet with the term's protocol, direction, verdict, port, pid or text
//! matches it; an address term matches exactly the packets whose local or
//! remote address is in the network, as `pidcap_packet::net::IpNet`
//! computes it (two implementations of CIDR matching, compared); the empty
//! filter matches everything.

use super::{outcome, text, text_shape};
use pidcap_packet::build::{build, TcpFields, Transport};
use pidcap_packet::net::IpNet;
use pidcap_packet::{CapturedPacket, Direction, Protocol, Verdict};
use pidcap_ui::filter::{DisplayFilter, Term};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub fn run(data: &[u8]) -> u64 {
    let Some(s) = text(data) else { return 0 };
    let f = match DisplayFilter::parse(s) {
        Ok(f) => f,
        Err(e) => return outcome(&[1, text_shape(&e)]),
    };
    assert!(f.terms.len() <= s.split_whitespace().count() + s.matches('"').count(), "more terms than words");
    let seed = super::hash(data);
    let mut parts = vec![2];
    for t in &f.terms {
        let p = fitting(t, seed);
        let one = DisplayFilter { terms: vec![t.clone()] };
        if let Term::Net(net) = t {
            assert_eq!(IpNet::new(net.addr(), net.prefix()), Some(*net), "a parsed network has its host bits cleared");
            for q in [&p, &packet(seed.rotate_left(17), None, None, b"")] {
                let want = net.contains(q.decoded.local_addr) || net.contains(q.decoded.remote_addr);
                assert_eq!(one.matches(q), want, "{t:?} on {} and {}", q.decoded.local_addr, q.decoded.remote_addr);
            }
        } else {
            assert!(one.matches(&p), "{t:?} does not match a packet made for it");
        }
        parts.push(term_kind(t));
    }
    assert!(DisplayFilter::default().matches(&fitting(&Term::Pid(0), seed)));
    assert_eq!(DisplayFilter::parse("").ok(), Some(DisplayFilter::default()));
    outcome(&parts)
}

fn term_kind(t: &Term) -> u64 {
    match t {
        Term::Protocol(_) => 1,
        Term::Direction(_) => 2,
        Term::Verdict(_) => 3,
        Term::Port(_) => 4,
        Term::Pid(_) => 5,
        Term::Net(n) => 6 + n.addr().is_ipv4() as u64,
        Term::Text(_) => 8,
        Term::Tls(_) => 9,
        Term::Wire => 10,
    }
}

/// A UDP or TCP packet between addresses derived from `seed` (or given).
fn packet(seed: u64, local: Option<IpAddr>, proto: Option<Protocol>, payload: &[u8]) -> CapturedPacket {
    let v6 = local.map_or(seed & 1 == 1, |a| a.is_ipv6());
    let (a, b) = if v6 {
        let x = u128::from(seed) << 64 | u128::from(seed.rotate_left(7));
        (IpAddr::V6(Ipv6Addr::from(x)), IpAddr::V6(Ipv6Addr::from(!x)))
    } else {
        (IpAddr::V4(Ipv4Addr::from(seed as u32)), IpAddr::V4(Ipv4Addr::from((seed >> 32) as u32)))
    };
    let local = local.unwrap_or(a);
    let tcp = matches!(proto, Some(Protocol::Tcp)) || (proto.is_none() && seed & 2 == 2);
    let transport = if tcp { Transport::Tcp(TcpFields::default()) } else { Transport::Udp };
    let (src, dst) = (SocketAddr::new(local, (seed >> 8) as u16), SocketAddr::new(b, (seed >> 24) as u16));
    let data = build(src, dst, 64, transport, payload).expect("a small packet builds");
    let len = data.len() as u32;
    CapturedPacket::new(1, 0, 0, String::new(), 0, Direction::Outbound, Verdict::Pass, len, data)
}

/// A packet that term `t` must match.
fn fitting(t: &Term, seed: u64) -> CapturedPacket {
    match t {
        Term::Protocol(p @ (Protocol::Tcp | Protocol::Udp)) => packet(seed, None, Some(*p), b""),
        Term::Protocol(other) => {
            // Neither TCP nor UDP: an IP header with that protocol number and nothing after it.
            let v6 = matches!(other, Protocol::Icmpv6);
            let data = if v6 {
                let mut d = vec![0x60, 0, 0, 0, 0, 0, other.number(), 64];
                d.extend_from_slice(&[0; 32]);
                d
            } else {
                vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, other.number(), 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
            };
            let len = data.len() as u32;
            CapturedPacket::new(1, 0, 0, String::new(), 0, Direction::Outbound, Verdict::Pass, len, data)
        }
        Term::Direction(d) => CapturedPacket { direction: *d, ..packet(seed, None, None, b"") },
        Term::Verdict(v) => CapturedPacket { verdict: *v, ..packet(seed, None, None, b"") },
        Term::Port(port) => {
            let mut p = packet(seed, None, None, b"");
            p.decoded.remote_port = *port;
            p
        }
        Term::Pid(pid) => CapturedPacket { pid: *pid, ..packet(seed, None, None, b"") },
        Term::Net(n) => packet(seed, Some(n.addr()), None, b""),
        Term::Tls(library) => {
            let library = library.unwrap_or(pidcap_packet::TlsLibrary::Openssl);
            let tls = Some(pidcap_packet::TlsInfo { tid: 1, library });
            CapturedPacket { tls, ..packet(seed, None, Some(Protocol::Tcp), b"") }
        }
        Term::Wire => packet(seed, None, None, b""),
        Term::Text(text) => {
            // In the payload when it fits one packet, else in the process name.
            if text.len() < 60_000 {
                packet(seed, None, None, text.as_bytes())
            } else {
                CapturedPacket { comm: text.clone(), ..packet(seed, None, None, b"") }
            }
        }
    }
}

/// The filter's words and the shapes of its terms.
pub const DICTIONARY: &[&[u8]] = &[
    b"tcp",
    b"udp",
    b"icmp",
    b"icmpv6",
    b"in",
    b"out",
    b"blocked",
    b"pass",
    b"port:",
    b"pid:",
    b"\"",
    b" ",
    b"/",
    b"10.0.0.0/8",
    b"::1",
    b"[::1]",
    b"[fe80::]/10",
    b"/0",
    b"/32",
    b"/128",
    b"65535",
    b"4294967295",
    b"\xc4\xb0",
    b"\xe1\xba\x9e",
];
