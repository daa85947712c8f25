//! Target cgroups in the real kernel (root): the eBPF backend's own target
//! list after processes inside, beside and outside a target cgroup make a
//! socket; pidcap itself inside it is never a target; after
//! `clear_target_names_and_cgroups` a process that joins is not taken.
//! One test in this file: it moves the test process itself between cgroups.

use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::cgroup::Cgroupfs;
use pidcap_engine::{KernelBackend, KernelConfig};
use pidcap_testkit::cgroup::{cgroup2_root, Cgroup};
use pidcap_testkit::require;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

/// A python3 that makes a UDP socket when told (a line on stdin) and says `made`.
struct SocketMaker {
    child: pidcap_testkit::KillOnDrop,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl SocketMaker {
    fn start() -> SocketMaker {
        let script = "import socket, sys\n\
                      sys.stdin.readline()\n\
                      s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                      print('made', flush=True)\n\
                      sys.stdin.readline()\n";
        let mut child =
            Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        SocketMaker { child: pidcap_testkit::KillOnDrop(child), stdin, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Make the socket now (the sock_create hook runs in this process).
    fn make(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "made");
    }
}

fn target_pids(b: &EbpfBackend) -> Vec<u32> {
    b.targets().unwrap().iter().map(|t| t.id.pid).collect()
}

#[test]
fn only_processes_in_the_target_cgroup_become_targets_never_pidcap_and_none_after_clearing() {
    require!(Root, Tool("python3"));
    let mut b = EbpfBackend::load(LoadOptions::default()).unwrap();
    b.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    let parent = Cgroup::new("ebpf");
    let inner = parent.child("inner");
    let beside = Cgroup::new("ebpf-beside");
    let fs = Cgroupfs::system().unwrap();
    b.add_target_cgroup(&fs.resolve(&parent.path()).unwrap(), false).unwrap();

    let (mut a, mut c, mut d) = (SocketMaker::start(), SocketMaker::start(), SocketMaker::start());
    inner.add(a.pid()); // below the target cgroup
    beside.add(c.pid()); // in another cgroup at the same level
    a.make();
    c.make();
    d.make(); // in the root cgroup
    let pids = target_pids(&b);
    assert!(pids.contains(&a.pid()), "{pids:?}");
    assert!(!pids.contains(&c.pid()) && !pids.contains(&d.pid()), "{pids:?}");

    // pidcap itself (this process holds the backend) inside the cgroup: never a target.
    parent.add(std::process::id());
    let _sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    std::fs::write(cgroup2_root().join("cgroup.procs"), std::process::id().to_string()).unwrap();
    assert!(!target_pids(&b).contains(&std::process::id()));

    // Forgotten: a process that joins now is not taken.
    b.clear_target_names_and_cgroups().unwrap();
    let mut e = SocketMaker::start();
    inner.add(e.pid());
    e.make();
    assert!(!target_pids(&b).contains(&e.pid()), "{:?}", target_pids(&b));
}
