//! TLS replay against a real peer on loopback: a certificate made by the
//! test (openssl: a CA and a server certificate for 127.0.0.1 and
//! localhost) and the Python HTTPS echo server of pidcap-testkit (`https.py
//! tls-echo`) that answers with what it received, so the edit is visible in
//! the reply.

use pidcap_packet::tls::{TlsInfo, TlsLibrary, TlsRecord};
use pidcap_packet::{CapturedPacket, Direction};
use pidcap_resend::{prepare, run_job, EndReason, ErrorKind, InjectArgs, Mode, SendStatus, TlsOptions};
use pidcap_testkit::tls::{Certs, HttpsServer};
use std::process::Command;
use std::sync::atomic::AtomicBool;

/// The echo server (`conn N`, `handshake-failed N ..`, `request N HEX` lines).
fn echo_server(certs: &Certs) -> HttpsServer {
    HttpsServer::start(Command::new("python3"), "tls-echo", &[&certs.cert, &certs.key])
}

/// A TLS plaintext record of curl's request to the server, as the kernel layer captures it.
fn record(port: u16) -> CapturedPacket {
    record_to(format!("127.0.0.1:{port}").parse().unwrap())
}

fn record_to(remote: std::net::SocketAddr) -> CapturedPacket {
    CapturedPacket::tls_record(TlsRecord {
        id: 9,
        timestamp_ns: 1_700_000_000_000_000_000,
        pid: 0,
        comm: "curl".into(),
        socket_cookie: 0,
        direction: Direction::Outbound,
        local: "127.0.0.1:40000".parse().unwrap(),
        remote,
        info: TlsInfo { tid: 1, library: TlsLibrary::Openssl },
        plaintext: b"GET /some-path HTTP/1.0\r\nHost: localhost\r\n\r\n",
        true_len: 44,
        stream_offset: 0,
    })
}

fn run(args: &InjectArgs) -> (Vec<SendStatus>, pidcap_resend::Summary) {
    let p = prepare(args).unwrap();
    let mut seen = Vec::new();
    let s = run_job(&p, &AtomicBool::new(false), &mut |st| seen.push(st.clone()));
    (seen, s)
}

fn tls_args(port: u16, tls: TlsOptions) -> InjectArgs {
    InjectArgs {
        template: Some(Box::new(record(port))),
        // `/some-path` -> `/edited-path`.
        replaces: vec![format!("{}:{}", pidcap_packet::to_hex(b"/some"), pidcap_packet::to_hex(b"/edited"))],
        mode: Some(Mode::Connect),
        tls: Some(tls),
        timeout_ms: Some(5000),
        ..Default::default()
    }
}

#[test]
fn an_edited_record_is_replayed_over_tls_and_the_reply_decrypted() {
    pidcap_testkit::require!(Tool("openssl"), Tool("python3"));
    let certs = Certs::new("replay");
    let srv = echo_server(&certs);
    let ca = TlsOptions { ca: Some(certs.ca.clone()), ..Default::default() };

    let (st, sum) = run(&tls_args(srv.port, ca.clone()));
    assert_eq!((sum.sent, sum.failed, sum.reason), (1, 0, EndReason::Done), "{st:?}");
    let reply = st[0].reply.as_ref().expect("a reply");
    let text = reply.text.as_deref().unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\\r\\n"), "{text}");
    assert!(text.contains("you sent: GET /edited-path HTTP/1.0\\r\\nHost: localhost"), "{text}");
    assert_eq!(pidcap_packet::ascii::unescape(text).unwrap().len(), reply.bytes);
    let session = reply.tls.as_ref().unwrap();
    assert!(session.verified && session.version.starts_with("TLSv1_"), "{session:?}");
    assert_eq!(session.sni, None, "no SNI for an IP address");
    let lines = srv.peer.wait_for("request 1 ");
    let got = pidcap_packet::hex::parse(lines.last().unwrap().rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(got, b"GET /edited-path HTTP/1.0\r\nHost: localhost\r\n\r\n", "what the server decrypted");

    // The CA as PEM text (how a client of the daemon gives it): the same.
    let pem = std::fs::read_to_string(&certs.ca).unwrap();
    let (st, _) = run(&tls_args(srv.port, TlsOptions { ca_pem: Some(pem), ..Default::default() }));
    assert!(st[0].ok, "{st:?}");
    srv.peer.wait_for("request 2 ");

    // A name the certificate has: sent as SNI and verified.
    let (st, _) = run(&tls_args(srv.port, TlsOptions { sni: Some("localhost".into()), ..ca.clone() }));
    assert!(st[0].ok, "{st:?}");
    assert_eq!(st[0].reply.as_ref().unwrap().tls.as_ref().unwrap().sni.as_deref(), Some("localhost"));
    srv.peer.wait_for("request 3 ");

    // A name it does not have: a name mismatch, nothing sent.
    let (st, sum) = run(&tls_args(srv.port, TlsOptions { sni: Some("elsewhere.example".into()), ..ca.clone() }));
    assert_eq!((st.len(), sum.reason), (1, EndReason::Error), "a certificate error ends the job: {st:?}");
    assert_eq!(st[0].error_kind, Some(ErrorKind::Certificate));
    let e = st[0].error.as_deref().unwrap();
    assert!(e.contains("name mismatch") && e.contains("elsewhere.example"), "{e}");
    srv.peer.wait_for("handshake-failed 4 ");

    // Three sends: three connections, three handshakes, three requests.
    let (st, sum) = run(&InjectArgs { count: Some(3), interval_ms: Some(10), ..tls_args(srv.port, ca) });
    assert_eq!((sum.sent, sum.failed), (3, 0), "{st:?}");
    let lines = srv.peer.wait_for("request 7 ");
    for n in 5..=7 {
        assert!(lines.iter().any(|l| l == &format!("conn {n}")), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with(&format!("request {n} "))), "{lines:?}");
    }
}

#[test]
fn a_wrong_ca_is_an_unknown_issuer_and_insecure_needs_none() {
    pidcap_testkit::require!(Tool("openssl"), Tool("python3"));
    let certs = Certs::new("trust");
    let srv = echo_server(&certs);

    let wrong = TlsOptions { ca: Some(certs.other_ca.clone()), ..Default::default() };
    let (st, sum) = run(&InjectArgs { count: Some(3), ..tls_args(srv.port, wrong) });
    assert_eq!((sum.sent, sum.reason), (0, EndReason::Error), "{st:?}");
    assert_eq!(st.len(), 1, "no second try with a certificate that cannot pass: {st:?}");
    assert_eq!(st[0].error_kind, Some(ErrorKind::Certificate));
    let e = st[0].error.as_deref().unwrap();
    assert!(e.contains("unknown issuer") && e.contains("other-ca.pem"), "{e}");
    let lines = srv.peer.wait_for("handshake-failed 1 ");
    assert!(!lines.iter().chain(&srv.peer.pending()).any(|l| l.starts_with("request")), "nothing in clear: {lines:?}");

    // No CA at all, --insecure: the replay goes through, marked as not verified.
    let (st, sum) = run(&tls_args(srv.port, TlsOptions { insecure: true, ..Default::default() }));
    assert_eq!(sum.sent, 1, "{st:?}");
    let reply = st[0].reply.as_ref().unwrap();
    assert!(!reply.tls.as_ref().unwrap().verified);
    assert!(reply.text.as_deref().unwrap().contains("GET /edited-path"), "{reply:?}");
    assert!(st[0].to_string().contains("certificate NOT verified"), "{}", st[0]);
    srv.peer.wait_for("request 2 ");

    // The system's roots do not know the test CA.
    let (st, _) = run(&tls_args(srv.port, TlsOptions::default()));
    assert_eq!(st[0].error_kind, Some(ErrorKind::Certificate), "{st:?}");
    let e = st[0].error.as_deref().unwrap();
    assert!(e.contains("unknown issuer") && e.contains("system") || e.contains("no system root certificates"), "{e}");

    // Something that speaks no TLS (a plain HTTP answer to the ClientHello): a TLS error, nothing sent.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = plain.accept().unwrap();
        let mut hello = [0u8; 5];
        c.read_exact(&mut hello).unwrap();
        c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest); // until the client gives up
        hello[0]
    });
    let (st, _) = run(&tls_args(port, TlsOptions { insecure: true, ..Default::default() }));
    assert_eq!(t.join().unwrap(), 0x16, "a TLS handshake record came first");
    assert_eq!(st[0].error_kind, Some(ErrorKind::Tls), "{st:?}");
}

#[test]
fn a_tls_record_is_never_sent_in_clear() {
    let args = InjectArgs { template: Some(Box::new(record(443))), mode: Some(Mode::Connect), ..Default::default() };
    let e = prepare(&args).unwrap_err().to_string();
    assert!(e.contains("plaintext from a TLS connection") && e.contains("--tls"), "{e}");
    let e = prepare(&InjectArgs { mode: None, ..args.clone() }).unwrap_err().to_string();
    assert!(e.contains("--mode connect --tls"), "{e}");
    let e = prepare(&InjectArgs { mode: Some(Mode::Socket), ..args.clone() }).unwrap_err().to_string();
    assert!(e.contains("TLS stream"), "{e}");
    // A record whose connection is not known needs --to.
    let unknown = record_to(pidcap_packet::tls::unknown_addr());
    let tls = Some(TlsOptions::default());
    let e = prepare(&InjectArgs { template: Some(Box::new(unknown.clone())), tls: tls.clone(), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("peer is not known") && e.contains("--to"), "{e}");
    let to = Some("127.0.0.1:8443".to_string());
    assert!(
        prepare(&InjectArgs { template: Some(Box::new(unknown)), tls: tls.clone(), to, ..Default::default() }).is_ok()
    );

    // TLS only in connect mode, over TCP; a CA or no verification, not both.
    let plain = InjectArgs { data: Some("41".into()), to: Some("127.0.0.1:1".into()), tls, ..Default::default() };
    assert_eq!(prepare(&plain).unwrap().mode, Mode::Connect, "--tls alone means connect mode");
    let e = prepare(&InjectArgs { mode: Some(Mode::Raw), from: Some("127.0.0.1:2".into()), ..plain.clone() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("only with --mode connect"), "{e}");
    let e = prepare(&InjectArgs { proto: Some(pidcap_resend::Proto::Udp), ..plain.clone() }).unwrap_err().to_string();
    assert!(e.contains("needs TCP"), "{e}");
    let both = TlsOptions { insecure: true, ca: Some("/x".into()), ..Default::default() };
    let e = prepare(&InjectArgs { tls: Some(both), ..plain.clone() }).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
    // prepare resolves no names (the daemon's requests, fuzzing): a destination is an address.
    assert!(prepare(&InjectArgs { to: Some("localhost:8443".into()), ..plain }).is_err());
    // The daemon's older requests (no `tls`) read as before; unknown TLS fields are refused.
    let a: InjectArgs = serde_json::from_str(r#"{"data":"41","to":"127.0.0.1:1"}"#).unwrap();
    assert_eq!(a.tls, None);
    let a: InjectArgs = serde_json::from_str(r#"{"data":"41","tls":{"sni":"x","insecure":true}}"#).unwrap();
    assert_eq!(a.tls, Some(TlsOptions { sni: Some("x".into()), insecure: true, ..Default::default() }));
    assert!(serde_json::from_str::<InjectArgs>(r#"{"tls":{"snl":"x"}}"#).is_err());
}
