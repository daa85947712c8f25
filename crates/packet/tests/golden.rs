//! The Info line (`pidcap_packet::info`) on real packets: captured here
//! with tcpdump/tshark (fixtures in tests/data, how each was made in
//! tests/data/README.md) or, for QUIC, RFC 9001 Appendix A.2's client
//! Initial. The expected lines are what tshark 4.0 says
//! (`-T fields -e _ws.col.Info`) where pidcap agrees with it; where pidcap says
//! more (a ClientHello's SNI and ALPN), the test says so.

use pidcap_packet::info;

fn hex_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pidcap_packet::hex::parse(text.trim()).unwrap()
}

/// An IPv4 + UDP packet around `payload`.
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src = format!("10.0.0.1:{sport}").parse().unwrap();
    let dst = format!("10.0.0.2:{dport}").parse().unwrap();
    pidcap_packet::build::build(src, dst, 64, pidcap_packet::build::Transport::Udp, payload).unwrap()
}

#[test]
fn quic_client_initial_of_rfc_9001_appendix_a2() {
    let initial = hex_file("rfc9001-a2-client-initial.hex");
    assert_eq!(initial.len(), 1200);
    let line = info::info(&udp(50000, 443, &initial));
    assert_eq!(
        line, // tshark 4.0: `Initial, DCID=8394c8f03e515708, PKN: 2, CRYPTO, PADDING` (it also decrypts
        // client Initials; its SNI and ALPN fields say `example.com` and `alpn`).
        "Initial, DCID=8394c8f03e515708, PKN: 2, CRYPTO, PADDING, Client Hello (SNI=example.com, ALPN=alpn)"
    );
    // One flipped byte of the ciphertext: it no longer opens, the header still reads.
    let mut bad = initial.clone();
    bad[600] ^= 1;
    assert_eq!(info::info(&udp(50000, 443, &bad)), "Initial, DCID=8394c8f03e515708");
}

/// The IP packets of a classic pcap file of tcpdump's (Ethernet on `lo`).
fn pcap(name: &str) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond pcap");
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1, "Ethernet");
    let mut out = Vec::new();
    let mut p = 24;
    while p + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[p + 8..p + 12].try_into().unwrap()) as usize;
        out.push(b[p + 16 + 14..p + 16 + caplen].to_vec());
        p += 16 + caplen;
    }
    out
}

fn tshark_lines(name: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.trim_end().to_string()).collect()
}

fn packet(ip: &[u8]) -> CapturedPacket {
    let len = ip.len() as u32;
    CapturedPacket::new(1, 0, 1, "x".into(), 1, Direction::Outbound, Verdict::Pass, len, ip.to_vec())
}

use pidcap_packet::{dfilter::DisplayFilter, dissect, CapturedPacket, Direction, Verdict};

/// pidcap's Info against tshark's, packet by packet. They agree but where
/// pidcap says more (a ClientHello's SNI and ALPN) or cannot know what tshark
/// learns from the stream: a segment in the middle of an HTTP message is
/// tshark's `Continuation`, pidcap's TCP line; tshark's window is scaled by
/// the SYN's window scale, pidcap's is the header's.
#[test]
fn info_agrees_with_tshark() {
    let (mut agreed, mut scaled) = (0, 0);
    let unscaled = |l: &str| l.split(' ').filter(|w| !w.starts_with("Win=")).collect::<Vec<_>>().join(" ");
    for name in ["http", "dns", "tls1_3", "tls1_2"] {
        let packets = pcap(&format!("{name}.pcap"));
        let want = tshark_lines(&format!("{name}.tshark"));
        assert_eq!(packets.len(), want.len(), "{name}");
        for (i, (ip, want)) in packets.iter().zip(&want).enumerate() {
            let got = info::info(ip);
            let what = format!("{name} frame {}", i + 1);
            if want == "Client Hello" {
                assert_eq!(got, "Client Hello (SNI=example.org, ALPN=h2,http/1.1)", "{what}");
            } else if want == "Continuation" {
                assert!(got.contains("[PSH, ACK]") && !got.ends_with("Len=0"), "{what}: {got}");
            } else if got != *want && unscaled(&got) == unscaled(want) {
                // tshark scales the window by the SYN's WS (1024 here); one packet cannot know it.
                let win = |l: &str| l.split(" Win=").nth(1).and_then(|w| w.split(' ').next()?.parse::<u64>().ok());
                assert_eq!(win(&got).map(|w| w * 1024), win(want), "{what}");
                scaled += 1;
            } else {
                assert_eq!(&got, want, "{what}");
                agreed += 1;
            }
        }
    }
    assert!(agreed >= 30 && scaled >= 20, "{agreed} lines agree, {scaled} but for the window's scale");
    // The line that matters most, spelled out.
    let http = pcap("http.pcap");
    assert!(info::info(&http[1]).contains(" [SYN, ACK] Seq="), "{}", info::info(&http[1]));
}

/// pidcap's display filter selects the frames tshark's does, for every
/// filter in tests/data/filters.tshark (what capture.sh asked tshark).
#[test]
fn display_filters_agree_with_tshark() {
    let mut checked = 0;
    for line in tshark_lines("filters.tshark") {
        let mut parts = line.splitn(3, '\t');
        let (file, filter, frames) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
        // TLS 1.3 hides the content type (tshark: tls.record.opaque_type, known
        // from the handshake); one packet cannot tell 1.3's records from 1.2's.
        if file == "tls1_3" && filter == "tls.record.content_type == 23" {
            continue;
        }
        let want: Vec<usize> = frames.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        let f = DisplayFilter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let got: Vec<usize> = pcap(&format!("{file}.pcap"))
            .iter()
            .enumerate()
            .filter(|(_, ip)| f.matches(&packet(ip)))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(got, want, "{file}: {filter}");
        checked += 1;
    }
    assert!(checked >= 135, "{checked}");
}

/// The detail tree of every golden packet: ranges inside the bytes, and the
/// fields tshark names hold the values the Info line shows.
#[test]
fn dissect_golden_packets() {
    for name in ["http", "dns", "tls1_3", "tls1_2"] {
        for ip in pcap(&format!("{name}.pcap")) {
            let p = packet(&ip);
            let tree = dissect::dissect(&p);
            for f in tree.iter().flat_map(|f| f.walk()) {
                assert!(f.range.end <= ip.len(), "{name}: {} {:?}", f.name, f.range);
            }
            let port = dissect::find(&tree, "tcp.srcport").or_else(|| dissect::find(&tree, "udp.srcport")).unwrap();
            assert_eq!(ip[port.range.clone()], port.value.parse::<u16>().unwrap().to_be_bytes());
        }
    }
    let tls = pcap("tls1_3.pcap");
    let hello = packet(&tls[3]);
    let tree = dissect::dissect(&hello);
    let sni = dissect::find(&tree, "tls.handshake.extensions_server_name").unwrap();
    assert_eq!(&hello.data[sni.range.clone()], b"example.org");
    let dns = pcap("dns.pcap");
    let tree = dissect::dissect(&packet(&dns[1]));
    assert_eq!(dissect::find(&tree, "dns.a").unwrap().value, "10.0.0.1");
}
