use super::*;
use crate::build::{build, TcpFields, Transport};
use crate::{Direction, TlsInfo, TlsLibrary, TlsRecord, Verdict};
use etherparse::{PacketBuilder, TcpOptionElement};

fn packet(data: Vec<u8>, direction: Direction) -> CapturedPacket {
    let len = data.len() as u32;
    CapturedPacket::new(1, 0, 42, "curl".into(), 1, direction, Verdict::Pass, len, data)
}

fn syn() -> CapturedPacket {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(51284, 80, 1_000_000, 65495)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(65495),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(111, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut out, &[])
        .unwrap();
    packet(out, Direction::Outbound)
}

fn tcp(payload: &[u8]) -> CapturedPacket {
    let (src, dst) = ("10.0.0.1:51284".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
    let t = TcpFields { seq: 1000, ack: 2000, flags: 0x18, window: 512 };
    packet(build(src, dst, 64, Transport::Tcp(t), payload).unwrap(), Direction::Outbound)
}

fn udp(src: &str, dst: &str, payload: &[u8]) -> CapturedPacket {
    packet(build(src.parse().unwrap(), dst.parse().unwrap(), 64, Transport::Udp, payload).unwrap(), Direction::Outbound)
}

/// Every field's range is inside the data; returns the fields by name.
fn check(p: &CapturedPacket) -> Vec<Field> {
    let tree = dissect(p);
    for top in &tree {
        for f in top.walk() {
            assert!(f.range.start <= f.range.end && f.range.end <= p.data.len(), "{} {:?}", f.name, f.range);
        }
    }
    tree
}

fn bytes<'a>(p: &'a CapturedPacket, tree: &[Field], name: &str) -> &'a [u8] {
    let f = find(tree, name).unwrap_or_else(|| panic!("no {name} in {tree:#?}"));
    &p.data[f.range.clone()]
}

#[test]
fn tcp_header_flags_and_options_have_their_bytes() {
    let p = syn();
    let t = check(&p);
    assert_eq!(t.iter().map(|f| f.name).collect::<Vec<_>>(), ["ip", "tcp"]);
    assert_eq!(bytes(&p, &t, "tcp.srcport"), 51284u16.to_be_bytes());
    assert_eq!(bytes(&p, &t, "tcp.dstport"), 80u16.to_be_bytes());
    assert_eq!(bytes(&p, &t, "tcp.seq"), 1_000_000u32.to_be_bytes());
    assert_eq!(bytes(&p, &t, "ip.src"), [10, 0, 0, 1]);
    assert_eq!(bytes(&p, &t, "ip.dst"), [10, 0, 0, 2]);
    assert_eq!(bytes(&p, &t, "ip.ttl"), [64]);
    assert_eq!(find(&t, "tcp.srcport").unwrap().value, "51284");
    assert_eq!(find(&t, "ip.src").unwrap().value, "10.0.0.1");
    let tcp = &t[1];
    assert_eq!(tcp.label, "Transmission Control Protocol, Src Port: 51284, Dst Port: 80, Seq: 1000000, Len: 0");
    assert_eq!(tcp.range, 20..60);
    let flags = tcp.find("tcp.flags").unwrap();
    assert_eq!(flags.label, "Flags: 0x002 (SYN)");
    let syn = flags.find("tcp.flags.syn").unwrap();
    assert_eq!((syn.value.as_str(), &p.data[syn.range.clone()]), ("1", &[0x02][..]));
    assert_eq!(flags.find("tcp.flags.ack").unwrap().value, "0");
    let opts = tcp.find("tcp.options").unwrap();
    assert_eq!(opts.range, 40..60);
    let kinds: Vec<(&str, u8, usize)> =
        opts.children.iter().map(|o| (o.name, p.data[o.range.start], o.range.len())).collect();
    assert_eq!(
        kinds,
        [
            ("tcp.options.mss_val", 2, 4),
            ("tcp.options.sack_perm", 4, 2),
            ("tcp.options.timestamp.tsval", 8, 10),
            ("tcp.options.nop", 1, 1),
            ("tcp.options.wscale.shift", 3, 3),
        ]
    );
    assert_eq!(opts.children[0].value, "65495");
    assert_eq!(opts.children[4].label, "Window scale: 7 (multiply by 128)");
}

#[test]
fn http_request_lines_and_headers() {
    let p = tcp(b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nX-Other: 1\r\n\r\nbody");
    let t = check(&p);
    assert_eq!(t.last().unwrap().name, "http");
    assert_eq!(bytes(&p, &t, "http.request.method"), b"GET");
    assert_eq!(bytes(&p, &t, "http.request.uri"), b"/index.html");
    assert_eq!(bytes(&p, &t, "http.request.version"), b"HTTP/1.1");
    assert_eq!(bytes(&p, &t, "http.host"), b"Host: example.org\r\n");
    assert_eq!(find(&t, "http.host").unwrap().value, "example.org");
    assert_eq!(bytes(&p, &t, "http.request.line"), b"X-Other: 1\r\n");
    assert_eq!(bytes(&p, &t, "http.file_data"), b"body");
    assert_eq!(bytes(&p, &t, "tcp.payload").len(), p.payload().len());
    let s = tcp(b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n");
    let t = check(&s);
    assert_eq!(bytes(&s, &t, "http.response.code"), b"404");
    assert_eq!(find(&t, "http.response.phrase").unwrap().value, "Not Found");
}

#[test]
fn dns_questions_and_answers() {
    let q = crate::info::dns::tests::response("example.com", &[[10, 0, 0, 7]]);
    let p = udp("10.0.0.53:53", "10.0.0.1:40000", &q);
    let t = check(&p);
    assert_eq!(t.iter().map(|f| f.name).collect::<Vec<_>>(), ["ip", "udp", "dns"]);
    assert_eq!(bytes(&p, &t, "dns.id"), [0x12, 0x34]);
    let qry = find(&t, "dns.qry.name").unwrap();
    assert_eq!(qry.value, "example.com");
    assert_eq!(&p.data[qry.range.clone()], b"\x07example\x03com\x00\x00\x01\x00\x01");
    assert_eq!(bytes(&p, &t, "dns.qry.type"), [0, 1]);
    assert_eq!(bytes(&p, &t, "dns.a"), [10, 0, 0, 7]);
    assert_eq!(find(&t, "dns.a").unwrap().value, "10.0.0.7");
    assert_eq!(bytes(&p, &t, "dns.resp.ttl"), 3600u32.to_be_bytes());
    assert_eq!(bytes(&p, &t, "dns.resp.type"), [0, 1]);
    assert_eq!(find(&t, "dns.flags.response").unwrap().value, "1");
    assert_eq!(bytes(&p, &t, "udp.srcport"), 53u16.to_be_bytes());
}

#[test]
fn tls_client_hello_and_its_extensions() {
    // A ClientHello with server_name and ALPN (h2, http/1.1).
    let sni = b"example.org";
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&((sni.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((sni.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(sni);
    ext.extend_from_slice(&[0, 16, 0, 14, 0, 12, 2, b'h', b'2', 8]);
    ext.extend_from_slice(b"http/1.1");
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    let p = tcp(&rec);
    assert_eq!(crate::info::info(&p.data), "Client Hello (SNI=example.org, ALPN=h2,http/1.1)");
    let t = check(&p);
    assert_eq!(bytes(&p, &t, "tls.handshake.extensions_server_name"), sni);
    let alpn: Vec<&[u8]> = t
        .last()
        .unwrap()
        .walk()
        .into_iter()
        .filter(|f| f.name == "tls.handshake.extensions_alpn_str")
        .map(|f| &p.data[f.range.clone()])
        .collect();
    assert_eq!(alpn, [&b"h2"[..], b"http/1.1"]);
    assert_eq!(bytes(&p, &t, "tls.record.content_type"), [22]);
    assert_eq!(bytes(&p, &t, "tls.handshake.type"), [1]);
    assert_eq!(bytes(&p, &t, "tls.handshake.random"), [7; 32]);
    assert_eq!(bytes(&p, &t, "tls.handshake.ciphersuite"), [0, 2, 0x13, 0x01]);
    assert_eq!(find(&t, "tls.record").unwrap().label, "TLSv1.0 Record Layer: Handshake Protocol: Client Hello");
    // Cut anywhere: ranges stay inside, nothing panics.
    for n in 40..p.data.len() {
        let mut cut = p.clone();
        cut.data.truncate(n);
        check(&cut);
    }
}

#[test]
fn ipv6_icmp_and_not_ip() {
    let p = udp("[fd00::1]:5000", "[::1]:6000", b"six");
    let t = check(&p);
    assert_eq!(bytes(&p, &t, "ipv6.src"), "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    assert_eq!(bytes(&p, &t, "ipv6.hlim"), [64]);
    assert_eq!(bytes(&p, &t, "udp.payload"), b"six");
    assert_eq!(bytes(&p, &t, "udp.length"), 11u16.to_be_bytes());
    let mut out = Vec::new();
    PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).icmpv4_echo_request(7, 9).write(&mut out, b"ping").unwrap();
    let p = packet(out, Direction::Outbound);
    let t = check(&p);
    assert_eq!(t[1].name, "icmp");
    assert_eq!(find(&t, "icmp.type").unwrap().label, "Type: 8 (Echo (ping) request)");
    assert_eq!(bytes(&p, &t, "icmp.seq"), [0, 9]);
    assert_eq!(bytes(&p, &t, "data"), b"ping");
    let junk = packet(b"not ip at all".to_vec(), Direction::Inbound);
    let t = check(&junk);
    assert_eq!((t.len(), t[0].name, t[0].range.clone()), (1, "data", 0..13));
}

#[test]
fn a_tls_plaintext_record_is_its_record_layer_and_its_protocol() {
    let p = CapturedPacket::tls_record(TlsRecord {
        id: 2,
        timestamp_ns: 0,
        pid: 42,
        comm: "curl".into(),
        socket_cookie: 1,
        direction: Direction::Inbound,
        local: "127.0.0.1:5000".parse().unwrap(),
        remote: "10.1.2.3:443".parse().unwrap(),
        info: TlsInfo { tid: 43, library: TlsLibrary::Gnutls },
        plaintext: b"HTTP/1.1 200 OK\r\n\r\n",
        true_len: 19,
        stream_offset: 0,
    });
    let t = check(&p);
    assert_eq!(t.iter().map(|f| f.name).collect::<Vec<_>>(), ["pidcap.tls", "http"]);
    assert!(t[0].label.contains("10.1.2.3:443 → 127.0.0.1:5000"), "{}", t[0].label);
    assert_eq!(find(&t, "tcp.srcport").unwrap().value, "443");
    assert!(find(&t, "tcp.srcport").unwrap().range.is_empty(), "synthesized: no bytes");
    assert_eq!(bytes(&p, &t, "http.response.code"), b"200");
}

#[test]
fn quic_initial_header_fields() {
    let hex = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc9001-a2-client-initial.hex"))
        .unwrap();
    let p = udp("10.0.0.1:50000", "10.0.0.2:443", &crate::hex::parse(hex.trim()).unwrap());
    let t = check(&p);
    assert_eq!(t[2].name, "quic");
    assert_eq!(bytes(&p, &t, "quic.dcid"), [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]);
    assert_eq!(bytes(&p, &t, "quic.version"), [0, 0, 0, 1]);
    assert_eq!(find(&t, "quic.packet_number").unwrap().value, "2");
    assert_eq!(find(&t, "tls.handshake.extensions_server_name").unwrap().value, "example.com");
}
