//! What clients can cost the daemon, on the scripted kernel (no root):
//! connections that ask for big pages and never read hold little memory,
//! and give it back when they go; a flood of connections is refused past
//! `max_clients` with one `busy` line while a well-behaved client is served
//! throughout, and the daemon's descriptors and memory come back after.
//! These tests read this process's RSS and descriptors, so they run one at a
//! time (a lock) in their own test binary.

mod common;

use common::{udp_packet, wait_for, InProcess};
use pidcap_api::protocol::{ErrorCode, Reply};
use pidcap_daemon::server::DEFAULT_MAX_CLIENTS;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MB: u64 = 1 << 20;

/// This process's resident memory (VmRSS), bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// This process's open descriptors.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Bytes waiting to be read on `s`.
fn pending(s: &UnixStream) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer, which is valid.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n
}

/// A daemon holding `n` packets of about 1.4 KB.
fn daemon_with_packets(n: usize) -> InProcess {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    c.start_capture(vec![std::process::id()], vec![], None, Some(n), false).unwrap();
    for i in 0..n {
        fake.push(std::process::id(), udp_packet(i as u16, &[b'p'; 1400]));
    }
    assert!(wait_for(Duration::from_secs(10), || c.get_state().unwrap().stats.received >= n as u64));
    d
}

#[test]
fn clients_that_never_read_big_pages_hold_little_and_give_it_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CLIENTS: usize = 60;
    let d = daemon_with_packets(5_000);
    let mut good = d.client();
    // Warm up: one big page read whole, so the baseline has the allocator's working set.
    for _ in 0..3 {
        assert_eq!(good.get_packets(0, Some(1000)).unwrap().packets.len(), 1000);
    }
    let before = rss();

    // Each asks for 1000 packets (about 3 MB of JSON), twenty times, and never reads.
    let mut line = Vec::new();
    for i in 0..20 {
        line.extend_from_slice(format!("{{\"v\":1,\"id\":{i},\"op\":\"get_packets\",\"limit\":1000}}\n").as_bytes());
    }
    let lazy: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            s.write_all(&line).unwrap();
            s
        })
        .collect();
    // The daemon has started answering every one of them (its replies fill their sockets).
    assert!(
        wait_for(Duration::from_secs(20), || lazy.iter().all(|s| pending(s) > 0)),
        "the daemon did not start answering all {CLIENTS} clients"
    );
    let open = rss();
    // And still answers a client that reads.
    assert_eq!(good.get_packets(0, Some(1000)).unwrap().packets.len(), 1000);
    let grown = open.saturating_sub(before);
    eprintln!("RSS before {} MB, with {CLIENTS} clients not reading {} MB", before / MB, open / MB);
    assert!(
        grown < 40 * MB,
        "{CLIENTS} clients that do not read grew the daemon by {} MB (a whole reply each is ~4 MB)",
        grown / MB
    );

    drop(lazy);
    let back = wait_for(Duration::from_secs(10), || rss() < before + 16 * MB);
    eprintln!("RSS after they closed {} MB", rss() / MB);
    assert!(back, "memory did not come back: {} MB, was {} MB", rss() / MB, before / MB);
    assert_eq!(good.get_packets(0, Some(10)).unwrap().packets.len(), 10);
}

#[test]
fn a_flood_of_connections_is_refused_clearly_while_a_client_is_served_and_the_daemon_recovers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const FLOOD: usize = 2_000;
    let d = daemon_with_packets(1_000);
    let mut good = d.client();
    good.get_packets(0, Some(1000)).unwrap();
    let (fds_before, rss_before) = (fds(), rss());

    // A well-behaved client asks for the state over and over during the flood.
    let done = Arc::new(AtomicBool::new(false));
    let served = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut calls, mut slowest) = (0u32, Duration::ZERO);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let s = good.get_state().expect("the well-behaved client is served during the flood");
                assert!(s.running);
                slowest = slowest.max(t.elapsed());
                calls += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (calls, slowest, good)
        })
    };

    // 2,000 connections at once, from four threads; each asks once.
    let flood: Vec<UnixStream> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..FLOOD / 4)
                        .map(|_| {
                            let s = UnixStream::connect(&d.socket).expect("connect");
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            s
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let (mut busy, mut answered) = (0, 0);
    for mut s in flood.iter() {
        // A refused one may be closed already: the write can fail, its busy line is still there.
        let _ = s.write_all(b"{\"v\":1,\"id\":1,\"op\":\"get_state\"}\n");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("every connection gets an answer");
        let r: Reply = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        match r.error {
            Some(e) if e.code == ErrorCode::Busy => {
                assert!(e.message.contains(&DEFAULT_MAX_CLIENTS.to_string()), "{}", e.message);
                assert_eq!(r.id, None);
                busy += 1;
            }
            Some(e) => panic!("unexpected error {e}"),
            None => answered += 1,
        }
    }
    done.store(true, Ordering::Relaxed);
    let (calls, slowest, mut good) = served.join().unwrap();
    eprintln!("flood: {answered} served, {busy} busy; the good client made {calls} calls, slowest {slowest:?}");
    // The good client is one of the daemon's clients.
    assert_eq!((answered, busy), (DEFAULT_MAX_CLIENTS - 1, FLOOD - DEFAULT_MAX_CLIENTS + 1));
    assert!(calls > 0 && slowest < Duration::from_secs(2), "{calls} calls, slowest {slowest:?}");

    // When they go, the descriptors and memory come back, and a new client gets in.
    drop(flood);
    assert!(
        wait_for(Duration::from_secs(10), || fds() <= fds_before + 2),
        "descriptors: {} after the flood, {fds_before} before",
        fds()
    );
    assert!(
        wait_for(Duration::from_secs(10), || rss() < rss_before + 16 * MB),
        "RSS {} MB after the flood, {} MB before",
        rss() / MB,
        rss_before / MB
    );
    assert!(d.client().get_state().unwrap().running);
    assert!(good.get_state().unwrap().running);
}
