//! The send loop's outcomes on plain sockets (no root): a refused connect is
//! one send's failed status and the loop goes on; a signal that stops the
//! loop while it waits for a reply ends it as `stopped`, not as a failure.

use pidcap_resend::{prepare, run_job, EndReason, ErrorKind, InjectArgs, Mode, SendStatus};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn connect_args(proto: &str, to: std::net::SocketAddr, count: u64) -> InjectArgs {
    InjectArgs {
        data: Some("70696e67".into()),
        mode: Some(Mode::Connect),
        proto: Some(proto.parse().unwrap()),
        to: Some(to.to_string()),
        count: Some(count),
        interval_ms: Some(10),
        timeout_ms: Some(200),
        ..Default::default()
    }
}

#[test]
fn a_refused_connect_is_a_status_and_the_loop_goes_on() {
    // A port nobody listens on (bound, then closed).
    let to = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let p = prepare(&connect_args("tcp", to, 3)).unwrap();
    let mut seen: Vec<SendStatus> = Vec::new();
    let s = run_job(&p, &AtomicBool::new(false), &mut |st| seen.push(st.clone()));
    assert_eq!(seen.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2, 3], "{seen:?}");
    assert!(seen.iter().all(|s| !s.ok && s.error_kind == Some(ErrorKind::Refused)), "{seen:?}");
    // Every send tried, none got out: the job failed.
    assert_eq!((s.sent, s.failed, s.reason), (0, 3, EndReason::Failed), "{s:?}");

    // The server comes up mid-loop: the next send connects again and succeeds
    // (one kept connection from then on: the server accepts once).
    let p =
        prepare(&InjectArgs { interval_ms: Some(300), keep_connection: true, ..connect_args("tcp", to, 3) }).unwrap();
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        rx.recv().unwrap();
        let l = TcpListener::bind(to).unwrap();
        let (c, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        drop(c);
    });
    let mut seen: Vec<SendStatus> = Vec::new();
    let s = run_job(&p, &AtomicBool::new(false), &mut |st| {
        if st.seq == 1 {
            tx.send(()).unwrap();
        }
        seen.push(st.clone());
    });
    server.join().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].error_kind, Some(ErrorKind::Refused), "{seen:?}");
    assert!(seen[1].ok, "{seen:?}");
    assert_eq!((s.failed, s.reason), (1, EndReason::Done), "{s:?}");
}

extern "C" fn nothing(_: libc::c_int) {}

#[test]
fn a_stop_signal_during_the_wait_for_a_reply_ends_the_loop_without_a_failure() {
    // A handler as signal-hook installs one (SA_RESTART: a recv with a
    // timeout still returns EINTR).
    // SAFETY: a zeroed sigaction is valid; the handler does nothing, so it is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nothing as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // A UDP peer that never answers: each send waits its whole timeout.
    let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut args = connect_args("udp", srv.local_addr().unwrap(), 5);
    args.timeout_ms = Some(3000);
    args.interval_ms = Some(3000);
    let p = prepare(&args).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let looping = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut seen = Vec::new();
            let t = Instant::now();
            let s = run_job(&p, &stop, &mut |st| seen.push(st.clone()));
            (s, seen, t.elapsed())
        })
    };
    let tid = tid_rx.recv().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(srv.recv(&mut buf).unwrap(), 4, "the first send arrives");
    std::thread::sleep(Duration::from_millis(100)); // into the wait for a reply (3 s)
    stop.store(true, Ordering::SeqCst);
    // SAFETY: the thread is alive (it waits for the reply); SIGUSR1 has a handler.
    assert_eq!(unsafe { libc::pthread_kill(tid, libc::SIGUSR1) }, 0);
    let (s, seen, took) = looping.join().unwrap();
    assert!(took < Duration::from_millis(2500), "the signal cut the wait short: {took:?}");
    assert!(seen.iter().all(|st| st.ok), "no send reported as failed: {seen:?}");
    assert_eq!((s.failed, s.reason), (0, EndReason::Stopped), "{s:?} {seen:?}");
}
