//! The capture loop: turns what a [`KernelBackend`] hands up into
//! [`CapturedPacket`]s (ids, wall-clock time, decoded headers), keeps the last
//! N in the [`PacketRing`], and tracks targets and counters at every stage.
//!
//! Targets named by pid are held by a pidfd ([`Process`]) from the moment
//! they are named: a target that has exited is known exactly, and one that
//! exited before it could be added is refused, even when its pid has been
//! given to another process since.
//!
//! A [`PacketFilter`] (a pcap-filter expression, compiled elsewhere: see
//! `pidcap-filter`) decides which of the targets' packets are kept; the
//! others are counted ([`CaptureStats::filtered`]) and go no further.
//!
//! It knows nothing of eBPF: tests run it on a fake backend.

use crate::backend::{KernelBackend, KernelConfig, KernelCounters, RawPacket, RawTls};
use crate::error::{EngineError, InvalidInput, Result};
use crate::meta::ProcessCache;
use crate::process::{Process, TargetId};
use crate::procfs::{truncate_comm, Procfs};
use crate::ring::{PacketRing, DEFAULT_RING_SIZE, MAX_RING_SIZE};
use crate::rules::Rule;
use pidcap_packet::{CapturedPacket, Direction, ProcessMeta, TlsInfo, TlsRecord};
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

#[derive(Clone)]
pub struct CaptureOptions {
    pub snaplen: u32,
    pub ring_size: usize,
    pub follow_children: bool,
    /// Take the plaintext of the targets' TLS library calls (default on).
    pub tls: bool,
    // -- filter expressions --
    /// Keep only the packets this filter matches (None: all); the others are
    /// counted in [`CaptureStats::filtered`]. TLS plaintext records are
    /// matched on their synthesized IP+TCP packet.
    pub filter: Option<Arc<dyn PacketFilter>>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            snaplen: DEFAULT_SNAPLEN,
            ring_size: DEFAULT_RING_SIZE,
            follow_children: false,
            tls: true,
            filter: None,
        }
    }
}

impl std::fmt::Debug for CaptureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureOptions")
            .field("snaplen", &self.snaplen)
            .field("ring_size", &self.ring_size)
            .field("follow_children", &self.follow_children)
            .field("tls", &self.tls)
            .field("filter", &self.filter.as_ref().map(|f| f.expression()))
            .finish()
    }
}

/// Decides which packets a capture keeps: a pcap-filter expression compiled
/// by libpcap (`pidcap_filter::Filter`), or anything else that can judge a
/// packet from its bytes. The engine core knows no libpcap.
pub trait PacketFilter: Send + Sync {
    /// Does the packet match? `ip_packet` is what was captured, from its IP
    /// header (maybe cut at the snap length); `orig_len` the whole packet's
    /// length (what pcap-filter's `len` compares).
    fn matches(&self, ip_packet: &[u8], orig_len: u32) -> bool;

    /// The filter as the user wrote it (for logs and errors).
    fn expression(&self) -> &str;
}

/// Counters at every stage, from the kernel hook to the user ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureStats {
    /// Kernel counters since this capture started.
    pub kernel: KernelCounters,
    /// Packets received from the kernel layer by this capture and kept
    /// (those the filter expression, if any, matched).
    pub received: u64,
    /// Packets in the user ring now, and its capacity.
    pub ring_len: usize,
    pub ring_capacity: usize,
    /// Packets pushed out of the user ring because it was full.
    pub evicted: u64,
    // -- filter expressions --
    /// The targets' packets (and TLS records) the filter expression did not
    /// match: received from the kernel, not kept (not in `received`).
    #[serde(default)]
    pub filtered: u64,
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
    // -- filter expressions --
    /// Which packets are kept (None: all), and how many were not.
    filter: Option<Arc<dyn PacketFilter>>,
    filtered: u64,
    // -- the whole process (issue 12) --
    /// Each target's metadata, read once per process (see [`crate::meta`]).
    procs: ProcessCache,
    /// The kernel's targets at the last liveness scan: pid -> key.
    target_keys: HashMap<u32, u64>,
    // -- capture by cgroup --
    /// The target cgroups, looked at again on every [`Capture::live_targets`].
    cgroups: Vec<(crate::cgroup::Cgroupfs, crate::cgroup::CgroupTarget)>,
}

/// Read `id`'s metadata into `procs` if the pid is still that process's:
/// by its held pidfd, or by a new pidfd whose key is `id`'s (key 0: no
/// pidfs, the pid alone), checked again once the files are read.
fn read_meta(procs: &mut ProcessCache, held: &[Process], id: TargetId) {
    if let Some(p) = held.iter().find(|p| p.id() == id) {
        procs.read(id, || p.has_exited().is_ok_and(|gone| !gone));
        return;
    }
    match Process::open(id.pid) {
        Ok(p) if id.key == 0 || p.key() == id.key => {
            procs.read(id, || p.has_exited().is_ok_and(|gone| !gone));
        }
        _ => {
            procs.read(id, || false);
        }
    }
}

/// The metadata for a packet of `pid`; a pid not seen yet is read now (its
/// key: the last scan's, else the one its pidfd has now).
fn meta_of<'c>(
    procs: &'c mut ProcessCache,
    held: &[Process],
    keys: &HashMap<u32, u64>,
    pid: u32,
) -> Option<&'c Arc<ProcessMeta>> {
    if let Some(key) = procs.first_packet(pid) {
        // Read before its first packet: again if it exec'd (or was not readable) since.
        let id = TargetId { pid, key };
        if procs.is_stale(id) {
            read_meta(procs, held, id);
        }
    } else if !procs.knows_pid(pid) {
        let key = match keys.get(&pid) {
            Some(&k) => Some(k),
            None => held
                .iter()
                .find(|p| p.pid() == pid)
                .map(Process::key)
                .or_else(|| Process::open(pid).ok().map(|p| p.key())),
        };
        read_meta(procs, held, TargetId { pid, key: key.unwrap_or(0) });
        procs.first_packet(pid);
    }
    procs.get(pid)
}

/// The leader's name as the kernel saw it when the packet's process was
/// current in its main thread (an outgoing packet it sent, a TLS call),
/// else `None` (an incoming packet: its name is the last sender's then).
fn leader_name<'r>(raw: &'r RawPacket<'_>) -> Option<&'r [u8]> {
    let current = raw.direction == Direction::Outbound || raw.tls.is_some();
    let name = raw.comm.split(|&b| b == 0).next().unwrap_or_default();
    (current && raw.tid == raw.pid && !name.is_empty()).then_some(name)
}

/// [`meta_of`], checked against the name the kernel gives the packet's
/// process ([`leader_name`]): another name means the metadata was read
/// before an exec (or a rename), so it is read again; if the process is
/// gone by now, what an exec changes (executable, arguments) is dropped
/// and the kernel's name taken, rather than another program's kept.
fn checked_meta_of<'c>(
    procs: &'c mut ProcessCache,
    held: &[Process],
    keys: &HashMap<u32, u64>,
    raw: &RawPacket<'_>,
) -> Option<&'c Arc<ProcessMeta>> {
    let pid = raw.pid;
    let differs = |procs: &ProcessCache, name: &[u8]| procs.get(pid).is_some_and(|m| m.comm.as_bytes() != name);
    meta_of(procs, held, keys, pid);
    if let Some(name) = leader_name(raw) {
        if differs(procs, name) {
            if let Some(key) = procs.key_of(pid) {
                read_meta(procs, held, TargetId { pid, key });
            }
            if differs(procs, name) {
                procs.after_exec(pid, &String::from_utf8_lossy(name));
            }
        }
    }
    procs.get(pid)
}

/// A packet's comm, tid and thread given its process: the leader's name
/// when the process is known, the kernel's record of the thread beside it.
fn with_process(mut p: CapturedPacket, tid: u32, meta: Option<&Arc<ProcessMeta>>) -> CapturedPacket {
    p.thread = std::mem::take(&mut p.comm);
    p.comm = meta.map_or_else(|| p.thread.clone(), |m| m.comm.clone());
    if p.tls.is_none() {
        p.tid = tid; // a TLS record's thread is its call's: `tls.tid`
    }
    p.process = meta.cloned();
    p
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
    /// A packet borrowed from the kernel's buffer, with its id and wall-clock
    /// time, and its process's metadata when known (its `comm` is then the
    /// leader's name; `packet.comm` is the thread's).
    Packet { id: u64, timestamp_ns: u64, packet: &'r RawPacket<'a>, process: Option<&'r Arc<ProcessMeta>> },
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
            filter: opts.filter,
            filtered: 0,
            procs: ProcessCache::new(Procfs::default(), "/etc/passwd"),
            target_keys: HashMap::new(),
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
        self.filter = opts.filter;
        self.filtered = 0;
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
        self.procs.set_procfs(procfs.clone());
        self.procfs = procfs;
        self
    }

    /// Use another password file for user names (tests).
    pub fn with_passwd(mut self, passwd: impl Into<std::path::PathBuf>) -> Capture {
        self.procs = ProcessCache::new(self.procfs.clone(), passwd);
        self
    }

    /// The metadata of the process that has (or last had) pid `pid`, if read.
    pub fn process_meta(&self, pid: u32) -> Option<&Arc<ProcessMeta>> {
        self.procs.get(pid)
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
        // Its metadata, read now: it cannot have exited yet (checked just below).
        self.procs.read(process.id(), || true);
        // What the backend read by pid (/proc/PID/fd) was this process's only
        // if it is still running now; and if it is, the pid is still its own.
        if process.has_exited()? {
            self.backend.remove_target(process.id())?;
            self.procs.forget(process.pid());
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

    /// Wait up to `timeout` for packets; each new packet (that the filter,
    /// if any, keeps) is handed to `on_packet` and kept in the ring. Returns
    /// how many arrived from the kernel layer, kept or not.
    pub fn poll(&mut self, timeout: Duration, on_packet: &mut dyn FnMut(&Arc<CapturedPacket>)) -> Result<usize> {
        let Capture {
            backend,
            ring,
            clock,
            next_id,
            received,
            tls_streams,
            filter,
            filtered,
            procs,
            held,
            target_keys,
            ..
        } = self;
        backend.poll(timeout, &mut |raw| {
            let timestamp_ns = clock.to_unix_ns(raw.ts_mono_ns);
            let packet = match &raw.tls {
                Some(tls) => {
                    // Built first, kept or not: the connection's offsets advance either way.
                    let record = tls_streams.record(*next_id, timestamp_ns, &raw, tls);
                    if !keeps(filter, &record.data, record.orig_len, filtered) {
                        return;
                    }
                    record
                }
                None => {
                    if !keeps(filter, raw.data, raw.orig_len, filtered) {
                        return;
                    }
                    CapturedPacket {
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
                    }
                }
            };
            let meta = checked_meta_of(procs, held, target_keys, &raw);
            let p = Arc::new(with_process(packet, raw.tid, meta));
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
    /// Ids, the filter and the `received` and `filtered` counters work as with `poll`.
    pub fn poll_raw(&mut self, timeout: Duration, on_packet: &mut dyn FnMut(Raw<'_, '_>)) -> Result<usize> {
        let Capture {
            backend, clock, next_id, received, tls_streams, filter, filtered, procs, held, target_keys, ..
        } = self;
        backend.poll(timeout, &mut |raw| {
            let timestamp_ns = clock.to_unix_ns(raw.ts_mono_ns);
            match &raw.tls {
                Some(tls) => {
                    let record = tls_streams.record(*next_id, timestamp_ns, &raw, tls);
                    if !keeps(filter, &record.data, record.orig_len, filtered) {
                        return;
                    }
                    let process = checked_meta_of(procs, held, target_keys, &raw);
                    on_packet(Raw::Tls(&with_process(record, raw.tid, process)))
                }
                None => {
                    if !keeps(filter, raw.data, raw.orig_len, filtered) {
                        return;
                    }
                    let process = checked_meta_of(procs, held, target_keys, &raw);
                    on_packet(Raw::Packet { id: *next_id, timestamp_ns, packet: &raw, process })
                }
            }
            *next_id += 1;
            *received += 1;
        })
    }

    /// The filter packets are kept by, if any.
    pub fn filter(&self) -> Option<&Arc<dyn PacketFilter>> {
        self.filter.as_ref()
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
        let targets = self.backend.targets()?;
        // Metadata of the targets not read yet (followed children, name
        // matches), or exec'd since they were read.
        self.target_keys = targets.iter().map(|t| (t.id.pid, t.id.key)).collect();
        for t in targets.iter().filter(|t| !t.exited) {
            if self.procs.is_stale(t.id) {
                read_meta(&mut self.procs, &self.held, t.id);
            }
        }
        for t in targets {
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
            filtered: self.filtered,
        })
    }

    pub fn ring(&self) -> &PacketRing {
        &self.ring
    }

    pub fn clear_ring(&mut self) {
        self.ring.clear();
    }

    // -- attach point (issue 13, daemon) --
    /// Where the kernel layer's programs are ([`KernelBackend::set_attach`]; None: nowhere).
    pub fn set_attach(&mut self, at: Option<&crate::cgroup::AttachPoint>) -> Result<()> {
        self.backend.set_attach(at)
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

/// Does `filter` keep this packet? Counts it in `filtered` when not.
fn keeps(filter: &Option<Arc<dyn PacketFilter>>, data: &[u8], orig_len: u32, filtered: &mut u64) -> bool {
    match filter {
        Some(f) if !f.matches(data, orig_len) => {
            *filtered += 1;
            false
        }
        _ => true,
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
        // A /proc without pid 7 (this machine's pid 7 is some kernel thread): the kernel's name stays.
        let empty = ProcTree::new("nopid", &[], "x");
        let mut cap = Capture::new(Box::new(fake), CaptureOptions { ring_size: 2, ..Default::default() })
            .unwrap()
            .with_env(WallClock::with_offset(1_000_000), empty.procfs());
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
            if let Raw::Packet { id, timestamp_ns, packet, .. } = r {
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

    /// Keeps packets whose captured bytes are an odd number long, or whose
    /// original length is over 1000; records what it was asked.
    #[derive(Default)]
    struct OddOrLong(std::sync::Mutex<Vec<(usize, u32)>>);

    impl PacketFilter for OddOrLong {
        fn matches(&self, ip_packet: &[u8], orig_len: u32) -> bool {
            self.0.lock().unwrap().push((ip_packet.len(), orig_len));
            ip_packet.len() % 2 == 1 || orig_len > 1000
        }
        fn expression(&self) -> &str {
            "odd or long"
        }
    }

    #[test]
    fn the_filter_keeps_packets_on_both_paths_and_counts_the_others() {
        use crate::fake::FakePacket;
        let (local, remote) = ("127.0.0.1:40000".parse().unwrap(), "127.0.0.1:8443".parse().unwrap());
        let fake = FakeKernel::default();
        let h = fake.handle();
        // udp(b"a") is 29 bytes (kept), udp(b"bb") 30 (dropped).
        h.push(7, udp(b"a"));
        h.push(7, udp(b"bb"));
        h.push(7, udp(b"ccc"));
        let filter = Arc::new(OddOrLong::default());
        let opts = CaptureOptions { filter: Some(filter.clone()), ..Default::default() };
        assert!(format!("{opts:?}").contains("Some(\"odd or long\")"), "{opts:?}");
        let mut cap = Capture::new(Box::new(fake), opts).unwrap();
        let mut seen = vec![];
        let n = cap.poll(Duration::ZERO, &mut |p| seen.push((p.id, p.payload().len()))).unwrap();
        assert_eq!(n, 3, "three arrived");
        assert_eq!(seen, [(1, 1), (2, 3)], "the kept ones, numbered without a gap");
        assert_eq!(cap.ring().len(), 2);
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.filtered, s.kernel.captured), (2, 1, 3));

        // The raw path, with a TLS record: matched on its synthesized IP+TCP
        // packet (20 + 20 + plaintext bytes), and its stream offset advances kept or not.
        h.push(7, udp(b"dd"));
        h.push_packet(FakePacket::tls(7, Direction::Outbound, local, remote, b"GET / HTTP/1.1\r\n")); // 56: dropped
        h.push_packet(FakePacket::tls(7, Direction::Outbound, local, remote, b"Host: x\r\n\r\n")); // 51: kept
        h.push(7, udp(b"eee"));
        let mut raw = vec![];
        cap.poll_raw(Duration::ZERO, &mut |r| {
            raw.push(match r {
                Raw::Tls(p) => (p.id, p.decoded.tcp_seq),
                Raw::Packet { id, .. } => (id, None),
            })
        })
        .unwrap();
        assert_eq!(raw, [(3, Some(16)), (4, None)]);
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.filtered), (4, 3));
        let asked = filter.0.lock().unwrap().clone();
        assert_eq!(asked[3..], [(30, 30), (56, 56), (51, 51), (31, 31)], "bytes and original length");

        // Cut at the snap length: the filter sees the bytes captured and the whole packet's length.
        cap.restart(CaptureOptions { snaplen: 21, filter: Some(filter.clone()), ..Default::default() }).unwrap();
        h.push(7, udp(b"ff"));
        let mut kept = 0;
        cap.poll(Duration::ZERO, &mut |_| kept += 1).unwrap();
        assert_eq!((kept, filter.0.lock().unwrap().last().copied()), (1, Some((21, 30))));

        // A restart takes the new options' filter (none) and counts from 0.
        cap.restart(CaptureOptions::default()).unwrap();
        h.push(7, udp(b"gg"));
        cap.poll(Duration::ZERO, &mut |_| {}).unwrap();
        let s = cap.stats().unwrap();
        assert_eq!((s.received, s.filtered), (1, 0));
        assert!(cap.filter().is_none());
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
    #[test]
    fn a_packet_whose_name_is_not_its_metadata_s_has_it_read_again_or_drops_what_an_exec_changes() {
        use crate::fake::FakePacket;
        use crate::meta::tests::Tree;
        let me = std::process::id();
        let t = Tree::new("exec-check");
        t.process(me, "bash", 1, 1000, "/usr/bin/bash", &["bash", "shim"], "/app");
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(0), t.procfs())
            .with_passwd(t.passwd());
        let named = |comm: &str, direction| FakePacket {
            comm: comm.as_bytes().to_vec(),
            direction,
            ..FakePacket::new(me, udp(b"x"))
        };
        h.push_packet(named("bash", Direction::Outbound));
        let mut got = vec![];
        cap.poll(Duration::ZERO, &mut |p| got.push(Arc::clone(p))).unwrap();
        // It exec'd. An incoming packet carries the last sender's name: no sign of it.
        t.process(me, "python3", 1, 1000, "/usr/bin/python3", &["python3", "x.py"], "/app");
        h.push_packet(named("bash", Direction::Inbound));
        // Its next packet, sent by the main thread under the new name: read again.
        h.push_packet(named("python3", Direction::Outbound));
        cap.poll(Duration::ZERO, &mut |p| got.push(Arc::clone(p))).unwrap();
        let meta = |p: &CapturedPacket| p.process.as_deref().cloned().unwrap();
        assert_eq!(meta(&got[0]).exe, "/usr/bin/bash");
        assert_eq!(meta(&got[1]).exe, "/usr/bin/bash", "read once, not per packet");
        assert_eq!((got[2].comm.as_str(), meta(&got[2]).exe.as_str()), ("python3", "/usr/bin/python3"));
        // Another exec, and gone before its packet is drained: what the exec
        // changed is unknown, not python3's; the rest stays.
        t.remove(me);
        h.push_packet(named("node", Direction::Outbound));
        cap.poll(Duration::ZERO, &mut |p| got.push(Arc::clone(p))).unwrap();
        let m = meta(&got[3]);
        assert_eq!((got[3].comm.as_str(), m.comm.as_str(), m.exe.as_str()), ("node", "node", ""));
        assert!(m.cmdline.is_empty());
        assert_eq!((m.uid, m.user.as_str(), m.cgroup.as_str()), (1000, "alice", "/app"));
    }

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
    fn packets_carry_their_process_read_once_and_kept_after_it_exits() {
        let child = sleeper();
        let pid = child.id();
        let tree = crate::meta::tests::Tree::new("capture");
        tree.process(pid, "curl", 1, 1000, "/usr/bin/curl", &["curl", "-s"], "/user.slice");
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default())
            .unwrap()
            .with_env(WallClock::with_offset(0), tree.procfs())
            .with_passwd(tree.passwd());
        cap.add_pid(pid).unwrap();
        let mut p = crate::fake::FakePacket::new(pid, udp(b"a"));
        (p.comm, p.tid) = (b"worker-1".to_vec(), pid + 1);
        h.push_packet(p.clone());
        let mut got = vec![];
        cap.poll(Duration::ZERO, &mut |p| got.push(p.clone())).unwrap();
        let m = got[0].process.clone().expect("the process's metadata");
        assert_eq!((m.exe.as_str(), m.user.as_str(), m.ppid), ("/usr/bin/curl", "alice", 1));
        assert_eq!((got[0].comm.as_str(), got[0].thread.as_str(), got[0].tid), ("curl", "worker-1", pid + 1));
        // Its files change (they would be another process's): not read again per packet.
        tree.process(pid, "other", 1, 0, "/usr/bin/curl", &["other"], "/");
        end(child);
        tree.remove(pid);
        assert!(cap.live_targets().unwrap().is_empty());
        h.push_packet(p.clone());
        cap.poll_raw(Duration::ZERO, &mut |r| {
            if let Raw::Packet { process, .. } = r {
                assert!(Arc::ptr_eq(process.unwrap(), &m), "the same metadata, shared, after the exit");
            }
        })
        .unwrap();
        // A packet of a pid that no process has: no metadata, and no error.
        h.push_packet(crate::fake::FakePacket::new(u32::MAX - 5, udp(b"b")));
        cap.poll(Duration::ZERO, &mut |p| assert!(p.process.is_none() && p.comm == "fake" && p.thread == "fake"))
            .unwrap();
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
