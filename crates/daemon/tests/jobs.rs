//! Send jobs through the daemon (real kernel, as root): inject + watch_job
//! streams one status per send, stop_job ends a --forever job, inject by
//! captured packet id uses the process's own socket, a block rule's EPERM
//! is reported, and stopping the daemon stops its jobs. Loopback only.

mod common;

use common::InProcess;
use pidcap_api::protocol::{ErrorCode, Event, InjectArgs};
use pidcap_api::{Client, ClientError};
use pidcap_engine::rules::Action;
use pidcap_resend::{EndReason, ErrorKind, JobState, Mode};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

fn udp_listener() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn count_datagrams(s: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut v = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = s.recv(&mut buf) {
        v.push(buf[..n].to_vec());
    }
    v
}

/// A python UDP client (one of the scripts below) that has sent "hello" to
/// `port` while captured by the daemon; it waits on stdin until killed.
struct UdpClient {
    child: pidcap_testkit::KillOnDrop,
    port: u16,
    _stdin: std::process::ChildStdin,
}

impl UdpClient {
    fn start_captured(c: &mut Client, script: &str, srv: &UdpSocket) -> UdpClient {
        let port = srv.local_addr().unwrap().port();
        let mut child = Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let client_port: u16 = line.trim().parse().unwrap();
        c.start_capture(vec![child.id()], vec![], None, None, false).unwrap();
        use std::io::Write;
        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = srv.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (&b"hello"[..], client_port));
        UdpClient { child: pidcap_testkit::KillOnDrop(child), port: client_port, _stdin: stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Wait until the daemon holds at least `n` packets with this payload.
fn captured_with_payload(c: &mut Client, payload: &[u8], n: usize) -> Vec<pidcap_packet::CapturedPacket> {
    for _ in 0..100 {
        let found: Vec<_> =
            c.get_packets(0, None).unwrap().packets.into_iter().filter(|p| p.payload() == payload).collect();
        if found.len() >= n {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{n} packets with payload {payload:?} were not captured");
}

/// Statuses and the summary of a watched job.
fn watch_to_end(c: &mut Client, job: u64) -> (Vec<pidcap_resend::SendStatus>, pidcap_resend::Summary) {
    c.watch_job(job).unwrap();
    let mut statuses = Vec::new();
    loop {
        match c.next_event().unwrap() {
            Event::SendStatus { job: j, status } => {
                assert_eq!(j, job);
                statuses.push(status);
            }
            Event::JobDone { job: j, summary } => {
                assert_eq!(j, job);
                return (statuses, summary);
            }
            _ => {}
        }
    }
}

#[test]
fn inject_jobs_through_the_daemon() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let d = InProcess::start(None);
    let mut c = d.client();
    let srv = udp_listener();
    let to = srv.local_addr().unwrap().to_string();

    // count 3 -> 3 statuses streamed, then the summary.
    let args = InjectArgs {
        ascii: Some("ping\\n".into()),
        mode: Some(Mode::Connect),
        proto: Some("udp".parse().unwrap()),
        to: Some(to.clone()),
        count: Some(3),
        interval_ms: Some(100),
        timeout_ms: Some(10),
        ..Default::default()
    };
    let job = c.inject(args.clone()).unwrap();
    assert_eq!((job.state, job.count, job.mode), (JobState::Running, 3, Mode::Connect));
    let (st, summary) = watch_to_end(&mut c, job.id);
    assert_eq!(
        st.iter().map(|s| (s.seq, s.ok, s.bytes)).collect::<Vec<_>>(),
        [(1, true, 5), (2, true, 5), (3, true, 5)]
    );
    assert_eq!((summary.sent, summary.failed, summary.bytes, summary.reason), (3, 0, 15, EndReason::Done));
    assert!(summary.duration_ms >= 200, "{summary:?}");
    assert_eq!(count_datagrams(&srv, Duration::from_millis(200)), vec![b"ping\n".to_vec(); 3]);
    // Watching a finished job replays it.
    let (st2, s2) = watch_to_end(&mut c, job.id);
    assert_eq!((st2.len(), s2.reason), (3, EndReason::Done));

    // --forever until stop_job; another job runs at the same time.
    let forever = c.inject(InjectArgs { forever: true, interval_ms: Some(20), count: None, ..args.clone() }).unwrap();
    let other = c.inject(InjectArgs { count: Some(2), interval_ms: Some(50), ..args.clone() }).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let jobs = c.list_jobs().unwrap();
    assert!(jobs.iter().any(|j| j.id == forever.id && j.state == JobState::Running && j.sent >= 5), "{jobs:?}");
    let stopped = c.stop_job(forever.id).unwrap();
    assert_eq!(stopped.state, JobState::Stopped);
    assert_eq!(stopped.summary.as_ref().unwrap().reason, EndReason::Stopped);
    let n = stopped.sent;
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        c.list_jobs().unwrap().iter().find(|j| j.id == forever.id).unwrap().sent,
        n,
        "nothing sent after stop_job"
    );
    let (_, s) = watch_to_end(&mut c, other.id);
    assert_eq!(s.sent, 2);
    let got = count_datagrams(&srv, Duration::from_millis(200));
    assert_eq!(got.len() as u64, n + 2);

    // Bad input: refused before anything is sent.
    let e = c.inject(InjectArgs { data: Some("12 3z".into()), ascii: None, ..args.clone() }).unwrap_err();
    match e {
        ClientError::Api(e) => {
            assert_eq!(e.code, ErrorCode::InvalidPayload);
            assert!(e.message.contains("position 4"), "{}", e.message);
        }
        e => panic!("{e}"),
    }
    assert!(matches!(c.stop_job(999), Err(ClientError::Api(e)) if e.code == ErrorCode::NoSuchJob));
    assert!(matches!(c.watch_job(999), Err(ClientError::Api(e)) if e.code == ErrorCode::NoSuchJob));

    // Stopping the daemon stops its jobs.
    c.inject(InjectArgs { forever: true, interval_ms: Some(10), count: None, ..args }).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    drop(d);
    let _ = count_datagrams(&srv, Duration::from_millis(50));
    assert!(count_datagrams(&srv, Duration::from_millis(300)).is_empty(), "a job outlived the daemon");
}

/// UDP client: a socket connected to the server sends "hello", prints its port, waits.
const UDP_CLIENT: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.send(b"hello")
print("sent", flush=True)
sys.stdin.readline()
"#;

#[test]
fn inject_by_packet_id_uses_the_process_socket_and_reports_blocks() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let d = InProcess::start(None);
    let mut c = d.client();
    let srv = udp_listener();
    let port = srv.local_addr().unwrap().port();
    let py = UdpClient::start_captured(&mut c, UDP_CLIENT, &srv);
    let client_port = py.port;
    let mut buf = [0u8; 64];
    let packet = captured_with_payload(&mut c, b"hello", 1).remove(0);

    // By id, edited, default mode (socket: the process is alive).
    let args = InjectArgs {
        packet: Some(packet.id),
        patches: vec!["0:4a".into()],
        count: Some(2),
        interval_ms: Some(10),
        ..Default::default()
    };
    let job = c.inject(args.clone()).unwrap();
    assert_eq!((job.mode, job.pid), (Mode::Socket, Some(py.pid())));
    let (st, s) = watch_to_end(&mut c, job.id);
    assert_eq!((s.sent, s.failed), (2, 0), "{st:?}");
    for _ in 0..2 {
        let (n, from) = srv.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (&b"Jello"[..], client_port), "from the client's own socket");
    }
    // Resending through the process's socket does not make the daemon its
    // owner: the injected datagrams are captured as the client's.
    let injected = captured_with_payload(&mut c, b"Jello", 2);
    assert!(injected.iter().all(|p| p.pid == py.pid() && p.decoded.local_port == client_port), "{injected:?}");
    // A block rule on the flow: the send is refused with EPERM, reported as `blocked`.
    c.add_filter(&format!("out:udp:{port}"), Action::Block, None).unwrap();
    let job = c.inject(InjectArgs { count: Some(1), ..args }).unwrap();
    let (st, s) = watch_to_end(&mut c, job.id);
    assert_eq!((s.sent, s.failed), (0, 1), "{st:?}");
    assert_eq!(st[0].error_kind, Some(ErrorKind::Blocked), "{st:?}");
    assert!(st[0].error.as_deref().unwrap().contains("EPERM"), "{st:?}");
    assert!(count_datagrams(&srv, Duration::from_millis(200)).is_empty());
}

/// An unconnected UDP client: every send is a sendto(), so the kernel's
/// sendmsg hook sees it, and sees pidcap's resends through the same socket.
const UDP_SENDTO_CLIENT: &str = r#"
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.bind(("127.0.0.1", 0))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.sendto(b"hello", ("127.0.0.1", int(sys.argv[1])))
print("sent", flush=True)
sys.stdin.readline()
"#;

#[test]
fn resending_on_an_unconnected_udp_socket_keeps_its_owner() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let d = InProcess::start(None);
    let mut c = d.client();
    let srv = udp_listener();
    let py = UdpClient::start_captured(&mut c, UDP_SENDTO_CLIENT, &srv);
    let original = captured_with_payload(&mut c, b"hello", 1).remove(0);

    let args = InjectArgs {
        packet: Some(original.id),
        patches: vec!["0:4a".into()],
        count: Some(2),
        interval_ms: Some(10),
        ..Default::default()
    };
    let job = c.inject(args).unwrap();
    assert_eq!(job.mode, Mode::Socket);
    let (st, s) = watch_to_end(&mut c, job.id);
    assert_eq!((s.sent, s.failed), (2, 0), "{st:?}");
    // The resends went out through the client's socket and are the client's packets:
    // the daemon's own sendto() did not make it the socket's owner.
    for p in &captured_with_payload(&mut c, b"Jello", 2) {
        assert_eq!(
            (p.pid, p.decoded.local_port, p.socket_cookie),
            (py.pid(), py.port, original.socket_cookie),
            "{p:?}"
        );
    }
}
