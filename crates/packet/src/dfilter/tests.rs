use super::*;
use crate::build::{build, TcpFields, Transport};
use crate::{ProcessMeta, TlsInfo, TlsRecord};
use std::sync::Arc;

fn record(library: TlsLibrary, plaintext: &[u8]) -> CapturedPacket {
    CapturedPacket::tls_record(TlsRecord {
        id: 2,
        timestamp_ns: 0,
        pid: 42,
        comm: "curl".into(),
        socket_cookie: 1,
        direction: Direction::Outbound,
        local: "127.0.0.1:5000".parse().unwrap(),
        remote: "10.1.2.3:443".parse().unwrap(),
        info: TlsInfo { tid: 42, library },
        plaintext,
        true_len: plaintext.len() as u64,
        stream_offset: 0,
    })
}

fn pkt(port: u16, payload: &[u8]) -> CapturedPacket {
    let (src, dst) = ("127.0.0.1:5000".parse().unwrap(), format!("10.1.2.3:{port}").parse().unwrap());
    let data = build(src, dst, 64, Transport::Udp, payload).unwrap();
    let len = data.len() as u32;
    CapturedPacket::new(1, 0, 42, "curl".into(), 1, Direction::Outbound, Verdict::Pass, len, data)
}

/// A TCP segment from 10.0.0.1:51284 to 10.0.0.2:80 (inbound: the target is the server).
fn tcp(flags: u8, payload: &[u8]) -> CapturedPacket {
    let (src, dst) = ("10.0.0.1:51284".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
    let t = TcpFields { seq: 1000, ack: 2000, flags, window: 512 };
    let data = build(src, dst, 64, Transport::Tcp(t), payload).unwrap();
    let len = data.len() as u32;
    let mut p = CapturedPacket::new(9, 0, 1234, "python3".into(), 5, Direction::Inbound, Verdict::Pass, len, data);
    p.tid = 1235;
    p.thread = "worker".into();
    p.process = Some(Arc::new(ProcessMeta {
        pid: 1234,
        comm: "python3".into(),
        exe: "/usr/bin/python3.11".into(),
        cmdline: vec!["python3".into(), "-m".into(), "http.server".into()],
        uid: 1000,
        user: "alice".into(),
        cgroup: "/user.slice/app.scope".into(),
        ..ProcessMeta::default()
    }));
    p
}

fn v6_udp() -> CapturedPacket {
    let (src, dst) = ("[fd00::1]:5353".parse().unwrap(), "[::1]:9999".parse().unwrap());
    let data = build(src, dst, 64, Transport::Udp, b"six").unwrap();
    let len = data.len() as u32;
    CapturedPacket::new(3, 0, 7, "avahi".into(), 1, Direction::Outbound, Verdict::Blocked, len, data)
}

fn m(f: &str, p: &CapturedPacket) -> bool {
    DisplayFilter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}")).matches(p)
}

fn e(f: &str) -> FilterError {
    DisplayFilter::parse(f).expect_err(f)
}

#[test]
fn tls_selects_plaintext_records_and_wire_the_packets() {
    let rec = record(TlsLibrary::Openssl, b"GET /secret HTTP/1.1\r\n");
    let gnutls = record(TlsLibrary::Gnutls, b"GET /other");
    let wire = pkt(443, b"\x17\x03\x03 tls ciphertext");
    for (f, want) in [
        ("tls", [true, true, false]),
        ("TLS", [true, true, false]),
        ("tls:openssl", [true, false, false]),
        ("tls:gnutls", [false, true, false]),
        ("tls:nss", [false, false, false]),
        ("wire", [false, false, true]),
        ("tls secret", [true, false, false]),
        ("tls tcp port:443 out", [true, true, false]),
        ("wire 443", [false, false, true]),
        // Quoted, the word is text again.
        ("\"tls\"", [false, false, true]),
        ("pidcap.tls == openssl", [true, false, false]),
        ("pidcap.tls", [true, true, false]),
        // A request line cut short is still taken for one.
        ("http && tls", [true, true, false]),
        ("http.request.uri == \"/secret\"", [true, false, false]),
    ] {
        let filter = DisplayFilter::parse(f).unwrap();
        assert_eq!([&rec, &gnutls, &wire].map(|p| filter.matches(p)), want, "{f}");
    }
    // TLS on the wire (over TCP) is `tls` too.
    let hello = tcp(0x18, &[22, 3, 1, 0, 4, 14, 0, 0, 0]);
    assert!(m("tls", &hello) && m("tls.record.content_type == 22", &hello) && !m("wire && !tls", &hello));
    assert!(m("tls.handshake.type == 14", &hello));
}

#[test]
fn terms_and_matching() {
    let p = pkt(53, b"Hello World");
    for (f, want) in [
        ("", true),
        ("   ", true),
        ("udp", true),
        ("tcp", false),
        ("out 53", true),
        ("in", false),
        ("port:5000", true),
        ("10.0.0.0/8", true),
        ("10.1.2.3", true),
        ("192.168.0.0/16", false),
        ("hello", true),
        ("\"lo wor\"", true),
        ("curl", true),
        ("pid:42 blocked", false),
        ("nothing-here", false),
        ("::1", false),
        ("[::]/0 udp", false),
        ("0.0.0.0/0 udp", true),
        // tcpdump's words.
        ("port 53", true),
        ("port 54", false),
        ("host 10.1.2.3", true),
        ("net 10.0.0.0/8 and udp", true),
    ] {
        assert_eq!(m(f, &p), want, "{f}");
    }
    assert!(DisplayFilter::parse("port:99999").is_err());
    assert!(e("tls:schannel").message.contains("openssl, gnutls or nss"));
    let err = e("10.0.0.0/99");
    assert!(err.message.contains("prefix length `99`"), "{err}");
}

#[test]
fn wireshark_fields_and_operators() {
    let syn = tcp(0x02, b"");
    let get = tcp(0x18, b"GET /index.html HTTP/1.1\r\nHost: example.org:8080\r\nUser-Agent: curl/8\r\n\r\n");
    let v6 = v6_udp();
    for (f, want) in [
        ("tcp.port == 80", [true, true, false]),
        ("tcp.port eq 51284", [true, true, false]),
        ("tcp.srcport == 51284 && tcp.dstport == 80", [true, true, false]),
        ("tcp.srcport == 80", [false, false, false]),
        ("tcp.port != 80", [false, false, false]),
        ("tcp.port != 443", [true, true, false]),
        ("tcp.port in {443 80}", [true, true, false]),
        ("tcp.port in {1..100}", [true, true, false]),
        ("tcp.port in {1..79, 81}", [false, false, false]),
        ("udp.port == 5353", [false, false, true]),
        ("udp.length == 11", [false, false, true]),
        ("ip.addr == 10.0.0.0/8", [true, true, false]),
        ("ip.src == 10.0.0.1", [true, true, false]),
        ("ip.dst == 10.0.0.1", [false, false, false]),
        ("ip.addr != 10.0.0.2", [false, false, false]),
        ("ipv6.addr == ::1", [false, false, true]),
        ("ipv6.src == fd00::/8", [false, false, true]),
        ("ipv6", [false, false, true]),
        ("ip", [true, true, false]),
        ("!ip", [false, false, true]),
        ("not ipv6", [true, true, false]),
        ("tcp.flags.syn == 1", [true, false, false]),
        ("tcp.flags.syn == true", [true, false, false]),
        ("tcp.flags.push == 1 and tcp.flags.ack == 1", [false, true, false]),
        ("tcp.flags.rst == 0", [true, true, false]),
        ("tcp.flags.syn", [true, true, false]),
        ("tcp.flags == 0x18", [false, true, false]),
        ("tcp.len > 0", [false, true, false]),
        ("tcp.len == 0", [true, false, false]),
        ("tcp.seq == 1000", [true, true, false]),
        ("tcp.ack == 2000", [false, true, false]),
        ("tcp.window_size_value == 512", [true, true, false]),
        ("frame.len > 100", [false, true, false]),
        ("frame.len <= 40", [true, false, false]),
        ("frame.len ge 40 and frame.len lt 41", [true, false, false]),
        ("ip.ttl == 64", [true, true, false]),
        ("ipv6.hlim == 64", [false, false, true]),
        ("http", [false, true, false]),
        ("http.request", [false, true, false]),
        ("http.request.method == \"GET\"", [false, true, false]),
        ("http.request.method == GET", [false, true, false]),
        ("http.request.method == get", [false, false, false]),
        ("http.request.uri contains \"index\"", [false, true, false]),
        ("http.host == \"example.org:8080\"", [false, true, false]),
        ("http.host contains example", [false, true, false]),
        ("http.user_agent contains \"curl\"", [false, true, false]),
        ("tcp.payload contains \"GET\"", [false, true, false]),
        ("tcp.payload contains 47:45:54", [false, true, false]),
        ("frame contains \"six\"", [false, false, true]),
        ("udp.payload contains \"si\"", [false, false, true]),
        ("pidcap.pid == 1234", [true, true, false]),
        ("pidcap.pid == 123", [false, false, false]),
        ("pidcap.comm == \"python3\"", [true, true, false]),
        ("pidcap.comm contains \"py\"", [true, true, false]),
        ("pidcap.tid == 1235 && pidcap.thread == worker", [true, true, false]),
        ("pidcap.exe == \"/usr/bin/python3.11\"", [true, true, false]),
        ("pidcap.cmdline contains \"http.server\"", [true, true, false]),
        ("pidcap.arg == \"-m\"", [true, true, false]),
        ("pidcap.user == alice && pidcap.uid == 1000", [true, true, false]),
        ("pidcap.cgroup contains \"app.scope\"", [true, true, false]),
        ("pidcap.container", [false, false, false]),
        ("pidcap.direction == in", [true, true, false]),
        ("pidcap.direction == \"outbound\"", [false, false, true]),
        ("pidcap.verdict == blocked", [false, false, true]),
        ("pidcap.cookie == 5", [true, true, false]),
        ("pidcap.rule", [false, false, false]),
        // Mixed with the short words, parentheses, precedence.
        ("in && tcp.port == 80", [true, true, false]),
        ("(tcp.flags.syn == 1 || udp) && !blocked", [true, false, false]),
        ("tcp.flags.syn == 1 || udp && !blocked", [true, false, false]),
        ("!(tcp || udp)", [false, false, false]),
        ("udp or tcp.len > 0", [false, true, true]),
        ("frame", [true, true, true]),
        ("index.html", [false, true, false]),
    ] {
        let filter = DisplayFilter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!([&syn, &get, &v6].map(|p| filter.matches(p)), want, "{f}");
    }
}

#[test]
fn application_fields() {
    let q = crate::info::dns::tests::query("example.com", 1);
    let dns = pkt(53, &q);
    let r = crate::info::dns::tests::response("example.com", &[[10, 0, 0, 7]]);
    let resp = pkt(53, &r);
    for (f, want) in [
        ("dns", [true, true]),
        ("dns.qry.name == \"example.com\"", [true, true]),
        ("dns.qry.name contains \"ample\"", [true, true]),
        ("dns.flags.response == 1", [false, true]),
        ("dns.a == 10.0.0.7", [false, true]),
        ("dns.id == 0x1234", [true, true]),
        ("dns.qry.type == 1 && dns.count.answers == 1", [false, true]),
        ("dns.resp.name == example.com", [false, true]),
    ] {
        let filter = DisplayFilter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!([&dns, &resp].map(|p| filter.matches(p)), want, "{f}");
    }
    let status = tcp(0x18, b"HTTP/1.0 404 Not Found\r\n\r\n");
    assert!(m("http.response.code == 404 && http.response", &status));
    assert!(m("http.response.phrase == \"Not Found\"", &status) && !m("http.request", &status));
    assert!(m("http.response.code >= 400", &status) && !m("http.response.code < 400", &status));
}

#[test]
fn errors_say_where() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("tcp.port == 99999", 12, 5, "99999 is too big for tcp.port (at most 65535)"),
        ("len>100", 0, 3, "`len` is not a field: did you mean frame.len?"),
        ("len > 100", 0, 3, "did you mean frame.len?"),
        ("port:99999", 0, 10, "a port is 0..65535"),
        ("99999", 0, 5, "a port is 0..65535"),
        ("tcp.port ==", 9, 2, "`==` needs a value after it"),
        ("tcp.port == && udp", 9, 2, "`==` needs a value after it"),
        ("(tcp", 0, 1, "this `(` is not closed"),
        ("tcp)", 3, 1, "this `)` has no `(` before it"),
        ("(tcp))", 5, 1, "this `)` has no `(` before it"),
        ("()", 0, 1, "empty parentheses"),
        ("tcp &&", 4, 2, "`&&` needs an expression after it"),
        ("&& tcp", 0, 2, "`&&` needs an expression before it"),
        ("tcp ||", 4, 2, "`||` needs an expression after it"),
        ("!", 0, 1, "`!` needs an expression after it"),
        ("== 80", 0, 2, "needs a field before it"),
        ("tcp.prt == 80", 0, 7, "did you mean tcp.port?"),
        ("tcp.prt", 0, 7, "did you mean tcp.port?"),
        ("tcp.port = 80", 9, 1, "`=` is not an operator: write =="),
        ("tcp & udp", 4, 1, "`&` is not an operator"),
        ("tcp.port == abc", 12, 3, "`abc` is not a number"),
        ("tcp.flags.syn == 2", 17, 1, "2 is too big for tcp.flags.syn (at most 1)"),
        ("ip.addr == 10.0.0.0/33", 11, 11, "prefix length `33`"),
        ("ip.addr == ::1", 11, 3, "ip.addr is an IPv4 field: for the IPv6 `::1` use ipv6.addr"),
        ("ipv6.addr == 10.0.0.1", 13, 8, "use ip.addr"),
        ("ip.addr > 10.0.0.1", 8, 1, "an address compares with == or !="),
        ("tcp.port contains 80", 9, 8, "`contains` needs a text field"),
        ("http.host matches \"x\"", 10, 7, "use `contains`"),
        ("\"open", 0, 1, "this quote is not closed"),
        ("tcp and \"a\\qb\"", 10, 2, "unknown escape"),
        ("pidcap.direction == sideways", 20, 8, "\"sideways\" is not in, out, inbound or outbound"),
        ("pidcap.verdict == maybe", 18, 5, "pass or blocked"),
        ("port foo", 5, 3, "`port` needs a port number"),
        ("tcp.port in {80", 12, 1, "this `{` is not closed"),
        ("tcp.port in {}", 13, 1, "an empty set"),
        ("eth.addr == 1", 0, 8, "there is no link layer"),
        ("pid == 3", 0, 3, "did you mean pidcap.pid?"),
        ("udp.port == 53 ) ", 15, 1, "this `)` has no `(` before it"),
        ("{", 0, 1, "belongs in a set"),
        // Positions count characters, not bytes.
        ("\"é\" && tcp.port == 70000", 19, 5, "too big"),
    ];
    for &(f, at, len, msg) in cases {
        let err = e(f);
        assert!(err.message.contains(msg), "{f}: {err:?}");
        assert_eq!((err.at, err.len), (at, len), "{f}: {err:?}");
    }
    assert_eq!(e("len>100").to_string(), "`len` is not a field: did you mean frame.len? (at 1)");
}

#[test]
fn parses_to_the_expected_tree() {
    let f = DisplayFilter::parse("tcp.port == 80 out || !udp").unwrap();
    let port = Field::named("tcp.port").unwrap();
    assert_eq!(
        f.expr,
        Some(Expr::Or(vec![
            Expr::And(vec![
                Expr::Test(Test::Cmp(port, Op::Eq, Value::Int(80))),
                Expr::Test(Test::Short(Term::Direction(Direction::Outbound))),
            ]),
            Expr::Not(Box::new(Expr::Test(Test::Short(Term::Protocol(Protocol::Udp))))),
        ]))
    );
    assert!(DisplayFilter::parse("").unwrap().is_empty());
    // Every field in the table is a field by its name, and the doc's aliases name real fields.
    for (name, ..) in FIELDS {
        assert_eq!(Field::named(name).map(Field::name), Some(*name));
    }
    for (_, to) in ALIASES {
        for f in to.split(" or ") {
            assert!(Field::named(f).is_some() || proto_named(f).is_some(), "{f}");
        }
    }
}

#[test]
fn quic_and_tls_hello_fields() {
    // The RFC 9001 A.2 client Initial in a UDP datagram to port 443.
    let hex = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc9001-a2-client-initial.hex"))
        .unwrap();
    let p = pkt(443, &crate::hex::parse(hex.trim()).unwrap());
    assert!(m("quic", &p));
    assert!(m("quic.long.packet_type == 0 && quic.version == 1 && quic.header_form == 1", &p));
    assert!(m("quic.dcid == 83:94:c8:f0:3e:51:57:08", &p));
    assert!(m("tls.handshake.extensions_server_name == \"example.com\"", &p));
    assert!(m("tls.handshake.extensions_alpn_str == alpn", &p));
    assert!(!m("tls", &p), "QUIC's TLS is not TLS records");
}

/// Matching is lazy: a filter on header fields decodes nothing again.
#[test]
fn short_filters_decode_nothing() {
    let p = tcp(0x02, b"");
    let c = Ctx::new(&p);
    let f = DisplayFilter::parse("tcp.port == 80 && tcp.flags.syn == 1 && frame.len < 100 && in").unwrap();
    assert!(eval(f.expr.as_ref().unwrap(), &c));
    assert!(c.headers.get().is_none() && c.app.get().is_none());
    // An application test on a packet that cannot carry it reads nothing either.
    let f = DisplayFilter::parse("http || dns || tls || quic").unwrap();
    assert!(!eval(f.expr.as_ref().unwrap(), &c));
    assert!(c.app.get().is_none());
    let get = tcp(0x18, b"GET / HTTP/1.1\r\n\r\n");
    let c = Ctx::new(&get);
    assert!(eval(f.expr.as_ref().unwrap(), &c));
    assert!(c.app.get().is_some());
}
