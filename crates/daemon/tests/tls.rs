//! TLS plaintext records through the daemon on the real kernel (as root):
//! a Python HTTPS client (python's ssl: OpenSSL) on a kept-alive connection
//! to a Python HTTPS server, both in a network namespace of the test's own
//! with a certificate the test makes. Its requests and the answers come back
//! from `get_packets` and `subscribe` as records with their `tls` object,
//! on the connection of its packets; `get_state` names the library it is
//! covered by, and says a target that maps no TLS library has none.

mod common;

use common::{wait_for, InProcess, NetNs};
use pidcap_api::protocol::Event;
use pidcap_packet::{CapturedPacket, Direction, TlsLibrary};
use pidcap_testkit::tls::{Certs, HttpsServer, Peer};
use std::time::Duration;

/// Python that maps no TLS library (it never imports ssl) and waits.
const PLAIN: &str = "import sys; print('ready', flush=True); sys.stdin.read()";

fn holds(p: &CapturedPacket, text: &str) -> bool {
    p.payload().windows(text.len()).any(|w| w == text.as_bytes())
}

#[test]
fn a_real_https_clients_plaintext_comes_back_as_records_and_its_library_is_named() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("openssl"), Tool("python3"));
    let ns = NetNs::new("daemon-tls");
    let certs = Certs::new("daemon-tls");
    // `https.py echo-server`: answers "echo: <request line>"; `raw-client`: one kept-alive
    // connection, a GET per line, printing "got <the answer's body>".
    let server = HttpsServer::start(ns.command("python3"), "echo-server", &[&certs.cert, &certs.key]);
    let port = server.port;
    let mut client =
        Peer::https(ns.command("python3"), "raw-client", &[certs.ca.as_os_str(), port.to_string().as_ref()]);
    assert_eq!(client.line(), "ready");
    let mut plain = ns.command("python3");
    let plain = Peer::spawn(plain.args(["-c", PLAIN]));
    assert_eq!(plain.line(), "ready");

    let d = InProcess::start(None);
    let mut c = d.client();
    let mut sub = d.client();
    sub.subscribe(None).unwrap();
    c.start_capture(vec![client.pid(), plain.pid()], vec![], None, None, false).unwrap();

    // The connection exists before the capture: what it sends now is decrypted.
    assert_eq!(client.ask("/daemon-tls-path"), "got echo: GET /daemon-tls-path HTTP/1.1");
    let request = "GET /daemon-tls-path HTTP/1.1\r\n";
    let answer = "echo: GET /daemon-tls-path";
    let mut held: Vec<CapturedPacket> = Vec::new();
    let found = wait_for(Duration::from_secs(10), || {
        let mut since = held.last().map_or(0, |p| p.id);
        loop {
            let page = c.get_packets(since, None).unwrap();
            since = page.next_since;
            held.extend(page.packets);
            if !page.more {
                break;
            }
        }
        held.iter().any(|p| p.is_tls() && holds(p, request)) && held.iter().any(|p| p.is_tls() && holds(p, answer))
    });
    assert!(found, "no record of the request and its answer among {} packets", held.len());
    let out = held.iter().find(|p| p.is_tls() && holds(p, request)).unwrap();
    let back = held.iter().find(|p| p.is_tls() && holds(p, answer)).unwrap();
    for (r, dir) in [(out, Direction::Outbound), (back, Direction::Inbound)] {
        let tls = r.tls.unwrap();
        assert_eq!((tls.library, r.pid, r.direction), (TlsLibrary::Openssl, client.pid(), dir), "{r:?}");
        assert_eq!(r.decoded.remote_port, port, "the record is on the connection to the server");
        assert!(r.orig_len as usize >= r.payload().len() + 40, "headers + the true length: {}", r.orig_len);
    }
    assert!(out.id < back.id, "the answer comes after the request");
    // Beside the encrypted packets of the same connection.
    let wire: Vec<&CapturedPacket> = held
        .iter()
        .filter(|p| !p.is_tls() && p.decoded.remote_port == port && p.decoded.local_port == out.decoded.local_port)
        .collect();
    assert!(!wire.is_empty(), "the connection's packets are captured too");
    assert!(wire.iter().all(|p| !holds(p, request)), "on the wire the request is encrypted");
    // The same record as an event of the subscription.
    let mut seen = false;
    while !seen {
        match sub.next_event().unwrap() {
            Event::Packet { packet } if packet.id == out.id => {
                assert_eq!(*packet, *out);
                seen = true;
            }
            Event::Missed { count } => panic!("missed {count}"),
            _ => {}
        }
    }

    // The state names the client's library and says the other target has none.
    let st = c.get_state().unwrap();
    assert!(st.stats.kernel.tls_records >= 2, "{:?}", st.stats.kernel);
    let tls = |pid: u32| st.targets.iter().find(|t| t.pid == pid).and_then(|t| t.tls.clone());
    let libs = tls(client.pid()).expect("the client's coverage is known");
    assert!(
        libs.iter().any(|l| l.library == TlsLibrary::Openssl && l.path.to_string_lossy().contains("libssl")),
        "{libs:?}"
    );
    assert_eq!(tls(plain.pid()), Some(vec![]), "a process that maps no TLS library is covered by none");
    drop(server);
}
