//! The one capture session loop, for every client of a [`Capture`]: the CLI
//! (`pidcap run`/`capture`) and the daemon's engine thread.
//!
//! A [`Session`] owns the [`Capture`] and the loop's timing; the caller owns
//! the loop itself and what happens between two steps (the CLI checks its
//! signals and its child, the daemon answers requests). Each
//! [`Session::step`]:
//!
//! 1. drains the kernel ring, waiting up to [`Schedule::drain`] for packets,
//!    and hands each to the caller's [`Drain`] (decoded and kept in the
//!    ring, or borrowed raw from the kernel's buffer);
//! 2. every [`Schedule::liveness`], prunes exited targets from the kernel's
//!    set and reports the live ones ([`Tick::live`]; see [`Capture::live_targets`]);
//! 3. every [`Schedule::counters`], says counters are due ([`Tick::counters_due`]);
//! 4. after [`Session::wind_down`], stops checking liveness and says when the
//!    grace period is over ([`Tick::finished`]): packets still in flight when
//!    the last target exits (a FIN's ACK) belong to the capture.
//!
//! A caller loop, e.g. the CLI's:
//!
//! ```ignore
//! let mut session = Session::new(capture, Schedule::CLI);
//! loop {
//!     let tick = session.step(Drain::Raw(&mut |raw| out.write(raw)));
//!     tick.drained?;
//!     if tick.finished { break }
//!     if let Some(live) = tick.live {
//!         if live?.is_empty() { session.wind_down(GRACE) }
//!     }
//! }
//! let stats = session.finish(Drain::Raw(&mut |raw| out.write(raw)))?;
//! ```

use crate::capture::{Capture, CaptureStats, Raw};
use crate::error::Result;
use pidcap_packet::CapturedPacket;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a session does what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Longest wait for packets in one step (the kernel may wake us sooner).
    pub drain: Duration,
    /// How often dead targets are pruned and the live ones reported.
    pub liveness: Duration,
    /// How often counters are due (None: never).
    pub counters: Option<Duration>,
}

impl Schedule {
    /// `pidcap run`/`capture`: drain every 10 ms, check the targets every 100 ms.
    pub const CLI: Schedule =
        Schedule { drain: Duration::from_millis(10), liveness: Duration::from_millis(100), counters: None };

    /// The daemon: drain every 10 ms, prune every 200 ms, counters every second.
    pub const DAEMON: Schedule = Schedule {
        drain: Duration::from_millis(10),
        liveness: Duration::from_millis(200),
        counters: Some(Duration::from_secs(1)),
    };
}

/// How a step hands packets over.
pub enum Drain<'a> {
    /// Decoded into [`CapturedPacket`]s and kept in the capture's ring
    /// (see [`Capture::poll`]): for clients that show or serve packets later.
    Decoded(&'a mut dyn FnMut(&Arc<CapturedPacket>)),
    /// Borrowed from the kernel's buffer with their id and wall-clock time,
    /// not decoded nor kept (see [`Capture::poll_raw`]): for outputs that
    /// stream packets away (a capture file, a counter).
    Raw(&'a mut dyn FnMut(Raw<'_, '_>)),
}

/// What one [`Session::step`] did and what is due.
#[derive(Debug)]
#[must_use = "a step's drain error and its liveness report are in the tick"]
pub struct Tick {
    /// Packets taken from the kernel in this step (a filter expression may
    /// have kept fewer: see [`CaptureStats::filtered`]), or why the kernel ring could not be
    /// read (the timers below ran anyway).
    pub drained: Result<usize>,
    /// Set when the targets were checked in this step: the pids of the live
    /// ones (those that exited, by their pidfd or the kernel's mark, never by
    /// their pid, were removed from the kernel's set; see
    /// [`Capture::live_targets`]), or why they could not be listed.
    pub live: Option<Result<Vec<u32>>>,
    /// The counters' interval has passed (see [`Schedule::counters`]).
    pub counters_due: bool,
    /// The grace period of [`Session::wind_down`] is over: end the session.
    pub finished: bool,
}

/// A capture and the timing of its loop. See the module documentation.
pub struct Session {
    cap: Capture,
    schedule: Schedule,
    last_live: Instant,
    last_counters: Instant,
    wind_down_until: Option<Instant>,
    /// [`Session::check_targets_now`] asked for the next step's liveness check.
    live_due: bool,
}

impl Session {
    pub fn new(cap: Capture, schedule: Schedule) -> Session {
        let now = Instant::now();
        Session { cap, schedule, last_live: now, last_counters: now, wind_down_until: None, live_due: false }
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    pub fn capture(&self) -> &Capture {
        &self.cap
    }

    /// The capture, to add targets, change rules, restart...
    pub fn capture_mut(&mut self) -> &mut Capture {
        &mut self.cap
    }

    pub fn into_capture(self) -> Capture {
        self.cap
    }

    /// Drain for up to [`Schedule::drain`], then run the timers (see [`Tick`]).
    pub fn step(&mut self, drain: Drain<'_>) -> Tick {
        // A check asked for now, or a wind-down over: take what is there
        // without waiting for more.
        let now_due = self.live_due || self.wind_down_until.is_some_and(|until| Instant::now() >= until);
        let drained = self.drain(if now_due { Duration::ZERO } else { self.schedule.drain }, drain);
        let mut tick = self.timers(true);
        tick.drained = drained;
        tick
    }

    /// Only the timers that need no capture running (counters, the end of a
    /// wind-down): for a caller that waits on something else while idle.
    /// Targets are not checked.
    pub fn idle(&mut self) -> Tick {
        self.timers(false)
    }

    /// Take what the kernel has pushed so far, without waiting and without
    /// running the timers (before answering a request, or at the end).
    pub fn drain_now(&mut self, drain: Drain<'_>) -> Result<usize> {
        self.drain(Duration::ZERO, drain)
    }

    /// Keep draining for `grace`, then [`Tick::finished`]; targets are no
    /// longer checked. A second call does not move the end.
    pub fn wind_down(&mut self, grace: Duration) {
        self.wind_down_until.get_or_insert_with(|| Instant::now() + grace);
    }

    /// The next [`Session::step`] checks the targets whatever the
    /// schedule says: the caller knows one just exited (`run`'s command
    /// reaped), so the capture can end without waiting for the next
    /// [`Schedule::liveness`] check.
    pub fn check_targets_now(&mut self) {
        self.live_due = true;
    }

    pub fn is_winding_down(&self) -> bool {
        self.wind_down_until.is_some()
    }

    /// Forget a wind-down (the daemon's next capture on the same session).
    pub fn resume(&mut self) {
        self.wind_down_until = None;
        self.last_live = Instant::now();
    }

    /// End the capture: take what the kernel already pushed, read the final
    /// counters, then stop capturing and forget every target. A drain error
    /// here is ignored (whatever was read has been handed over).
    pub fn finish(&mut self, drain: Drain<'_>) -> Result<CaptureStats> {
        let _ = self.drain_now(drain);
        let stats = self.cap.stats()?;
        self.cap.stop()?;
        Ok(stats)
    }

    fn drain(&mut self, timeout: Duration, drain: Drain<'_>) -> Result<usize> {
        match drain {
            Drain::Decoded(f) => self.cap.poll(timeout, f),
            Drain::Raw(f) => self.cap.poll_raw(timeout, f),
        }
    }

    fn timers(&mut self, check_targets: bool) -> Tick {
        let now = Instant::now();
        let mut tick = Tick { drained: Ok(0), live: None, counters_due: false, finished: false };
        match self.wind_down_until {
            Some(until) => tick.finished = now >= until,
            None if check_targets
                && (self.live_due || now.duration_since(self.last_live) >= self.schedule.liveness) =>
            {
                self.last_live = now;
                self.live_due = false;
                tick.live = Some(self.cap.live_targets());
            }
            None => {}
        }
        if let Some(every) = self.schedule.counters {
            if now.duration_since(self.last_counters) >= every {
                self.last_counters = now;
                tick.counters_due = true;
            }
        }
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{KernelBackend, KernelConfig, KernelCounters};
    use crate::capture::CaptureOptions;
    use crate::fake::{FakeHandle, FakeKernel};
    use crate::rules::Rule;

    fn udp(payload: &[u8]) -> Vec<u8> {
        crate::fake::udp_packet(payload)
    }

    fn session(schedule: Schedule) -> (Session, FakeHandle) {
        let fake = FakeKernel::default();
        let handle = fake.handle();
        (Session::new(Capture::new(Box::new(fake), CaptureOptions::default()).unwrap(), schedule), handle)
    }

    const FAST: Schedule = Schedule { drain: Duration::ZERO, liveness: Duration::ZERO, counters: None };

    /// Step until `done(tick)`, at most 5 s.
    fn step_until(s: &mut Session, mut done: impl FnMut(&Tick) -> bool) -> Tick {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tick = s.step(Drain::Raw(&mut |_| {}));
            if done(&tick) {
                return tick;
            }
            assert!(Instant::now() < deadline, "the session never got there");
        }
    }

    #[test]
    fn a_step_hands_packets_over_decoded_into_the_ring_or_raw_without_keeping_them() {
        let (mut s, fake) = session(FAST);
        fake.push(7, udp(b"a"));
        let mut ids = vec![];
        let tick = s.step(Drain::Decoded(&mut |p| ids.push(p.id)));
        assert_eq!(tick.drained.unwrap(), 1);
        assert_eq!((ids.as_slice(), s.capture().ring().len()), ([1].as_slice(), 1));
        fake.push(7, udp(b"bb"));
        let mut raw = vec![];
        let tick = s.step(Drain::Raw(&mut |r| {
            if let Raw::Packet { id, packet, .. } = r {
                raw.push((id, packet.data.len()))
            }
        }));
        assert_eq!(tick.drained.unwrap(), 1);
        assert_eq!((raw.as_slice(), s.capture().ring().len()), ([(2, 30)].as_slice(), 1));
    }

    #[test]
    fn liveness_reports_live_targets_and_prunes_dead_ones_on_schedule() {
        let me = std::process::id();
        let (mut s, fake) = session(Schedule { liveness: Duration::from_secs(3600), ..FAST });
        fake.insert_target(me);
        assert!(s.step(Drain::Raw(&mut |_| {})).live.is_none(), "not due for an hour");
        s.check_targets_now();
        assert_eq!(s.step(Drain::Raw(&mut |_| {})).live.expect("asked for now").unwrap(), [me]);
        assert!(s.step(Drain::Raw(&mut |_| {})).live.is_none(), "once: then the schedule again");
        let (mut s, fake) = session(FAST);
        fake.insert_target(me);
        fake.insert_target(u32::MAX - 3);
        fake.exit(u32::MAX - 3);
        let tick = step_until(&mut s, |t| t.live.is_some());
        assert_eq!(tick.live.unwrap().unwrap(), [me]);
        assert_eq!(
            fake.state().targets.keys().copied().collect::<Vec<_>>(),
            [me],
            "the dead pid left the kernel's set"
        );
    }

    #[test]
    fn counters_come_due_on_their_interval_and_never_without_one() {
        let (mut s, _) = session(Schedule { counters: Some(Duration::ZERO), ..FAST });
        assert!(step_until(&mut s, |t| t.counters_due).counters_due);
        assert!(s.idle().counters_due, "idle sessions still publish counters");
        let (mut s, _) = session(Schedule { counters: Some(Duration::from_secs(3600)), ..FAST });
        assert!(!s.step(Drain::Raw(&mut |_| {})).counters_due);
        let (mut s, _) = session(FAST);
        assert!(!s.step(Drain::Raw(&mut |_| {})).counters_due);
    }

    #[test]
    fn a_wind_down_keeps_draining_then_finishes_and_stops_checking_targets() {
        let (mut s, fake) = session(FAST);
        fake.insert_target(std::process::id());
        let start = Instant::now();
        s.wind_down(Duration::from_millis(30));
        s.wind_down(Duration::from_secs(3600)); // does not move the end
        assert!(s.is_winding_down());
        fake.push(7, udp(b"late"));
        let mut got = 0;
        let tick = loop {
            let tick = s.step(Drain::Raw(&mut |_| got += 1));
            assert!(tick.live.is_none(), "no liveness checks while winding down");
            if tick.finished {
                break tick;
            }
            assert!(start.elapsed() < Duration::from_secs(5));
        };
        assert!(tick.finished && start.elapsed() >= Duration::from_millis(30));
        assert_eq!(got, 1, "packets in flight during the grace period are taken");
        s.resume();
        assert!(!s.is_winding_down());
        assert!(step_until(&mut s, |t| t.live.is_some()).live.is_some());
    }

    #[test]
    fn finish_takes_the_last_packets_then_stops_and_forgets_the_targets() {
        let (mut s, fake) = session(FAST);
        fake.insert_target(std::process::id());
        fake.push(7, udp(b"x"));
        let mut got = 0;
        let stats = s.finish(Drain::Raw(&mut |_| got += 1)).unwrap();
        assert_eq!((got, stats.received), (1, 1));
        assert!(fake.state().targets.is_empty());
        assert!(!fake.state().config.unwrap().capture);
    }

    /// The fake kernel, with its first poll failing.
    struct FailingOnce(FakeKernel, bool);

    impl KernelBackend for FailingOnce {
        fn configure(&mut self, c: &KernelConfig) -> Result<()> {
            self.0.configure(c)
        }
        fn add_target(&mut self, process: &crate::Process, follow: bool) -> Result<()> {
            self.0.add_target(process, follow)
        }
        fn remove_target(&mut self, target: crate::TargetId) -> Result<()> {
            self.0.remove_target(target)
        }
        fn add_target_name(&mut self, comm: &str, follow: bool) -> Result<()> {
            self.0.add_target_name(comm, follow)
        }
        fn targets(&self) -> Result<Vec<crate::KernelTarget>> {
            self.0.targets()
        }
        fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(crate::RawPacket<'_>)) -> Result<usize> {
            if std::mem::take(&mut self.1) {
                return Err(crate::EngineError::io("reading the ring", std::io::ErrorKind::Other.into()));
            }
            self.0.poll(timeout, sink)
        }
        fn counters(&self) -> Result<KernelCounters> {
            self.0.counters()
        }
        fn set_rules(&mut self, rules: &[Rule]) -> Result<()> {
            self.0.set_rules(rules)
        }
        fn rule_hits(&self) -> Result<Vec<u64>> {
            self.0.rule_hits()
        }
    }

    #[test]
    fn a_drain_error_is_reported_and_the_timers_still_run() {
        let cap = Capture::new(Box::new(FailingOnce(FakeKernel::default(), true)), CaptureOptions::default()).unwrap();
        let mut s = Session::new(cap, FAST);
        let tick = s.step(Drain::Raw(&mut |_| {}));
        assert!(tick.drained.is_err());
        assert!(tick.live.is_some(), "liveness ran in the same step");
        assert!(s.step(Drain::Raw(&mut |_| {})).drained.is_ok(), "only once");
    }
}
