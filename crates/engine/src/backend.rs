//! The one narrow interface between the engine and a kernel layer.
//!
//! Everything the engine needs from the OS to capture and filter by process
//! goes through [`KernelBackend`]: the eBPF backend (crate `pidcap-ebpf`) is the
//! Linux implementation; a WFP backend on Windows would be another, and the
//! capture loop above ([`crate::capture`]) runs unchanged on either, or on a
//! fake in tests.
//!
//! Targets are named by [`TargetId`] (pid and a key that is never reused),
//! never by pid alone: a pid is given to another process once its holder is
//! gone.

use crate::cgroup::{AttachPoint, CgroupTarget};
use crate::error::{EngineError, Result};
use crate::process::{Process, TargetId};
use crate::rules::Rule;
use pidcap_packet::{Direction, TlsLibrary, Verdict};
use std::net::SocketAddr;
use std::time::Duration;

/// One packet (or TLS plaintext record) as the kernel layer hands it up,
/// borrowed from its buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// CLOCK_MONOTONIC nanoseconds (the capture loop converts to wall time).
    pub ts_mono_ns: u64,
    pub socket_cookie: u64,
    pub pid: u32,
    /// Process name as the kernel recorded it, without NUL padding: the
    /// name of the thread `tid` (or of the one that set the socket up).
    pub comm: &'a [u8],
    /// The thread that sent the packet, or last sent on the socket (0: unknown).
    pub tid: u32,
    pub direction: Direction,
    pub verdict: Verdict,
    pub rule: Option<u16>,
    /// Length of the whole IP packet (for a TLS record: see [`RawTls::true_len`]).
    pub orig_len: u32,
    /// The captured bytes, from the IP header; for a TLS record, the plaintext.
    pub data: &'a [u8],
    /// Set when this is a TLS plaintext record taken from the target's TLS
    /// library (the capture loop turns it into a record, see
    /// [`pidcap_packet::tls`]), not a packet.
    pub tls: Option<RawTls>,
}

/// What a TLS plaintext record has beyond a packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTls {
    /// The thread that made the library call.
    pub tid: u32,
    pub library: TlsLibrary,
    /// The socket's own address and its peer's
    /// ([`pidcap_packet::tls::unknown_addr`] when the socket is not known).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Plaintext bytes the call carried (`data` may hold fewer: the snap length).
    pub true_len: u64,
}

/// Counters kept by the kernel layer, summed over CPUs, since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelCounters {
    /// Packets the kernel layer saw (all processes).
    pub seen: u64,
    /// ... whose socket had no known owner.
    pub unattributed: u64,
    /// ... that belonged to a target process.
    pub target: u64,
    /// ... handed to userspace.
    pub captured: u64,
    /// ... lost because the kernel ring buffer was full.
    pub ring_full: u64,
    /// ... lost because their bytes could not be read.
    pub load_failed: u64,
    /// ... dropped by a block rule.
    pub blocked: u64,
    /// Sockets whose owner could not be recorded (owner table full).
    pub owner_full: u64,
    /// Child processes that became targets by following a target's forks.
    pub forked: u64,
    /// connect()/sendmsg() calls refused by a block rule.
    pub connect_blocked: u64,
    /// TLS plaintext records handed to userspace.
    #[serde(default)]
    pub tls_records: u64,
    /// TLS plaintext records of targets lost (ring full, bytes unreadable).
    #[serde(default)]
    pub tls_dropped: u64,
}

/// Settings of the kernel layer that may change while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelConfig {
    /// Bytes kept of each packet (1..=65535).
    pub snaplen: u32,
    /// Push packets to userspace (false: attribute and enforce rules only).
    pub capture: bool,
    /// Also take the plaintext of the targets' TLS library calls.
    pub tls: bool,
}

/// What the kernel layer can take TLS plaintext from in one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsCoverage {
    pub pid: u32,
    pub comm: String,
    /// The supported TLS libraries the process maps (as seen from its own
    /// mount namespace), with probes attached; empty: none is mapped, so
    /// its TLS traffic is captured encrypted only.
    pub libraries: Vec<TlsLibraryFile>,
}

/// The TLS libraries the Linux kernel layer looks for in a target, for the
/// line that says a target has none ("no supported TLS library: looked
/// for ..."). Statically linked TLS (Go, OpenSSL or BoringSSL built in) is
/// never found.
pub const TLS_LIBRARIES_LOOKED_FOR: &str =
    "libssl.so.3 / libssl.so.1.1 (OpenSSL), libgnutls.so.30 (GnuTLS), libnspr4.so (NSS)";

/// One TLS library file a target maps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsLibraryFile {
    pub library: TlsLibrary,
    /// The path in the target's mount namespace (as /proc/PID/maps shows it).
    pub path: std::path::PathBuf,
}

/// A target as the kernel layer holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelTarget {
    pub id: TargetId,
    /// The kernel layer saw the process exit (its last thread). Its entry
    /// still takes the process's own last packets until it is removed.
    pub exited: bool,
}

/// A kernel layer that attributes sockets to processes and captures their packets.
pub trait KernelBackend: Send {
    /// Apply `config`; takes effect on the next packet.
    fn configure(&mut self, config: &KernelConfig) -> Result<()>;

    /// Capture the packets of `process` (and of its future children when
    /// `follow_children`), including sockets it already has open, and only
    /// of that process: never of another one given its pid later. What the
    /// backend reads by pid (its open sockets) is that process's if it is
    /// still running once this returns; the caller checks ([`crate::Capture`] does).
    fn add_target(&mut self, process: &Process, follow_children: bool) -> Result<()>;

    /// Stop capturing `target` (nothing happens if its pid is now another
    /// process's entry).
    fn remove_target(&mut self, target: TargetId) -> Result<()>;

    /// Capture every process named `comm` (its first 15 bytes) that opens
    /// or uses a socket from now on (the caller adds those already running
    /// with [`KernelBackend::add_target`]).
    fn add_target_name(&mut self, comm: &str, follow_children: bool) -> Result<()>;

    /// Capture every process in `cgroup` or a cgroup below it that opens or
    /// uses a socket from now on, including processes that move into it
    /// later (the caller adds those already in it with
    /// [`KernelBackend::add_target`]; [`crate::Capture::add_cgroup`] does).
    /// A process outside the subtree is never taken. A process stays a
    /// target once taken, also if it leaves the cgroup (as a name match
    /// does when it renames itself).
    fn add_target_cgroup(&mut self, cgroup: &CgroupTarget, follow_children: bool) -> Result<()> {
        let _ = (cgroup, follow_children);
        Err(EngineError::Unsupported("capture by cgroup (this kernel layer has no cgroup targets)".into()))
    }

    /// Forget every target name and cgroup ([`KernelBackend::add_target_name`],
    /// [`KernelBackend::add_target_cgroup`]): no process becomes a target by
    /// its name or cgroup any more (those already taken stay until removed).
    /// [`crate::Capture::stop`] calls it, so a daemon's next capture does not
    /// inherit the previous one's names and cgroups.
    fn clear_target_names_and_cgroups(&mut self) -> Result<()> {
        Ok(())
    }

    /// The targets held now, including those the kernel layer added itself
    /// (children, name matches, cgroup members), exited ones until they are removed.
    fn targets(&self) -> Result<Vec<KernelTarget>>;

    /// Wait up to `timeout` for packets and hand each to `sink`; returns how many.
    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(RawPacket<'_>)) -> Result<usize>;

    /// Current counters.
    fn counters(&self) -> Result<KernelCounters>;

    /// Replace the filter rules (at most [`crate::rules::MAX_RULES`]), in
    /// order; they apply to the targets' next packet. A packet is judged by
    /// the old list or the new one, never by a mix. Hit counts restart at 0.
    fn set_rules(&mut self, rules: &[Rule]) -> Result<()>;

    /// How many packets (and connect/send calls) each rule of the current
    /// list decided, in list order, since the last [`KernelBackend::set_rules`].
    fn rule_hits(&self) -> Result<Vec<u64>>;

    /// For each live target, the TLS libraries its plaintext is taken from
    /// (a kernel layer without TLS support reports none).
    fn tls_coverage(&mut self) -> Result<Vec<TlsCoverage>> {
        Ok(Vec::new())
    }

    // -- attach point (issue 13) --
    /// Put the per-socket and per-packet programs at `at` (`Some`), or take
    /// every program off the system (`None`: a daemon with no capture, whose
    /// idle hooks would tax every other process's packets). Moving from one
    /// point to another attaches at the new point before it detaches from
    /// the old one, so no packet of a socket both cover is missed in
    /// between; on an error the old attachment stays. Setting the point in
    /// force again changes nothing. Maps, ring and loaded programs stay:
    /// targets, rules and sockets' owners are kept (sockets made while
    /// nothing was attached are found again when a target is added, as
    /// for a capture's older sockets).
    ///
    /// The default ignores it: a kernel layer whose hooks have no place to
    /// choose (one attached once, for the whole system, when loaded).
    fn set_attach(&mut self, at: Option<&AttachPoint>) -> Result<()> {
        let _ = at;
        Ok(())
    }
}
