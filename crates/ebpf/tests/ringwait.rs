//! How the consumer waits on the kernel ring ([`EbpfBackend::poll`]): the
//! programs submit records without a wakeup until the pending bytes cross
//! the threshold, and the wait is edge-triggered, so a few records do not
//! end it (a level-triggered `poll` on a ring fd returned as soon as one
//! record was pending: under a flood the consumer went round its loop for
//! every few packets); a crossing does.

mod common;

use common::Agent;
use pidcap_ebpf::{AttachPoint, EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig, Process};
use pidcap_testkit::cgroup::Cgroup;
use pidcap_testkit::require;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The wakeup threshold of the test's ring: about 90 records of a small datagram.
const THRESHOLD: u32 = 16 << 10;

/// One poll of up to `timeout`: the target's datagrams carrying `mark` it
/// took, and how long it waited.
fn poll_once(b: &mut EbpfBackend, timeout: Duration, mark: &[u8]) -> (usize, Duration) {
    let t = Instant::now();
    let mut got = 0;
    b.poll(timeout, &mut |raw| got += usize::from(raw.data.windows(mark.len()).any(|w| w == mark))).unwrap();
    (got, t.elapsed())
}

#[test]
fn poll_sleeps_through_records_below_the_threshold_and_wakes_when_it_is_crossed() {
    require!(Root, Tool("python3"));
    let cg = Cgroup::new("ringwait-target");
    let mut target = Agent::start(common::UDP_SENDER);
    cg.add(target.pid());
    let mut b = EbpfBackend::load(LoadOptions {
        ring_bytes: 1 << 20,
        wakeup_bytes: Some(THRESHOLD),
        attach: Some(AttachPoint::Cgroup(cg.dir().to_path_buf())),
        ..LoadOptions::default()
    })
    .expect("load");
    b.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    b.add_target(&Process::open(target.pid()).unwrap(), false).unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();

    // Three records pending, far below the threshold: the wait goes on to
    // its timeout, then takes them.
    target.send_udp(port, 3, "below-threshold");
    let timeout = Duration::from_millis(300);
    let (got, waited) = poll_once(&mut b, timeout, b"below-threshold");
    assert_eq!(got, 3, "the pending records are drained at the timeout");
    assert!(waited >= timeout - Duration::from_millis(20), "woken after {waited:?} by records below the threshold");

    // Enough to cross it (a record of a small datagram is about 190 bytes):
    // woken at once, long before the timeout.
    target.send_udp(port, 400, "above-threshold");
    let (got, waited) = poll_once(&mut b, Duration::from_secs(30), b"above-threshold");
    assert_eq!(got, 400, "one drain takes every pending record");
    assert!(waited < Duration::from_secs(10), "a crossing of the threshold did not wake the wait ({waited:?})");

    // And after a wakeup, records below the threshold again do not end the
    // next wait (a level-triggered epoll would report the ring again as
    // long as anything is pending).
    target.send_udp(port, 3, "below-again");
    let (got, waited) = poll_once(&mut b, timeout, b"below-again");
    assert_eq!(got, 3);
    assert!(
        waited >= timeout - Duration::from_millis(20),
        "woken after {waited:?} with the threshold not crossed again"
    );
}
