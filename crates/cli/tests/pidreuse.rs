//! Fault tests: a target's pid given to another process (issue 10, item 1).
//!
//! Each test makes the reuse happen for sure: the target exits and is
//! reaped, then a helper (tests/data/pidreuse.py) forks until a child is
//! given the same pid (writing PID-1 to /proc/sys/kernel/ns_last_pid before
//! each fork), or fails saying it could not. That successor connects and
//! sends: it must not be captured nor blocked. The first two run the real
//! `pidcap capture`; the others drive the kernel layer directly, without the
//! userspace liveness checks, so that what the kernel does on its own shows.

mod common;

use common::*;
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig, KernelTarget, Process, Rule};
use std::io::Write;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn helper_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pidreuse.py")
}

/// A tests/data/pidreuse.py process in the test's namespace, talked to over
/// its stdin and stdout; killed on drop.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    what: String,
}

impl Helper {
    fn start(ns: &NetNs, args: &[&str]) -> Helper {
        let mut child = ns
            .command("python3")
            .arg(helper_script())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the pidreuse helper");
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper { child, stdin, lines, what: format!("pidreuse.py {}", args.join(" ")) }
    }

    fn send(&mut self, commands: &str) {
        self.stdin.write_all(format!("{commands}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Its next JSON line (30 s at most).
    fn report(&mut self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{} said nothing ({e})", self.what));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{} said {line:?}: {e}", self.what))
    }

    /// The pid in its ready line.
    fn ready_pid(&mut self) -> u32 {
        let r = self.report();
        assert_eq!(r["ready"], true, "{r}");
        r["pid"].as_u64().unwrap() as u32
    }

    /// Tell a successor to take `pid` (and then `more` commands): fails the
    /// test, saying why, when the reuse could not be made to happen.
    fn take_pid(&mut self, pid: u32, more: &str) {
        self.send(&if more.is_empty() { "go".to_string() } else { format!("go\n{more}") });
        let r = self.report();
        assert!(r["error"].is_null(), "the test could not make the pid reused: {}", r["error"]);
        assert_eq!(r["pid"].as_u64(), Some(u64::from(pid)), "the successor did not get pid {pid}: {r}");
    }

    /// Tell it to exit and reap it: its pid is free once this returns.
    fn exit(mut self) {
        self.send("exit");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.what);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pidcap capture ...` with its stderr read line by line; killed on drop.
struct Capturing {
    child: Child,
    stderr: StderrLines,
}

impl Capturing {
    fn spawn(cmd: &mut Command) -> Capturing {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start pidcap");
        let stderr = StderrLines::new(child.stderr.take().unwrap());
        Capturing { child, stderr }
    }

    /// Wait (at most `timeout`) for pidcap to exit by itself.
    fn exited_within(&mut self, timeout: Duration, why: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pidcap did not exit within {timeout:?}: {why}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_process_given_an_exited_targets_pid_is_neither_captured_nor_blocked_and_the_capture_ends() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse");
    let scratch = Scratch::new("reuse");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let mut target = Helper::start(&ns, &["target", "127.0.0.1", &tcp_port, &udp_port]);
    let x = target.ready_pid();
    let mut successor = Helper::start(&ns, &["successor", &x.to_string(), "127.0.0.1", &tcp_port, &udp_port, "6"]);
    assert_eq!(successor.report()["ready"], true);

    let file = scratch.path("reuse.pcapng");
    let mut cap = Capturing::spawn(
        pidcap().args(["capture", "--pid", &x.to_string(), "--block", &format!("tcp:{tcp_port}"), "-w"]).arg(&file),
    );
    cap.stderr.wait_for("pidcap: capturing", Duration::from_secs(30));

    // While X runs, its rule is in force and its packets are captured.
    target.send("go");
    let r = target.report();
    assert_eq!(r["connect"], "EPERM", "X's own connect is blocked: {r}");
    wait_for_capture(&file, "X's datagram and its echo", |p| p.len() >= 2);

    // X exits and is reaped; at once another process is given its pid, and
    // connects 6 times to the port X may not reach.
    target.exit();
    successor.take_pid(x, "connect");
    let r = successor.report();
    assert_eq!(r["connected"], 6, "the successor was blocked by X's rule: {r}");

    // The capture ends because X exited, while its successor still runs.
    let status = cap.exited_within(Duration::from_secs(10), "the capture must end when its target exits");
    assert!(status.success(), "pidcap exited with {status}");
    let summary = cap.stderr.wait_for("packets captured", Duration::from_secs(5));
    assert!(summary.starts_with("pidcap: 2 packets captured"), "{summary}");

    let packets = read_capture(&file);
    let successor_ports: Vec<u64> = r["ports"].as_array().unwrap().iter().filter_map(|p| p.as_u64()).collect();
    for p in &packets {
        assert_eq!(p.pid, x);
        assert!(!successor_ports.contains(&u64::from(p.decoded.local_port)), "a successor connection: {p:?}");
        let payload = String::from_utf8_lossy(p.payload());
        assert!(payload.ends_with("from-target"), "packet {} is not X's: {payload:?}", p.id);
    }
    assert_eq!(packets.len(), 2, "X's datagram and its echo, nothing of the successor");
    successor.exit();
}

/// Does `pid` hold a file descriptor whose link text contains `what`?
/// (`anon_inode:bpf-map`, `anon_inode:bpf_link`...)
fn holds_fd(pid: u32, what: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).any(|l| l.to_string_lossy().contains(what)))
        .unwrap_or(false)
}

#[test]
fn a_target_that_exits_before_the_capture_starts_is_refused_and_its_successor_left_alone() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse-early");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let mut target = Helper::start(&ns, &["target", "127.0.0.1", &tcp_port, &udp_port]);
    let x = target.ready_pid();
    let mut successor = Helper::start(&ns, &["successor", &x.to_string(), "127.0.0.1", &tcp_port, &udp_port, "6"]);
    assert_eq!(successor.report()["ready"], true);

    // pidcap is stopped while it loads its programs: it has taken the pid
    // the user named, and has not attached anything yet. X exits then, and
    // its pid goes to another process.
    let mut cap =
        Capturing::spawn(pidcap().args(["capture", "--pid", &x.to_string(), "--block", &format!("tcp:{tcp_port}")]));
    let pidcap_pid = cap.child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds_fd(pidcap_pid, "bpf-map") {
        assert!(Instant::now() < deadline, "pidcap never created its eBPF maps");
        std::thread::sleep(Duration::from_micros(200));
    }
    cap.signal(libc::SIGSTOP);
    let stat = || std::fs::read_to_string(format!("/proc/{pidcap_pid}/stat")).unwrap();
    while stat().rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) != Some("T") {
        assert!(Instant::now() < deadline, "pidcap did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!holds_fd(pidcap_pid, "bpf_link"), "pidcap had attached its programs already: the test came too late");
    target.exit();
    successor.take_pid(x, "");
    cap.signal(libc::SIGCONT);

    let status = cap.exited_within(Duration::from_secs(30), "it must refuse a target that exited");
    assert_eq!(status.code(), Some(2), "pidcap exited with {status}");
    cap.stderr.wait_for(&format!("process {x} exited before the capture started"), Duration::from_secs(5));
    successor.send("connect");
    let r = successor.report();
    assert_eq!(r["connected"], 6, "{r}");
    successor.exit();
}

/// `pidcap ctl --json --socket SOCK ARGS`, its stdout's JSON lines.
fn ctl(sock: &std::path::Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(pidcap().args(["ctl", "--json", "--socket"]).arg(sock).args(args));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn daemon_packets(sock: &std::path::Path) -> Vec<pidcap_packet::CapturedPacket> {
    ctl(sock, &["packets"]).into_iter().map(|v| serde_json::from_value(v).unwrap()).collect()
}

#[test]
fn the_daemon_neither_captures_nor_blocks_a_process_given_its_exited_targets_pid() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse-daemon");
    let scratch = Scratch::new("reuse-daemon");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let mut target = Helper::start(&ns, &["target", "127.0.0.1", &tcp_port, &udp_port]);
    let x = target.ready_pid();
    let mut successor = Helper::start(&ns, &["successor", &x.to_string(), "127.0.0.1", &tcp_port, &udp_port, "6"]);
    assert_eq!(successor.report()["ready"], true);

    let sock = scratch.path("pidcap.sock");
    let _daemon = Capturing::spawn(pidcap().args(["daemon", "--socket"]).arg(&sock));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the daemon never made its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    ctl(&sock, &["filter", "add", "--block", &format!("tcp:{tcp_port}")]);
    ctl(&sock, &["start", "--pid", &x.to_string()]);
    target.send("go");
    assert_eq!(target.report()["connect"], "EPERM", "X's rule is in force");
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon_packets(&sock).len() < 2 {
        assert!(Instant::now() < deadline, "the daemon never held X's datagram and its echo");
        std::thread::sleep(Duration::from_millis(20));
    }

    target.exit();
    successor.take_pid(x, "connect");
    let r = successor.report();
    assert_eq!(r["connected"], 6, "the successor was blocked by X's rule: {r}");
    let state = &ctl(&sock, &["state"])[0];
    assert_eq!(state["running"], true, "{state}");
    let targets = state["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "only X, no successor: {state}");
    assert_eq!(targets[0]["pid"].as_u64(), Some(u64::from(x)));
    assert_eq!(targets[0]["alive"], false, "X is reported alive because its pid is: {state}");
    let packets = daemon_packets(&sock);
    for p in &packets {
        let payload = String::from_utf8_lossy(p.payload());
        assert!(payload.ends_with("from-target"), "packet {} is not X's: {payload:?}", p.id);
    }
    assert_eq!(packets.len(), 2, "X's datagram and its echo, nothing of the successor");
    successor.exit();
}

/// Packets the kernel layer has pushed so far: (pid, IP packet).
fn drain(backend: &mut EbpfBackend) -> Vec<(u32, Vec<u8>)> {
    let mut got = Vec::new();
    while backend.poll(Duration::ZERO, &mut |raw| got.push((raw.pid, raw.data.to_vec()))).unwrap() > 0 {}
    got
}

/// Drain until `done(all so far)`, at most 10 s.
fn drain_until(
    backend: &mut EbpfBackend,
    what: &str,
    mut done: impl FnMut(&[(u32, Vec<u8>)]) -> bool,
) -> Vec<(u32, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        backend.poll(Duration::from_millis(10), &mut |raw| got.push((raw.pid, raw.data.to_vec()))).unwrap();
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "the kernel never pushed {what}: {} packets", got.len());
    }
}

fn carries(p: &(u32, Vec<u8>), text: &str) -> bool {
    p.1.windows(text.len()).any(|w| w == text.as_bytes())
}

fn load() -> EbpfBackend {
    let mut backend = EbpfBackend::load(LoadOptions::default()).expect("load the kernel layer");
    backend.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    backend
}

fn target_with_pid(backend: &EbpfBackend, pid: u32) -> Option<KernelTarget> {
    backend.targets().unwrap().into_iter().find(|t| t.id.pid == pid)
}

#[test]
fn the_kernel_entry_of_an_exited_target_matches_nothing_of_the_process_given_its_pid() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse-kernel");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let mut target = Helper::start(&ns, &["target", "127.0.0.1", &tcp_port, &udp_port]);
    let x = target.ready_pid();
    let mut successor = Helper::start(&ns, &["successor", &x.to_string(), "127.0.0.1", &tcp_port, &udp_port, "6"]);
    assert_eq!(successor.report()["ready"], true);

    let mut backend = load();
    backend.set_rules(&[format!("tcp:{tcp_port}").parse::<Rule>().unwrap()]).unwrap();
    let process = Process::open(x).unwrap();
    backend.add_target(&process, false).unwrap();
    target.send("go");
    assert_eq!(target.report()["connect"], "EPERM");
    drain_until(&mut backend, "X's datagram and echo", |p| p.iter().filter(|p| carries(p, "from-target")).count() == 2);

    // The exit hook marks the entry; nothing in userspace removes it here.
    target.exit();
    assert_eq!(target_with_pid(&backend, x), Some(KernelTarget { id: process.id(), exited: true }));
    let before = backend.counters().unwrap();
    successor.take_pid(x, "connect");
    let r = successor.report();
    assert_eq!(r["connected"], 6, "the successor was blocked by the entry of the exited X: {r}");
    let got = drain(&mut backend);
    assert!(got.is_empty(), "the successor's packets were captured: {} of them", got.len());
    let after = backend.counters().unwrap();
    assert_eq!(after.target, before.target, "no packet of the successor counted as a target's");
    assert_eq!(after.connect_blocked, before.connect_blocked);
    successor.exit();
}

#[test]
fn a_name_target_that_exits_is_marked_and_a_successor_of_that_name_is_a_target_of_its_own() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse-name");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let name = "pidcap-reusenm";
    let mut backend = load();
    backend.add_target_name(name, false).unwrap();

    let mut named = Helper::start(&ns, &["target", "127.0.0.1", &tcp_port, &udp_port, name]);
    let x = named.ready_pid();
    named.send("go");
    assert_eq!(named.report()["connect"], "ok");
    drain_until(&mut backend, "the named process's datagram", |p| {
        p.iter().any(|p| p.0 == x && carries(p, "from-target"))
    });
    let first = target_with_pid(&backend, x).expect("the kernel made the named process a target");
    assert!(!first.exited && first.id.key != 0, "{first:?}");
    named.exit();
    assert_eq!(target_with_pid(&backend, x), Some(KernelTarget { exited: true, ..first }), "marked at exit");
    drain(&mut backend);

    // Another process of that name is given the pid: a new target, its own key.
    let mut successor =
        Helper::start(&ns, &["successor", &x.to_string(), "127.0.0.1", &tcp_port, &udp_port, "1", name]);
    assert_eq!(successor.report()["ready"], true);
    successor.take_pid(x, "connect");
    assert_eq!(successor.report()["connected"], 1);
    let got = drain_until(&mut backend, "the successor's datagram", |p| p.iter().any(|p| carries(p, "from-successor")));
    assert!(got.iter().all(|p| p.0 == x));
    let second = target_with_pid(&backend, x).unwrap();
    assert!(!second.exited && second.id.key != first.id.key, "{first:?} then {second:?}");
    successor.exit();
}

#[test]
fn a_followed_child_that_exits_is_marked_and_its_pids_next_holder_is_not_captured() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("reuse-child");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let udp = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let (tcp_port, udp_port) = (tcp.port.to_string(), udp.port.to_string());
    let mut backend = load();
    let mut parent = Helper::start(&ns, &["parent", "127.0.0.1", &udp_port]);
    let p = Process::open(parent.ready_pid()).unwrap();
    backend.add_target(&p, true).unwrap();

    parent.send("fork");
    let c = parent.report()["child"].as_u64().unwrap() as u32; // exited and reaped
    let got = drain_until(&mut backend, "the child's datagram", |p| p.iter().any(|p| carries(p, "from-child")));
    assert!(got.iter().all(|p| p.0 == c));
    let child = target_with_pid(&backend, c).expect("the child was followed");
    assert!(child.exited && child.id.key != 0 && child.id.key != p.key(), "{child:?}");

    let mut successor = Helper::start(&ns, &["successor", &c.to_string(), "127.0.0.1", &tcp_port, &udp_port, "2"]);
    assert_eq!(successor.report()["ready"], true);
    successor.take_pid(c, "connect");
    assert_eq!(successor.report()["connected"], 2);
    let got = drain(&mut backend);
    assert!(got.is_empty(), "the successor's packets were captured: {} of them", got.len());
    successor.exit();
    parent.exit();
}
