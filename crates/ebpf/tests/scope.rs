//! Where the programs attach (root): attached to a target's cgroup, a
//! bystander's loopback flood never runs `pidcap_egress`/`pidcap_ingress`
//! (the kernel's run counts, BPF statistics on while the test holds a
//! `BPF_ENABLE_STATS` descriptor) while the target's own datagrams to that
//! bystander are captured; attached to the root, the same flood runs them
//! (what makes the first half able to fail).

mod common;

use aya::sys::{enable_stats, Stats};
use common::Agent;
use pidcap_ebpf::{AttachPoint, EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig, Process};
use pidcap_packet::Direction;
use pidcap_testkit::cgroup::Cgroup;
use pidcap_testkit::require;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Datagrams the bystander (this test process, in its own cgroup) floods with.
const FLOOD: u64 = 5_000;

fn load(attach: AttachPoint) -> EbpfBackend {
    let mut b =
        EbpfBackend::load(LoadOptions { attach: Some(attach), ..LoadOptions::with_ring(1 << 20) }).expect("load");
    b.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    b
}

/// The run counts of the two packet programs.
fn runs(b: &EbpfBackend) -> (u64, u64) {
    (b.program_run_count("pidcap_egress").unwrap(), b.program_run_count("pidcap_ingress").unwrap())
}

/// A flood from this process (a bystander) to a socket of its own on loopback,
/// all of it received (so both hooks would run for each datagram).
fn flood() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..FLOOD {
        tx.send_to(b"bystander", to).unwrap();
        rx.recv(&mut buf).unwrap();
    }
}

#[test]
fn attached_to_the_targets_cgroup_a_bystanders_flood_runs_no_program_of_ours() {
    require!(Root, Tool("python3"));
    let _stats = enable_stats(Stats::RunTime).expect("BPF_ENABLE_STATS");
    // The bystander: this test process, in a cgroup of its own (beside the
    // target's, as systemd puts services), so that neither is below the other.
    let bystander = Cgroup::new("scope-bystander");
    bystander.add(std::process::id());
    let target_cg = Cgroup::new("scope-target");
    let mut target = Agent::start(common::UDP_SENDER);
    target_cg.add(target.pid());

    // Control: at the root, the flood runs both programs about once a datagram.
    {
        let b = load(AttachPoint::Root);
        let before = runs(&b);
        flood();
        let after = runs(&b);
        assert!(
            after.0 - before.0 >= FLOOD && after.1 - before.1 >= FLOOD,
            "root attach: the flood should run both programs: {before:?} -> {after:?}"
        );
    }

    let mut b = load(AttachPoint::Cgroup(target_cg.dir().to_path_buf()));
    b.add_target(&Process::open(target.pid()).unwrap(), false).unwrap();
    let before = runs(&b);
    flood();
    let after = runs(&b);
    assert_eq!(before, after, "attached to the target's cgroup, the bystander's flood ran our programs");

    // The target's datagrams to the bystander's socket are seen (egress at the target's socket).
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    target.send_udp(rx.local_addr().unwrap().port(), 3, "scope-target");
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 3 {
        b.poll(Duration::from_millis(10), &mut |raw| {
            let carries = raw.data.windows(12).any(|w| w == b"scope-target");
            if carries && raw.pid == target.pid() && raw.direction == Direction::Outbound {
                got += 1;
            }
        })
        .unwrap();
        assert!(Instant::now() < deadline, "the target's datagrams were never captured ({got} of 3)");
    }
    let end = runs(&b);
    assert!(end.0 >= after.0 + 3, "the target's sends ran pidcap_egress: {after:?} -> {end:?}");
    // Received by the bystander's socket, outside the cgroup: no ingress run.
    assert_eq!(end.1, after.1, "a datagram received outside the cgroup ran pidcap_ingress");
    // Out of the cgroups before they are removed.
    std::fs::write(pidcap_testkit::cgroup::cgroup2_root().join("cgroup.procs"), std::process::id().to_string())
        .unwrap();
}
