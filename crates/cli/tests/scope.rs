//! `pidcap run` attaches its programs to a cgroup of its own for its command
//! (real binary, root): the command and what it starts are in
//! `<pidcap's cgroup>/pidcap-run-<pid>`, a followed child's loopback
//! exchange with a server outside that cgroup is captured both ways (the
//! server's side is not), the cgroup is gone when run ends and a process left
//! in it is moved back, and the cgroup a SIGKILLed run leaves is swept by the
//! next run; a target that moves itself out is said to. `capture --pid` attaches at its target's cgroup, `--name` at the
//! root (the kernel's list of what is attached where, BPF_PROG_QUERY).

mod common;

use common::*;
use pidcap_packet::Direction;
use pidcap_testkit::cgroup::Cgroup;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: a run sweeps the cgroup a killed run left, which
/// another test's run would otherwise do before this file's test looks.
static SERIAL: Mutex<()> = Mutex::new(());

/// This test process's cgroup (pidcap's, as its child) and its directory.
fn own_cgroup() -> (String, PathBuf) {
    let path = pidcap_ebpf::cgroup_of(std::process::id()).expect("this process's cgroup");
    let dir = pidcap_testkit::cgroup::cgroup2_root().join(path.trim_start_matches('/'));
    (path, dir)
}

fn run_dir(pidcap_pid: u32) -> PathBuf {
    own_cgroup().1.join(format!("pidcap-run-{pidcap_pid}"))
}

fn kill(pid: u32) {
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

fn read_pid(path: &std::path::Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never held a pid", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_followed_childs_loopback_exchange_is_captured_both_ways_from_the_runs_own_cgroup() {
    require!(Root, Tool("python3"), Tool("curl"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::new("scope");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let scratch = Scratch::new("scope-follow");
    let (file, cg) = (scratch.path("cap.pcapng"), scratch.path("cgroup"));
    let script = format!(
        "grep 0:: /proc/self/cgroup > {}; curl --http0.9 -s -o /dev/null http://127.0.0.1:{}/scope",
        cg.display(),
        server.port
    );
    let child = ns
        .command(env!("CARGO_BIN_EXE_pidcap"))
        .args(["run", "--no-tls", "-w"])
        .arg(&file)
        .args(["--", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidcap_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (own, _) = own_cgroup();
    let inside = std::fs::read_to_string(&cg).unwrap();
    let expected = format!("0::{}/pidcap-run-{pidcap_pid}", own.trim_end_matches('/'));
    assert_eq!(inside.trim(), expected, "the command ran in the run's own cgroup");

    let packets = read_capture(&file);
    let curl: Vec<_> = packets.iter().filter(|p| p.comm == "curl").collect();
    let sent = curl.iter().any(|p| p.direction == Direction::Outbound && p.payload().starts_with(b"GET /scope"));
    let got = curl.iter().any(|p| p.direction == Direction::Inbound && p.payload().starts_with(b"echo:GET /scope"));
    assert!(sent && got, "both directions of curl's exchange: sent {sent}, received {got}; {packets:?}");
    assert!(packets.iter().all(|p| p.pid != server.pid), "the server (outside) is not captured: {packets:?}");
    assert!(!run_dir(pidcap_pid).exists(), "the run's cgroup is removed at the end");
}

#[test]
fn the_runs_cgroup_is_removed_with_its_leftovers_moved_back_also_after_a_sigkill() {
    require!(Root);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (own, _) = own_cgroup();
    let scratch = Scratch::new("scope-left");

    // An orphan the command leaves running (--no-follow: run ends with sh).
    let pidfile = scratch.path("orphan");
    let script = format!("sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {}", pidfile.display());
    let child = pidcap()
        .args(["run", "-q", "--no-tls", "--no-follow", "--", "sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidcap_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let orphan = read_pid(&pidfile);
    let orphan_cg = pidcap_ebpf::cgroup_of(orphan);
    kill(orphan);
    assert!(!run_dir(pidcap_pid).exists(), "the run's cgroup is removed at the end");
    assert_eq!(orphan_cg.as_deref(), Some(own.as_str()), "the orphan is back in the cgroup it came from");

    // A run killed with SIGKILL leaves its cgroup, with its command in it...
    let (killed, _lines) = start_pidcap(pidcap().args(["run", "--no-tls", "--", "sleep", "60"]));
    let dir = run_dir(killed.id());
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    let sleep: u32 = procs.lines().next().and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{procs:?}"));
    // The capture line can come before the held command is let go: killed
    // then, it never execs (it ends with its gate). Wait until it is `sleep`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(format!("/proc/{sleep}/comm")).map(|c| c.trim_end() != "sleep").unwrap_or(true) {
        assert!(Instant::now() < deadline, "the command never became sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    killed.signal(libc::SIGKILL);
    killed.wait();
    assert!(dir.exists(), "SIGKILL leaves the cgroup (else the sweep below proves nothing)");
    // ...which the next run sweeps: the process back where it came from, the directory gone.
    run_ok(pidcap().args(["run", "-q", "--no-tls", "--", "true"]));
    let sleep_cg = pidcap_ebpf::cgroup_of(sleep);
    kill(sleep);
    assert!(!dir.exists(), "the next run swept the killed run's cgroup");
    assert_eq!(sleep_cg.as_deref(), Some(own.as_str()), "its process was moved back");
}

/// The ids of the programs attached to cgroup `dir` itself (`bpftool cgroup show`: BPF_PROG_QUERY).
fn attached_at(dir: &Path) -> HashSet<u64> {
    let out = std::process::Command::new("bpftool").arg("--json").args(["cgroup", "show"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "bpftool cgroup show {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return HashSet::new(); // nothing attached: bpftool prints nothing
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect()
}

/// The ids of pidcap `pid`'s two packet programs.
fn packet_programs(pid: u32) -> HashSet<u64> {
    let held = programs_held_by(pid);
    let ids: HashSet<u64> =
        held.iter().filter(|(_, n)| n == "pidcap_egress" || n == "pidcap_ingress").map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2, "pidcap holds its packet programs: {held:?}");
    ids
}

#[test]
fn capture_by_pid_attaches_at_the_targets_cgroup_run_at_its_own_and_a_name_at_the_root() {
    require!(Root, Tool("bpftool"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = pidcap_testkit::cgroup::cgroup2_root();
    let cg = Cgroup::new("scope-pid");
    let mut idle = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    cg.add(idle.id());

    let (capture, _lines) = start_pidcap(pidcap().args(["capture", "--no-tls", "--pid", &idle.id().to_string()]));
    let ours = packet_programs(capture.id());
    assert!(ours.is_subset(&attached_at(cg.dir())), "capture --pid: on the target's cgroup");
    assert!(ours.is_disjoint(&attached_at(&root)), "capture --pid: none on the root");
    drop(capture);

    let (run, _lines) = start_pidcap(pidcap().args(["run", "--no-tls", "--", "sleep", "60"]));
    let ours = packet_programs(run.id());
    assert!(ours.is_subset(&attached_at(&run_dir(run.id()))), "run: on its own cgroup");
    assert!(ours.is_disjoint(&attached_at(&root)), "run: none on the root");
    run.signal(libc::SIGINT);
    run.wait();

    let (named, _lines) = start_pidcap(pidcap().args(["capture", "--no-tls", "--name", "pidcap-scope-nm"]));
    let ours = packet_programs(named.id());
    assert!(ours.is_subset(&attached_at(&root)), "capture --name: on the root");
    drop(named);
    let _ = idle.kill();
    let _ = idle.wait();
}

#[test]
fn a_target_that_leaves_the_commands_cgroup_is_said_to() {
    require!(Root);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let away = Cgroup::new("scope-away");
    // The shell moves itself out, then becomes a sleep that SIGINT to run ends (pidcap looks every 100 ms).
    let script = format!("echo $$ > {}/cgroup.procs; exec sleep 60", away.dir().display());
    let (run, mut lines) = start_pidcap(pidcap().args(["run", "-q", "--no-tls", "--", "sh", "-c", &script]));
    let said = lines.wait_for("left the command's cgroup", Duration::from_secs(10));
    assert!(said.contains(&format!("for {}: the sockets it makes there are not captured", away.path())), "{said}");
    run.signal(libc::SIGINT);
    run.wait();
}
