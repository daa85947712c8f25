//! flood: a bounded loopback traffic generator for bench/capture-bench.sh.
//!
//!   flood udp --size N --secs S --port P [--senders K] [--batch B] [--packets N] [--pps R]
//!   flood tcp --secs S --port P [--write-size N]
//!   flood sink udp|tcp --port P        (started by the modes above)
//!   flood syscalls --secs S            (bench/syscall-bench.sh: no traffic)
//!
//! The udp and tcp modes start the sink as a separate process (this binary,
//! `sink` mode) so that a capture tool following the sender sees only the
//! sender's own sockets: the sink's receive side is another process.
//! Traffic goes only to 127.0.0.1; every mode is bounded in time (--secs,
//! at most 600). UDP: --packets N stops once N datagrams are sent (all
//! senders together, to within one batch each), --pps R paces the senders
//! to R datagrams/s in all (bench/daemon-bench.sh).
//!
//! At the end, one JSON line on stdout:
//!   {"mode":..,"sent_packets":..,"sent_bytes":..,"secs":..,"pps":..,"bytes_per_sec":..}
//! UDP: packets = datagrams accepted by sendmmsg, bytes = UDP payload bytes.
//! TCP: packets = the socket's tcpi_segs_out (segments it sent, data + ACKs),
//!      bytes = bytes written; tcpi_segs_in (segments it received) is also printed.
//! syscalls: {"mode":"syscalls","getppid_ns":..,"write_ns":..}: the time of one
//!      getppid (a syscall no capture tool looks at) and of one 1-byte write
//!      to /dev/null (one pidcap's TLS syscall program looks at), each looped
//!      for half of --secs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_SECS: f64 = 600.0;

/// Set by SIGINT/SIGTERM: the udp and tcp modes stop early, stop their sink and report.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  flood udp --size N --secs S --port P [--senders K] [--batch B] [--packets N] [--pps R]\n  flood tcp --secs S --port P [--write-size N]\n  flood sink udp|tcp --port P\n  flood syscalls --secs S"
    );
    std::process::exit(2)
}

struct Opts {
    size: usize,
    secs: f64,
    port: u16,
    senders: usize,
    batch: usize,
    write_size: usize,
    /// UDP: stop after this many datagrams in all (0: no limit).
    packets: u64,
    /// UDP: datagrams per second in all (0: as fast as possible).
    pps: f64,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts { size: 64, secs: 3.0, port: 0, senders: 1, batch: 64, write_size: 128 * 1024, packets: 0, pps: 0.0 };
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--size" => o.size = v.parse().unwrap_or_else(|_| usage()),
            "--secs" => o.secs = v.parse().unwrap_or_else(|_| usage()),
            "--port" => o.port = v.parse().unwrap_or_else(|_| usage()),
            "--senders" => o.senders = v.parse().unwrap_or_else(|_| usage()),
            "--batch" => o.batch = v.parse().unwrap_or_else(|_| usage()),
            "--write-size" => o.write_size = v.parse().unwrap_or_else(|_| usage()),
            "--packets" => o.packets = v.parse().unwrap_or_else(|_| usage()),
            "--pps" => o.pps = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    if o.port == 0 || !(o.secs > 0.0 && o.secs <= MAX_SECS) || o.senders == 0 || o.senders > 64 {
        usage()
    }
    o.batch = o.batch.clamp(1, 1024);
    o.size = o.size.min(65507);
    o.write_size = o.write_size.max(1);
    o
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("udp") => {
            stop_on_signals();
            udp(parse(&args[1..]))
        }
        Some("tcp") => {
            stop_on_signals();
            tcp(parse(&args[1..]))
        }
        Some("syscalls") => syscalls(parse_secs(&args[1..])),
        Some("sink") => match args.get(1).map(String::as_str) {
            Some(proto @ ("udp" | "tcp")) => sink(proto, parse(&args[2..]).port),
            _ => usage(),
        },
        _ => usage(),
    }
}

/// Start `flood sink PROTO --port P` and wait until it is bound (it prints "ready").
fn start_sink(proto: &str, port: u16) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["sink", proto, "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("sink");
    if line.trim() != "ready" {
        let _ = child.kill();
        eprintln!("flood: sink failed to start");
        std::process::exit(1);
    }
    child
}

fn stop_sink(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The sink: UDP binds and never reads (the kernel drops what does not fit in
/// its receive buffer: the cheapest possible receiver, the same in every
/// configuration); TCP accepts one connection and reads and discards.
/// It exits on its own after MAX_SECS in any case.
fn sink(proto: &str, port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs_f64(MAX_SECS + 5.0);
    match proto {
        "udp" => {
            let _s = UdpSocket::bind(addr).expect("binding the UDP sink");
            println!("ready");
            std::io::stdout().flush().unwrap();
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        _ => {
            let l = TcpListener::bind(addr).expect("binding the TCP sink");
            println!("ready");
            std::io::stdout().flush().unwrap();
            let (mut c, _) = l.accept().expect("accept");
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            while Instant::now() < deadline {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
}

fn report(mode: &str, packets: u64, bytes: u64, secs: f64, extra: &str) {
    println!(
        "{{\"mode\":\"{mode}\",\"sent_packets\":{packets},\"sent_bytes\":{bytes},\"secs\":{secs:.6},\"pps\":{:.1},\"bytes_per_sec\":{:.1}{extra}}}",
        packets as f64 / secs,
        bytes as f64 / secs
    );
}

fn udp(o: Opts) {
    let sink = start_sink("udp", o.port);
    let stop = Arc::new(AtomicBool::new(false));
    let packets = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..o.senders {
        let (stop, packets, errors) = (stop.clone(), packets.clone(), errors.clone());
        let (size, batch, port) = (o.size, o.batch, o.port);
        let quota = if o.packets > 0 { o.packets.div_ceil(o.senders as u64) } else { u64::MAX };
        let rate = o.pps / o.senders as f64;
        threads.push(std::thread::spawn(move || {
            let s = UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
            s.connect(("127.0.0.1", port)).expect("connect");
            let fd = s.as_raw_fd();
            let payload = vec![0x5au8; size];
            let mut iov: Vec<libc::iovec> =
                (0..batch).map(|_| libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: size }).collect();
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v as *mut libc::iovec;
                m.msg_hdr.msg_iovlen = 1;
            }
            let (mut n, mut err) = (0u64, 0u64);
            let mut iter = 0u32;
            loop {
                // SAFETY: msgs/iov/payload outlive the call; the socket is connected.
                let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch as u32, 0) };
                if r > 0 {
                    n += r as u64;
                } else {
                    err += 1;
                }
                iter = iter.wrapping_add(1);
                if n >= quota || (iter % 16 == 0 && stop.load(Ordering::Relaxed)) {
                    break;
                }
                if rate > 0.0 {
                    let ahead = n as f64 / rate - start.elapsed().as_secs_f64();
                    if ahead > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(ahead));
                    }
                }
            }
            packets.fetch_add(n, Ordering::Relaxed);
            errors.fetch_add(err, Ordering::Relaxed);
        }));
    }
    let deadline = start + Duration::from_secs_f64(o.secs);
    while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) && !INTERRUPTED.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(deadline.saturating_duration_since(Instant::now())));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    stop_sink(sink);
    let n = packets.load(Ordering::Relaxed);
    let extra = format!(
        ",\"size\":{},\"senders\":{},\"send_errors\":{}",
        o.size,
        o.senders,
        errors.load(Ordering::Relaxed)
    );
    report("udp", n, n * o.size as u64, secs, &extra);
}

/// tcpi_segs_out and tcpi_segs_in from TCP_INFO (offsets 136 and 140 of
/// struct tcp_info, stable since Linux 4.2).
fn tcp_segs(s: &TcpStream) -> (u64, u64) {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is writable for len bytes; the kernel writes at most len.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, buf.as_mut_ptr() as *mut _, &mut len) };
    if r != 0 || len < 144 {
        return (0, 0);
    }
    let u = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap()) as u64;
    (u(136), u(140))
}

fn tcp(o: Opts) {
    let sink = start_sink("tcp", o.port);
    let mut s = TcpStream::connect(("127.0.0.1", o.port)).expect("connect to the TCP sink");
    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let buf = vec![0x5au8; o.write_size];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    let mut bytes = 0u64;
    let mut iter = 0u32;
    loop {
        match s.write(&buf) {
            Ok(n) => bytes += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => {
                eprintln!("flood: tcp write: {e}");
                break;
            }
        }
        iter = iter.wrapping_add(1);
        if iter % 8 == 0 && (Instant::now() >= deadline || INTERRUPTED.load(Ordering::Relaxed)) {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (segs_out, segs_in) = tcp_segs(&s);
    drop(s);
    stop_sink(sink);
    report("tcp", segs_out, bytes, secs, &format!(",\"segs_in\":{segs_in},\"write_size\":{}", o.write_size));
}

/// `--secs S` alone (the syscalls mode has no port).
fn parse_secs(args: &[String]) -> f64 {
    match args {
        [flag, v] if flag == "--secs" => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= MAX_SECS => s,
            _ => usage(),
        },
        _ => usage(),
    }
}

/// The syscalls mode: ns per getppid, then per 1-byte write to /dev/null.
fn syscalls(secs: f64) {
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null").expect("/dev/null");
    let fd = devnull.as_raw_fd();
    let byte = [0u8; 1];
    let time = |f: &dyn Fn()| {
        let (start, mut n) = (Instant::now(), 0u64);
        while start.elapsed().as_secs_f64() < secs / 2.0 {
            for _ in 0..1000 {
                f();
            }
            n += 1000;
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    // SAFETY: getppid has no arguments and cannot fail.
    let getppid = time(&|| unsafe {
        libc::syscall(libc::SYS_getppid);
    });
    // SAFETY: `fd` is open for the closure's whole life, `byte` is 1 valid byte.
    let write = time(&|| unsafe {
        libc::write(fd, byte.as_ptr().cast(), 1);
    });
    println!("{{\"mode\":\"syscalls\",\"getppid_ns\":{getppid:.1},\"write_ns\":{write:.1}}}");
}
