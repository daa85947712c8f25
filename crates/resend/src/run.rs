//! Running a prepared job: opening its [`Sender`] and the send loop (count or
//! forever, interval, rate cap, stop on error or not), one [`SendStatus`] per
//! send and a [`Summary`] at the end. A failed send is a status and the loop
//! goes on (unless `stop_on_error`, or no later send could succeed); a send
//! interrupted by the stop (EINTR from SIGINT/SIGTERM) ends the loop as
//! `stopped`, with no status.

use crate::send::{self, SendError, Sender};
use crate::{effective_interval, EndReason, Mode, Prepared, SendStatus, Summary};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Open the sender for a prepared job (finds/duplicates the socket, connects...).
pub fn open_sender(p: &Prepared) -> Result<Box<dyn Sender>, SendError> {
    Ok(match p.mode {
        Mode::Socket => Box::new(send::SocketSender::open(&p.target)?),
        Mode::Raw => Box::new(send::RawSender::open(&p.target)?),
        Mode::Connect => match &p.tls {
            Some(tls) => Box::new(crate::tls::TlsSender::open(&p.target, p.timeout, tls)?),
            None => Box::new(send::ConnectSender::open(&p.target, p.timeout, p.keep_connection)?),
        },
    })
}

impl SendStatus {
    fn failed(seq: u64, e: &SendError, started: SystemTime, elapsed: Duration) -> SendStatus {
        SendStatus {
            seq,
            ok: false,
            bytes: 0,
            time_ns: ns(started),
            elapsed_us: elapsed.as_micros() as u64,
            error: Some(e.message.clone()),
            error_kind: Some(e.kind),
            reply: None,
        }
    }
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Open the sender and run the job: `count` sends (or until `stop` when
/// `forever`), `on_status` after each. Returns the summary. A sender that
/// cannot open gives one failed status (seq 1) and the reason `failed`.
pub fn run_job(p: &Prepared, stop: &AtomicBool, on_status: &mut dyn FnMut(&SendStatus)) -> Summary {
    let started = Instant::now();
    match open_sender(p) {
        Ok(mut s) => run_loop(s.as_mut(), p, stop, on_status),
        Err(e) => {
            on_status(&SendStatus::failed(1, &e, SystemTime::now(), started.elapsed()));
            Summary {
                sent: 0,
                failed: 1,
                bytes: 0,
                duration_ms: started.elapsed().as_millis() as u64,
                reason: EndReason::Failed,
            }
        }
    }
}

/// The loop on an open sender.
pub fn run_loop(
    sender: &mut dyn Sender,
    p: &Prepared,
    stop: &AtomicBool,
    on_status: &mut dyn FnMut(&SendStatus),
) -> Summary {
    let start = Instant::now();
    let every = effective_interval(p);
    let (mut sent, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    let mut seq = 0u64;
    let mut next = start;
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break EndReason::Stopped;
        }
        if !p.forever && seq >= p.count {
            break EndReason::Done;
        }
        // Sleep until the next send, in small steps so a stop is seen at once.
        loop {
            let now = Instant::now();
            if now >= next || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
        }
        if stop.load(Ordering::Relaxed) {
            break EndReason::Stopped;
        }
        seq += 1;
        let last = !p.forever && seq == p.count;
        // Connect mode waits for a reply, but not past the next send.
        let wait = if last { p.timeout } else { p.timeout.min(every) };
        next += every;
        let at = SystemTime::now();
        let t0 = Instant::now();
        let status = match sender.send(&p.payload, wait) {
            Ok(s) => {
                sent += 1;
                bytes += s.bytes as u64;
                SendStatus {
                    seq,
                    ok: true,
                    bytes: s.bytes,
                    time_ns: ns(at),
                    elapsed_us: t0.elapsed().as_micros() as u64,
                    error: None,
                    error_kind: None,
                    reply: s.reply,
                }
            }
            // Interrupted by the signal that stops the loop: the end, not a failure.
            Err(e) if stop.load(Ordering::Relaxed) && e.is_interrupted() => break EndReason::Stopped,
            Err(e) => {
                failed += 1;
                SendStatus::failed(seq, &e, at, t0.elapsed())
            }
        };
        on_status(&status);
        if let Some(k) = status.error_kind {
            if p.stop_on_error || k.is_permanent() {
                break EndReason::Error;
            }
        }
        if Instant::now() > next + every * 4 {
            next = Instant::now(); // fell far behind (slow sends): do not burst to catch up
        }
    };
    // Every send of a finished loop failed (a refused connect each time): nothing got out.
    let reason = if reason == EndReason::Done && sent == 0 && failed > 0 { EndReason::Failed } else { reason };
    Summary { sent, failed, bytes, duration_ms: start.elapsed().as_millis() as u64, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prepare, ErrorKind, InjectArgs};

    struct Fake {
        fail_at: Option<u64>,
        n: u64,
    }
    impl Sender for Fake {
        fn send(&mut self, payload: &[u8], _: Duration) -> Result<send::Sent, SendError> {
            self.n += 1;
            if Some(self.n) == self.fail_at {
                return Err(SendError::new(ErrorKind::SocketClosed, "closed"));
            }
            Ok(send::Sent { bytes: payload.len(), reply: None })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn job(count: u64, stop_on_error: bool) -> Prepared {
        let args = InjectArgs {
            data: Some("414243".into()),
            to: Some("127.0.0.1:1".into()),
            count: Some(count),
            interval_ms: Some(10),
            stop_on_error,
            ..Default::default()
        };
        prepare(&args).unwrap()
    }

    #[test]
    fn loop_counts_paces_and_handles_errors() {
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        let t = Instant::now();
        let s = run_loop(&mut Fake { fail_at: Some(2), n: 0 }, &job(4, false), &stop, &mut |st| seen.push(st.clone()));
        assert!(t.elapsed() >= Duration::from_millis(30), "{:?}", t.elapsed());
        assert_eq!((s.sent, s.failed, s.bytes, s.reason), (3, 1, 9, EndReason::Done));
        assert_eq!(
            seen.iter().map(|s| (s.seq, s.ok)).collect::<Vec<_>>(),
            [(1, true), (2, false), (3, true), (4, true)]
        );
        assert_eq!(seen[1].error_kind, Some(ErrorKind::SocketClosed));
        let s = run_loop(&mut Fake { fail_at: Some(2), n: 0 }, &job(4, true), &stop, &mut |_| {});
        assert_eq!((s.sent, s.failed, s.reason), (1, 1, EndReason::Error));
        // Forever, until stopped from another thread.
        let mut p = job(1, false);
        p.forever = true;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let st2 = stop.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            st2.store(true, Ordering::Relaxed);
        });
        let s = run_loop(&mut Fake { fail_at: None, n: 0 }, &p, &stop, &mut |_| {});
        h.join().unwrap();
        assert_eq!(s.reason, EndReason::Stopped);
        assert!((5..=12).contains(&s.sent), "{}", s.sent);
    }
}
