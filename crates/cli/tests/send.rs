//! `pidcap send` end to end: the real binary, real sockets in a network
//! namespace of each test's own (loopback only). Root needed for namespaces,
//! raw sockets and pidfd_getfd; without it the tests print why they skip.

mod common;

use common::{pidcap, require, NetNs, Peer, Scratch};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_testkit::tls::{Certs, HttpsServer};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn dry_run_shows_the_edited_payload_and_bad_hex_is_named() {
    let out = pidcap()
        .args([
            "send",
            "--ascii",
            "GET / HTTP/1.1\\r\\n",
            "--patch",
            "0:50",
            "--replace",
            "2f:2f78",
            "--to",
            "127.0.0.1:80",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would send 18 bytes via connect, TCP * -> 127.0.0.1:80"), "{text}");
    assert!(text.contains("00000000  50 45 54 20 2f 78 20 48  54 54 50 2f 78 31 2e 31  |PET /x HTTP/x1.1|"), "{text}");
    let out = pidcap().args(["send", "--hex", "47 4g", "--to", "127.0.0.1:80"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid hex digit 'g' at position 4"), "{err}");
    let out = pidcap()
        .args(["send", "--hex", "41", "--to", "127.0.0.1:80", "--patch", "7:00", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the end"));
}

#[test]
fn connect_mode_through_the_cli_reports_the_reply() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("send-conn");
    let srv = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let out = ns
        .command(env!("CARGO_BIN_EXE_pidcap"))
        .args(["send", "--ascii", "hi\\n", "--mode", "connect", "--to", &format!("127.0.0.1:{}", srv.port), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out.stdout);
    assert_eq!(v[0]["ok"], true, "{v:?}");
    assert_eq!(v[0]["reply"]["ascii"], "echo:hi.", "{v:?}");
    assert_eq!(v[1]["summary"]["sent"], 1);
}

/// UDP listener in the namespace: prints `PORT` then one `hex srcport` line per datagram.
const UDP_SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(65536)
    print(d.hex(), a[1], flush=True)
"#;

/// UDP client connected to argv[1], prints its port, then waits.
const UDP_HOLD: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
"#;

#[test]
fn pcapng_frame_in_socket_mode_without_a_daemon() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("send-pcap");
    let scratch = Scratch::new("send-pcap");
    let mut sink = ns.command("python3").args(["-c", UDP_SINK]).stdout(Stdio::piped()).spawn().unwrap();
    let mut sink_out = BufReader::new(sink.stdout.take().unwrap());
    let mut line = String::new();
    sink_out.read_line(&mut line).unwrap();
    let sport: u16 = line.trim().parse().unwrap();
    let mut client = ns
        .command("python3")
        .args(["-c", UDP_HOLD, &sport.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    line.clear();
    BufReader::new(client.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let cport: u16 = line.trim().parse().unwrap();
    // `ip netns exec` execs python: the child's pid is python's.
    let pid = client.id();

    // A pidcap pcapng with the client's packet: pid and 5-tuple (as `pidcap run -w` writes them).
    let mut data = Vec::new();
    etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(cport, sport)
        .write(&mut data, b"hello")
        .unwrap();
    let p = CapturedPacket::new(
        1,
        1,
        pid,
        "python3".into(),
        0,
        Direction::Outbound,
        Verdict::Pass,
        data.len() as u32,
        data,
    );
    let file = scratch.path("c.pcapng");
    let mut w = pidcap_pcapfile::PcapngWriter::new(std::fs::File::create(&file).unwrap(), &Default::default()).unwrap();
    w.write_packet(&p).unwrap();
    w.into_inner().unwrap();

    let out = ns
        .command(env!("CARGO_BIN_EXE_pidcap"))
        .arg("send")
        .arg("--pcap")
        .arg(&file)
        .args(["--frame", "1", "--patch", "0:4a", "--count", "3", "--interval", "100ms", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out.stdout);
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v[..3].iter().all(|s| s["ok"] == true && s["bytes"] == 5), "{v:?}");
    for _ in 0..3 {
        line.clear();
        sink_out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("{} {cport}", pidcap_packet::to_hex(b"Jello")), "from the client's own socket");
    }
    // The client exits: a clear status, exit status 2.
    client.stdin.take().unwrap().write_all(b"bye\n").unwrap();
    client.wait().unwrap();
    let out = ns
        .command(env!("CARGO_BIN_EXE_pidcap"))
        .arg("send")
        .arg("--pcap")
        .arg(&file)
        .args(["--frame", "1", "--mode", "socket"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED [process_gone]"), "{text}");
    let _ = sink.kill();
    let _ = sink.wait();
}

#[test]
fn raw_mode_checksums_are_right_on_the_wire() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("send-raw");
    let port = "47001";
    let mut tshark = ns
        .command("tshark")
        .args(["-i", "lo", "-f", &format!("port {port}"), "-a", "duration:4", "-l"])
        .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"])
        .args([
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.srcport",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tshark.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("Capturing on") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(300));
    for proto in ["udp", "tcp"] {
        let out = ns
            .command(env!("CARGO_BIN_EXE_pidcap"))
            .args([
                "send",
                "--mode",
                "raw",
                "--proto",
                proto,
                "--from",
                "127.0.0.1:40000",
                "--to",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--ascii", "raw payload\\x00", "--count", "2", "--interval", "50ms"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{proto}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = tshark.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == 5 && (f[3] == "40000" || f[4] == "40000"))
        .collect();
    assert_eq!(ours.len(), 4, "two UDP and two TCP packets from port 40000: {text}");
    for f in &ours {
        // 1 = Good (0 Bad, 2 Unverified).
        assert_eq!(f[0], "1", "IP checksum: {text}");
        let transport = if f[3] == "40000" { f[1] } else { f[2] };
        assert_eq!(transport, "1", "UDP/TCP checksum: {text}");
    }
}

// ------------------------------------------------------------------ TLS replay

/// The HTTPS echo peer (`https.py tls-echo`: answers with what it got; `conn N`, `handshake-failed N ..`,
/// `request N HEX` lines) in the namespace.
fn tls_echo(ns: &NetNs, certs: &Certs) -> HttpsServer {
    HttpsServer::start(ns.command("python3"), "tls-echo", &[&certs.cert, &certs.key])
}

/// The bytes of a `request N HEX` line.
fn request_of(line: &str) -> Vec<u8> {
    pidcap_packet::hex::parse(line.rsplit(' ').next().unwrap()).unwrap()
}

#[test]
fn tls_replay_of_a_library_record_prints_the_decrypted_reply() {
    require!(Root, Tool("ip"), Tool("openssl"), Tool("python3"));
    let ns = NetNs::new("send-tls");
    let scratch = Scratch::new("send-tls");
    let certs = Certs::new("send-tls");
    let srv = tls_echo(&ns, &certs);

    // A TLS plaintext record of a client's request to the server, kept in a library.
    let record = CapturedPacket::tls_record(pidcap_packet::tls::TlsRecord {
        id: 12,
        timestamp_ns: 1_700_000_000_000_000_000,
        pid: 1,
        comm: "curl".into(),
        socket_cookie: 5,
        direction: Direction::Outbound,
        local: "127.0.0.1:45000".parse().unwrap(),
        remote: format!("127.0.0.1:{}", srv.port).parse().unwrap(),
        info: pidcap_packet::tls::TlsInfo { tid: 2, library: pidcap_packet::tls::TlsLibrary::Openssl },
        plaintext: b"GET /some-path HTTP/1.0\r\nHost: localhost\r\n\r\n",
        true_len: 44,
        stream_offset: 0,
    });
    let db = scratch.path("lib.db");
    let id = {
        let mut lib = pidcap_library::Library::open(&db).unwrap();
        let meta = pidcap_library::PacketMeta { name: "curl get".into(), ..Default::default() };
        lib.save(&pidcap_library::NewPacket::new(record, &meta, "test")).unwrap()
    };
    let edit = format!("{}:{}", pidcap_packet::to_hex(b"/some"), pidcap_packet::to_hex(b"/edited"));
    let send = |extra: &[&str]| {
        ns.command(env!("CARGO_BIN_EXE_pidcap"))
            .args(["send", "--lib", &id.to_string(), "--db"])
            .arg(&db)
            .args(["--replace", &edit, "--timeout", "5s"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ca = certs.ca.to_str().unwrap();

    // The edited request over TLS; the server's decrypted reply printed, escaped, a line per line.
    let out = send(&["--mode", "connect", "--tls", "--ca", ca]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("over TLS (no SNI, CA "), "{stderr}");
    assert!(stdout.contains("#1 sent 46 bytes"), "{stdout}"); // 44 + 2: `/some` -> `/edited`
    assert!(stdout.contains("\n    HTTP/1.0 200 OK\\r\\n\n"), "{stdout}");
    assert!(stdout.contains("\n    you sent: GET /edited-path HTTP/1.0\\r\\n\n"), "{stdout}");
    let lines = srv.peer.wait_for("request 1 ");
    assert_eq!(request_of(lines.last().unwrap()), b"GET /edited-path HTTP/1.0\r\nHost: localhost\r\n\r\n");

    // --json carries the whole reply and the session.
    let out = send(&["--tls", "--ca", ca, "--sni", "localhost", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out.stdout);
    assert_eq!(v[0]["ok"], true, "{v:?}");
    assert!(v[0]["reply"]["text"].as_str().unwrap().contains("you sent: GET /edited-path"), "{v:?}");
    assert_eq!(v[0]["reply"]["tls"]["sni"], "localhost");
    assert_eq!(v[0]["reply"]["tls"]["verified"], true);
    srv.peer.wait_for("request 2 ");

    // The wrong CA: an unknown issuer, and nothing reached the server in clear.
    let out = send(&["--mode", "connect", "--tls", "--ca", certs.other_ca.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED [certificate]") && stdout.contains("unknown issuer"), "{stdout}");
    let lines = srv.peer.wait_for("handshake-failed 3 ");
    assert!(!lines.iter().chain(&srv.peer.pending()).any(|l| l.starts_with("request")), "{lines:?}");

    // --insecure, no CA: it works, with a warning.
    let out = send(&["--mode", "connect", "--tls", "--insecure"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("warning: --insecure") && stdout.contains("certificate NOT verified"), "{stderr}");
    assert!(stdout.contains("you sent: GET /edited-path"), "{stdout}");
    srv.peer.wait_for("request 4 ");

    // --count 3: three connections, three handshakes.
    let out = send(&["--mode", "connect", "--tls", "--ca", ca, "--count", "3", "--interval", "50ms", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out.stdout);
    assert_eq!(v[3]["summary"]["sent"], 3, "{v:?}");
    let lines = srv.peer.wait_for("request 7 ");
    for n in 5..=7 {
        assert!(lines.iter().any(|l| l == &format!("conn {n}")), "{lines:?}");
    }

    // --to NAME:PORT: resolved, and the name is the SNI.
    let to = format!("localhost:{}", srv.port);
    let out = send(&["--tls", "--ca", ca, "--to", &to, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out.stdout);
    assert_eq!((&v[0]["ok"], &v[0]["reply"]["tls"]["sni"]), (&true.into(), &"localhost".into()), "{v:?}");
    srv.peer.wait_for("request 8 ");

    // Connect mode without --tls on a TLS record: refused, with the way to do it; nothing sent.
    let out = send(&["--mode", "connect"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plaintext from a TLS connection") && err.contains("add --tls"), "{err}");
    // TLS only in connect mode; its options only with --tls.
    let out = send(&["--mode", "raw", "--tls", "--from", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mode connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&["--mode", "connect", "--sni", "localhost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = send(&["--tls", "--ca", "/nonexistent/ca.pem"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));
    assert!(srv.peer.pending().is_empty(), "no connection for a refused command: {:?}", srv.peer.pending());
}

// -- resend that replays what you mean (issue 14) --

/// An HTTP/1.0 server (python3 http.server: one request per connection, then
/// it closes) that prints `PORT`, then `conn PEERPORT` for each connection and
/// `req PATH` for each request. Its answer's body is 6000 bytes ending in
/// `END-OF-REPLY`.
const HTTP10_COUNTING: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        print("conn", self.client_address[1], flush=True)
    def do_GET(self):
        print("req", self.path, flush=True)
        body = (b"0123456789" * 600)[:-12] + b"END-OF-REPLY"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Http10 {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    port: u16,
}

impl Http10 {
    fn start(ns: &NetNs) -> Http10 {
        let mut child = ns.command("python3").args(["-c", HTTP10_COUNTING]).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the server said {line:?}"));
        Http10 { child, out, port }
    }

    /// Stop it; what it printed: the peer ports of its connections, and the requests' paths.
    fn stop(mut self) -> (Vec<u16>, Vec<String>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (mut conns, mut reqs) = (Vec::new(), Vec::new());
        for l in self.out.lines().map_while(Result::ok) {
            match l.split_once(' ') {
                Some(("conn", p)) => conns.push(p.parse().unwrap()),
                Some(("req", p)) => reqs.push(p.to_string()),
                _ => panic!("the server said {l:?}"),
            }
        }
        (conns, reqs)
    }
}

#[test]
fn connect_mode_sends_on_a_new_connection_each_time_and_shows_each_reply_whole() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("send-newconn");
    let send = |port: u16, extra: &[&str]| {
        let out = ns
            .command(env!("CARGO_BIN_EXE_pidcap"))
            .args(["send", "--ascii", "GET /again HTTP/1.0\\r\\n\\r\\n", "--mode", "connect"])
            .args(["--to", &format!("127.0.0.1:{port}"), "--count", "3", "--interval", "500ms", "--timeout", "5s"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };

    // --json: three sends, three connections (three peer ports), three replies, each whole.
    let srv = Http10::start(&ns);
    let out = send(srv.port, &["--json"]);
    let (conns, reqs) = srv.stop();
    assert_eq!(conns.len(), 3, "three connections: {conns:?}");
    assert_eq!(conns.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{conns:?}");
    assert_eq!(reqs, ["/again", "/again", "/again"]);
    let v = json_lines(&out.stdout);
    assert_eq!(v.len(), 4, "{v:?}");
    for s in &v[..3] {
        let r = &s["reply"];
        let bytes = r["bytes"].as_u64().unwrap() as usize;
        assert!(bytes > 6000, "{s}");
        let data = pidcap_packet::hex::parse(r["hex"].as_str().unwrap()).unwrap();
        assert_eq!(data.len(), bytes, "the whole reply in hex");
        assert!(data.starts_with(b"HTTP/1.0 200 OK\r\n") && data.ends_with(b"END-OF-REPLY"), "{s}");
        assert_eq!(r["ascii"].as_str().unwrap().len(), bytes, "and in ASCII");
    }
    assert_eq!((&v[3]["summary"]["sent"], &v[3]["summary"]["failed"]), (&3.into(), &0.into()));

    // Text: the reply under each status, up to --reply-bytes (4 KiB by default).
    let srv = Http10::start(&ns);
    let text = String::from_utf8(send(srv.port, &[]).stdout).unwrap();
    srv.stop();
    assert_eq!(text.matches("    HTTP/1.0 200 OK\\r\\n").count(), 3, "{text}");
    assert!(!text.contains("END-OF-REPLY"), "cut at 4096 bytes: {text}");
    assert_eq!(text.matches("more bytes of the reply (--reply-bytes N shows more, --json all)").count(), 3, "{text}");
    let srv = Http10::start(&ns);
    let text = String::from_utf8(send(srv.port, &["--reply-bytes", "100000"]).stdout).unwrap();
    srv.stop();
    assert_eq!(text.matches("END-OF-REPLY").count(), 3, "{text}");
    let srv = Http10::start(&ns);
    let text = String::from_utf8(send(srv.port, &["--reply-bytes", "8"]).stdout).unwrap();
    srv.stop();
    assert_eq!(text.matches("    HTTP/1.0\n").count(), 3, "8 bytes: {text}");

    // --keep-connection: one connection for the three; the server answers the first and closes it.
    let srv = Http10::start(&ns);
    let out = ns
        .command(env!("CARGO_BIN_EXE_pidcap"))
        .args(["send", "--ascii", "GET /kept HTTP/1.0\\r\\n\\r\\n", "--mode", "connect", "--keep-connection"])
        .args(["--to", &format!("127.0.0.1:{}", srv.port), "--count", "3", "--interval", "300ms", "--json"])
        .output()
        .unwrap();
    let (conns, reqs) = srv.stop();
    let v = json_lines(&out.stdout);
    assert_eq!(v[0]["reply"]["bytes"].as_u64().map(|b| b > 6000), Some(true), "{v:?}");
    assert_eq!(reqs[0], "/kept");
    // The second send went on the closed connection (nothing back, or an error); only then a new one.
    assert!(conns.len() < 3, "the connection was kept: {conns:?} {v:?}");
}
