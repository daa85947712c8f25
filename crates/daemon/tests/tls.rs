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
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

const SERVER: &str = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
def serve(c):
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            while True:
                d = t.recv(65535)
                if not d: return
                body = b"echo: " + d.split(b"\r\n", 1)[0]
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except (OSError, ssl.SSLError):
        return
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One kept-alive TLS connection; each line on stdin is a path it GETs, answered with "got <first line>".
const CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1]); port = int(sys.argv[2])
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
print("ready", flush=True)
for line in sys.stdin:
    c.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (line.strip().encode(), port))
    print("got", c.recv(1000).split(b"\r\n")[-1].decode(), flush=True)
"#;

/// Python that maps no TLS library (it never imports ssl) and waits.
const PLAIN: &str = "import sys; print('ready', flush=True); sys.stdin.read()";

struct Py {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Py {
    fn start(ns: &NetNs, script: &str, args: &[&str]) -> Py {
        let mut child = ns
            .command("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Py { child, stdin, stdout }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private directory for the certificates, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let d = std::env::temp_dir().join(format!("pidcap-daemon-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate it signed for 127.0.0.1, made in `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> (String, String, String) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=pidcap daemon test CA"];
    openssl(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
    openssl(&[&["req"], &ec[..], &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("srv.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        &["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out"]
            .iter()
            .chain(&["srv.pem", "-days", "1", "-extfile", "srv.ext"])
            .copied()
            .collect::<Vec<_>>(),
    );
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    (p("ca.pem"), p("srv.pem"), p("srv.key"))
}

fn holds(p: &CapturedPacket, text: &str) -> bool {
    p.payload().windows(text.len()).any(|w| w == text.as_bytes())
}

#[test]
fn a_real_https_clients_plaintext_comes_back_as_records_and_its_library_is_named() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("openssl"), Tool("python3"));
    let ns = NetNs::new("daemon-tls");
    let dir = TempDir::new();
    let (ca, cert, key) = certificates(&dir.0);
    let mut server = Py::start(&ns, SERVER, &[&cert, &key]);
    let port: u16 = server.line().parse().expect("the server's port");
    let mut client = Py::start(&ns, CLIENT, &[&ca, &port.to_string()]);
    assert_eq!(client.line(), "ready");
    let mut plain = Py::start(&ns, PLAIN, &[]);
    assert_eq!(plain.line(), "ready");

    let d = InProcess::start(None);
    let mut c = d.client();
    let mut sub = d.client();
    sub.subscribe(None).unwrap();
    c.start_capture(vec![client.pid(), plain.pid()], vec![], None, None, false).unwrap();

    // The connection exists before the capture: what it sends now is decrypted.
    writeln!(client.stdin, "/daemon-tls-path").unwrap();
    assert_eq!(client.line(), "got echo: GET /daemon-tls-path HTTP/1.1");
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
