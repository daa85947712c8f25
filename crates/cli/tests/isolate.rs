//! `pidcap capture --isolate` (the real binary, as root): a target and a
//! bystander share a test-made cgroup; the target is moved into
//! `<cgroup>/pidcap-iso-<pidcap's pid>` while it is captured (its
//! /proc/PID/cgroup says so), its datagrams are captured with the ORIGINAL
//! cgroup in their metadata (pcapng and JSON), and the bystander's flood runs
//! none of pidcap's packet programs (the kernel's run counts, BPF statistics
//! on while the test holds a `BPF_ENABLE_STATS` descriptor); the same flood
//! beside a capture without --isolate runs them (what makes that assertion
//! able to fail). After SIGINT the target is back and the iso cgroup gone;
//! after a SIGKILL the next pidcap (`run`, `capture`, `daemon`) puts it back. Refused,
//! with nothing moved: name or cgroup targets, a threaded cgroup, a cgroup
//! that cannot take a child (and then a target already moved goes back), a
//! target another pidcap isolates.
//! A child the target forks is in the iso cgroup and captured with -f.
//! Targets from two cgroups: each program is linked at both iso cgroups
//! (the kernel's link list) and nowhere else, and a socket a target opened
//! before its move is said not to be captured. A capture without
//! --isolate whose programs go on the root says so and names --isolate.

mod common;

use common::{
    bpf_ids_held_by, bpftool_json, enable_stats, packet_program_runs, pidcap, read_capture, require, start_pidcap,
    Scratch, Udp,
};
use pidcap_testkit::cgroup::Cgroup;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Datagrams of the bystander's flood.
const FLOOD: u64 = 2_000;

/// One test at a time: every pidcap start sweeps the isolations of dead
/// pidcaps, which would undo the SIGKILL test's before it looks.
static SERIAL: Mutex<()> = Mutex::new(());

/// The programs pidcap `pid` holds.
fn programs_of(pid: u32) -> HashSet<u64> {
    let (progs, _) = bpf_ids_held_by(pid);
    assert!(!progs.is_empty(), "pidcap {pid} holds no BPF program: did it load?");
    progs
}

/// Process `pid`'s cgroup2 path now.
fn cgroup_of(pid: u32) -> String {
    pidcap_ebpf::cgroup_of(pid).unwrap_or_else(|| panic!("the cgroup of {pid}"))
}

/// The iso cgroup pidcap `pidcap` makes below `cg`.
fn iso_dir(cg: &Cgroup, pidcap: u32) -> PathBuf {
    cg.dir().join(format!("pidcap-iso-{pidcap}"))
}

fn record(pidcap: u32) -> PathBuf {
    PathBuf::from(pidcap_ebpf::ISO_RECORDS).join(pidcap.to_string())
}

/// A `sleep` in `cg`; killed on drop.
struct Sleeper(pidcap_testkit::KillOnDrop);

impl Sleeper {
    fn start_in(cg: &Cgroup) -> Sleeper {
        let child = Command::new("sleep").arg("120").spawn().expect("sleep");
        cg.add(child.id());
        Sleeper(pidcap_testkit::KillOnDrop(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

#[test]
fn an_isolated_target_is_captured_its_cgroup_sibling_runs_nothing_and_it_goes_back_on_sigint() {
    require!(Root, Tool("bpftool"), Tool("python3"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _stats = enable_stats();
    let cg = Cgroup::new("iso");
    let scratch = Scratch::new("iso");
    let file = scratch.path("iso.pcapng");
    let mut target = Udp::start_in(&cg);
    let mut bystander = Udp::start_in(&cg);
    let port = bystander.open();

    let (pidcap_run, mut lines) = start_pidcap(
        pidcap()
            .args(["capture", "--isolate", "--no-tls", "-U", "-w"])
            .arg(&file)
            .args(["--pid", &target.pid().to_string()]),
    );
    let me = pidcap_run.id();
    assert!(lines.seen.iter().any(|l| l.contains("--isolate: moved into")), "{:?}", lines.seen);
    let iso = iso_dir(&cg, me);
    assert_eq!(cgroup_of(target.pid()), format!("{}/pidcap-iso-{me}", cg.path()), "moved during the capture");
    assert_eq!(cgroup_of(bystander.pid()), cg.path(), "the bystander is not moved");
    assert!(record(me).is_file(), "a record of the live isolation");

    // The bystander's flood (both ends its own socket, in the target's old cgroup) runs none of them.
    let progs = programs_of(me);
    let before = packet_program_runs(&progs);
    bystander.send(port, FLOOD, "bystander");
    assert_eq!(packet_program_runs(&progs), before, "the bystander's datagrams ran pidcap's programs");

    // The target's datagrams, on a socket it opens now, are captured.
    target.open();
    target.send(port, 3, "iso-target");
    common::wait_for_capture(&file, "the target's 3 datagrams", |p| {
        p.iter().filter(|p| p.pid == target.pid() && p.payload() == b"iso-target").count() == 3
    });

    signal(&pidcap_run, libc::SIGINT);
    let out = pidcap_run.wait_with_output();
    assert!(out.status.success(), "{:?}", lines.seen);
    lines.wait_for(&format!("--isolate: 1 process moved back to cgroup {}", cg.path()), Duration::from_secs(10));
    assert_eq!(cgroup_of(target.pid()), cg.path(), "back in its cgroup after SIGINT");
    assert!(!iso.exists(), "the iso cgroup is removed");
    assert!(!record(me).exists(), "the record is removed");

    // The metadata names the cgroup the target came from (pcapng, and JSON read back).
    let packets = read_capture(&file);
    let mine: Vec<_> = packets.iter().filter(|p| p.pid == target.pid()).collect();
    assert!(!mine.is_empty());
    for p in &mine {
        assert_eq!(p.process.as_ref().expect("metadata").cgroup, cg.path(), "{p:?}");
    }
    let out = pidcap().args(["read", "--json"]).arg(&file).output().unwrap();
    common::ok(&out);
    let text = common::text(&out.stdout);
    let line = text.lines().find(|l| l.contains(&format!("\"pid\":{},", target.pid()))).expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["process"]["cgroup"], cg.path().as_str());

    // Control: without --isolate the programs sit on the shared cgroup, and the same flood runs them.
    let (plain, _lines) =
        start_pidcap(pidcap().args(["capture", "-q", "--no-tls", "--pid", &target.pid().to_string()]));
    let progs = programs_of(plain.id());
    let before = packet_program_runs(&progs);
    bystander.send(port, FLOOD, "bystander");
    let after = packet_program_runs(&progs);
    assert!(after >= before + FLOOD, "beside a plain capture the flood runs the programs: {before} -> {after}");
    assert_eq!(cgroup_of(target.pid()), cg.path(), "no --isolate: not moved");
    signal(&plain, libc::SIGINT);
    plain.wait();
}

/// The cgroup ids (directory inodes) the cgroup links of `progs` are attached to, one entry per link.
fn cgroup_links(progs: &HashSet<u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = bpftool_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| progs.contains(&id)))
        .filter_map(|l| l["cgroup_id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

fn cgroup_id(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).ino()
}

#[test]
fn targets_from_two_cgroups_get_the_programs_at_each_iso_cgroup_and_nowhere_else() {
    require!(Root, Tool("bpftool"), Tool("python3"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _stats = enable_stats();
    let (cg_a, cg_b) = (Cgroup::new("iso-a"), Cgroup::new("iso-b"));
    let scratch = Scratch::new("iso-two");
    let file = scratch.path("two.pcapng");
    let mut a = Udp::start_in(&cg_a);
    let mut b = Udp::start_in(&cg_b);
    let mut bystander = Udp::start_in(&cg_a);
    let port = bystander.open();
    a.open(); // a socket older than the move: said not to be captured
    let (running, lines) =
        start_pidcap(pidcap().args(["capture", "--isolate", "--no-tls", "-U", "-w"]).arg(&file).args([
            "--pid",
            &a.pid().to_string(),
            "--pid",
            &b.pid().to_string(),
        ]));
    let me = running.id();
    let (iso_a, iso_b) = (iso_dir(&cg_a, me), iso_dir(&cg_b, me));
    assert_eq!(cgroup_of(a.pid()), format!("{}/pidcap-iso-{me}", cg_a.path()));
    assert_eq!(cgroup_of(b.pid()), format!("{}/pidcap-iso-{me}", cg_b.path()));
    let progs = programs_of(me);
    let per_point = pidcap_ebpf::PROGRAM_NAMES.len() - 2; // all but the fork and exit raw tracepoints
    let mut want: Vec<u64> = [cgroup_id(&iso_a), cgroup_id(&iso_b)].repeat(per_point);
    want.sort_unstable();
    assert_eq!(cgroup_links(&progs), want, "each cgroup program at both iso cgroups, nowhere else: {:?}", lines.seen);
    let older = format!("pid {} had 1 TCP/UDP socket open before its move", a.pid());
    assert!(lines.seen.iter().any(|l| l.contains(&older)), "{older:?} in {:?}", lines.seen);
    assert!(!lines.seen.iter().any(|l| l.contains(&format!("pid {} had", b.pid()))), "{:?}", lines.seen);

    let before = packet_program_runs(&progs);
    bystander.send(port, FLOOD, "bystander");
    assert_eq!(packet_program_runs(&progs), before, "the bystander beside a ran pidcap's programs");
    a.open();
    b.open();
    a.send(port, 2, "iso-a");
    b.send(port, 2, "iso-b");
    common::wait_for_capture(&file, "both targets' datagrams", |p| {
        let n = |pid: u32, payload: &[u8]| p.iter().filter(|p| p.pid == pid && p.payload() == payload).count();
        n(a.pid(), b"iso-a") == 2 && n(b.pid(), b"iso-b") == 2
    });
    running.signal(libc::SIGINT);
    assert!(running.wait().success());
    assert_eq!((cgroup_of(a.pid()), cgroup_of(b.pid())), (cg_a.path(), cg_b.path()), "both back");
    assert!(!iso_a.exists() && !iso_b.exists() && !record(me).exists());
}

fn signal(child: &common::Running, sig: libc::c_int) {
    child.signal(sig);
}

#[test]
fn a_child_the_isolated_target_forks_is_in_its_iso_cgroup_and_captured_with_follow() {
    require!(Root, Tool("python3"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("iso-fork");
    let scratch = Scratch::new("iso-fork");
    let (file, seen) = (scratch.path("fork.pcapng"), scratch.path("cgroup"));
    let mut sink = Udp::start_in(&cg);
    let port = sink.open();
    // The target waits for a line, then starts a python3 that says where it is and sends one datagram.
    let send = format!(
        "import socket; open('{}', 'w').write(open('/proc/self/cgroup').read()); \
         socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'iso-child', ('127.0.0.1', {port}))",
        seen.display()
    );
    let mut target = Command::new("sh")
        .args(["-c", "read line; python3 -c \"$0\"; true", &send])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    cg.add(target.id());
    let (running, _lines) = start_pidcap(
        pidcap()
            .args(["capture", "--isolate", "-f", "--no-tls", "-U", "-w"])
            .arg(&file)
            .args(["--pid", &target.id().to_string()]),
    );
    let me = running.id();
    {
        use std::io::Write;
        writeln!(target.stdin.take().unwrap(), "go").unwrap();
    }
    common::wait_for_capture(&file, "the child's datagram", |p| p.iter().any(|p| p.payload() == b"iso-child"));
    let inside = std::fs::read_to_string(&seen).unwrap();
    assert!(inside.lines().any(|l| l == format!("0::{}/pidcap-iso-{me}", cg.path())), "{inside:?}");
    let packets = read_capture(&file);
    let child = packets.iter().find(|p| p.payload() == b"iso-child").unwrap();
    assert_ne!(child.pid, target.id(), "sent by the target's child");
    assert_eq!(child.process.as_ref().expect("metadata").cgroup, cg.path(), "the original cgroup");
    let _ = target.wait();
    running.signal(libc::SIGINT);
    running.wait();
    assert!(!iso_dir(&cg, me).exists());
}

/// `capture --isolate --pid T`, then SIGKILL: T is left in the iso cgroup.
fn killed_isolation(cg: &Cgroup, t: &Sleeper) -> (u32, PathBuf) {
    let (running, _lines) =
        start_pidcap(pidcap().args(["capture", "-q", "--no-tls", "--isolate", "--pid", &t.pid().to_string()]));
    let me = running.id();
    let iso = iso_dir(cg, me);
    assert_eq!(cgroup_of(t.pid()), format!("{}/pidcap-iso-{me}", cg.path()));
    running.signal(libc::SIGKILL);
    running.wait();
    assert_eq!(cgroup_of(t.pid()), format!("{}/pidcap-iso-{me}", cg.path()), "a SIGKILL leaves it moved");
    assert!(iso.is_dir() && record(me).is_file());
    (me, iso)
}

#[test]
fn after_a_sigkill_the_next_pidcap_puts_the_target_back() {
    require!(Root, Tool("python3"));
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("iso-kill");
    let t = Sleeper::start_in(&cg);

    // The next `run` sweeps it...
    let (me, iso) = killed_isolation(&cg, &t);
    let out = pidcap().args(["run", "-q", "--no-tls", "--", "true"]).output().unwrap();
    common::ok(&out);
    assert_eq!(cgroup_of(t.pid()), cg.path(), "run put it back");
    assert!(!iso.exists() && !record(me).exists(), "iso cgroup and record removed");
    assert!(common::text(&out.stderr).contains(&format!("a killed pidcap's (pid {me}) isolation undone")));

    // ...and so does the next `capture` (of something else).
    let (me, iso) = killed_isolation(&cg, &t);
    let other = Sleeper::start_in(&cg);
    let (c, _lines) = start_pidcap(pidcap().args(["capture", "-q", "--no-tls", "--pid", &other.pid().to_string()]));
    assert_eq!(cgroup_of(t.pid()), cg.path(), "capture put it back");
    assert!(!iso.exists() && !record(me).exists());
    c.signal(libc::SIGINT);
    c.wait();

    // ...and so does the daemon's start.
    let (me, iso) = killed_isolation(&cg, &t);
    let scratch = Scratch::new("iso-daemon");
    let mut daemon = pidcap()
        .args(["daemon", "--group", "pidcap-test-no-such-group", "--socket"])
        .arg(scratch.path("pidcap.sock"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pidcap daemon");
    let mut lines = common::StderrLines::new(daemon.stderr.take().unwrap());
    lines.wait_for("pidcap daemon: listening on", Duration::from_secs(30));
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(cgroup_of(t.pid()), cg.path(), "the daemon put it back: {:?}", lines.seen);
    assert!(!iso.exists() && !record(me).exists());
}

/// `pidcap capture ARGS` must fail with exit status 2 and a message containing `needle`.
/// A capture that is not refused runs until stopped: killed after 30 s, and the test fails.
fn refused(args: &[&str], needle: &str) -> String {
    let mut child = pidcap()
        .args(["capture", "-q", "--no-tls"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{args:?} was not refused: {}", common::text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    err
}

#[test]
fn isolation_is_refused_before_anything_moves_and_a_half_move_is_undone() {
    require!(Root);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("iso-refuse");
    let t = Sleeper::start_in(&cg);
    let pid = t.pid().to_string();
    let untouched = |what: &str| {
        assert_eq!(cgroup_of(t.pid()), cg.path(), "{what}: the target was not moved");
        let left: Vec<_> = std::fs::read_dir(cg.dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pidcap-iso-"))
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{what}: no iso cgroup is left: {left:?}");
    };

    // Name, cgroup, unit and container targets.
    refused(&["--isolate", "--pid", &pid, "--name", "iso-nobody"], "--isolate moves --pid targets only");
    refused(&["--isolate", "--pid", &pid, "--cgroup", &cg.path()], "--isolate moves --pid targets only");
    refused(&["--isolate", "--unit", "iso-nobody"], "--isolate moves --pid targets only");
    refused(&["--isolate", "--container", "abcdef12"], "--isolate moves --pid targets only");
    untouched("name or cgroup targets");

    // A threaded subtree: a process in a "domain threaded" cgroup cannot be moved into a new child.
    let thr = Cgroup::new("iso-threaded");
    let t2 = Sleeper::start_in(&thr);
    let sub = thr.child("t");
    std::fs::write(sub.dir().join("cgroup.type"), "threaded").unwrap();
    let err = refused(&["--isolate", "--pid", &t2.pid().to_string()], "threaded");
    assert!(err.contains(&thr.dir().display().to_string()), "names the cgroup: {err}");
    assert_eq!(cgroup_of(t2.pid()), thr.path(), "not moved");
    assert_eq!(std::fs::read_dir(thr.dir()).unwrap().flatten().filter(|e| e.path().is_dir()).count(), 1, "only t");

    // A cgroup that cannot take a child: the first target (in cg) was moved
    // before the second's iso cgroup failed, and goes back.
    let full = Cgroup::new("iso-full");
    std::fs::write(full.dir().join("cgroup.max.descendants"), "0").unwrap();
    let t3 = Sleeper::start_in(&full);
    let err = refused(&["--isolate", "--pid", &pid, "--pid", &t3.pid().to_string()], "cannot isolate");
    assert!(err.contains(&full.dir().display().to_string()), "names the cgroup: {err}");
    assert!(err.contains("Resource temporarily unavailable"), "names the cause: {err}");
    untouched("a half move");
    assert_eq!(cgroup_of(t3.pid()), full.path());
    let ours: Vec<_> = std::fs::read_dir(pidcap_ebpf::ISO_RECORDS)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for r in ours {
        let text = std::fs::read_to_string(&r).unwrap_or_default();
        assert!(!text.contains(&cg.dir().display().to_string()), "no record is left for it: {}", r.display());
    }

    // A target another pidcap isolates: refused (that one's end would take it out of ours), left where it is.
    let (first, _lines) = start_pidcap(pidcap().args(["capture", "-q", "--no-tls", "--isolate", "--pid", &pid]));
    let theirs = format!("{}/pidcap-iso-{}", cg.path(), first.id());
    assert_eq!(cgroup_of(t.pid()), theirs);
    refused(&["--isolate", "--pid", &pid], "isolated by another pidcap already");
    assert_eq!(cgroup_of(t.pid()), theirs, "still in the first one's iso cgroup");
    first.signal(libc::SIGINT);
    first.wait();
    untouched("after the first isolation ended");
}

#[test]
fn a_capture_whose_programs_go_on_the_root_says_so_and_names_isolate_one_in_a_cgroup_of_its_own_does_not() {
    require!(Root);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = pidcap_testkit::cgroup::cgroup2_root();
    let cg = Cgroup::new("iso-hint");
    let in_cg = Sleeper::start_in(&cg);
    let in_root = pidcap_testkit::KillOnDrop(Command::new("sleep").arg("120").spawn().expect("sleep"));
    std::fs::write(root.join("cgroup.procs"), in_root.id().to_string()).expect("moving the sleep into the root cgroup");
    let hint = "attached at the cgroup2 root";
    for (pid, at_root) in [(in_root.id(), true), (in_cg.pid(), false)] {
        let (running, lines) = start_pidcap(pidcap().args(["capture", "-q", "--no-tls", "--pid", &pid.to_string()]));
        let said: Vec<&String> = lines.seen.iter().filter(|l| l.contains(hint)).collect();
        signal(&running, libc::SIGINT);
        assert!(running.wait_with_output().status.success(), "{:?}", lines.seen);
        if at_root {
            assert!(said.len() == 1 && said[0].contains("--isolate"), "{:?}", lines.seen);
        } else {
            assert!(said.is_empty(), "{:?}", lines.seen);
        }
    }
}
