//! `KernelBackend::set_attach` on the real kernel layer (root): loaded with
//! nothing attached it holds no link; the programs move between cgroups
//! while a target floods, and none of the target's datagrams is missed (each
//! program is attached at the new point before its old link goes); a move to
//! a cgroup that does not exist fails and leaves the programs where they were.

mod common;

use common::Agent;
use pidcap_ebpf::{AttachPoint, EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig};
use pidcap_packet::Direction;
use pidcap_testkit::cgroup::Cgroup;
use pidcap_testkit::require;
use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `send N PORT PAYLOAD`: N datagrams `PAYLOAD-<i>` (i from 0) from
/// one socket (made at `open`), then says `sent`.
const SENDER: &str = "import socket, sys\n\
    s = None\n\
    for line in sys.stdin:\n\
    \x20   w = line.split()\n\
    \x20   if w[0] == 'open':\n\
    \x20       s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print('open', flush=True)\n\
    \x20   else:\n\
    \x20       for i in range(int(w[1])): s.sendto(('%s-%d' % (w[3], i)).encode(), ('127.0.0.1', int(w[2])))\n\
    \x20       print('sent', flush=True)\n";

/// How many links this process holds for the programs of backend `b`
/// (`/proc/self/fdinfo`: a link's `prog_id`). By program, not by process:
/// the other tests of this binary run at the same time in the same process,
/// with backends and links of their own.
fn our_links(b: &EbpfBackend) -> usize {
    let ids: HashSet<u64> = pidcap_ebpf::PROGRAM_NAMES.iter().filter_map(|n| b.program_id(n)).map(u64::from).collect();
    assert_eq!(ids.len(), pidcap_ebpf::PROGRAM_NAMES.len(), "every program of the backend has an id");
    let mine: HashSet<u64> = std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|info| info.contains("link_type:"))
        .filter(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u64>().ok())
                .is_some_and(|p| ids.contains(&p))
        })
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("link_id:")?.trim().parse().ok()))
        .collect();
    mine.len()
}

fn configured(b: &mut EbpfBackend) {
    b.configure(&KernelConfig { snaplen: 64, capture: true, tls: false }).unwrap();
}

/// What was captured of the target's flood: the sequence numbers seen, and duplicates.
#[derive(Default)]
struct Seen {
    numbers: HashSet<u64>,
    twice: u64,
}

/// Take the target's outbound `attach-move-<i>` datagrams from what is pending.
fn drain(b: &mut EbpfBackend, pid: u32, seen: &mut Seen) {
    const UDP_PAYLOAD: usize = 28; // IPv4 + UDP headers
    b.poll(Duration::ZERO, &mut |raw| {
        if raw.pid != pid || raw.direction != Direction::Outbound || raw.data.len() <= UDP_PAYLOAD {
            return;
        }
        let text = String::from_utf8_lossy(&raw.data[UDP_PAYLOAD..]);
        if let Some(i) = text.strip_prefix("attach-move-").and_then(|n| n.parse().ok()) {
            if !seen.numbers.insert(i) {
                seen.twice += 1;
            }
        }
    })
    .unwrap();
}

#[test]
fn loaded_detached_it_holds_no_link_and_set_attach_puts_them_on_and_off() {
    require!(Root);
    let mut b = EbpfBackend::load(LoadOptions { attach: None, ..LoadOptions::with_ring(1 << 20) }).unwrap();
    let before = 0;
    assert_eq!((b.attached_at(), our_links(&b)), (None, before), "loaded with nothing attached");
    b.set_attach(Some(&AttachPoint::Root)).unwrap();
    assert_eq!(b.attached_at(), Some(&AttachPoint::Root));
    assert_eq!(our_links(&b), before + pidcap_ebpf::PROGRAM_NAMES.len(), "every program attached");
    b.set_attach(Some(&AttachPoint::Root)).unwrap();
    assert_eq!(our_links(&b), before + pidcap_ebpf::PROGRAM_NAMES.len(), "the same point again: no new link");
    b.set_attach(None).unwrap();
    assert_eq!((b.attached_at(), our_links(&b)), (None, before), "every link gone");
}

#[test]
fn moving_the_programs_while_a_target_floods_misses_none_of_its_datagrams() {
    require!(Root, Tool("python3"));
    const N: u64 = 20_000;
    let parent = Cgroup::new("attach-move");
    let inner = parent.child("a");
    let mut target = Agent::start(SENDER);
    inner.add(target.pid());
    assert_eq!(target.ask("open"), "open");
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap(); // never read: egress is what is counted
    let port = rx.local_addr().unwrap().port();

    let mut b = EbpfBackend::load(LoadOptions { attach: None, ..LoadOptions::with_ring(8 << 20) }).unwrap();
    configured(&mut b);
    let (outer_at, inner_at) =
        (AttachPoint::Cgroup(parent.dir().to_path_buf()), AttachPoint::Cgroup(inner.dir().to_path_buf()));
    b.set_attach(Some(&outer_at)).unwrap();
    b.add_target(&target.process(), false).unwrap();

    let pid = target.pid();
    target.tell(&format!("send {N} {port} attach-move"));
    // The agent says `sent` when its flood is over: waited for on a thread
    // while this one moves the programs back and forth and drains the ring.
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let said = target.answer();
            done.store(true, Ordering::SeqCst);
            (target, said)
        })
    };
    let (mut seen, mut moves) = (Seen::default(), 0u32);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done.load(Ordering::SeqCst) {
        let to = if moves % 2 == 0 { &inner_at } else { &outer_at };
        b.set_attach(Some(to)).unwrap();
        assert_eq!(b.attached_at(), Some(to));
        moves += 1;
        drain(&mut b, pid, &mut seen);
        assert!(Instant::now() < deadline, "the flood did not end");
    }
    let (_target, said) = waiter.join().unwrap();
    assert_eq!(said, "sent");
    let end = Instant::now() + Duration::from_secs(5);
    while (seen.numbers.len() as u64) < N && Instant::now() < end {
        drain(&mut b, pid, &mut seen);
    }
    let lost = b.counters().unwrap().ring_full;
    let got = seen.numbers.len() as u64;
    println!("{moves} moves during a flood of {N}: {got} distinct captured, {} twice, ring_full {lost}", seen.twice);
    assert!(moves >= 4, "the flood ended before the programs moved back and forth ({moves} moves)");
    assert_eq!(lost, 0, "the ring overflowed: the count says nothing");
    assert_eq!(got, N, "{} of the target's datagrams were missed during {moves} moves", N - got);
    drop(rx);
}

#[test]
fn a_move_to_a_cgroup_that_does_not_exist_fails_and_leaves_the_programs_where_they_were() {
    require!(Root);
    let cg = Cgroup::new("attach-gone");
    let mut b = EbpfBackend::load(LoadOptions { attach: None, ..LoadOptions::with_ring(1 << 20) }).unwrap();
    let at = AttachPoint::Cgroup(cg.dir().to_path_buf());
    b.set_attach(Some(&at)).unwrap();
    let links = our_links(&b);
    let gone = AttachPoint::Cgroup(cg.dir().join("no-such-cgroup"));
    assert!(b.set_attach(Some(&gone)).is_err());
    assert_eq!((b.attached_at(), our_links(&b)), (Some(&at), links), "still attached where it was");
}
