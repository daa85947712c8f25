//! The display filter (`pidcap_packet::dfilter::DisplayFilter`: Wireshark's
//! subset and pidcap's short words) on any text.
//!
//! Checked: parsing never panics and an error's position is inside the
//! text (in characters); for a filter that parses, matching never panics on
//! packets of every kind (TCP, UDP, IPv6, DNS, HTTP, TLS, a TLS plaintext
//! record, bytes that are not IP), `!(F)` matches exactly where `F` does
//! not, `(F) && (F)` where `F` does, `(F) || !(F)` everywhere; each pidcap
//! short word in it matches a packet made for it, and an address term
//! matches exactly the packets whose local or remote address is in the
//! network, as `pidcap_packet::net::IpNet` computes it (two CIDR
//! implementations compared); the empty filter matches everything.

use super::{outcome, text, text_shape};
use pidcap_packet::build::{build, TcpFields, Transport};
use pidcap_packet::dfilter::{DisplayFilter, Expr, Term, Test};
use pidcap_packet::net::IpNet;
use pidcap_packet::{CapturedPacket, Direction, Protocol, TlsInfo, TlsLibrary, TlsRecord, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub fn run(data: &[u8]) -> u64 {
    let Some(s) = text(data) else { return 0 };
    let chars = s.chars().count();
    let f = match DisplayFilter::parse(s) {
        Ok(f) => f,
        Err(e) => {
            assert!(e.at <= chars && e.len >= 1 && e.at + e.len <= chars + 1, "{e:?} outside {chars} characters");
            return outcome(&[1, text_shape(&e.message)]);
        }
    };
    let seed = super::hash(data);
    let packets = samples(seed);
    let mut parts = vec![2];
    if !s.trim().is_empty() {
        let not = DisplayFilter::parse(&format!("!({s})")).unwrap_or_else(|e| panic!("!({s}): {e}"));
        let both = DisplayFilter::parse(&format!("({s}) && ({s})")).unwrap_or_else(|e| panic!("({s}) && ({s}): {e}"));
        let all = DisplayFilter::parse(&format!("({s}) || !({s})")).unwrap_or_else(|e| panic!("{e}"));
        for p in &packets {
            let m = f.matches(p);
            parts.push(u64::from(m));
            assert_eq!(not.matches(p), !m, "!({s}) on {:?}", p.decoded);
            assert_eq!(both.matches(p), m, "({s}) && ({s})");
            assert!(all.matches(p), "({s}) || !({s})");
        }
    }
    let mut terms = Vec::new();
    if let Some(e) = &f.expr {
        short_terms(e, &mut terms);
    }
    for t in terms {
        let p = fitting(&t, seed);
        let one = DisplayFilter { expr: Some(Expr::Test(Test::Short(t.clone()))) };
        if let Term::Net(net) = &t {
            assert_eq!(IpNet::new(net.addr(), net.prefix()), Some(*net), "a parsed network has its host bits cleared");
            for q in [&p, &packet(seed.rotate_left(17), None, None, b"")] {
                let want = net.contains(q.decoded.local_addr) || net.contains(q.decoded.remote_addr);
                assert_eq!(one.matches(q), want, "{t:?} on {} and {}", q.decoded.local_addr, q.decoded.remote_addr);
            }
        } else {
            assert!(one.matches(&p), "{t:?} does not match a packet made for it");
        }
        parts.push(term_kind(&t));
    }
    assert!(DisplayFilter::default().matches(&fitting(&Term::Pid(0), seed)));
    assert_eq!(DisplayFilter::parse("").ok(), Some(DisplayFilter::default()));
    outcome(&parts)
}

fn short_terms(e: &Expr, out: &mut Vec<Term>) {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| short_terms(e, out)),
        Expr::Not(e) => short_terms(e, out),
        Expr::Test(Test::Short(t)) => out.push(t.clone()),
        Expr::Test(_) => {}
    }
}

fn term_kind(t: &Term) -> u64 {
    match t {
        Term::Protocol(_) => 11,
        Term::Direction(_) => 12,
        Term::Verdict(_) => 13,
        Term::Port(_) => 14,
        Term::Pid(_) => 15,
        Term::Net(n) => 16 + n.addr().is_ipv4() as u64,
        Term::Text(_) => 18,
        Term::Tls(_) => 19,
        Term::Wire => 20,
    }
}

/// Packets of every kind the filter reads.
fn samples(seed: u64) -> Vec<CapturedPacket> {
    let tcp = |port: u16, payload: &[u8]| {
        let t = TcpFields { seq: seed as u32, ack: (seed >> 32) as u32, flags: (seed >> 8) as u8, window: 512 };
        let (src, dst) = (SocketAddr::from(([10, 0, 0, 1], 40000)), SocketAddr::from(([10, 0, 0, 2], port)));
        let data = build(src, dst, 64, Transport::Tcp(t), payload).expect("a small packet builds");
        let len = data.len() as u32;
        CapturedPacket::new(1, 0, 7, "curl".into(), 1, Direction::Inbound, Verdict::Pass, len, data)
    };
    let dns = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
    let mut v = vec![
        packet(seed, None, Some(Protocol::Tcp), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        packet(seed.rotate_left(9), None, Some(Protocol::Udp), b"hello"),
        tcp(443, &[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]),
        tcp(80, b"HTTP/1.1 200 OK\r\n\r\n"),
        packet(seed, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), Some(Protocol::Udp), &dns),
        CapturedPacket::new(1, 0, 0, String::new(), 0, Direction::Outbound, Verdict::Blocked, 3, b"abc".to_vec()),
    ];
    let mut udp53 = packet(seed, None, Some(Protocol::Udp), &dns);
    udp53.decoded.remote_port = 53;
    v.push(udp53);
    v.push(CapturedPacket::tls_record(TlsRecord {
        id: 2,
        timestamp_ns: 0,
        pid: 42,
        comm: "curl".into(),
        socket_cookie: 1,
        direction: Direction::Outbound,
        local: "127.0.0.1:5000".parse().unwrap(),
        remote: "10.1.2.3:443".parse().unwrap(),
        info: TlsInfo { tid: 42, library: TlsLibrary::Nss },
        plaintext: b"GET /x HTTP/1.1\r\n\r\n",
        true_len: 19,
        stream_offset: 0,
    }));
    v
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
            let library = library.unwrap_or(TlsLibrary::Openssl);
            let tls = Some(TlsInfo { tid: 1, library });
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
    b"in",
    b"out",
    b"blocked",
    b"port:",
    b"pid:",
    b"tls:openssl",
    b"\"",
    b" ",
    b"10.0.0.0/8",
    b"::1",
    b"[fe80::]/10",
    b"65535",
    b"4294967295",
    b"\xc4\xb0",
    b"==",
    b"!=",
    b">=",
    b"<",
    b"&&",
    b"||",
    b"!",
    b"(",
    b")",
    b" and ",
    b" or ",
    b"not ",
    b" contains ",
    b" in {",
    b"}",
    b"..",
    b",",
    b"tcp.port",
    b"ip.addr",
    b"ipv6.addr",
    b"tcp.flags.syn",
    b"frame.len",
    b"frame",
    b"dns.qry.name",
    b"http.host",
    b"http.request.method",
    b"tls.handshake.extensions_server_name",
    b"quic.dcid",
    b"pidcap.pid",
    b"pidcap.direction",
    b"0x",
    b"47:45:54",
    b"\\x41",
    b"\\\"",
];
