//! Where `pidcap daemon` (the real binary, as root, on a socket of the
//! test's own) puts its programs, as the kernel lists them (`bpftool link
//! show`, the links whose program the daemon holds; a cgroup link names its
//! cgroup by id, the inode of its directory): nowhere while it is idle, at
//! the target's own cgroup while it captures a pid there (not the root), at
//! the root for a name target, nowhere again after stop; following the live
//! targets when one exits; and nothing left after a SIGKILL. A bystander's
//! datagrams run none of its programs while it captures a process in another
//! cgroup (the kernel's run counts, BPF statistics on while the test holds a
//! `BPF_ENABLE_STATS` descriptor); the same flood with the programs at the
//! root runs them (what makes that assertion able to fail). A target that
//! opened its socket while the daemon was idle is captured on it (sock_diag).

mod common;

use common::{bpf_ids_held_by, bpftool_json, enable_stats, packet_program_runs, pidcap, require, Scratch, Udp};
use pidcap_api::Client;
use pidcap_testkit::cgroup::Cgroup;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Datagrams of the bystander's flood.
const FLOOD: u64 = 2_000;

/// `pidcap daemon` on a socket of its own; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: Scratch,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        let dir = Scratch::new(&format!("dscope-{tag}"));
        let socket = dir.path("pidcap.sock");
        let child = pidcap()
            .args(["daemon", "--group", "pidcap-test-no-such-group", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pidcap daemon");
        let mut d = Daemon { child, socket, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Client::connect(&d.socket).and_then(|mut c| c.get_state()).is_err() {
            assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited early");
            assert!(Instant::now() < deadline, "the daemon never answered on {}", d.socket.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn client(&self) -> Client {
        let c = Client::connect(&self.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A link of the daemon's, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Link {
    /// A cgroup program attached to the cgroup with this id.
    Cgroup(u64),
    /// Anything else (the fork and exit raw tracepoints).
    Other(String),
}

/// The links of the programs in `progs`.
fn links_of(progs: &HashSet<u64>) -> Vec<Link> {
    let links = bpftool_json(&["link", "show"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| progs.contains(&id)))
        .map(|l| match l["cgroup_id"].as_u64() {
            Some(id) => Link::Cgroup(id),
            None => Link::Other(l["type"].as_str().unwrap_or("?").to_string()),
        })
        .collect()
}

/// The daemon's programs (those it holds a descriptor of).
fn programs_of(d: &Daemon) -> HashSet<u64> {
    let (progs, _) = bpf_ids_held_by(d.pid());
    assert!(!progs.is_empty(), "the daemon holds no BPF program: did it load?");
    progs
}

/// The cgroup id of a cgroup2 directory (its inode).
fn cgroup_id(dir: &Path) -> u64 {
    std::fs::metadata(dir).unwrap().ino()
}

/// How many of the daemon's links are cgroup links at `dir`, and how many at other cgroups.
fn cgroup_links(links: &[Link], dir: &Path) -> (usize, usize) {
    let id = cgroup_id(dir);
    let here = links.iter().filter(|l| **l == Link::Cgroup(id)).count();
    let elsewhere = links.iter().filter(|l| matches!(l, Link::Cgroup(o) if *o != id)).count();
    (here, elsewhere)
}

/// The cgroup programs of `PROGRAM_NAMES` (all but the two raw tracepoints).
fn cgroup_programs() -> usize {
    pidcap_ebpf::PROGRAM_NAMES.len() - 2
}

/// Wait until `f` holds, failing with `what` after 10 s.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_daemon_attaches_only_while_it_captures_and_only_where_its_target_lives() {
    require!(Root, Tool("bpftool"), Tool("python3"));
    let _stats = enable_stats();
    let target_cg = Cgroup::new("dscope-target");
    let bystander_cg = Cgroup::new("dscope-bystander");
    let root = pidcap_testkit::cgroup::cgroup2_root();
    let d = Daemon::start("attach");
    let progs = programs_of(&d);
    assert_eq!(links_of(&progs), [], "an idle daemon has no program attached");

    // The target opens its socket while the daemon is idle (no hook saw it).
    let mut target = Udp::start_in(&target_cg);
    target.open();
    let mut bystander = Udp::start_in(&bystander_cg);
    let bystander_port = bystander.open();

    let mut c = d.client();
    c.start_capture(vec![target.pid()], vec![], None, None, false).unwrap();
    let links = links_of(&progs);
    assert_eq!(cgroup_links(&links, target_cg.dir()), (cgroup_programs(), 0), "at the target's cgroup only: {links:?}");
    assert_eq!(cgroup_links(&links, &root).0, 0, "nothing on the root: {links:?}");

    // The bystander's flood (to its own socket, both ends in its cgroup) runs none of them.
    let before = packet_program_runs(&progs);
    bystander.send(bystander_port, FLOOD, "bystander");
    assert_eq!(packet_program_runs(&progs), before, "a bystander's datagrams ran the daemon's programs");

    // The target's datagrams, on the socket it opened while nothing was attached, are captured.
    target.send(bystander_port, 3, "dscope-old-socket");
    wait_until("the target's 3 datagrams are captured", || {
        let page = c.get_packets(0, Some(1000)).unwrap();
        let ours = page
            .packets
            .iter()
            .filter(|p| p.pid == target.pid() && p.data.windows(17).any(|w| w == b"dscope-old-socket"));
        ours.count() == 3
    });
    assert!(packet_program_runs(&progs) >= before + 3, "the target's sends ran pidcap_egress");

    c.stop_capture().unwrap();
    assert_eq!(links_of(&progs), [], "stopped: nothing attached");

    // Control: a name target puts the programs on the root, where the same flood runs them.
    c.start_capture(vec![], vec!["dscope-nomatch".into()], None, None, false).unwrap();
    let links = links_of(&progs);
    assert_eq!(cgroup_links(&links, &root), (cgroup_programs(), 0), "a name target: at the root: {links:?}");
    let before = packet_program_runs(&progs);
    bystander.send(bystander_port, FLOOD, "bystander");
    let after = packet_program_runs(&progs);
    assert!(after >= before + FLOOD, "at the root the flood runs the programs: {before} -> {after}");
    c.stop_capture().unwrap();
    assert_eq!(links_of(&progs), []);
}

#[test]
fn the_daemons_programs_follow_its_live_targets() {
    require!(Root, Tool("bpftool"), Tool("python3"));
    let parent = Cgroup::new("dscope-follow");
    let (cg_a, cg_b) = (parent.child("a"), parent.child("b"));
    let d = Daemon::start("follow");
    let progs = programs_of(&d);
    let mut a = Udp::start_in(&cg_a);
    let mut b = Udp::start_in(&cg_b);
    a.open();
    b.open();
    let mut c = d.client();
    c.start_capture(vec![a.pid(), b.pid()], vec![], None, None, false).unwrap();
    let links = links_of(&progs);
    assert_eq!(cgroup_links(&links, parent.dir()), (cgroup_programs(), 0), "the cgroup holding both: {links:?}");

    // b exits: the programs narrow to a's cgroup (at the daemon's next liveness check).
    b.kill();
    wait_until("the programs are at a's cgroup alone", || {
        cgroup_links(&links_of(&progs), cg_a.dir()) == (cgroup_programs(), 0)
    });
    // a exits too: the capture runs on with no target and nothing attached.
    a.kill();
    wait_until("no program is attached", || links_of(&progs).is_empty());
    assert!(c.get_state().unwrap().running);
    c.stop_capture().unwrap();
    assert_eq!(links_of(&progs), []);
}

#[test]
fn a_daemon_killed_while_capturing_leaves_no_attachment() {
    require!(Root, Tool("bpftool"), Tool("python3"));
    let target_cg = Cgroup::new("dscope-sigkill");
    let mut d = Daemon::start("sigkill");
    let progs = programs_of(&d);
    let mut target = Udp::start_in(&target_cg);
    target.open();
    d.client().start_capture(vec![target.pid()], vec![], None, None, false).unwrap();
    assert_eq!(links_of(&progs).len(), pidcap_ebpf::PROGRAM_NAMES.len(), "attached while capturing");

    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    assert_eq!(links_of(&progs), [], "a link outlived the daemon");
    wait_until("the daemon's programs are unloaded", || {
        let loaded: HashSet<u64> =
            bpftool_json(&["prog", "show"]).as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect();
        loaded.is_disjoint(&progs)
    });
}
