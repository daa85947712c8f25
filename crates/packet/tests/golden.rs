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
