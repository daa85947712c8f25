//! Fan-out of packets to subscribers, on the scripted kernel (no root):
//! two subscribers of the same request id get byte-identical packet lines
//! (one JSON per packet, shared), and a subscriber that never reads neither
//! holds up another subscriber nor grows the daemon's memory past its bounded
//! queue; when it reads again it is told exactly how many packets it missed.

mod common;

use common::{udp_packet, wait_for, InProcess};
use pidcap_api::protocol::Event;
use pidcap_daemon::server::SUBSCRIBER_QUEUE;
use pidcap_engine::fake::FakeHandle;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn me() -> u32 {
    std::process::id()
}

/// A subscriber on a raw socket: `subscribe` with request id 5, its reply read.
fn raw_subscriber(d: &InProcess) -> BufReader<UnixStream> {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"{\"v\":2,\"id\":5,\"op\":\"subscribe\"}\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(r#""subscribed":true"#), "{line}");
    r
}

/// The next `n` packet event lines (other events skipped).
fn packet_lines(r: &mut BufReader<UnixStream>, n: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(n);
    while lines.len() < n {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "the daemon closed the subscription");
        if line.contains(r#""event":"packet""#) {
            lines.push(line);
        }
    }
    lines
}

fn push(h: &FakeHandle, from: usize, n: usize, size: usize) {
    for i in from..from + n {
        h.push(me(), udp_packet(1000 + (i % 50_000) as u16, &vec![b'a' + (i % 26) as u8; size]));
    }
}

/// The resident memory of this process (the daemon runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

#[test]
fn two_subscribers_get_the_same_bytes_for_every_packet_in_order() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    let (mut a, mut b) = (raw_subscriber(&d), raw_subscriber(&d));
    let started = c.start_capture(vec![me()], vec![], None, Some(10_000), false).unwrap();
    const N: usize = 3000;
    push(&fake, 0, N, 200);
    let (la, lb) = (packet_lines(&mut a, N), packet_lines(&mut b, N));
    assert_eq!(la, lb, "two subscribers of the same request id must get identical lines");
    // ... each the line of the packet the daemon holds, in capture order.
    let ids: Vec<u64> = la
        .iter()
        .map(|l| match serde_json::from_str::<pidcap_api::protocol::Reply<()>>(l).unwrap().event {
            Some(Event::Packet { packet }) => packet.id,
            e => panic!("not a packet event: {e:?}"),
        })
        .collect();
    assert_eq!(ids, (started.first_id..started.first_id + N as u64).collect::<Vec<_>>());
    let held = c.get_packets(started.first_id - 1, Some(1)).unwrap();
    let want = serde_json::to_string(&held.packets[0]).unwrap();
    assert!(la[0].contains(&want), "the event carries the held packet's JSON:\n{}\n{want}", la[0]);
}

#[test]
fn a_subscriber_that_never_reads_blocks_no_one_grows_nothing_and_is_told_what_it_missed() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    // Subscribed first, then never read until the end.
    let mut stuck = raw_subscriber(&d);
    let mut reader = d.client();
    reader.subscribe(None).unwrap();
    let started = c.start_capture(vec![me()], vec![], None, Some(2_000), false).unwrap();

    // The reading subscriber, on its own thread: counts packets, fails on `missed`.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let first = started.first_id;
    let reading = std::thread::spawn(move || loop {
        let Ok(event) = reader.next_event() else { return }; // the daemon stopped
        match event {
            Event::Packet { packet } => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                assert_eq!(packet.id, first + n, "the reading subscriber lost or reordered a packet");
            }
            Event::Missed { count } => panic!("the reading subscriber missed {count} packets"),
            _ => {}
        }
    });
    // Push in steps the reader keeps up with (the queue holds SUBSCRIBER_QUEUE events).
    const STEP: usize = 1000;
    const SIZE: usize = 1200;
    let mut pushed = 0usize;
    let mut step = |n: usize| {
        for _ in 0..n / STEP {
            push(&fake, pushed, STEP, SIZE);
            pushed += STEP;
            let want = pushed as u64;
            assert!(
                wait_for(Duration::from_secs(20), || seen.load(Ordering::Relaxed) >= want),
                "the reading subscriber is held up: {} of {want} packets after 20 s",
                seen.load(Ordering::Relaxed)
            );
        }
    };
    // Warm up: the stuck subscriber's queue, its socket buffers and the ring fill.
    step(2 * SUBSCRIBER_QUEUE / STEP * STEP);
    let before = rss();
    // 25,000 more packets of 1.2 kB (with their JSON, about 100 MB if they stayed).
    let more = 25_000;
    let t = Instant::now();
    step(more);
    let after = rss();
    let growth = after.saturating_sub(before);
    println!("rss {} -> {} MiB over {more} packets in {:?}", before >> 20, after >> 20, t.elapsed());
    assert!(growth < 32 << 20, "the daemon grew by {} MiB over {more} packets with a stuck subscriber", growth >> 20);
    let total = pushed as u64;
    assert_eq!(c.get_state().unwrap().stats.received, total);

    // The stuck subscriber reads at last: what its socket held, then how many it
    // missed, then the newest packets: nothing twice, every packet accounted for.
    let last = first + total - 1;
    let (mut packets, mut missed, mut prev) = (0u64, 0u64, 0u64);
    let mut told_at = None;
    loop {
        let mut line = String::new();
        assert!(stuck.read_line(&mut line).unwrap() > 0, "the daemon closed the stuck subscription");
        match serde_json::from_str::<pidcap_api::protocol::Reply<()>>(&line).unwrap().event {
            Some(Event::Packet { packet }) => {
                assert!(packet.id > prev, "packet {} after {prev}", packet.id);
                prev = packet.id;
                packets += 1;
                if packet.id == last {
                    break;
                }
            }
            Some(Event::Missed { count }) => {
                missed += count;
                told_at.get_or_insert(packets);
            }
            _ => {}
        }
    }
    assert!(told_at.is_some_and(|at| at > 0), "the packets already written come first, then `missed`");
    assert!(
        missed > 0 && packets < total,
        "a stuck subscriber cannot have got all {total}: {packets} + missed {missed}"
    );
    // `missed` counts packets only: the counters are not queued with them.
    assert_eq!(packets + missed, total, "seen {packets} + missed {missed} must account for the {total} packets");
    drop(c);
    drop(d); // ends the reading subscriber's connection
    reading.join().expect("the reading subscriber");
    assert_eq!(seen.load(Ordering::Relaxed), total);
}
