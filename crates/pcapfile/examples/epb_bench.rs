//! The pcapng writer's cost per packet, without a kernel: 64-byte UDP
//! datagrams (92 bytes from the IP header) of one process on two sockets,
//! through `PcapngWriter` into a `CaptureFile` (its writer thread, the page
//! cache), as `pidcap run -w` writes them.
//!
//!   cargo run --release -p pidcap-pcapfile --example epb_bench -- [PACKETS] [FILE]
//!
//! Prints the nanoseconds per packet of the caller's thread (CPU time,
//! `CLOCK_THREAD_CPUTIME_ID`: what the drain thread would spend) and the wall time.

use pidcap_packet::{Direction, Verdict};
use pidcap_pcapfile::{CaptureFile, PcapngWriter, RecordRef, WriterOptions};
use std::time::Instant;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(2_000_000, |a| a.parse().expect("PACKETS"));
    let path = args.next().unwrap_or_else(|| "/tmp/pidcap-epb-bench.pcapng".into());
    let _ = std::fs::remove_file(&path);
    let file = CaptureFile::create(path.as_ref(), 0o600).expect("create");
    let mut w = PcapngWriter::with_os(file, &WriterOptions::default(), Some("Linux bench")).expect("writer");
    let data = [0x45u8; 92];
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    for i in 0..n {
        let r = RecordRef {
            id: i + 1,
            timestamp_ns: 1_700_000_000_000_000_000 + i * 3000,
            pid: 4242,
            comm: "flood",
            tid: 4243 + (i & 1) as u32,
            thread: "flood",
            process: None,
            socket_cookie: 1_000_000 + (i & 1),
            direction: Direction::Outbound,
            verdict: Verdict::Pass,
            rule: None,
            orig_len: 92,
            data: &data,
            tls: None,
        };
        w.write_record(&r).expect("write");
        if i % 3000 == 2999 {
            w.flush().expect("flush"); // a drain's end
        }
    }
    w.flush().expect("flush");
    let cpu = thread_cpu_ns() - cpu;
    let wall = wall.elapsed();
    let file = w.into_inner().expect("finish");
    file.close().expect("close");
    println!(
        "{n} packets: {:.1} ns/packet of the caller's CPU, wall {:.3} s",
        cpu as f64 / n as f64,
        wall.as_secs_f64()
    );
    let _ = std::fs::remove_file(&path);
}
