//! The daemon over its socket on the real kernel (as root): real traffic
//! captured through the daemon, rules enforced on real sockets and counted,
//! another user kept out or let in by the group, SIGKILL leaving nothing in
//! force, a flood that a subscriber who does not read must not slow down.
//! The protocol itself is tested on the fake kernel, without root, in
//! tests/protocol.rs; TLS plaintext records on the real kernel in tests/tls.rs.

mod common;

use common::{config, ebpf, socket_path, wait_for, InProcess, NetNs, Outcome, Prober, Server};
use pidcap_api::protocol::{ErrorCode, Event};
use pidcap_api::{Client, ClientError};
use pidcap_daemon::Daemon;
use pidcap_engine::rules::Action;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PORT: u16 = 8080;
fn api_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Api(e) => e.code,
        e => panic!("expected an API error, got {e}"),
    }
}

#[test]
fn real_traffic_is_captured_paged_and_filtered_live_through_the_socket() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("daemon");
    let _server = Server::start(&ns, PORT);
    let mut target = Prober::start(&ns);
    let d = InProcess::start(None);
    let mut c = d.client();
    let mut sub1 = d.client();
    let mut sub2 = d.client();
    sub1.subscribe(None).unwrap();
    sub2.subscribe(None).unwrap();

    let started = c.start_capture(vec![target.pid()], vec![], Some(200), Some(10_000), false).unwrap();
    assert_eq!(started.targets, [target.pid()]);
    assert_eq!(
        api_code(c.start_capture(vec![target.pid()], vec![], None, None, false).unwrap_err()),
        ErrorCode::AlreadyRunning
    );
    for _ in 0..5 {
        assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    }
    // Page through everything, 7 at a time: no gap, no duplicate.
    let mut ids = vec![];
    let mut since = 0;
    assert!(wait_for(Duration::from_secs(3), || c.get_state().unwrap().stats.received >= 25));
    loop {
        let page = c.get_packets(since, Some(7)).unwrap();
        assert_eq!(page.missed, 0);
        ids.extend(page.packets.iter().map(|p| p.id));
        assert!(page.packets.iter().all(|p| p.pid == target.pid() && p.data.len() <= 200));
        since = page.next_since;
        if !page.more {
            break;
        }
    }
    let n = ids.len() as u64;
    assert!(n >= 25, "5 TCP connections make at least 25 packets, got {n}");
    assert_eq!(ids, (started.first_id..started.first_id + n).collect::<Vec<_>>());
    let s = c.get_state().unwrap();
    assert!(s.running);
    assert_eq!((s.stats.received, s.stats.ring_len as u64, s.stats.kernel.captured), (n, n, n));
    assert_eq!((s.oldest_id, s.newest_id), (Some(started.first_id), Some(started.first_id + n - 1)));
    assert_eq!(s.targets.len(), 1);
    assert!(s.targets[0].alive && s.targets[0].requested);
    assert_eq!(s.subscribers, 2);

    // Both subscribers saw the same packets.
    let collect = |cl: &mut Client| {
        let mut got = BTreeSet::new();
        while got.len() < n as usize {
            if let Event::Packet { packet } = cl.next_event().unwrap() {
                got.insert(packet.id);
            }
        }
        got
    };
    let (a, b) = (collect(&mut sub1), collect(&mut sub2));
    assert_eq!(a, b);
    assert_eq!(a, ids.iter().copied().collect());

    // Filters, live: block, see it refused and counted, disable, remove.
    let f = c.add_filter("tcp:8080", Action::Block, None).unwrap();
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    let s = c.get_state().unwrap();
    assert_eq!(s.filters[0].hits, 1);
    assert_eq!(s.filters[0].spec, "block:tcp:8080");
    assert_eq!(s.stats.kernel.connect_blocked, 1);
    c.set_filter_enabled(f.id, false).unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    c.set_filter_enabled(f.id, true).unwrap();
    let allow = c.add_filter("[::1]", Action::Allow, Some(0)).unwrap();
    assert_eq!(allow.index, 0);
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    assert_eq!(target.try_("tcp6", PORT), Outcome::Ok);
    let s = c.get_state().unwrap();
    // [allow [::1], block tcp:8080]: the block's hits survived the list changes.
    assert_eq!(s.filters[1].hits, 2, "{:?}", s.filters);
    assert!(s.filters[0].hits >= 1, "{:?}", s.filters);
    c.remove_filter(f.id).unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    assert_eq!(api_code(c.remove_filter(f.id).unwrap_err()), ErrorCode::NoSuchFilter);
    assert_eq!(api_code(c.add_filter("tcp:http", Action::Block, None).unwrap_err()), ErrorCode::InvalidRule);
    c.clear_filters().unwrap();
    assert!(c.get_state().unwrap().filters.is_empty());

    // clear_buffer empties the ring; ids go on.
    let before = c.get_state().unwrap().newest_id.unwrap();
    let v = c.clear_buffer().unwrap();
    assert!(v.cleared > 0);
    let page = c.get_packets(before, None).unwrap();
    assert!(page.packets.is_empty());
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok);
    assert!(wait_for(Duration::from_secs(2), || !c.get_packets(before, None).unwrap().packets.is_empty()));
    let page = c.get_packets(0, None).unwrap();
    assert_eq!(page.packets[0].id, before + 1, "ids continue after a clear");
    assert_eq!(page.missed, before, "a client that asks from 0 is told what it missed");

    // inject of a packet no longer held: a clear error (jobs are tested in tests/jobs.rs).
    let args = pidcap_api::protocol::InjectArgs { packet: Some(1), ..Default::default() };
    assert_eq!(
        api_code(c.call(pidcap_api::ConnectionOp::Inject(Box::new(args))).unwrap_err()),
        ErrorCode::InvalidArgument
    );

    let s = c.stop_capture().unwrap();
    assert!(!s.running);
    assert_eq!(api_code(c.stop_capture().unwrap_err()), ErrorCode::NotRunning);
    // Packets stay readable after stop.
    assert!(!c.get_packets(0, None).unwrap().packets.is_empty());
}

/// Run a python client as `uid:gid` (with `groups`) that connects and says what happened.
fn connect_as(socket: &Path, uid: u32, gid: u32, groups: &[u32]) -> String {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={}", groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",")));
    }
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("denied", e.errno); sys.exit()
s.sendall(b'{"v":1,"id":1,"op":"get_state"}\n')
print(s.makefile().readline().strip())
"#;
    // The system python: a per-user one (pyenv under /root) is out of the user's reach.
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let out = cmd.args([python, "-c", script]).arg(socket).stderr(Stdio::inherit()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ensure(cmd: &[&str]) {
    let _ = Command::new(cmd[0]).args(&cmd[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("id {flag} {name}"))
}

#[test]
fn only_root_and_the_group_may_connect() {
    pidcap_testkit::require!(Root, Tool("setpriv"), Tool("python3"), Tool("groupadd"), Tool("useradd"), Tool("id"));
    ensure(&["groupadd", "--system", "pidcap-test"]);
    ensure(&["useradd", "--system", "--no-create-home", "pidcap-test-nobody"]);
    let (uid, ugid, group) = (
        id_of("-u", "pidcap-test-nobody"),
        id_of("-g", "pidcap-test-nobody"),
        pidcap_daemon::server::group_gid("pidcap-test").unwrap(),
    );
    let d = InProcess::start(Some("pidcap-test"));
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let dir = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o750);
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.gid(), dir.gid()), (group, group));

    let outsider = connect_as(&d.socket, uid, ugid, &[]);
    assert!(outsider.starts_with("denied 13"), "a user outside the group is refused: {outsider}");
    let member = connect_as(&d.socket, uid, ugid, &[group]);
    assert!(member.contains(r#""ok":true"#), "a member of the group gets in: {member}");
    // The daemon is unaffected.
    assert!(!d.client().get_state().unwrap().running);
}

/// The daemon process of the SIGKILL test (the helper binary
/// `pidcap-daemon-test-child`), killed on drop if the test fails first.
struct DaemonChild(pidcap_testkit::KillOnDrop);

impl DaemonChild {
    fn start(socket: &Path) -> DaemonChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pidcap-daemon-test-child"))
            .arg(socket)
            .stdin(Stdio::piped()) // it exits when this closes
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test daemon");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the daemon process exited early: {:?}", child.wait());
        }
        DaemonChild(pidcap_testkit::KillOnDrop(child))
    }
}

#[test]
fn sigkill_of_the_daemon_leaves_no_rule_in_force() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("sigkill");
    let _server = Server::start(&ns, PORT);
    let mut target = Prober::start(&ns);
    let socket = socket_path();
    let mut child = DaemonChild::start(&socket);
    let mut c = Client::connect(&socket).unwrap();
    c.start_capture(vec![target.pid()], vec![], None, None, false).unwrap();
    c.add_filter("tcp:8080", Action::Block, None).unwrap();
    assert!(target.try_("tcp4", PORT).is_eperm_at_once());
    assert_eq!(c.get_state().unwrap().daemon_pid, child.0.id(), "the rule is the child's");

    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    assert_eq!(target.try_("tcp4", PORT), Outcome::Ok, "no block rule outlives the daemon");
    // Its programs are gone from the kernel too (no link left holding them).
    let pid = child.0.id();
    assert!(wait_for(Duration::from_secs(2), || !Path::new(&format!("/proc/{pid}")).exists()));
    // The stale socket does not stop the next daemon.
    let d = Daemon::bind(config(&socket, None), ebpf).expect("restart after SIGKILL");
    drop(d);
}

/// Sends this many datagrams to 127.0.0.1:PORT in bursts of 100 (a
/// millisecond apart: a debug build's drain on a loaded CI machine keeps up
/// with that, while a capture stalled behind a subscriber still receives
/// nothing past what it had), then waits for stdin.
const FLOOD: &str = r#"
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"x" * 32, ("127.0.0.1", port))
    if i % 100 == 99:
        time.sleep(0.001)
print("done", flush=True)
sys.stdin.readline()
"#;

#[test]
fn a_subscriber_that_does_not_read_never_blocks_capture_and_is_told_what_it_missed() {
    pidcap_testkit::require!(Root, Tool("python3"));
    const SENT: u64 = 30_000;
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // never read: the kernel drops what overflows
    let port = sink.local_addr().unwrap().port();
    let mut flood = Command::new("python3")
        .args(["-c", FLOOD, &SENT.to_string(), &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let d = InProcess::start(None);
    let mut c = d.client();
    let mut slow = d.client();
    slow.subscribe(None).unwrap(); // ... and then does not read for a while
    c.start_capture(vec![flood.id()], vec![], Some(64), Some(100_000), false).unwrap();
    let mut stdin = flood.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    let mut line = String::new();
    BufReader::new(flood.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");

    // The capture kept up: every datagram reached the daemon's ring.
    assert!(
        wait_for(Duration::from_secs(10), || c.get_state().unwrap().stats.received >= SENT),
        "capture stalled behind a subscriber that does not read: {:?}",
        c.get_state().unwrap().stats
    );
    let s = c.get_state().unwrap();
    // For the record (visible with --nocapture): what the kernel lost, if anything.
    println!("flood: received {} of {SENT}, ring_full {}", s.stats.received, s.stats.kernel.ring_full);
    assert_eq!((s.stats.kernel.ring_full, s.stats.evicted), (0, 0));
    let last = s.newest_id.unwrap();

    // The slow subscriber is told how much it missed, then gets the newest packets.
    let (mut packets, mut missed) = (0u64, 0u64);
    loop {
        match slow.next_event().unwrap() {
            Event::Packet { packet } => {
                packets += 1;
                if packet.id == last {
                    break;
                }
            }
            Event::Missed { count } => missed += count,
            _ => {}
        }
    }
    assert!(missed > 0, "a subscriber {SENT} packets behind must be told it missed some");
    assert!(packets < SENT && packets + missed >= SENT, "seen {packets} + missed {missed} accounts for {SENT}");
    let _ = flood.kill();
    let _ = flood.wait();
}
