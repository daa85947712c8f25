//! Helpers for pidcap's integration tests: the peer fixture
//! (tests/data/peer.py) in a test's network namespace, and running the real
//! `pidcap` binary. What a test needs (root, tools) it states with
//! `require!(...)` and its namespace is a [`NetNs`], both from pidcap-testkit.
#![allow(dead_code)]

#[allow(unused_imports)] // not every test file needs both
pub use pidcap_testkit::{require, NetNs};

use pidcap_packet::CapturedPacket;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary, in UTC (its lines are in local time, as tcpdump's: golden
/// text needs a fixed zone; a test that checks another sets TZ itself).
pub fn pidcap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pidcap"));
    c.env("TZ", "UTC");
    c
}

pub fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/peer.py")
}

#[allow(unused_imports)] // not every test file uses it
pub use pidcap_testkit::Scratch;

/// The peer fixture in a test's network namespace.
pub trait Peer {
    /// python3 tests/data/peer.py ARGS inside the namespace.
    fn peer(&self, args: &[&str]) -> Command;

    /// Start a server mode of the peer and wait until it listens.
    fn server(&self, args: &[&str]) -> Server;
}

impl Peer for NetNs {
    fn peer(&self, args: &[&str]) -> Command {
        let mut c = self.command("python3");
        c.arg(peer_script()).args(args);
        c
    }

    fn server(&self, args: &[&str]) -> Server {
        let mut child = self.peer(args).stdout(Stdio::piped()).spawn().expect("start peer server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer said {line:?}: {e}"));
        Server { pid: v["pid"].as_u64().unwrap() as u32, port: v["port"].as_u64().unwrap() as u16, child }
    }
}

pub struct Server {
    pub pid: u32,
    pub port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of a command's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `out` is a success; else its exit status and both outputs.
pub fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The JSON line a peer client printed on stdout.
pub fn peer_report(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {text:?}"));
    serde_json::from_str(line).unwrap()
}

/// Lines of a child's stderr, delivered through a channel by a reader thread.
pub struct StderrLines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl StderrLines {
    pub fn new(stderr: ChildStderr) -> StderrLines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines { rx, seen: vec![] }
    }

    /// Wait for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line containing {needle:?} within {timeout:?}; saw {:?}", self.seen),
            }
        }
    }
}

/// A process started by a test, killed if the test ends (or panics) before
/// waiting for it, so no orphan outlives a failed test.
pub struct Running {
    child: Option<Child>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    pub fn wait_with_output(mut self) -> std::process::Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `pidcap ARGS` with piped stderr and wait until it says it is capturing.
pub fn start_pidcap(cmd: &mut Command) -> (Running, StderrLines) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start pidcap");
    let mut lines = StderrLines::new(child.stderr.take().unwrap());
    let running = Running { child: Some(child) };
    lines.wait_for("pidcap: capturing", Duration::from_secs(30));
    (running, lines)
}

pub fn signal(child: &Running, sig: libc::c_int) {
    child.signal(sig);
}

/// The real python3 executable (not a pyenv shim script).
pub fn python_executable() -> std::path::PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
    std::fs::canonicalize(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

pub fn read_capture(path: &Path) -> Vec<CapturedPacket> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pidcap_pcapfile::read_packets(std::io::BufReader::new(f)).unwrap()
}

/// The packets of a capture file that pidcap is still writing: those of
/// the whole blocks written so far (a read may end inside the last one).
pub fn packets_so_far(path: &Path) -> Vec<CapturedPacket> {
    let Ok(f) = std::fs::File::open(path) else { return Vec::new() };
    let Ok(reader) = pidcap_pcapfile::PacketReader::new(std::io::BufReader::new(f)) else { return Vec::new() };
    reader.map_while(Result::ok).collect()
}

/// Wait (at most 30 s) until the capture file `path` that pidcap is writing
/// holds what `done` wants.
pub fn wait_for_capture(path: &Path, what: &str, mut done: impl FnMut(&[CapturedPacket]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let packets = packets_so_far(path);
        if done(&packets) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never held {what}: {} packets",
            path.display(),
            packets.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frames tshark reads in `path`, failing on any warning tshark prints.
pub fn tshark_frames(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .arg("-T")
        .arg("fields")
        .arg("-e")
        .arg("frame.number")
        .output()
        .expect("tshark is needed by this test (apt-get install tshark; the test must require! it)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        assert!(line.starts_with("Running as user \"root\""), "tshark warned: {line}");
    }
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

/// (id, name) of the BPF programs `pid` holds through a program or link file
/// descriptor: the kernel lists `prog_id:` in /proc/PID/fdinfo for both.
pub fn programs_held_by(pid: u32) -> Vec<(u64, String)> {
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let info = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        ids.extend(
            info.lines().filter_map(|l| l.strip_prefix("prog_id:")).filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    bpftool_json(&["prog", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .map(|p| (p["id"].as_u64().unwrap(), p["name"].as_str().unwrap_or("").to_string()))
        .collect()
}

pub fn all_program_ids() -> HashSet<u64> {
    bpftool_json(&["prog", "show"]).as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect()
}

/// Programs attached through links (cgroup, tracepoint...), as the kernel lists them.
pub fn attached_program_ids() -> HashSet<u64> {
    bpftool_json(&["link", "show"]).as_array().unwrap().iter().filter_map(|l| l["prog_id"].as_u64()).collect()
}

pub fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("bpftool")
        .arg("--json")
        .args(args)
        .output()
        .expect("bpftool is needed (apt-get install bpftool)");
    assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Ids of the BPF programs (`prog_id:`, from program and link fds) and maps
/// (`map_id:`) that `pid` holds, as /proc/PID/fdinfo lists them.
pub fn bpf_ids_held_by(pid: u32) -> (HashSet<u64>, HashSet<u64>) {
    let (mut progs, mut maps) = (HashSet::new(), HashSet::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (progs, maps) };
    for entry in dir.map_while(Result::ok) {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in info.lines() {
            let id = |v: &str| v.trim().parse::<u64>().ok();
            if let Some(v) = line.strip_prefix("prog_id:").and_then(id) {
                progs.insert(v);
            } else if let Some(v) = line.strip_prefix("map_id:").and_then(id) {
                maps.insert(v);
            }
        }
    }
    (progs, maps)
}

pub fn all_map_ids() -> HashSet<u64> {
    bpftool_json(&["map", "show"]).as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect()
}

impl Running {
    /// Take charge of a child the test started (killed on drop unless waited for).
    pub fn from_child(child: Child) -> Running {
        Running { child: Some(child) }
    }

    /// Its exit status if it has exited (then it is reaped).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }
}

// -- kernel run counts and a UDP process (daemon_scope.rs, isolate.rs) --

/// BPF run-time statistics on while this lives (BPF_ENABLE_STATS, BPF_STATS_RUN_TIME).
pub fn enable_stats() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    const BPF_ENABLE_STATS: libc::c_long = 32;
    let attr = [0u8; 8]; // union bpf_attr { struct { __u32 type; } enable_stats; }: type 0, run time
                         // SAFETY: the bpf syscall reads `attr.len()` bytes from a live buffer; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), attr.len()) };
    assert!(fd >= 0, "BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a descriptor the kernel just gave this process, owned by nothing else.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// The run counts of the packet programs (ingress + egress) among `progs`.
pub fn packet_program_runs(progs: &HashSet<u64>) -> u64 {
    bpftool_json(&["prog", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| progs.contains(&id)))
        .filter(|p| matches!(p["name"].as_str(), Some("pidcap_ingress" | "pidcap_egress")))
        .map(|p| p["run_cnt"].as_u64().unwrap_or(0))
        .sum()
}

/// A python3 that opens a UDP socket when told (`open`, answering its port),
/// and sends on it (`send PORT N PAYLOAD`, answering `sent`); killed on drop.
pub struct Udp {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Udp {
    const SCRIPT: &'static str = "import socket, sys\n\
        s = None\n\
        for line in sys.stdin:\n\
        \x20   w = line.split()\n\
        \x20   if w[0] == 'open':\n\
        \x20       s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))\n\
        \x20       print(s.getsockname()[1], flush=True)\n\
        \x20   else:\n\
        \x20       for _ in range(int(w[2])): s.sendto(w[3].encode(), ('127.0.0.1', int(w[1])))\n\
        \x20       print('sent', flush=True)\n";

    /// Started, moved into `cg` before it opens anything.
    pub fn start_in(cg: &pidcap_testkit::cgroup::Cgroup) -> Udp {
        let mut child = Command::new("python3")
            .args(["-c", Self::SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        cg.add(child.id());
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Udp { child, stdin, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ask(&mut self, line: &str) -> String {
        use std::io::Write;
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        out.trim().to_string()
    }

    /// Open its socket; returns its port.
    pub fn open(&mut self) -> u16 {
        self.ask("open").parse().expect("a port")
    }

    pub fn send(&mut self, port: u16, n: u64, payload: &str) {
        assert_eq!(self.ask(&format!("send {port} {n} {payload}")), "sent");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.kill();
    }
}
