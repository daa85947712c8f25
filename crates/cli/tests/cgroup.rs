//! `pidcap capture --cgroup/--unit/--container` through the real binary, as
//! root, each test in its own network namespace and its own cgroups
//! (pidcap_testkit::cgroup::Cgroup, removed on drop): a process that joins
//! the cgroup after the capture started (captured from its next send, also
//! on a socket it already had; a bystander is not), a process already in a
//! child cgroup, a synthetic docker cgroup found by a 12-digit prefix, a unit
//! found by name (its `.service` added), the union with --pid, and the
//! errors (a missing cgroup, an ambiguous container) before anything runs.

mod common;

use common::*;
use pidcap_packet::{CapturedPacket, Direction};
use pidcap_testkit::cgroup::Cgroup;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A UDP client that sends `before` to PORT, says `ready`, waits for a
/// line on stdin, then sends `after` three times on the same socket (and
/// reads the echoes of the udp-server there). With `late`, the socket is
/// made after the line, and nothing is sent before.
const JOINER: &str = r#"
import socket, sys
port = int(sys.argv[1])
def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    return s
if sys.argv[2] != "late":
    s = sock()
    s.sendto(b"before", ("127.0.0.1", port))
    s.recvfrom(100)
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[2] == "late":
    s = sock()
for i in range(3):
    s.sendto(b"after", ("127.0.0.1", port))
    s.recvfrom(100)
print("done", flush=True)
"#;

struct Joiner {
    run: Running,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Joiner {
    fn start(ns: &NetNs, port: u16, when: &str) -> Joiner {
        let mut child = ns
            .command("python3")
            .args(["-c", JOINER, &port.to_string(), when])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut j = Joiner { run: Running::from_child(child), stdin, stdout };
        j.expect("ready");
        j
    }

    fn expect(&mut self, what: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), what, "the joiner said {line:?}");
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.expect("done");
    }

    fn pid(&self) -> u32 {
        self.run.id()
    }
}

fn payload(p: &CapturedPacket) -> &[u8] {
    p.payload()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Stop a `pidcap capture` (SIGINT) and return its file's packets and its stderr.
fn stop(pidcap: Running, mut lines: StderrLines, file: &Path) -> (Vec<CapturedPacket>, Vec<String>) {
    pidcap.signal(libc::SIGINT);
    let status = pidcap.wait();
    lines.wait_for("packets captured", Duration::from_secs(10));
    assert!(status.success(), "pidcap: {status}; {:?}", lines.seen);
    (read_capture(file), lines.seen)
}

/// `udp-client` datagrams of a bystander (outside every cgroup the capture names).
fn bystander(ns: &NetNs, port: u16) {
    run_ok(&mut ns.peer(&["udp-client", "127.0.0.1", &port.to_string(), "2", "bystander"]));
}

#[test]
fn a_process_that_joins_after_the_capture_started_is_captured_from_its_next_send() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-join");
    let cg = Cgroup::new("join");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let scratch = Scratch::new("cg-join");
    let file = scratch.path("join.pcapng");
    let (pidcap, lines) =
        start_pidcap(pidcap().args(["capture", "-U", "--cgroup", &cg.path(), "-w", s(&file)]).stdout(Stdio::null()));
    assert!(
        lines.seen.iter().any(|l| l.contains(&format!("cgroup {}: 0 processes", cg.dir().display()))),
        "{:?}",
        lines.seen
    );
    // It sends on its socket while the capture runs, outside the cgroup (the
    // kernel records it as the socket's owner, not a target), then joins
    // and sends on the same socket.
    let mut joiner = Joiner::start(&ns, server.port, "early");
    bystander(&ns, server.port);
    cg.add(joiner.pid());
    joiner.go();
    bystander(&ns, server.port);
    wait_for_capture(&file, "the joiner's 3 datagrams and their echoes", |p| p.len() >= 6);
    let (packets, _) = stop(pidcap, lines, &file);

    assert!(packets.iter().all(|p| p.pid == joiner.pid()), "only the joiner: {packets:?}");
    let out: Vec<&[u8]> = packets.iter().filter(|p| p.direction == Direction::Outbound).map(payload).collect();
    let inb: Vec<&[u8]> = packets.iter().filter(|p| p.direction == Direction::Inbound).map(payload).collect();
    assert_eq!(out, [b"after"; 3], "what it sent after it joined, nothing from before");
    assert_eq!(inb, [b"echo:after"; 3], "the echoes it received");
}

#[test]
fn a_process_already_in_a_child_cgroup_is_captured_with_its_open_socket() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-child");
    let parent = Cgroup::new("child");
    let inner = parent.child("inner");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    inner.add(server.pid);
    let scratch = Scratch::new("cg-child");
    let file = scratch.path("child.pcapng");

    let (pidcap, lines) =
        start_pidcap(pidcap().args(["capture", "-U", "--cgroup"]).arg(parent.dir()).args(["-w", s(&file)]));
    assert!(
        lines.seen.iter().any(|l| l.contains(&format!("cgroup {}: 1 process now", parent.dir().display()))),
        "{:?}",
        lines.seen
    );
    // A client outside the cgroup: its datagrams reach the server (captured
    // as the server's, inbound), the echoes are the server's too.
    bystander(&ns, server.port);
    wait_for_capture(&file, "2 datagrams in and 2 echoes out", |p| p.len() >= 4);
    let (packets, _) = stop(pidcap, lines, &file);
    assert_eq!(packets.len(), 4, "{packets:?}");
    let from_client = |p: &CapturedPacket| p.payload().windows(9).any(|w| w == b"bystander");
    assert!(packets.iter().all(|p| p.pid == server.pid && from_client(p)), "{packets:?}");
    assert_eq!(packets.iter().filter(|p| p.direction == Direction::Inbound).count(), 2);
}

/// 64 hex digits, unique to this test run, starting with `prefix`.
fn container_id(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let id = format!("{prefix}{:08x}{:032x}{:024x}", std::process::id(), nanos, 0xc0ffee);
    id[..64].to_string()
}

#[test]
fn a_container_is_found_by_a_12_digit_prefix_and_united_with_a_pid() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-ctr");
    let slice = Cgroup::new("ctr");
    let id = container_id("");
    let ctr = slice.child(&format!("docker-{id}.scope"));
    let in_container = ns.server(&["udp-server", "127.0.0.1", "0"]);
    ctr.add(in_container.pid);
    let by_pid = ns.server(&["udp-server", "127.0.0.1", "0"]);
    // In another container beside it: never captured.
    let other = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let beside = slice.child(&format!("docker-{}.scope", container_id("ff")));
    beside.add(other.pid);
    let scratch = Scratch::new("cg-ctr");
    let file = scratch.path("ctr.pcapng");

    let (pidcap, lines) = start_pidcap(pidcap().args([
        "capture",
        "-U",
        "--container",
        &id[..12],
        "--pid",
        &by_pid.pid.to_string(),
        "-w",
        s(&file),
    ]));
    let said = format!("container docker:{} (cgroup {}): 1 process now", &id[..12], ctr.dir().display());
    assert!(lines.seen.iter().any(|l| l.contains(&said)), "{said:?} in {:?}", lines.seen);
    for port in [in_container.port, by_pid.port, other.port] {
        bystander(&ns, port);
    }
    wait_for_capture(&file, "4 packets of each target", |p| p.len() >= 8);
    let (packets, _) = stop(pidcap, lines, &file);
    let of = |pid: u32| packets.iter().filter(|p| p.pid == pid).count();
    assert_eq!((of(in_container.pid), of(by_pid.pid), of(other.pid)), (4, 4, 0), "{packets:?}");
    assert_eq!(packets.len(), 8);
}

#[test]
fn a_unit_is_found_by_its_name_without_service() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-unit");
    let name = Cgroup::unique("unit");
    let slice = Cgroup::named(&format!("{name}.slice"));
    let unit = slice.child(&format!("{name}.service"));
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    unit.add(server.pid);
    let scratch = Scratch::new("cg-unit");
    let file = scratch.path("unit.pcapng");

    let (pidcap, lines) = start_pidcap(pidcap().args(["capture", "-U", "--unit", &name, "-w", s(&file)]));
    let said = format!("unit {name}.service (cgroup {}): 1 process now", unit.dir().display());
    assert!(lines.seen.iter().any(|l| l.contains(&said)), "{said:?} in {:?}", lines.seen);
    bystander(&ns, server.port);
    wait_for_capture(&file, "the unit's 4 packets", |p| p.len() >= 4);
    let (packets, _) = stop(pidcap, lines, &file);
    assert_eq!(packets.len(), 4);
    assert!(packets.iter().all(|p| p.pid == server.pid), "{packets:?}");
}

/// `pidcap ARGS` that must fail before capturing: its stderr.
fn refused(args: &[&str]) -> String {
    let out = pidcap().args(args).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("capturing"), "refused before the capture started: {err}");
    err
}

#[test]
fn a_missing_cgroup_unit_or_container_and_an_ambiguous_prefix_are_refused() {
    require!(Root);
    let me = std::process::id().to_string();
    let missing = Cgroup::unique("missing");
    let err = refused(&["capture", "--pid", &me, "--cgroup", &missing]);
    assert!(err.contains(&format!("cgroup {missing}: no such cgroup")), "{err}");
    let err = refused(&["capture", "--cgroup", "/proc/self"]);
    assert!(err.contains("no such cgroup") && err.contains("the cgroup2 hierarchy is mounted at"), "{err}");
    let err = refused(&["capture", "--cgroup", &format!("{missing}/../..")]);
    assert!(err.contains("not in the cgroup2 hierarchy"), "{err}");
    let err = refused(&["capture", "--unit", &missing]);
    assert!(err.contains(&format!("no cgroup of systemd unit {missing}.service")), "{err}");
    let err = refused(&["capture", "--container", "0123456789ab"]);
    assert!(err.contains("no container 0123456789ab"), "{err}");

    // Two containers whose ids share the 12 digits given.
    let slice = Cgroup::new("ambiguous");
    let a = container_id("ab12cd34ef56a");
    let b = container_id("ab12cd34ef56b");
    let _ca = slice.child(&format!("docker-{a}.scope"));
    let _cb = slice.child(&format!("libpod-{b}.scope"));
    let err = refused(&["capture", "--container", "ab12cd34ef56"]);
    assert!(err.contains("container ab12cd34ef56 is ambiguous"), "{err}");
    assert!(err.contains(&a) && err.contains(&b), "both candidates listed: {err}");
}

#[test]
fn help_names_the_cgroup_options() {
    let out = pidcap().args(["capture", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--cgroup <PATH>", "--unit <NAME>", "--container <ID>"] {
        assert!(text.contains(opt), "{opt} in {text}");
    }
    // A cgroup is a target: `capture` with nothing else is not refused for lack of one.
    let out = Command::new(env!("CARGO_BIN_EXE_pidcap")).args(["capture"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cgroup"), "the target group names it");
}

#[test]
fn in_a_cgroup_namespace_a_process_that_joins_is_matched_below_the_namespaces_root() {
    require!(Root, Tool("python3"), Tool("unshare"));
    let ns = NetNs::new("cg-ns");
    // pidcap runs in a cgroup namespace whose root is `outer`, with its own
    // cgroup2 mount there: it sees `outer/sub` as `/sub`, one level deep, where
    // the kernel counts two.
    let outer = Cgroup::new("cgns");
    let inner = outer.child("sub");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let scratch = Scratch::new("cg-ns");
    let file = scratch.path("ns.pcapng");
    // Its socket is made once it is in: programs attached to the namespace's
    // root (where pidcap attaches there) run only for sockets made below it.
    let mut joiner = Joiner::start(&ns, server.port, "late");
    let root = pidcap_testkit::cgroup::cgroup2_root();
    let script = "echo $$ > \"$1/cgroup.procs\" && root=\"$2\" && shift 2 && exec unshare -C -m sh -c \
                  'umount -l \"$0\" && mount -t cgroup2 none \"$0\" && exec \"$@\"' \"$root\" \"$@\"";
    let (pidcap, lines) = start_pidcap(
        Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(outer.dir())
            .arg(&root)
            .arg(env!("CARGO_BIN_EXE_pidcap"))
            .args(["capture", "-U", "--cgroup", "/sub", "-w", s(&file)]),
    );
    assert!(lines.seen.iter().any(|l| l.contains(": 0 processes now")), "{:?}", lines.seen);
    inner.add(joiner.pid());
    joiner.go();
    wait_for_capture(&file, "the joiner's 3 datagrams and their echoes", |p| p.len() >= 6);
    let (packets, _) = stop(pidcap, lines, &file);
    assert!(packets.iter().all(|p| p.pid == joiner.pid()), "{packets:?}");
    assert_eq!(packets.len(), 6);
}

/// `pidcap ctl --socket SOCK --json ARGS`: its JSON lines.
fn ctl(sock: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(pidcap().args(["ctl", "--json", "--socket"]).arg(sock).args(args));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The daemon's held packets: (pid, payload).
fn held(sock: &Path) -> Vec<(u32, String)> {
    ctl(sock, &["packets", "--since", "0"])
        .iter()
        .map(|p| {
            let data = pidcap_packet::hex::parse(p["data"].as_str().unwrap()).unwrap();
            (p["pid"].as_u64().unwrap() as u32, String::from_utf8_lossy(&data[28.min(data.len())..]).into_owned())
        })
        .collect()
}

fn wait_held(sock: &Path, what: &str, done: impl Fn(&[(u32, String)]) -> bool) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = held(sock);
        if done(&h) {
            return h;
        }
        assert!(std::time::Instant::now() < deadline, "the daemon never held {what}: {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemon_captures_a_cgroup_and_its_next_capture_does_not_inherit_it() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-daemon");
    let cg = Cgroup::new("daemon");
    let scratch = Scratch::new("cg-daemon");
    let sock = scratch.path("pidcap.sock");
    let mut daemon =
        Running::from_child(pidcap().args(["daemon", "--socket"]).arg(&sock).stderr(Stdio::null()).spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon never made its socket");
        assert!(daemon.try_wait().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    cg.add(server.pid);
    // A process name no process has yet (the kernel takes a process's name from the file it execs).
    let name = format!("pcg{}", std::process::id() % 100_000);
    let named = scratch.path(&name);
    std::os::unix::fs::symlink(python_executable(), &named).unwrap();

    let started = ctl(&sock, &["start", "--cgroup", &cg.path(), "--name", &name]);
    assert_eq!(started[0]["targets"], serde_json::json!([server.pid]), "{started:?}");
    bystander(&ns, server.port);
    let h = wait_held(&sock, "the server's 4 packets", |h| h.len() >= 4);
    assert!(h.iter().all(|(pid, _)| *pid == server.pid), "{h:?}");
    ctl(&sock, &["stop"]);
    run_ok(pidcap().args(["ctl", "--socket"]).arg(&sock).arg("clear"));

    // The next capture names another process only: a process that joins the
    // first capture's cgroup now, or has its name, is not captured.
    let other = ns.server(&["udp-server", "127.0.0.1", "0"]);
    ctl(&sock, &["start", "--pid", &other.pid.to_string()]);
    let mut joiner = Joiner::start(&ns, server.port, "late");
    cg.add(joiner.pid());
    joiner.go();
    let mut by_name = ns.command(&named);
    run_ok(by_name.arg(peer_script()).args(["udp-client", "127.0.0.1", &server.port.to_string(), "2", "named"]));
    bystander(&ns, other.port);
    let h =
        wait_held(&sock, "the other server's 4 packets", |h| h.iter().filter(|(p, _)| *p == other.pid).count() >= 4);
    assert!(h.iter().all(|(pid, _)| *pid == other.pid), "nothing of the old cgroup: {h:?}");

    // A cgroup the daemon cannot find is an invalid argument, and nothing starts.
    ctl(&sock, &["stop"]);
    let out =
        pidcap().args(["ctl", "--socket"]).arg(&sock).args(["start", "--container", "0123456789ab"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no container 0123456789ab"), "{err}");
    assert_eq!(ctl(&sock, &["state"])[0]["running"], false);
}

/// A UDP client on a connected socket (connect, then send: no socket
/// operation the kernel layer hooks in process context after the connect):
/// sends `before`, says `ready`, waits for a line, then sends `after` every
/// 20 ms until the next line (at most 10 s).
const CONNECTED: &str = r#"
import select, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.send(b"before")
print("ready", flush=True)
sys.stdin.readline()
for i in range(500):
    s.send(b"after")
    if select.select([sys.stdin], [], [], 0.02)[0]:
        break
print("done", flush=True)
"#;

#[test]
fn a_process_that_joins_with_a_connected_socket_is_taken_by_the_next_look_at_the_cgroup() {
    require!(Root, Tool("python3"));
    let ns = NetNs::new("cg-conn");
    let cg = Cgroup::new("conn");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let scratch = Scratch::new("cg-conn");
    let file = scratch.path("conn.pcapng");
    let (pidcap, lines) = start_pidcap(pidcap().args(["capture", "-U", "--cgroup", &cg.path(), "-w", s(&file)]));
    let mut child = ns
        .command("python3")
        .args(["-c", CONNECTED, &server.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let joiner = Running::from_child(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    cg.add(joiner.id());
    writeln!(stdin, "go").unwrap();
    let pid = joiner.id();
    wait_for_capture(&file, "the joiner's datagrams", |p| {
        p.iter().filter(|p| p.pid == pid && p.direction == Direction::Outbound).count() >= 3
    });
    writeln!(stdin, "stop").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    let (packets, _) = stop(pidcap, lines, &file);
    assert!(packets.iter().all(|p| p.pid == pid), "{packets:?}");
    let out: Vec<&[u8]> = packets.iter().filter(|p| p.direction == Direction::Outbound).map(payload).collect();
    assert!(out.iter().all(|p| *p == b"after"), "nothing from before it joined: {out:?}");
}
