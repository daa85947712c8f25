//! The capture loop: turns what a [`KernelBackend`] hands up into
//! [`CapturedPacket`]s (ids, wall-clock time, decoded headers), keeps the last
//! N in the [`PacketRing`], and tracks targets and counters at every stage.
//!
//! Targets named by pid are held by a pidfd ([`Process`]) from the moment
//! they are named: a target that has exited is known exactly, and one that
//! exited before it could be added is refused, even when its pid has been
//! given to another process since.
//!
//! It knows nothing of eBPF: tests run it on a fake backend.

use crate::backend::{KernelBackend, KernelConfig, KernelCounters, RawPacket, RawTls};
use crate::error::{EngineError, InvalidInput, Result};
use crate::process::Process;
use crate::procfs::{truncate_comm, Procfs};
use crate::ring::{PacketRing, DEFAULT_RING_SIZE, MAX_RING_SIZE};
use crate::rules::Rule;
use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsRecord};
use std::collections::HashMap;
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
    /// Take the plaintext of the targets' TLS library calls (default on).
    pub tls: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions { snaplen: DEFAULT_SNAPLEN, ring_size: DEFAULT_RING_SIZE, follow_children: false, tls: true }
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
    /// The targets added from here (by pid, and processes already running
    /// under a target name), held until they exit.
    held: Vec<Process>,
    /// Plaintext offsets of the TLS connections seen, per direction.
    tls_streams: TlsStreams,
    // -- capture by cgroup --
    /// The target cgroups, looked at again on every [`Capture::live_targets`].
    cgroups: Vec<(crate::cgroup::Cgroupfs, crate::cgroup::CgroupTarget)>,
}

/// The offset of each TLS connection's plaintext in each direction: the
/// sequence number of its next record's synthesized packet (see
/// [`pidcap_packet::TlsRecord::stream_offset`]).
#[derive(Debug, Default)]
struct TlsStreams {
    next: HashMap<(u64, Direction), u32>,
}

impl TlsStreams {
    /// Connections remembered at most; past it the table starts over (the
    /// offsets of older connections then restart at 0, which only affects
    /// how their records reassemble, never what they hold).
    const MAX: usize = 1 << 16;

    /// The record built from a raw TLS record (`raw.tls` set).
    fn record(&mut self, id: u64, timestamp_ns: u64, raw: &RawPacket<'_>, tls: &RawTls) -> CapturedPacket {
        let offset = if raw.socket_cookie == 0 {
            0
        } else {
            if self.next.len() >= Self::MAX {
                self.next.clear();
            }
            let next = self.next.entry((raw.socket_cookie, raw.direction)).or_insert(0);
            let at = *next;
            *next = next.wrapping_add(tls.true_len as u32);
            at
        };
        CapturedPacket::tls_record(TlsRecord {
            id,
            timestamp_ns,
            pid: raw.pid,
            comm: String::from_utf8_lossy(raw.comm).into_owned(),
            socket_cookie: raw.socket_cookie,
            direction: raw.direction,
            local: tls.local,
            remote: tls.remote,
            info: TlsInfo { tid: tls.tid, library: tls.library },
            plaintext: raw.data,
            true_len: tls.true_len,
            stream_offset: offset,
        })
    }
}

/// What [`Capture::poll_raw`] hands over.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'r, 'a> {
    /// A packet borrowed from the kernel's buffer, with its id and wall-clock time.
    Packet { id: u64, timestamp_ns: u64, packet: &'r RawPacket<'a> },
    /// A TLS plaintext record, built (records are few beside packets, and
    /// their synthesized packet has to be made anyway).
    Tls(&'r CapturedPacket),
}

impl Capture {
    /// Start capturing on `backend` (nothing is captured until targets are added).
    pub fn new(mut backend: Box<dyn KernelBackend>, opts: CaptureOptions) -> Result<Capture> {
        check_options(&opts)?;
        backend.configure(&KernelConfig { snaplen: opts.snaplen, capture: true, tls: opts.tls })?;
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
            held: Vec::new(),
            tls_streams: TlsStreams::default(),
            cgroups: Vec::new(),
        })
    }

    /// Start over on the same kernel layer with new options (a daemon's next
    /// capture): an empty ring, counters from now on, packet ids continuing.
    pub fn restart(&mut self, opts: CaptureOptions) -> Result<()> {
        check_options(&opts)?;
        self.backend.configure(&KernelConfig { snaplen: opts.snaplen, capture: true, tls: opts.tls })?;
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

    /// Which TLS libraries each live target's plaintext is taken from
    /// (see [`KernelBackend::tls_coverage`]).
    pub fn tls_coverage(&mut self) -> Result<Vec<crate::TlsCoverage>> {
        self.backend.tls_coverage()
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

    /// Capture process `pid` (its open sockets included): the process that
    /// has this pid now. A client that took the pid from a user earlier
    /// should [`Process::open`] it then and use [`Capture::add_process`].
    pub fn add_pid(&mut self, pid: u32) -> Result<()> {
        self.add_process(Process::open(pid)?)
    }

    /// Capture `process` (its open sockets included), and only it.
    ///
    /// Refused with [`EngineError::NoSuchProcess`] when it has exited, or
    /// exits while it is being added: whatever now has its pid is left alone.
    pub fn add_process(&mut self, process: Process) -> Result<()> {
        let gone = || EngineError::NoSuchProcess(process.pid());
        if process.has_exited()? {
            return Err(gone());
        }
        self.backend.add_target(&process, self.follow_children)?;
        // What the backend read by pid (/proc/PID/fd) was this process's only
        // if it is still running now; and if it is, the pid is still its own.
        if process.has_exited()? {
            self.backend.remove_target(process.id())?;
            return Err(gone());
        }
        self.held.push(process);
        Ok(())
    }

    /// Capture every process named `name`, now and later.
    pub fn add_name(&mut self, name: &str) -> Result<()> {
        self.backend.add_target_name(name, self.follow_children)?;
        // Those already running, by pid (the kernel layer takes the later ones).
        let want = truncate_comm(name);
        for pid in self.procfs.pids_named(name) {
            let process = match Process::open(pid) {
                Ok(p) => p,
                Err(EngineError::NoSuchProcess(_) | EngineError::Invalid(InvalidInput::Thread { .. })) => continue,
                Err(e) => return Err(e),
            };
            // The name was read by pid: it is the held process's if it still
            // has it now (add_process checks that the process still runs).
            if self.procfs.comm(pid).as_deref().map(truncate_comm) != Some(want) {
                continue;
            }
            match self.add_process(process) {
                Ok(()) | Err(EngineError::NoSuchProcess(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // -- capture by cgroup --
    /// Capture every process in `cgroup` and below it, now and later: the
    /// kernel layer takes those that use a socket from now on (also those
    /// that move in later), and the processes `fs` lists there now are
    /// added by pid (with their open sockets); [`Capture::live_targets`]
    /// looks again each time, so a process that moved in and only uses the
    /// connections it already had is taken too. Returns how many were added
    /// now (pidcap itself is never one; a process that exits meanwhile is skipped).
    pub fn add_cgroup(&mut self, fs: &crate::cgroup::Cgroupfs, cgroup: &crate::cgroup::CgroupTarget) -> Result<usize> {
        self.backend.add_target_cgroup(cgroup, self.follow_children)?;
        self.cgroups.push((fs.clone(), cgroup.clone()));
        self.add_cgroup_members(fs, cgroup)
    }

    /// Add the processes in `cgroup` (and below) that are not targets yet; how many are targets now.
    fn add_cgroup_members(
        &mut self,
        fs: &crate::cgroup::Cgroupfs,
        cgroup: &crate::cgroup::CgroupTarget,
    ) -> Result<usize> {
        let pids = fs
            .procs(cgroup)
            .map_err(|e| EngineError::io(format!("listing the processes of {cgroup}"), std::io::Error::other(e)))?;
        // Targets already (by pid: one whose pid was given to a newcomer is
        // pruned by live_targets, and the newcomer is looked at next time).
        let mut known: Vec<u32> = self.backend.targets()?.iter().map(|t| t.id.pid).collect();
        known.extend(self.held.iter().map(Process::pid));
        let mut added = 0;
        for pid in pids.into_iter().filter(|&p| p != std::process::id()) {
            if known.contains(&pid) {
                added += 1;
                continue;
            }
            let process = match Process::open(pid) {
                Ok(p) => p,
                Err(EngineError::NoSuchProcess(_) | EngineError::Invalid(InvalidInput::Thread { .. })) => continue,
                Err(e) => return Err(e),
            };
            // The pid was read from cgroup.procs: it is the held process's
            // if that process is in the cgroup now (add_process checks it still runs).
            if !fs.holds(cgroup, pid) {
                continue;
            }
            match self.add_process(process) {
                Ok(()) => added += 1,
                Err(EngineError::NoSuchProcess(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(added)
    }

    /// Stop capturing process `pid` (whichever of the targets has it).
    pub fn remove_pid(&mut self, pid: u32) -> Result<()> {
        for t in self.backend.targets()? {
            if t.id.pid == pid {
                self.backend.remove_target(t.id)?;
            }
        }
        self.held.retain(|p| p.pid() != pid);
        Ok(())
    }

    /// Wait up to `timeout` for packets; each new packet is handed to
    /// `on_packet` and kept in the ring. Returns how many arrived.
    pub fn poll(&mut self, timeout: Duration, on_packet: &mut dyn FnMut(&Arc<CapturedPacket>)) -> Result<usize> {
        let Capture { backend, ring, clock, next_id, received, tls_streams, .. } = self;
        backend.poll(timeout, &mut |raw| {
            let timestamp_ns = clock.to_unix_ns(raw.ts_mono_ns);
            let p = Arc::new(match &raw.tls {
                Some(tls) => tls_streams.record(*next_id, timestamp_ns, &raw, tls),
                None => CapturedPacket {
                    rule: raw.rule,
                    ..CapturedPacket::new(
                        *next_id,
                        timestamp_ns,
                        raw.pid,
                        String::from_utf8_lossy(raw.comm).into_owned(),
                        raw.socket_cookie,
                        raw.direction,
                        raw.verdict,
                        raw.orig_len,
                        raw.data.to_vec(),
                    )
                },
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
    /// keeping it in the ring; TLS plaintext records are built (see [`Raw`]).
    /// Ids and the `received` counter advance as with `poll`.
    pub fn poll_raw(&mut self, timeout: Duration, on_packet: &mut dyn FnMut(Raw<'_, '_>)) -> Result<usize> {
        let Capture { backend, clock, next_id, received, tls_streams, .. } = self;
        backend.poll(timeout, &mut |raw| {
            let timestamp_ns = clock.to_unix_ns(raw.ts_mono_ns);
            match &raw.tls {
                Some(tls) => on_packet(Raw::Tls(&tls_streams.record(*next_id, timestamp_ns, &raw, tls))),
                None => on_packet(Raw::Packet { id: *next_id, timestamp_ns, packet: &raw }),
            }
            *next_id += 1;
            *received += 1;
        })
    }

    /// The pids of the targets that are still running; those that have
    /// exited are removed from the kernel's set. A target has exited when its
    /// pidfd says so (those added here) or the kernel layer saw it exit
    /// (children and name matches it added itself): never judged by its pid,
    /// which may be another process's by now.
    pub fn live_targets(&mut self) -> Result<Vec<u32>> {
        // Processes that moved into a target cgroup (the kernel layer takes
        // them at their next socket operation; here, with the sockets they have).
        for (fs, cgroup) in self.cgroups.clone() {
            self.add_cgroup_members(&fs, &cgroup)?;
        }
        let mut alive = Vec::new();
        for t in self.backend.targets()? {
            let exited = match self.held.iter().find(|p| p.id() == t.id) {
                Some(p) => t.exited || p.has_exited()?,
                None => t.exited,
            };
            if exited {
                self.backend.remove_target(t.id)?;
            } else {
                alive.push(t.id.pid);
            }
        }
        // Let go of the pidfds of the processes that are gone.
        let mut held = Vec::with_capacity(self.held.len());
        for p in self.held.drain(..) {
            if !p.has_exited()? {
                held.push(p);
            }
        }
        self.held = held;
        alive.sort_unstable();
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
                tls_records: k.tls_records - b.tls_records,
                tls_dropped: k.tls_dropped - b.tls_dropped,
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

    /// Stop pushing packets to userspace and forget every target (names and cgroups too).
    pub fn stop(&mut self) -> Result<()> {
        self.backend.configure(&KernelConfig { snaplen: self.snaplen, capture: false, tls: false })?;
        self.backend.clear_target_names_and_cgroups()?;
        self.cgroups.clear();
        for t in self.backend.targets()? {
            self.backend.remove_target(t.id)?;
        }
        self.held.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;
    use pidcap_packet::Protocol;

    fn udp(payload: &[u8]) -> Vec<u8> {
        crate::fake::udp_packet(payload)
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
        cap.poll_raw(Duration::ZERO, &mut |r| {
            if let Raw::Packet { id, timestamp_ns, packet } = r {
                seen.push((id, timestamp_ns, packet.data.len(), packet.comm.to_vec()))
            }
        })
        .unwrap();
        assert_eq!(seen, [(1, 1_005, 29, b"fake".to_vec()), (2, 1_005, 30, b"fake".to_vec())]);
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.ring_len), (2, 0));
    }

    #[test]
    fn tls_coverage_is_the_backends_and_scriptable_on_the_fake() {
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        assert_eq!(cap.tls_coverage().unwrap(), [], "nothing scripted: no TLS support");
        let covered = crate::TlsCoverage {
            pid: 7,
            comm: "curl".into(),
            libraries: vec![crate::TlsLibraryFile {
                library: pidcap_packet::TlsLibrary::Openssl,
                path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into(),
            }],
        };
        let bare = crate::TlsCoverage { pid: 8, comm: "static-go".into(), libraries: vec![] };
        h.set_tls_coverage(vec![covered.clone(), bare.clone()]);
        assert_eq!(cap.tls_coverage().unwrap(), [covered, bare]);
        assert!(h.state().config.unwrap().tls, "CaptureOptions::default() asks for plaintext");
    }

    #[test]
    fn tls_records_become_records_of_their_connection_in_order_on_both_paths() {
        use crate::fake::FakePacket;
        let (local, remote) = ("127.0.0.1:40000".parse().unwrap(), "127.0.0.1:8443".parse().unwrap());
        let fake = FakeKernel::default();
        let h = fake.handle();
        h.push_packet(FakePacket::tls(7, Direction::Outbound, local, remote, b"GET / HTTP/1.1\r\n"));
        h.push_packet(FakePacket::tls(7, Direction::Outbound, local, remote, b"Host: x\r\n\r\n"));
        h.push_packet(FakePacket::tls(7, Direction::Inbound, local, remote, b"HTTP/1.1 200 OK\r\n"));
        h.push(7, udp(b"a"));
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        let mut got = vec![];
        cap.poll(Duration::ZERO, &mut |p| got.push(p.clone())).unwrap();
        let seqs: Vec<_> = got.iter().map(|p| (p.is_tls(), p.decoded.tcp_seq, p.payload().len())).collect();
        assert_eq!(seqs, [(true, Some(0), 16), (true, Some(16), 11), (true, Some(0), 17), (false, None, 1)]);
        assert_eq!((got[2].decoded.local_port, got[2].decoded.remote_port), (40000, 8443));
        assert_eq!(got[0].tls.unwrap().library, pidcap_packet::TlsLibrary::Openssl);

        h.push_packet(FakePacket::tls(7, Direction::Outbound, local, remote, b"next"));
        h.push(7, udp(b"b"));
        let mut raw = vec![];
        cap.poll_raw(Duration::ZERO, &mut |r| {
            raw.push(match r {
                Raw::Tls(p) => (p.id, p.decoded.tcp_seq, p.payload().to_vec()),
                Raw::Packet { id, .. } => (id, None, vec![]),
            })
        })
        .unwrap();
        assert_eq!(raw, [(5, Some(27), b"next".to_vec()), (6, None, vec![])]);
    }

    #[test]
    fn dead_targets_are_pruned_and_a_missing_pid_is_an_error() {
        let fake = FakeKernel::default();
        fake.handle().insert_target(std::process::id());
        fake.handle().insert_target(u32::MAX - 3);
        fake.handle().exit(u32::MAX - 3);
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        assert_eq!(cap.live_targets().unwrap(), [std::process::id()]);
        assert!(matches!(cap.add_pid(u32::MAX - 3), Err(EngineError::NoSuchProcess(_))));
    }

    /// A /proc where every given pid is a live, sleeping process named `comm`:
    /// what /proc shows once a pid has been given to another process. Removed on drop.
    struct ProcTree(std::path::PathBuf);

    impl ProcTree {
        fn new(tag: &str, pids: &[u32], comm: &str) -> ProcTree {
            let root = std::env::temp_dir().join(format!("pidcap-capture-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for pid in pids {
                let dir = root.join(pid.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("stat"), format!("{pid} ({comm}) S 1 1 1 0 -1")).unwrap();
                std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            }
            ProcTree(root)
        }

        fn procfs(&self) -> Procfs {
            Procfs::at(&self.0)
        }
    }

    impl Drop for ProcTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep").arg("60").spawn().unwrap()
    }

    fn end(mut child: std::process::Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn kernel_pids(fake: &crate::fake::FakeHandle) -> Vec<u32> {
        fake.state().targets.keys().copied().collect()
    }

    #[test]
    fn a_target_that_exited_is_over_although_its_pid_is_alive_again() {
        let child = sleeper();
        let pid = child.id();
        // /proc says the pid runs: another process was given it.
        let proc = ProcTree::new("reused", &[pid], "successor");
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(0), proc.procfs());
        let process = Process::open(pid).unwrap();
        let key = process.key();
        cap.add_process(process).unwrap();
        assert_eq!(h.state().targets[&pid].key, key, "the kernel entry carries the process's key");
        // A child the kernel followed, alive: it stays until the kernel sees it exit.
        h.insert_target_id(crate::TargetId { pid: u32::MAX - 7, key: 99 });
        assert_eq!(cap.live_targets().unwrap(), [pid, u32::MAX - 7]);

        end(child);
        assert_eq!(cap.live_targets().unwrap(), [u32::MAX - 7], "the exited target is not alive");
        assert_eq!(kernel_pids(&h), [u32::MAX - 7], "and its entry left the kernel's set");
        h.exit(u32::MAX - 7);
        assert!(cap.live_targets().unwrap().is_empty());
        assert!(kernel_pids(&h).is_empty());
    }

    #[test]
    fn a_process_that_exited_before_it_was_added_is_refused_and_its_successor_left_alone() {
        let child = sleeper();
        let pid = child.id();
        let process = Process::open(pid).unwrap(); // the user named it
        end(child); // it exits before the capture starts; its pid is "reused"
        let proc = ProcTree::new("early", &[pid], "successor");
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(0), proc.procfs());
        assert!(matches!(cap.add_process(process), Err(EngineError::NoSuchProcess(p)) if p == pid));
        assert!(kernel_pids(&h).is_empty(), "nothing was added for the successor");
    }

    /// The fake kernel, whose `add_target` lets the process exit (and be reaped) once it is added.
    struct ExitsWhileAdded(FakeKernel, std::sync::Arc<std::sync::Mutex<Option<std::process::Child>>>);

    impl KernelBackend for ExitsWhileAdded {
        fn configure(&mut self, c: &KernelConfig) -> Result<()> {
            self.0.configure(c)
        }
        fn add_target(&mut self, process: &Process, follow: bool) -> Result<()> {
            self.0.add_target(process, follow)?;
            if let Some(child) = self.1.lock().unwrap().take() {
                end(child);
            }
            Ok(())
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
        fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(RawPacket<'_>)) -> Result<usize> {
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
    fn a_process_that_exits_while_it_is_added_is_refused_and_its_entry_removed() {
        let child = sleeper();
        let pid = child.id();
        let fake = FakeKernel::default();
        let h = fake.handle();
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(child)));
        let mut cap = Capture::new(Box::new(ExitsWhileAdded(fake, slot)), CaptureOptions::default()).unwrap();
        assert!(matches!(cap.add_pid(pid), Err(EngineError::NoSuchProcess(p)) if p == pid));
        assert!(kernel_pids(&h).is_empty(), "the entry added for it was taken back");
    }

    #[test]
    fn running_processes_of_a_target_name_are_held_like_pids() {
        let child = sleeper();
        let pid = child.id();
        let proc = ProcTree::new("names", &[pid, u32::MAX - 9], "pidcap-x");
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(0), proc.procfs());
        cap.add_name("pidcap-x").unwrap();
        assert_eq!(h.state().names, ["pidcap-x"]);
        assert_eq!(kernel_pids(&h), [pid], "the running one (a pid that is no process is skipped)");
        end(child);
        assert!(cap.live_targets().unwrap().is_empty());
        assert!(kernel_pids(&h).is_empty());
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
