//! The three send modes on real sockets, on loopback (127.0.0.1 only), with
//! python3 clients as the "other process". Socket and raw modes need root
//! (pidfd_getfd of another process, raw sockets): without it they skip
//! (`pidcap_testkit::require!`), and fail under `CI=true`.

use pidcap_resend::{prepare, run_job, EndReason, ErrorKind, InjectArgs, Mode, SendStatus};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A python3 client: runs `script`, says its first stdout line, then obeys stdin.
struct Py {
    child: pidcap_testkit::KillOnDrop,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Py {
    fn start(script: &str, args: &[String]) -> Py {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Py { child: pidcap_testkit::KillOnDrop(child), stdin, out }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }
    fn say(&mut self, s: &str) {
        writeln!(self.stdin, "{s}").unwrap();
        self.stdin.flush().unwrap();
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// TCP client: connect, send "hello\n", print its local port, then on each
/// stdin line: "send X" sends X+"\n", "close" closes the socket, "exit" exits.
const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello\n")
print(c.getsockname()[1], flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd.startswith("send "):
        c.sendall(cmd[5:].encode() + b"\n"); print("ok", flush=True)
    elif cmd == "close":
        c.close(); print("closed", flush=True)
    elif cmd == "exit":
        sys.exit(0)
"#;

/// UDP client: a socket connected to the server, "hello" sent, then as above.
const UDP_CLIENT: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("127.0.0.1", int(sys.argv[1])))
c.send(b"hello")
print(c.getsockname()[1], flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "close":
        c.close(); print("closed", flush=True)
    elif cmd == "exit":
        sys.exit(0)
"#;

fn run(args: &InjectArgs) -> (Vec<SendStatus>, pidcap_resend::Summary) {
    let p = prepare(args).unwrap_or_else(|e| panic!("prepare: {e}"));
    let mut seen = Vec::new();
    let s = run_job(&p, &AtomicBool::new(false), &mut |st| seen.push(st.clone()));
    (seen, s)
}

fn socket_args(pid: u32, proto: &str, local_port: u16, server_port: u16, ascii: &str) -> InjectArgs {
    InjectArgs {
        ascii: Some(ascii.into()),
        mode: Some(Mode::Socket),
        proto: Some(proto.parse().unwrap()),
        pid: Some(pid),
        from: Some(format!("127.0.0.1:{local_port}")),
        to: Some(format!("127.0.0.1:{server_port}")),
        count: Some(3),
        interval_ms: Some(100),
        ..Default::default()
    }
}

#[test]
fn socket_mode_tcp_goes_through_the_live_connection() {
    pidcap_testkit::require!(Root, Tool("python3"));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut py = Py::start(TCP_CLIENT, &[port.to_string()]);
    let (mut conn, _) = l.accept().unwrap();
    let local: u16 = py.line().parse().unwrap();
    let t0 = std::time::Instant::now();
    let (statuses, summary) = run(&socket_args(py.pid(), "tcp", local, port, "INJECTED\\n"));
    assert!(t0.elapsed() >= Duration::from_millis(200), "3 sends at 100 ms took {:?}", t0.elapsed());
    assert_eq!((summary.sent, summary.failed, summary.reason), (3, 0, EndReason::Done), "{statuses:?}");
    assert!(statuses.iter().all(|s| s.ok && s.bytes == 9), "{statuses:?}");
    py.say("send next");
    assert_eq!(py.line(), "ok");
    let want = b"hello\nINJECTED\nINJECTED\nINJECTED\nnext\n";
    let mut got = vec![0u8; want.len()];
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    // The connection is still healthy both ways.
    conn.write_all(b"bye").unwrap();
}

#[test]
fn socket_mode_udp_and_its_errors() {
    pidcap_testkit::require!(Root, Tool("python3"));
    let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = srv.local_addr().unwrap().port();
    let mut py = Py::start(UDP_CLIENT, &[port.to_string()]);
    let local: u16 = py.line().parse().unwrap();
    let mut buf = [0u8; 100];
    let (n, from) = srv.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let (statuses, summary) = run(&socket_args(py.pid(), "udp", local, port, "edited\\x00"));
    assert_eq!((summary.sent, summary.failed), (3, 0), "{statuses:?}");
    for _ in 0..3 {
        let (n, f) = srv.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], f), (&b"edited\0"[..], from), "sent from the client's own socket");
    }
    srv.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(srv.recv_from(&mut buf).is_err(), "exactly three datagrams");

    // The process closes its socket: a clear status, no crash.
    let p = prepare(&socket_args(py.pid(), "udp", local, port, "x")).unwrap();
    let mut sender = pidcap_resend::open_sender(&p).unwrap();
    py.say("close");
    assert_eq!(py.line(), "closed");
    let e = sender.send(b"x", Duration::ZERO).unwrap_err();
    assert_eq!(e.kind, ErrorKind::SocketClosed, "{e}");
    assert!(e.message.contains("closed the socket"), "{e}");
    // No socket left to find.
    let (st, s) = run(&socket_args(py.pid(), "udp", local, port, "x"));
    assert_eq!((s.reason, st.len(), st[0].error_kind), (EndReason::Failed, 1, Some(ErrorKind::NoSocket)), "{st:?}");
    // The process exits in the middle of a job.
    py.say("exit");
    let _ = py.child.wait();
    let e = sender.send(b"x", Duration::ZERO).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProcessGone, "{e}");
    let (st, s) = run(&socket_args(py.pid(), "udp", local, port, "x"));
    assert_eq!((s.reason, st[0].error_kind), (EndReason::Failed, Some(ErrorKind::ProcessGone)), "{st:?}");
    assert!(st[0].error.as_deref().unwrap().contains("does not exist"), "{st:?}");
}

#[test]
fn socket_mode_tcp_process_exits_mid_loop() {
    pidcap_testkit::require!(Root, Tool("python3"));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut py = Py::start(TCP_CLIENT, &[port.to_string()]);
    let (_conn, _) = l.accept().unwrap();
    let local: u16 = py.line().parse().unwrap();
    let mut args = socket_args(py.pid(), "tcp", local, port, "x");
    args.count = Some(50);
    args.interval_ms = Some(20);
    let p = prepare(&args).unwrap();
    let pid = py.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut seen = Vec::new();
    let s = run_job(&p, &AtomicBool::new(false), &mut |st| seen.push(st.clone()));
    killer.join().unwrap();
    assert_eq!(s.reason, EndReason::Error, "{seen:?}");
    assert!(s.sent >= 2 && s.sent < 50, "{s:?}");
    let last = seen.last().unwrap();
    assert!(matches!(last.error_kind, Some(ErrorKind::ProcessGone | ErrorKind::SocketClosed)), "{last:?}");
}

#[test]
fn connect_mode_tcp_and_udp() {
    // A TCP server that echoes, on one connection (kept: --keep-connection).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        while all.len() < 15 {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            all.extend_from_slice(&buf[..n]);
            c.write_all(b"echo:").unwrap();
        }
        all
    });
    let args = InjectArgs {
        data: Some("0x50 0x49 0x4e 0x47 0x0a".into()),
        mode: Some(Mode::Connect),
        to: Some(format!("127.0.0.1:{port}")),
        count: Some(3),
        interval_ms: Some(50),
        keep_connection: true,
        ..Default::default()
    };
    let (st, s) = run(&args);
    assert_eq!((s.sent, s.failed, s.bytes), (3, 0, 15), "{st:?}");
    assert_eq!(server.join().unwrap(), b"PING\nPING\nPING\n");
    let r = st[0].reply.as_ref().expect("a reply");
    assert_eq!((r.bytes, r.ascii.as_str(), r.hex.as_str()), (5, "echo:", "6563686f3a"));

    // UDP: the listener gets the edited payload three times.
    let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let args = InjectArgs {
        ascii: Some("GET x".into()),
        replaces: vec!["474554:504f5354".into()],
        mode: Some(Mode::Connect),
        proto: Some("udp".parse().unwrap()),
        to: Some(srv.local_addr().unwrap().to_string()),
        count: Some(3),
        interval_ms: Some(10),
        timeout_ms: Some(50),
        ..Default::default()
    };
    let (st, s) = run(&args);
    assert_eq!((s.sent, s.failed), (3, 0), "{st:?}");
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let n = srv.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"POST x");
    }
    srv.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(srv.recv(&mut buf).is_err(), "exactly three");

    // Nobody listening: refused, clearly.
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (st, s) = run(&InjectArgs {
        data: Some("00".into()),
        mode: Some(Mode::Connect),
        to: Some(free.to_string()),
        ..Default::default()
    });
    assert_eq!((s.reason, st[0].error_kind), (EndReason::Failed, Some(ErrorKind::Refused)), "{st:?}");
}

/// An HTTP/1.0-like server: per connection, one request read, one reply of
/// `size` bytes written, then closed. Returns its port and, at the end,
/// each connection's peer port and request.
/// What the server saw: each connection's peer port and request.
type Seen = Vec<(u16, Vec<u8>)>;

fn one_reply_per_connection(conns: usize, size: usize) -> (u16, std::thread::JoinHandle<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..conns {
            let (mut c, peer) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            let reply: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let _ = c.write_all(&reply); // the reader may stop at its cap and close
            seen.push((peer.port(), buf[..n].to_vec()));
        }
        seen
    });
    (port, h)
}

#[test]
fn connect_mode_makes_a_new_connection_per_send_and_reports_each_reply_whole() {
    let (port, server) = one_reply_per_connection(3, 5000);
    let args = InjectArgs {
        ascii: Some("GET / HTTP/1.0\\r\\n\\r\\n".into()),
        mode: Some(Mode::Connect),
        to: Some(format!("127.0.0.1:{port}")),
        count: Some(3),
        interval_ms: Some(50),
        timeout_ms: Some(3000),
        ..Default::default()
    };
    let (st, s) = run(&args);
    assert_eq!((s.sent, s.failed), (3, 0), "{st:?}");
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, req)| req == b"GET / HTTP/1.0\r\n\r\n"), "{seen:?}");
    let ports: std::collections::BTreeSet<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(ports.len(), 3, "three connections from three ports: {seen:?}");
    for status in &st {
        let r = status.reply.as_ref().expect("a reply per send");
        assert_eq!((r.bytes, r.truncated), (5000, false), "{status:?}");
        assert_eq!(r.data().len(), 5000);
        assert!(r.ascii.starts_with("abcdefghijklmnopqrstuvwxyzabc") && r.ascii.len() == 5000);
    }
    // A reply larger than the cap is cut there and says so.
    let (port, server) = one_reply_per_connection(1, pidcap_resend::MAX_REPLY_BYTES + 10);
    let (st, _) = run(&InjectArgs { to: Some(format!("127.0.0.1:{port}")), count: Some(1), ..args });
    server.join().unwrap();
    let r = st[0].reply.as_ref().unwrap();
    assert_eq!((r.bytes, r.truncated), (pidcap_resend::MAX_REPLY_BYTES, true));
    assert!(st[0].to_string().ends_with("reply 1048576 bytes (cut)"), "{}", st[0]);
}

#[test]
fn raw_mode_udp_reaches_a_listener() {
    pidcap_testkit::require!(Root);
    for (any, host) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "[::1]")] {
        let srv = UdpSocket::bind(any).unwrap();
        srv.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let args = InjectArgs {
            data: Some("de ad be ef".into()),
            patches: vec!["4:0a".into()],
            mode: Some(Mode::Raw),
            proto: Some("udp".parse().unwrap()),
            from: Some(format!("{host}:40404")),
            to: Some(format!("{host}:{}", srv.local_addr().unwrap().port())),
            count: Some(2),
            interval_ms: Some(10),
            ..Default::default()
        };
        let (st, s) = run(&args);
        assert_eq!((s.sent, s.failed), (2, 0), "{st:?}");
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            // A bad checksum would be dropped by the kernel: receiving it proves it right.
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], [0xde, 0xad, 0xbe, 0xef, 0x0a]);
            assert_eq!(from.port(), 40404, "the crafted source port");
        }
    }
}
