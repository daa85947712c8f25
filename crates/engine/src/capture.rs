//! The capture loop: turns what a [`KernelBackend`] hands up into
//! [`CapturedPacket`]s (ids, wall-clock time, decoded headers), keeps the last
//! N in the [`PacketRing`], and tracks targets and counters at every stage.
//!
//! It knows nothing of eBPF: tests run it on a fake backend.

use crate::backend::{KernelBackend, KernelConfig, KernelCounters, RawPacket};
use crate::error::{EngineError, InvalidInput, Result};
use crate::procfs::Procfs;
use crate::ring::{PacketRing, DEFAULT_RING_SIZE, MAX_RING_SIZE};
use crate::rules::Rule;
use pidcap_packet::CapturedPacket;
use std::sync::Arc;
use std::time::Duration;

/// Default snap length, as in the seed (MAX_PACKET_PAYLOAD_SIZE).
pub const DEFAULT_SNAPLEN: u32 = 1500;
/// The largest snap length: an IP packet's maximum size.
pub const MAX_SNAPLEN: u32 = 65535;

/// The one check of a snap length, for every caller (CLI, daemon, kernel layer).
pub fn check_snaplen(snaplen: u32) -> Result<()> {
    if snaplen == 0 || snaplen > MAX_SNAPLEN {
        return Err(EngineError::Invalid(InvalidInput::SnapLength(snaplen)));
    }
    Ok(())
}

/// The one check of a packet ring's capacity (1..=[`MAX_RING_SIZE`]), for every caller.
pub fn check_ring_size(size: usize) -> Result<()> {
    if size == 0 || size > MAX_RING_SIZE {
        return Err(EngineError::Invalid(InvalidInput::RingSize(size)));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct CaptureOptions {
    pub snaplen: u32,
    pub ring_size: usize,
    pub follow_children: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions { snaplen: DEFAULT_SNAPLEN, ring_size: DEFAULT_RING_SIZE, follow_children: false }
    }
}

/// Counters at every stage, from the kernel hook to the user ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureStats {
    /// Kernel counters since this capture started.
    pub kernel: KernelCounters,
    /// Packets received from the kernel layer by this capture.
    pub received: u64,
    /// Packets in the user ring now, and its capacity.
    pub ring_len: usize,
    pub ring_capacity: usize,
    /// Packets pushed out of the user ring because it was full.
    pub evicted: u64,
}

/// Converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    /// Sample both clocks now.
    pub fn now() -> WallClock {
        let ns = |clock| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on Linux.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        WallClock { offset_ns: ns(libc::CLOCK_REALTIME) - ns(libc::CLOCK_MONOTONIC) }
    }

    /// A clock with a fixed offset (tests).
    pub fn with_offset(offset_ns: i128) -> WallClock {
        WallClock { offset_ns }
    }

    pub fn to_unix_ns(self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).max(0) as u64
    }
}

fn check_options(opts: &CaptureOptions) -> Result<()> {
    check_snaplen(opts.snaplen)?;
    check_ring_size(opts.ring_size)?;
    Ok(())
}

pub struct Capture {
    backend: Box<dyn KernelBackend>,
    ring: PacketRing,
    clock: WallClock,
    procfs: Procfs,
    next_id: u64,
    received: u64,
    baseline: KernelCounters,
    follow_children: bool,
    snaplen: u32,
}

impl Capture {
    /// Start capturing on `backend` (nothing is captured until targets are added).
    pub fn new(mut backend: Box<dyn KernelBackend>, opts: CaptureOptions) -> Result<Capture> {
        check_options(&opts)?;
        backend.configure(&KernelConfig { snaplen: opts.snaplen, capture: true })?;
        let baseline = backend.counters()?;
        Ok(Capture {
            backend,
            ring: PacketRing::new(opts.ring_size),
            clock: WallClock::now(),
            procfs: Procfs::default(),
            next_id: 1,
            received: 0,
            baseline,
            follow_children: opts.follow_children,
            snaplen: opts.snaplen,
        })
    }

    /// Start over on the same kernel layer with new options (a daemon's next
    /// capture): an empty ring, counters from now on, packet ids continuing.
    pub fn restart(&mut self, opts: CaptureOptions) -> Result<()> {
        check_options(&opts)?;
        self.backend.configure(&KernelConfig { snaplen: opts.snaplen, capture: true })?;
        self.baseline = self.backend.counters()?;
        self.ring = PacketRing::new(opts.ring_size);
        self.received = 0;
        self.follow_children = opts.follow_children;
        self.snaplen = opts.snaplen;
        Ok(())
    }

    /// The id the next packet will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Replace the filter rules; see [`KernelBackend::set_rules`].
    pub fn set_rules(&mut self, rules: &[Rule]) -> Result<()> {
        self.backend.set_rules(rules)
    }

    /// Hits of each current rule; see [`KernelBackend::rule_hits`].
    pub fn rule_hits(&self) -> Result<Vec<u64>> {
        self.backend.rule_hits()
    }

    /// Use another clock or /proc (tests).
    pub fn with_env(mut self, clock: WallClock, procfs: Procfs) -> Capture {
        self.clock = clock;
        self.procfs = procfs;
        self
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Capture process `pid` (its open sockets included).
    pub fn add_pid(&mut self, pid: u32) -> Result<()> {
        if !self.procfs.is_alive(pid) {
            return Err(EngineError::NoSuchProcess(pid));
        }
        self.backend.add_target(pid, self.follow_children)
    }

    /// Capture every process named `name`, now and later.
    pub fn add_name(&mut self, name: &str) -> Result<()> {
        self.backend.add_target_name(name, self.follow_children)
    }

    pub fn remove_pid(&mut self, pid: u32) -> Result<()> {
        self.backend.remove_target(pid)
    }

    /// Wait up to `timeout` for packets; each new packet is handed to
    /// `on_packet` and kept in the ring. Returns how many arrived.
    pub fn poll(&mut self, timeout: Duration, on_packet: &mut dyn FnMut(&Arc<CapturedPacket>)) -> Result<usize> {
        let Capture { backend, ring, clock, next_id, received, .. } = self;
        backend.poll(timeout, &mut |raw| {
            let p = Arc::new(CapturedPacket {
                rule: raw.rule,
                ..CapturedPacket::new(
                    *next_id,
                    clock.to_unix_ns(raw.ts_mono_ns),
                    raw.pid,
                    String::from_utf8_lossy(raw.comm).into_owned(),
                    raw.socket_cookie,
                    raw.direction,
                    raw.verdict,
                    raw.orig_len,
                    raw.data.to_vec(),
                )
            });
            *next_id += 1;
            *received += 1;
            on_packet(&p);
            ring.push(p);
        })
    }

    /// Like [`Capture::poll`] for sinks that stream packets away (a capture
    /// file, a counter): each packet is handed over borrowed from the kernel's
    /// buffer with its id and wall-clock time, without decoding, copying or
    /// keeping it in the ring. Ids and the `received` counter advance as with `poll`.
    pub fn poll_raw(
        &mut self,
        timeout: Duration,
        on_packet: &mut dyn FnMut(u64, u64, &RawPacket<'_>),
    ) -> Result<usize> {
        let Capture { backend, clock, next_id, received, .. } = self;
        backend.poll(timeout, &mut |raw| {
            on_packet(*next_id, clock.to_unix_ns(raw.ts_mono_ns), &raw);
            *next_id += 1;
            *received += 1;
        })
    }

    /// Targets that are still alive; dead ones are removed from the kernel's
    /// set (so a reused pid is not captured by mistake).
    pub fn live_targets(&mut self) -> Result<Vec<u32>> {
        let mut alive = Vec::new();
        for pid in self.backend.targets()? {
            if self.procfs.is_alive(pid) {
                alive.push(pid);
            } else {
                self.backend.remove_target(pid)?;
            }
        }
        Ok(alive)
    }

    pub fn stats(&self) -> Result<CaptureStats> {
        let k = self.backend.counters()?;
        let b = self.baseline;
        Ok(CaptureStats {
            kernel: KernelCounters {
                seen: k.seen - b.seen,
                unattributed: k.unattributed - b.unattributed,
                target: k.target - b.target,
                captured: k.captured - b.captured,
                ring_full: k.ring_full - b.ring_full,
                load_failed: k.load_failed - b.load_failed,
                blocked: k.blocked - b.blocked,
                owner_full: k.owner_full - b.owner_full,
                forked: k.forked - b.forked,
                connect_blocked: k.connect_blocked - b.connect_blocked,
            },
            received: self.received,
            ring_len: self.ring.len(),
            ring_capacity: self.ring.capacity(),
            evicted: self.ring.evicted(),
        })
    }

    pub fn ring(&self) -> &PacketRing {
        &self.ring
    }

    pub fn clear_ring(&mut self) {
        self.ring.clear();
    }

    /// Stop pushing packets to userspace and forget every target.
    pub fn stop(&mut self) -> Result<()> {
        self.backend.configure(&KernelConfig { snaplen: self.snaplen, capture: false })?;
        for pid in self.backend.targets()? {
            self.backend.remove_target(pid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;
    use pidcap_packet::Protocol;

    fn udp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
            .udp(1000, 53)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn packets_get_ids_wall_time_and_decoded_fields_and_land_in_the_ring() {
        let fake = FakeKernel::default();
        for p in [udp(b"a"), udp(b"bb"), udp(b"ccc")] {
            fake.handle().push(7, p);
        }
        let mut cap = Capture::new(Box::new(fake), CaptureOptions { ring_size: 2, ..Default::default() })
            .unwrap()
            .with_env(WallClock::with_offset(1_000_000), Procfs::default());
        let mut seen = vec![];
        let n = cap.poll(Duration::ZERO, &mut |p| seen.push((p.id, p.timestamp_ns, p.payload().len()))).unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen, [(1, 1_001_000, 1), (2, 1_001_000, 2), (3, 1_001_000, 3)]);
        let last = cap.ring().iter().last().unwrap();
        assert_eq!(last.decoded.protocol, Protocol::Udp);
        assert_eq!(last.decoded.remote_port, 53);
        assert_eq!(last.comm, "fake");
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.ring_len, s.evicted, s.kernel.captured), (3, 2, 1, 3));
    }

    #[test]
    fn poll_raw_numbers_packets_without_keeping_them() {
        let fake = FakeKernel::default();
        fake.handle().push(7, udp(b"a"));
        fake.handle().push(7, udp(b"bb"));
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(5), Procfs::default());
        let mut seen = vec![];
        cap.poll_raw(Duration::ZERO, &mut |id, ts, raw| seen.push((id, ts, raw.data.len(), raw.comm.to_vec())))
            .unwrap();
        assert_eq!(seen, [(1, 1_005, 29, b"fake".to_vec()), (2, 1_005, 30, b"fake".to_vec())]);
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.ring_len), (2, 0));
    }

    #[test]
    fn dead_targets_are_pruned_and_a_missing_pid_is_an_error() {
        let fake = FakeKernel::default();
        fake.handle().insert_target(std::process::id());
        fake.handle().insert_target(u32::MAX - 3);
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        assert_eq!(cap.live_targets().unwrap(), [std::process::id()]);
        assert!(matches!(cap.add_pid(u32::MAX - 3), Err(EngineError::NoSuchProcess(_))));
    }

    #[test]
    fn rules_pass_through_and_too_many_are_refused() {
        let fake = FakeKernel::default();
        fake.handle().push(7, udp(b"a"));
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        let rules: Vec<Rule> = ["tcp:443", "allow:udp:53"].iter().map(|s| s.parse().unwrap()).collect();
        cap.set_rules(&rules).unwrap();
        assert_eq!(cap.rule_hits().unwrap(), [0, 0]);
        assert!(matches!(
            cap.set_rules(&vec![rules[0]; crate::rules::MAX_RULES + 1]),
            Err(EngineError::Invalid(InvalidInput::TooManyRules(65)))
        ));
        // A restart keeps the kernel layer and continues the ids.
        cap.poll(Duration::ZERO, &mut |_| {}).unwrap();
        cap.restart(CaptureOptions { ring_size: 5, ..Default::default() }).unwrap();
        assert_eq!((cap.next_id(), cap.ring().len(), cap.ring().capacity()), (2, 0, 5));
        assert!(matches!(
            cap.restart(CaptureOptions { snaplen: 0, ..Default::default() }),
            Err(EngineError::Invalid(InvalidInput::SnapLength(0)))
        ));
    }

    #[test]
    fn bad_options_are_refused() {
        let refused = |opts| match Capture::new(Box::new(FakeKernel::default()), opts) {
            Err(EngineError::Invalid(what)) => what,
            Err(e) => panic!("not an invalid option: {e}"),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(refused(CaptureOptions { snaplen: 0, ..Default::default() }), InvalidInput::SnapLength(0));
        let e = refused(CaptureOptions { snaplen: 70_000, ..Default::default() });
        assert_eq!(e.to_string(), "snap length 70000 is not in 1..=65535");
        assert_eq!(refused(CaptureOptions { ring_size: 0, ..Default::default() }), InvalidInput::RingSize(0));
        let e = refused(CaptureOptions { ring_size: MAX_RING_SIZE + 1, ..Default::default() });
        assert_eq!(e.to_string(), "ring size 10000001 is not in 1..=10000000");
        assert!(check_snaplen(MAX_SNAPLEN).is_ok() && check_ring_size(MAX_RING_SIZE).is_ok());
    }
}
