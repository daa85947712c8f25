//! Fault tests: `kill -9` of `pidcap run`, `capture`, `daemon` and `ui` at
//! seeded random points (while it loads, right after it starts capturing,
//! mid-traffic while it writes -w FILE, while a subscriber is attached), each
//! time with a block rule in force on a target (tests/data/faults_target.py).
//! After every kill: no BPF program or map pidcap held is still loaded or
//! attached (bpftool), the target's next connect to the blocked port
//! succeeds, the file it was writing reads in tshark, and the next start on
//! the same file or socket works. Each test prints its seed on stderr;
//! PIDCAP_FAULT_SEED=N replays the same kill points.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EPERM: i64 = 1;
/// A debug build says it captures about 0.7 s after it starts: the load
/// window the first kill point draws from.
const LOAD_WINDOW_MS: u64 = 700;
/// Before this, it is still parsing arguments and opening its output.
const LOAD_FROM_MS: u64 = 100;
const LONG: Duration = Duration::from_secs(30);

/// A deterministic PRNG (splitmix64): a test's kill points follow from its seed.
struct Rng(u64);

impl Rng {
    fn for_test(test: &str) -> Rng {
        let seed = match std::env::var("PIDCAP_FAULT_SEED") {
            Ok(s) => s.trim().parse().unwrap_or_else(|e| panic!("PIDCAP_FAULT_SEED={s:?}: {e}")),
            Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
        };
        eprintln!("faults {test}: seed {seed} (PIDCAP_FAULT_SEED={seed} replays it)");
        // Each test draws its own sequence from the one seed.
        let salt =
            test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Rng(seed ^ salt)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay in [lo, hi) milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// Where a kill lands.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// A random delay after the start, drawn from the load window.
    Load,
    /// Just after it says it captures (and, for a daemon, the rule is added).
    Capturing,
    /// Mid-traffic: packets are in the file (run, capture) or the daemon's ring.
    Traffic,
    /// A `pidcap ctl watch` subscriber is attached and receiving packets.
    Subscriber,
}

/// Lines of a stream, delivered through a channel by a reader thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: vec![] }
    }

    /// The next line containing `needle`, or None when `timeout` passes or the stream ends first.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for(needle, timeout)
            .unwrap_or_else(|| panic!("no line containing {needle:?} within {timeout:?}; saw {:?}", self.seen))
    }
}

fn target_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/faults_target.py")
}

/// A faults_target.py process: probes go to its stdin, answers come on its stdout.
struct Target {
    pid: u32,
    stdin: Option<ChildStdin>,
    out: Lines,
    /// Set when the test started it (not when `pidcap run` did).
    child: Option<Child>,
}

impl Target {
    /// Wait for the target's first line on `out`; None if the stream ends first
    /// (`pidcap run` was killed before it released the command).
    fn from_streams(stdin: ChildStdin, mut out: Lines, child: Option<Child>) -> Option<Target> {
        let line = out.wait_for("\"pid\"", LONG)?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Some(Target { pid: v["pid"].as_u64().unwrap() as u32, stdin: Some(stdin), out, child })
    }

    /// One connect to the blocked port: Ok, or Err(errno).
    fn probe(&mut self) -> Result<(), i64> {
        writeln!(self.stdin.as_mut().unwrap(), "probe").expect("the target reads probes");
        let line = self.out.expect("\"probe\"", Duration::from_secs(10));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["ok"] == true {
            Ok(())
        } else {
            Err(v["errno"].as_i64().unwrap_or(-1))
        }
    }
}

impl Target {
    /// Close its stdin, which ends it, and let it exit by itself.
    fn finish(mut self) {
        drop(self.stdin.take());
        self.pid = 0;
        if let Some(mut c) = self.child.take() {
            c.wait().unwrap();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.stdin.take()); // the end of its stdin ends it
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        } else if self.pid != 0
            && std::fs::read_to_string(format!("/proc/{}/cmdline", self.pid)).is_ok_and(|c| c.contains("faults_target"))
        {
            // SAFETY: kill(2) of the target pidcap run started (checked by its command line).
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A test's namespace, an allowed and a blocked listener, and its scratch dir.
struct Fixture {
    ns: NetNs,
    scratch: Scratch,
    allowed: Server,
    blocked: Server,
    log: Vec<String>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let ns = NetNs::new(tag);
        let allowed = ns.server(&["tcp-server", "127.0.0.1", "0"]);
        let blocked = ns.server(&["tcp-server", "127.0.0.1", "0"]);
        Fixture { scratch: Scratch::new(tag), ns, allowed, blocked, log: vec![] }
    }

    fn block(&self) -> String {
        format!("tcp:{}", self.blocked.port)
    }

    fn target_argv(&self) -> Vec<String> {
        let script = target_script().display().to_string();
        let (a, b) = (self.allowed.port.to_string(), self.blocked.port.to_string());
        ["ip", "netns", "exec", &self.ns.name, "python3", &script, &a, &b].map(String::from).to_vec()
    }

    /// A target the test starts itself (for capture --pid and the daemon).
    fn start_target(&self) -> Target {
        let argv = self.target_argv();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the target");
        let (stdin, out) = (child.stdin.take().unwrap(), Lines::new(child.stdout.take().unwrap()));
        Target::from_streams(stdin, out, Some(child)).expect("the target starts")
    }

    fn note(&mut self, line: String) {
        eprintln!("{line}");
        self.log.push(line);
    }
}

/// A started pidcap with its stderr lines (and stdin/stdout when piped).
struct Started {
    pidcap: Running,
    err: Lines,
    stdin: Option<ChildStdin>,
    out: Option<Lines>,
}

fn start(cmd: &mut Command) -> Started {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let err = Lines::new(child.stderr.take().unwrap());
    let stdin = child.stdin.take();
    let out = child.stdout.take().map(Lines::new);
    Started { pidcap: Running::from_child(child), err, stdin, out }
}

/// Sleep the seeded delay: the fault injection itself, not a wait for a state.
fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// Each thread's state letter in /proc/PID/task/*/stat.
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.map_while(Result::ok).all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
    })
}

/// SIGSTOP pidcap (what it holds cannot change while stopped), note the BPF
/// programs and maps it holds, SIGKILL and reap it.
fn kill_9(p: Running) -> (HashSet<u64>, HashSet<u64>) {
    p.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_stopped(p.id()) {
        assert!(Instant::now() < deadline, "pidcap {} did not stop on SIGSTOP", p.id());
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = bpf_ids_held_by(p.id());
    p.signal(libc::SIGKILL);
    let status = p.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "pidcap died of the SIGKILL: {status:?}");
    held
}

/// Wait (10 s at most) until none of the programs and maps is loaded or attached.
fn assert_released((progs, maps): &(HashSet<u64>, HashSet<u64>)) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loaded: HashSet<u64> = all_program_ids().union(&attached_program_ids()).copied().collect();
        let maps_now = all_map_ids();
        let left: Vec<_> = progs.intersection(&loaded).collect();
        let left_maps: Vec<_> = maps.intersection(&maps_now).collect();
        if left.is_empty() && left_maps.is_empty() {
            return format!("{} programs and {} maps it held are gone", progs.len(), maps.len());
        }
        assert!(Instant::now() < deadline, "programs {left:?} and maps {left_maps:?} outlived the SIGKILLed pidcap");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The file a killed pidcap was writing must open in tshark with every
/// complete packet. tshark 4.0 reading a file whose last block is cut says
/// `The file "F" appears to have been cut short in the middle of a packet.`
/// and exits 2; pidcap writes whole blocks only (one write per block, its
/// buffer flushed at block boundaries), so a kill leaves no cut block and
/// tshark must exit 0, list exactly the packets pidcap's own reader reads,
/// and warn of nothing.
fn check_file(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return "no file yet".into() };
    let out = Command::new("tshark").arg("-r").arg(path).args(["-T", "fields", "-e", "frame.number"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("Running as user \"root\"")).collect();
    assert!(out.status.success(), "tshark -r {} exited {:?}: {warnings:?}", path.display(), out.status);
    assert!(warnings.is_empty(), "tshark warned on {}: {warnings:?}", path.display());
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count();
    let complete = packets_so_far(path).len();
    assert_eq!(frames, complete, "tshark lists the {complete} complete packets of {}", path.display());
    format!("file {} bytes, tshark exit 0, {frames} packets, no warning", meta.len())
}

/// After a kill: nothing held is left, the target's connect to the blocked
/// port succeeds, the file reads.
fn after_kill(
    fx: &mut Fixture,
    what: &str,
    at: String,
    held: (HashSet<u64>, HashSet<u64>),
    target: Option<&mut Target>,
    file: Option<&Path>,
) {
    let released = assert_released(&held);
    let probe = match target {
        Some(t) => {
            assert_eq!(t.probe(), Ok(()), "{what} killed {at}: the rule died with it, the target's connect succeeds");
            "the target's next connect succeeded"
        }
        None => "no target was started yet",
    };
    let file = file.map_or_else(String::new, |f| format!("; {}", check_file(f)));
    fx.note(format!("faults: {what} killed {at}: {released}; {probe}{file}"));
}

fn run_cmd(fx: &Fixture, file: &Path) -> Command {
    let mut c = pidcap();
    c.args(["run", "-q", "-w"]).arg(file).args(["--block", &fx.block(), "--"]).args(fx.target_argv());
    c
}

#[test]
fn kill_9_of_run_leaves_nothing_behind() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"), Tool("bpftool"), Tool("tshark"));
    let mut rng = Rng::for_test("run");
    let mut fx = Fixture::new("frun");
    let file = fx.scratch.path("run.pcapng");
    for point in [Point::Load, Point::Capturing, Point::Traffic] {
        // Every start after the first is on the file the last kill left: it must work.
        let mut s = start(&mut run_cmd(&fx, &file));
        let mut target = None;
        let at = match point {
            Point::Load => {
                let d = rng.ms(LOAD_FROM_MS, LOAD_WINDOW_MS);
                match s.err.wait_for("pidcap: capturing", d) {
                    Some(_) => format!("{d:?} after its start (it was capturing by then)"),
                    None => format!("{d:?} after its start, while loading"),
                }
            }
            Point::Capturing => {
                s.err.expect("pidcap: capturing", LONG);
                let d = rng.ms(0, 50);
                pause(d);
                format!("{d:?} after the capturing line")
            }
            _ => {
                s.err.expect("pidcap: capturing", LONG);
                let mut t = Target::from_streams(s.stdin.take().unwrap(), s.out.take().unwrap(), None).unwrap();
                assert_eq!(t.probe(), Err(EPERM), "the block rule is in force");
                wait_for_capture(&file, "20 packets", |p| p.len() >= 20);
                let d = rng.ms(0, 200);
                pause(d);
                target = Some(t);
                format!("{d:?} after 20 packets were in the file")
            }
        };
        let held = kill_9(s.pidcap);
        // pidcap run releases the command only once it captures: it may or may not run.
        if target.is_none() {
            target = Target::from_streams(s.stdin.take().unwrap(), s.out.take().unwrap(), None);
            if target.is_none() {
                fx.note(
                    "faults: run: the held command never ran (it exits when pidcap dies before releasing it)".into(),
                );
            }
        }
        after_kill(&mut fx, "run", format!("{point:?} {at}"), held, target.as_mut(), Some(&file));
    }
    // A last start on the same file: the rule is in force again, and it stops cleanly.
    let mut s = start(&mut run_cmd(&fx, &file));
    s.err.expect("pidcap: capturing", LONG);
    let mut t = Target::from_streams(s.stdin.take().unwrap(), s.out.take().unwrap(), None).unwrap();
    assert_eq!(t.probe(), Err(EPERM), "restarted on the same file, the rule is in force");
    wait_for_capture(&file, "a packet", |p| !p.is_empty());
    t.finish(); // the end of its stdin ends the command, and with it the run
    let status = s.pidcap.wait();
    assert!(status.success(), "the last run ends with its command: {status:?} {:?}", s.err.seen);
    assert!(tshark_frames(&file) > 0);
}

#[test]
fn kill_9_of_capture_leaves_nothing_behind() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"), Tool("bpftool"), Tool("tshark"));
    let mut rng = Rng::for_test("capture");
    let mut fx = Fixture::new("fcap");
    let file = fx.scratch.path("capture.pcapng");
    let capture = |fx: &Fixture, pid: u32| {
        let mut c = pidcap();
        c.args(["capture", "-q", "--pid", &pid.to_string(), "--block", &fx.block(), "-w"]).arg(&file);
        c
    };
    for point in [Point::Load, Point::Capturing, Point::Traffic] {
        let mut t = fx.start_target();
        let mut s = start(&mut capture(&fx, t.pid));
        let at = match point {
            Point::Load => {
                let d = rng.ms(LOAD_FROM_MS, LOAD_WINDOW_MS);
                match s.err.wait_for("pidcap: capturing", d) {
                    Some(_) => format!("{d:?} after its start (it was capturing by then)"),
                    None => format!("{d:?} after its start, while loading"),
                }
            }
            Point::Capturing => {
                s.err.expect("pidcap: capturing", LONG);
                let d = rng.ms(0, 50);
                pause(d);
                format!("{d:?} after the capturing line")
            }
            _ => {
                s.err.expect("pidcap: capturing", LONG);
                assert_eq!(t.probe(), Err(EPERM), "the block rule is in force");
                wait_for_capture(&file, "20 packets", |p| p.len() >= 20);
                let d = rng.ms(0, 200);
                pause(d);
                format!("{d:?} after 20 packets were in the file")
            }
        };
        let held = kill_9(s.pidcap);
        after_kill(&mut fx, "capture", format!("{point:?} {at}"), held, Some(&mut t), Some(&file));
    }
    let mut t = fx.start_target();
    let mut s = start(&mut capture(&fx, t.pid));
    s.err.expect("pidcap: capturing", LONG);
    assert_eq!(t.probe(), Err(EPERM), "restarted on the same file, the rule is in force");
    wait_for_capture(&file, "a packet", |p| !p.is_empty());
    s.pidcap.signal(libc::SIGINT);
    let status = s.pidcap.wait();
    assert!(status.success(), "the last capture stops on SIGINT: {status:?} {:?}", s.err.seen);
    assert_eq!(t.probe(), Ok(()), "after a clean stop the rule is gone");
    assert!(tshark_frames(&file) > 0);
}

/// `pidcap ctl --json --socket SOCK ARGS`: its last JSON line.
fn ctl(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_ok(pidcap().args(["ctl", "--json", "--socket"]).arg(sock).args(args));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().rev().find(|l| l.starts_with('{')).unwrap_or("null")).unwrap()
}

fn wait_state(sock: &Path, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + LONG;
    loop {
        let state = ctl(sock, &["state"]);
        if done(&state) {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon never had {what}: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kill a daemon (`pidcap daemon`, or the one `pidcap ui` starts in itself)
/// at each point; every start after the first is on the socket the last
/// kill left behind.
fn kill_9_of_a_daemon(test: &str, ready: &str, start_cmd: impl Fn(&Path) -> Command) {
    let mut rng = Rng::for_test(test);
    let mut fx = Fixture::new(&format!("f{test}"));
    let sock = fx.scratch.path("pidcap.sock");
    let capture = |fx: &Fixture, t: &Target| {
        ctl(&sock, &["start", "--pid", &t.pid.to_string()]);
        ctl(&sock, &["filter", "add", "--block", &fx.block()]);
    };
    for point in [Point::Load, Point::Capturing, Point::Traffic, Point::Subscriber] {
        let mut s = start(&mut start_cmd(&sock));
        let mut target = None;
        let mut watch = None;
        let at = match point {
            Point::Load => {
                let d = rng.ms(LOAD_FROM_MS, LOAD_WINDOW_MS);
                match s.err.wait_for(ready, d) {
                    Some(_) => format!("{d:?} after its start (it was serving by then)"),
                    None => format!("{d:?} after its start, while loading"),
                }
            }
            Point::Capturing => {
                s.err.expect(ready, LONG);
                let t = fx.start_target();
                capture(&fx, &t);
                target = Some(t);
                let d = rng.ms(0, 50);
                pause(d);
                format!("{d:?} after the capture started with the rule")
            }
            Point::Traffic => {
                s.err.expect(ready, LONG);
                let mut t = fx.start_target();
                capture(&fx, &t);
                assert_eq!(t.probe(), Err(EPERM), "the block rule is in force");
                wait_state(&sock, "20 packets", |s| s["newest_id"].as_u64().is_some_and(|id| id >= 20));
                target = Some(t);
                let d = rng.ms(0, 200);
                pause(d);
                format!("{d:?} after it held 20 packets")
            }
            Point::Subscriber => {
                s.err.expect(ready, LONG);
                let mut t = fx.start_target();
                capture(&fx, &t);
                assert_eq!(t.probe(), Err(EPERM), "the block rule is in force");
                let mut w = pidcap()
                    .args(["ctl", "--socket"])
                    .arg(&sock)
                    .arg("watch")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let mut lines = Lines::new(w.stdout.take().unwrap());
                lines.expect("", LONG); // a packet reached the subscriber
                wait_state(&sock, "a subscriber", |s| s["subscribers"].as_u64() >= Some(1));
                watch = Some((Running::from_child(w), lines));
                target = Some(t);
                let d = rng.ms(0, 200);
                pause(d);
                format!("{d:?} after its subscriber got a packet")
            }
        };
        let held = kill_9(s.pidcap);
        after_kill(&mut fx, test, format!("{point:?} {at}"), held, target.as_mut(), None);
        if let Some((mut w, _)) = watch {
            // The subscriber sees the daemon go (it does not hang).
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                if let Some(status) = w.try_wait() {
                    break status;
                }
                assert!(Instant::now() < deadline, "ctl watch still runs 10 s after its daemon died");
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(!status.success(), "ctl watch reports the lost daemon: {status:?}");
            fx.note(format!("faults: {test}: its subscriber ended with {status}"));
        }
    }
    // A last start on the same socket: it serves, the rule is in force again, and it stops cleanly.
    let mut s = start(&mut start_cmd(&sock));
    s.err.expect(ready, LONG);
    let mut t = fx.start_target();
    capture(&fx, &t);
    assert_eq!(t.probe(), Err(EPERM), "restarted on the same socket, the rule is in force");
    s.pidcap.signal(libc::SIGTERM);
    let status = s.pidcap.wait();
    assert!(status.success(), "the last daemon stops on SIGTERM: {status:?} {:?}", s.err.seen);
    assert_eq!(t.probe(), Ok(()), "after a clean stop the rule is gone");
    assert!(!sock.exists(), "a clean stop removes the socket");
}

#[test]
fn kill_9_of_the_daemon_leaves_nothing_behind() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"), Tool("bpftool"), Tool("tshark"));
    kill_9_of_a_daemon("daemon", "pidcap daemon: listening", |sock| {
        let mut c = pidcap();
        c.args(["daemon", "--socket"]).arg(sock);
        c
    });
}

#[test]
fn kill_9_of_the_ui_and_its_daemon_leaves_nothing_behind() {
    pidcap_testkit::require!(Root, Tool("ip"), Tool("python3"), Tool("bpftool"), Tool("tshark"));
    kill_9_of_a_daemon("ui", "pidcap ui: started a daemon", |sock| {
        let mut c = pidcap();
        c.args(["ui", "--socket"]).arg(sock).arg("--db").arg(sock.with_file_name("library.db"));
        c
    });
}
