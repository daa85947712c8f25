//! The Linux kernel layer of pidcap: loads `bpf/pidcap.bpf.c` (compiled by
//! build.rs), attaches its programs with BPF links to the cgroup2 root or to
//! the cgroup its targets live in ([`AttachPoint`], moved or taken off while
//! loaded: [`KernelBackend::set_attach`]), and
//! implements the engine's [`KernelBackend`] over its maps and ring buffer.
//! The only crate of the workspace that depends on aya (and needs clang).
//!
//! - [`abi`]: the Rust mirror of `bpf/pidcap_abi.h`, with compile-time size asserts;
//! - [`sockdiag`]: NETLINK_SOCK_DIAG, for sockets opened before capture started;
//! - `cgroup`: finding (or mounting) the cgroup2 root; the attach point
//!   ([`attach_for_targets`], `pidcap run`'s own cgroup [`RunCgroup`], `capture --isolate`'s [`Isolation`]);
//! - [`tls`]: the TLS libraries targets map, and attaching the uprobes and
//!   the raw `sys_enter` tracepoint program that take their plaintext;
//! - [`uprobe_multi`]: the TLS uprobes as uprobe_multi links (the uprobe
//!   programs loaded a second time for them), and the kernel's list of them.
//!
//! Every attachment is a `bpf_link` owned by a file descriptor of this
//! process: when pidcap exits, however it exits (SIGKILL included), the kernel
//! closes the descriptors and detaches every program. Nothing is pinned.

pub mod abi;
mod cgroup;
pub mod sockdiag;
pub mod tls;
pub mod uprobe_multi;

use crate::abi::{Config, Owner, PktHdr, PortKey, PortOwner, Target, TlsHdr};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, Program, ProgramError};
use aya::{Ebpf, EbpfLoader};
use pidcap_engine::backend::{
    KernelBackend, KernelConfig, KernelCounters, KernelTarget, RawPacket, RawTls, TlsCoverage,
};
use pidcap_engine::error::{EngineError, InvalidInput, Result};
use pidcap_engine::process::{Process, TargetId};
use pidcap_engine::procfs::{truncate_comm, Procfs, Status};
use pidcap_engine::rules::{self, Rule};
use pidcap_packet::{Direction, Verdict};
use std::collections::HashMap as StdHashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub use cgroup::{
    attach_for_targets, cgroup2_root, cgroup_of, common_ancestor, find_cgroup2, hierarchy, AttachPoint, RunCgroup,
    ScopeError,
};
// -- isolate (issue 13) --
pub use cgroup::{sweep_isolations, Isolation, OwnCgroup, ISO_PREFIX, ISO_RECORDS};

/// The kernel's own BTF, which the CO-RE relocations of the programs need.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The compiled eBPF object, aligned as aya requires.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pidcap.bpf.o"));

/// Names of the programs in the object, all of which are attached (the
/// last two, raw tracepoints, system-wide; the others at the attach point).
/// Integration tests look for these names in the kernel's program list.
pub const PROGRAM_NAMES: &[&str] = &[
    "pidcap_sock_create",
    "pidcap_post_bind4",
    "pidcap_post_bind6",
    "pidcap_sock_release",
    "pidcap_sockops",
    "pidcap_connect4",
    "pidcap_connect6",
    "pidcap_sendmsg4",
    "pidcap_sendmsg6",
    "pidcap_recvmsg4",
    "pidcap_recvmsg6",
    "pidcap_ingress",
    "pidcap_egress",
    "pidcap_fork",
    "pidcap_exit",
];

/// The TLS programs: loaded with the others, attached when a target maps a
/// supported TLS library (see [`tls`]).
pub const TLS_PROGRAM_NAMES: &[&str] = &[tls::ENTRY_PROGRAM, tls::RETURN_PROGRAM, tls::SYSCALL_PROGRAM];

/// How often the live targets' maps are read again for TLS libraries
/// (exec, dlopen, followed children, name matches).
pub const TLS_RESCAN: Duration = Duration::from_millis(250);

/// How the kernel layer is sized, and where it is attached.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Size of the kernel ring buffer in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Wake the consumer when this many bytes are pending (it also drains on
    /// a timer). None: [`LoadOptions::wakeup_threshold`] picks a share of
    /// the ring. A threshold at or above the ring's size would never be
    /// reached, leaving only the timer, so it must be smaller.
    pub wakeup_bytes: Option<u32>,
    // -- attach point (issue 13) --
    /// Where the cgroup programs attach: the root (the default: every
    /// process's packets run them), or a cgroup, so that only its processes'
    /// sockets do; None: nowhere, no program of ours runs until
    /// [`KernelBackend::set_attach`] (the daemon, idle until a capture starts).
    pub attach: Option<AttachPoint>,
    // -- TLS start-up (issue 13) --
    /// TLS will be turned on (`run` and `capture` with TLS): the uprobe
    /// programs' object is parsed and relocated against the kernel's BTF on a
    /// thread of its own while aya loads the other programs (a second core's
    /// work: ~40 ms off the start of `run` on two cores), instead of when TLS
    /// is first turned on. Only a share of the work: wasted when TLS stays off.
    pub prepare_tls: bool,
}

/// The wakeup threshold of a large ring: about 5,000 small records or 650
/// MTU-sized ones, a few milliseconds of a flood.
pub const MAX_WAKEUP_BYTES: u32 = 1 << 20;
/// The default threshold is this fraction of the ring (up to
/// [`MAX_WAKEUP_BYTES`]): the consumer is woken while three quarters of the
/// ring are still free, however small the ring (`pidcap run -B 1`).
pub const WAKEUP_SHARE: u32 = 4;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { ring_bytes: 16 << 20, wakeup_bytes: None, attach: Some(AttachPoint::Root), prepare_tls: false }
    }
}

impl LoadOptions {
    /// A kernel ring of `ring_bytes`, with the default wakeup threshold.
    pub fn with_ring(ring_bytes: u32) -> LoadOptions {
        LoadOptions { ring_bytes, ..LoadOptions::default() }
    }

    /// The threshold in force: `wakeup_bytes`, or a quarter of the ring
    /// capped at [`MAX_WAKEUP_BYTES`]. Always below the ring's size.
    pub fn wakeup_threshold(&self) -> u32 {
        self.wakeup_bytes.unwrap_or((self.ring_bytes / WAKEUP_SHARE).min(MAX_WAKEUP_BYTES))
    }

    fn check(&self) -> Result<()> {
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            return Err(EngineError::Invalid(InvalidInput::KernelRingBytes(self.ring_bytes)));
        }
        let wakeup = self.wakeup_threshold();
        if wakeup == 0 || wakeup >= self.ring_bytes {
            return Err(EngineError::Invalid(InvalidInput::WakeupBytes { wakeup, ring: self.ring_bytes }));
        }
        Ok(())
    }
}

/// An epoll instance watching the ring buffer `ring` edge-triggered.
///
/// A ring buffer's fd is readable as long as any record is pending, so a
/// level-triggered `poll` on it returns at once whenever the programs have
/// pushed anything: under a flood the consumer went round its loop (poll,
/// a few records, a hand-over to the file writer, the timers' syscalls)
/// thousands of times a second, a few dozen packets each. Edge-triggered,
/// `epoll_wait` returns only for a wakeup the programs asked for (their
/// record took the pending bytes across the threshold, `config.wakeup_bytes`)
/// or one the kernel gives a ring that was empty (a record submitted without
/// `BPF_RB_NO_WAKEUP`), else at its timeout; what is pending then is
/// drained whole. Registration reports a ring that already holds data.
fn ring_waiter(ring: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: epoll_create1 takes flags only; a non-negative result is a new fd we own.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: 0 };
    // SAFETY: both fds are open; `ev` is a valid event for the call.
    if unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, ring, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(epoll)
}

/// The eBPF implementation of [`KernelBackend`].
pub struct EbpfBackend {
    ring: RingBuf<MapData>,
    /// An epoll instance watching `ring` edge-triggered: [`EbpfBackend::poll`]
    /// sleeps until the programs wake it (the threshold crossed) or its
    /// timeout, not merely until one record is pending (see [`ring_waiter`]).
    ring_wait: std::os::fd::OwnedFd,
    targets: HashMap<MapData, u32, Target>,
    target_comms: HashMap<MapData, [u8; abi::COMM_LEN], Target>,
    /// Target cgroups by id ([`abi::CgroupTarget`]); their levels are in `config.cgroup_levels`.
    target_cgroups: HashMap<MapData, u64, abi::CgroupTarget>,
    owners: HashMap<MapData, u64, Owner>,
    port_owners: HashMap<MapData, PortKey, PortOwner>,
    bound_ports: HashMap<MapData, u64, PortKey>,
    /// The target set's generations ([`abi::GEN_USER`], [`abi::GEN_KERNEL`]):
    /// every socket caches whether its owner is a target, stamped with them.
    gens: Array<MapData, u32>,
    /// The last [`abi::GEN_USER`] written.
    user_gen: u32,
    config_map: Array<MapData, Config>,
    counters: PerCpuArray<MapData, u64>,
    rules: Array<MapData, abi::Rule>,
    /// When the active rule bank last changed (see [`EbpfBackend::set_rules`]).
    rules_switched: Option<Instant>,
    config: Config,
    procfs: Procfs,
    /// The TLS library files attached so far.
    tls: tls::TlsProbes,
    /// The targets added by pid without following children (pid -> key):
    /// their TLS probes are attached for them alone ([`tls::Scope::Process`]).
    /// Every other target (followed children, name matches, and targets that
    /// follow children) is covered system-wide ([`tls::Scope::All`]).
    tls_scoped: StdHashMap<u32, u64>,
    /// When the targets' maps were last read for TLS libraries.
    tls_scanned: Option<Instant>,
    /// Sockets of TLS records whose cookie the kernel did not have, found by
    /// their ports: (pid, local port, remote port) -> cookie.
    tls_cookies: StdHashMap<(u32, u16, u16), u64>,
    /// The TLS programs have been loaded (verified) into the kernel.
    tls_loaded: bool,
    /// The uprobe_multi programs, prepared at load ([`LoadOptions::prepare_tls`]).
    tls_prepared: Option<std::result::Result<uprobe_multi::Prepared, uprobe_multi::LoadError>>,
    // -- attach point (issue 13) --
    /// The links of the programs of [`PROGRAM_NAMES`] (dropping one detaches it).
    attached: Attachments,
    /// Holds the programs and their links; dropping it detaches everything.
    ebpf: Ebpf,
}

/// Capabilities needed, by number, as in linux/capability.h.
const NEEDED_CAPS: &[(u32, &str)] =
    &[(39, "CAP_BPF"), (38, "CAP_PERFMON"), (12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];

/// Which of the needed capabilities this process lacks (from /proc/self/status CapEff).
pub fn missing_capabilities() -> Vec<&'static str> {
    missing_in(Procfs::default().self_status().ok().as_ref())
}

/// The needed capabilities `status` lacks (all of them without a status).
fn missing_in(status: Option<&Status>) -> Vec<&'static str> {
    NEEDED_CAPS.iter().filter(|(cap, _)| !status.is_some_and(|s| s.has_capability(*cap))).map(|(_, n)| *n).collect()
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> EngineError {
    move |source| EngineError::kernel(format!("eBPF map `{map}`"), source)
}

fn program_err(program: &str, e: ProgramError) -> EngineError {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            EngineError::Verifier { program: program.into(), source: io_error, verifier_log: verifier_log.to_string() }
        }
        source => EngineError::kernel(format!("eBPF program `{program}`"), source),
    }
}

/// The TLS uprobe programs of [`OBJECT`], prepared for uprobe_multi links.
fn prepare_multi() -> std::result::Result<uprobe_multi::Prepared, uprobe_multi::LoadError> {
    uprobe_multi::Prepared::new(OBJECT, tls::ENTRY_PROGRAM, tls::RETURN_PROGRAM)
}

/// PIDCAP_TLS_PERF_LINKS=1: the TLS uprobes as perf-event links, never
/// uprobe_multi (comparisons, docs/PERFORMANCE.md; kernels that misbehave).
fn perf_links_asked() -> bool {
    std::env::var_os("PIDCAP_TLS_PERF_LINKS").is_some_and(|v| v == "1")
}

impl EbpfBackend {
    /// Load the programs, attach them at `opts.attach` (the cgroup2 root
    /// or a cgroup), and return the backend.
    /// Nothing is captured until a target is added and capture is configured on.
    pub fn load(opts: LoadOptions) -> Result<EbpfBackend> {
        opts.check()?;
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(EngineError::Permission { missing: missing.join(", ") });
        }
        // The loader parses the kernel's BTF itself (EbpfLoader::new: giving
        // it one parsed here parsed it twice, ~40 ms each), and frees it when
        // it goes, before the ring is mapped (peak RSS).
        if let Err(e) = std::fs::metadata(VMLINUX_BTF) {
            return Err(EngineError::Unsupported(format!("no kernel BTF at {VMLINUX_BTF} ({e})")));
        }
        // The uprobe programs' CPU work beside aya's (joined before the ring
        // is mapped, so that the two parses of the kernel's BTF are freed by then).
        let prepare = (opts.prepare_tls && !perf_links_asked()).then(|| std::thread::spawn(prepare_multi));
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("ring", opts.ring_bytes)
            .load(OBJECT)
            .map_err(|e| EngineError::kernel("loading the eBPF object", e))?;

        load_programs(&mut ebpf)?;
        let mut attached = Attachments::default();
        if let Some(at) = &opts.attach {
            attached.move_to(&mut ebpf, at)?;
        }
        // The TLS programs are verified when TLS is first turned on
        // (configure), not here: most captures never need them.
        let tls_prepared = prepare.and_then(|h| h.join().ok());
        // The parsed BTF is freed: the heap goes back to the system before
        // the ring is mapped.
        // SAFETY: malloc_trim only returns free heap memory to the system.
        unsafe { libc::malloc_trim(0) };

        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or_else(|| EngineError::Unsupported(format!("map {name} missing from the object")))
        };
        let ring = RingBuf::try_from(take("ring")?).map_err(map_err("ring"))?;
        let ring_wait = ring_waiter(ring.as_raw_fd()).map_err(|e| EngineError::io("epoll on the ring buffer", e))?;
        let targets = HashMap::try_from(take("targets")?).map_err(map_err("targets"))?;
        let target_comms = HashMap::try_from(take("target_comms")?).map_err(map_err("target_comms"))?;
        let target_cgroups = HashMap::try_from(take("target_cgroups")?).map_err(map_err("target_cgroups"))?;
        let owners = HashMap::try_from(take("owners")?).map_err(map_err("owners"))?;
        let port_owners = HashMap::try_from(take("port_owners")?).map_err(map_err("port_owners"))?;
        let bound_ports = HashMap::try_from(take("bound_ports")?).map_err(map_err("bound_ports"))?;
        let config_map = Array::try_from(take("config")?).map_err(map_err("config"))?;
        let gens = Array::try_from(take("gens")?).map_err(map_err("gens"))?;
        // This process resends through targets' sockets (resend's socket mode):
        // that must not make it their owner.
        let mut injectors: HashMap<MapData, u32, u32> =
            HashMap::try_from(take("injectors")?).map_err(map_err("injectors"))?;
        injectors.insert(std::process::id(), 1, 0).map_err(map_err("injectors"))?;
        let counters = PerCpuArray::try_from(take("counters")?).map_err(map_err("counters"))?;
        let rules = Array::try_from(take("rules")?).map_err(map_err("rules"))?;

        let mut backend = EbpfBackend {
            ring,
            ring_wait,
            targets,
            target_comms,
            target_cgroups,
            owners,
            port_owners,
            bound_ports,
            gens,
            user_gen: 0,
            config_map,
            counters,
            rules,
            rules_switched: None,
            config: Config {
                snaplen: 1500,
                wakeup_bytes: opts.wakeup_threshold(),
                capture: 0,
                ruleset: 0,
                tls: 0,
                cgroup_levels: 0,
            },
            procfs: Procfs::default(),
            tls: tls::TlsProbes::default(),
            tls_scoped: StdHashMap::new(),
            tls_scanned: None,
            tls_cookies: StdHashMap::new(),
            tls_loaded: false,
            tls_prepared,
            attached,
            ebpf,
        };
        backend.write_config()?;
        // Generation 1: a socket storage zeroed on creation never looks decided.
        backend.targets_changed()?;
        Ok(backend)
    }

    /// The target set changed (an entry of `targets`, `target_comms` or
    /// `target_cgroups` added or removed): a new generation, so that every
    /// socket decides again whether it is a target's at its next packet.
    /// Called after the maps are changed.
    fn targets_changed(&mut self) -> Result<()> {
        self.user_gen = self.user_gen.wrapping_add(1);
        self.gens.set(abi::GEN_USER, self.user_gen, 0).map_err(map_err("gens"))
    }

    /// Load the TLS programs (once): the first time TLS is turned on.
    fn load_tls_programs(&mut self) -> Result<()> {
        if self.tls_loaded {
            return Ok(());
        }
        // The uprobes as uprobe_multi links when the kernel takes them (two
        // links per library instead of one per function and program: their
        // teardown is what `run`'s exit waited for); aya's programs for
        // perf-event links otherwise, loaded when first needed.
        if perf_links_asked() {
            self.tls.set_perf_only();
        }
        let multi = if self.tls.perf_only() {
            Err(None)
        } else {
            use aya::maps::IterableMap;
            use std::os::fd::AsFd;
            let mut fds: Vec<(&str, std::os::fd::BorrowedFd<'_>)> = vec![
                ("ring", self.ring.as_fd()),
                ("targets", self.targets.map().fd().as_fd()),
                ("config", self.config_map.map().fd().as_fd()),
                ("counters", self.counters.map().fd().as_fd()),
            ];
            for name in ["tls_calls", "tls_socks"] {
                match self.ebpf.map(name) {
                    Some(aya::maps::Map::LruHashMap(m) | aya::maps::Map::HashMap(m)) => {
                        fds.push((name, m.fd().as_fd()))
                    }
                    _ => return Err(EngineError::Unsupported(format!("map {name} missing from the object"))),
                }
            }
            let prepared = match self.tls_prepared.take() {
                Some(p) => p,
                None => prepare_multi(),
            };
            prepared.and_then(|p| p.load(&fds)).map_err(Some)
        };
        let uprobes_done = match multi {
            Ok(programs) => {
                tracing::debug!("TLS uprobes: uprobe_multi links");
                self.tls.set_multi(programs);
                true
            }
            Err(Some(e)) => {
                tracing::debug!(error = %tls::ErrorChain(&e), "TLS uprobes: perf-event links (uprobe_multi programs not loaded)");
                false
            }
            Err(None) => {
                tracing::debug!("TLS uprobes: perf-event links (asked for)");
                false
            }
        };
        for name in TLS_PROGRAM_NAMES {
            if uprobes_done && (*name == tls::ENTRY_PROGRAM || *name == tls::RETURN_PROGRAM) {
                continue;
            }
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| EngineError::Unsupported(format!("program {name} missing from the object")))?;
            let loaded = match prog {
                Program::UProbe(p) => p.load(),
                Program::RawTracePoint(p) => p.load(),
                _ => Err(ProgramError::UnexpectedProgramType),
            };
            loaded.map_err(|e| program_err(name, e))?;
        }
        self.tls_loaded = true;
        Ok(())
    }

    fn write_config(&mut self) -> Result<()> {
        self.config_map.set(0, self.config, 0).map_err(map_err("config"))
    }

    /// Record the owner of every socket `process` already has open (found by
    /// joining /proc/PID/fd with the sock_diag dump), and of the ports it
    /// listens on, so its existing connections and accepted ones are captured.
    /// What is read by pid is the process's if it still runs afterwards (the
    /// caller checks).
    fn seed_sockets(&mut self, process: &Process) -> Result<usize> {
        let pid = process.pid();
        let inodes = match self.procfs.socket_inodes(pid) {
            Ok(i) => i,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EngineError::NoSuchProcess(pid)),
            Err(e) => return Err(EngineError::io(format!("reading /proc/{pid}/fd"), e)),
        };
        if inodes.is_empty() {
            return Ok(0);
        }
        let comm = self.procfs.comm(pid).unwrap_or_default();
        let owner = Owner { tgid: pid, tid: 0, key: process.key(), comm: comm_bytes(&comm) };
        let sockets = sockdiag::dump_in_netns_of(pid)
            .map_err(|e| EngineError::io(format!("sock_diag dump in the network namespace of pid {pid}"), e))?;
        let mut n = 0;
        for s in sockets.iter().filter(|s| inodes.contains(&s.inode)) {
            self.owners.insert(s.cookie, owner, 0).map_err(map_err("owners"))?;
            let bound = s.src_port != 0 && (s.state == sockdiag::TCP_LISTEN || s.protocol == libc::IPPROTO_UDP as u8);
            if bound {
                let key = PortKey { port: s.src_port, proto: s.protocol, _pad: 0 };
                self.port_owners
                    .insert(key, PortOwner { owner, cookie: s.cookie }, 0)
                    .map_err(map_err("port_owners"))?;
                self.bound_ports.insert(s.cookie, key, 0).map_err(map_err("bound_ports"))?;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The scope of the TLS probes of target (pid, key): that process alone
    /// when it was added by pid without following children, else everyone.
    fn tls_scope(&self, pid: u32, key: u64) -> tls::Scope {
        if self.tls_scoped.get(&pid) == Some(&key) {
            tls::Scope::Process { pid, key }
        } else {
            tls::Scope::All
        }
    }

    /// Attach the TLS probes to the supported libraries target (pid, key)
    /// maps (and, for a held child of `run` that still runs pidcap itself,
    /// to the standard candidates as seen from its root), in its scope.
    /// Returns what it maps, each with whether it is covered.
    fn scan_tls(&mut self, pid: u32, key: u64) -> Vec<(tls::MappedLibrary, bool)> {
        self.scan_tls_wanting(pid, key, &mut std::collections::HashSet::new())
    }

    /// [`EbpfBackend::scan_tls`], adding the (scope, dev, inode) of every
    /// file it attaches or keeps for the target to `wanted`.
    fn scan_tls_wanting(
        &mut self,
        pid: u32,
        key: u64,
        wanted: &mut std::collections::HashSet<(tls::Scope, u64, u64)>,
    ) -> Vec<(tls::MappedLibrary, bool)> {
        let scope = self.tls_scope(pid, key);
        let mut libs = tls::mapped_by(pid);
        let held = tls::runs_our_executable(pid);
        if held {
            libs.extend(tls::candidates_of(pid));
        }
        let mut out = Vec::new();
        for lib in libs {
            wanted.insert((scope, lib.dev, lib.inode));
            let covered = match self.tls.attach(&mut self.ebpf, pid, scope, &lib) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(pid, error = %tls::ErrorChain(&e), "TLS plaintext of this library is not captured (tried again later)");
                    false
                }
            };
            if !held {
                out.push((lib, covered));
            }
        }
        out
    }

    /// Read the live targets' maps again (at most every [`TLS_RESCAN`]):
    /// attach what they map now, detach the probes of processes that are
    /// no longer targets at once and what no target has mapped for
    /// [`tls::DETACH_AFTER`] (everything at once when TLS is off).
    fn rescan_tls(&mut self, force: bool) {
        if !force && self.tls_scanned.is_some_and(|t| t.elapsed() < TLS_RESCAN) {
            return;
        }
        self.tls_scanned = Some(Instant::now());
        let live: Vec<(u32, u64)> = match KernelBackend::targets(self) {
            Ok(t) => t.iter().filter(|t| !t.exited).map(|t| (t.id.pid, t.id.key)).collect(),
            Err(_) => return,
        };
        // Scoped pids that are no target any more (exited and removed).
        self.tls_scoped.retain(|pid, key| live.contains(&(*pid, *key)));
        let live_set: std::collections::HashSet<(u32, u64)> = live.iter().copied().collect();
        let on = self.config.tls != 0;
        let mut wanted = std::collections::HashSet::new();
        if on {
            for &(pid, key) in &live {
                self.scan_tls_wanting(pid, key, &mut wanted);
            }
        }
        if self.tls.retain(&wanted, &live_set, !on) && on {
            // A system-wide attachment went: the per-process targets that
            // map its file get their own now, not at the next rescan.
            for &(pid, key) in &live {
                if self.tls_scope(pid, key) != tls::Scope::All {
                    self.scan_tls(pid, key);
                }
            }
        }
    }

    /// Where the programs are attached now (None: nowhere); see [`KernelBackend::set_attach`].
    pub fn attached_at(&self) -> Option<&AttachPoint> {
        self.attached.at.as_ref()
    }

    /// How many TLS library files have probes attached now (tests, diagnostics).
    pub fn tls_files_attached(&self) -> usize {
        self.tls.attached_files()
    }

    /// The kernel's id of one of the loaded programs (tests, diagnostics:
    /// `bpftool prog show id N`).
    pub fn program_id(&self, name: &str) -> Option<u32> {
        if let Some(m) = self.tls.multi() {
            use std::os::fd::AsFd;
            let fd = match name {
                tls::ENTRY_PROGRAM => Some(m.entry.as_fd()),
                tls::RETURN_PROGRAM => Some(m.ret.as_fd()),
                _ => None,
            };
            if let Some(fd) = fd {
                return uprobe_multi::Programs::id_of(fd).ok();
            }
        }
        self.ebpf.program(name)?.info().ok().map(|i| i.id())
    }

    /// How many of those are system-wide ([`tls::Scope::All`]).
    pub fn tls_files_attached_system_wide(&self) -> usize {
        self.tls.attached_system_wide()
    }

    /// The kernel's run count of program `name` (tests, diagnostics): it
    /// moves only while BPF statistics are on (`kernel.bpf_stats_enabled`,
    /// or a `BPF_ENABLE_STATS` descriptor held).
    pub fn program_run_count(&self, name: &str) -> Result<u64> {
        let prog =
            self.ebpf.program(name).ok_or_else(|| EngineError::Unsupported(format!("program {name} missing")))?;
        let info = prog.info().map_err(|e| program_err(name, e))?;
        Ok(info.run_count())
    }

    /// Make the TLS uprobes perf-event links (one per function and
    /// program), not uprobe_multi links: for comparisons and tests. Only
    /// before TLS is first turned on.
    pub fn tls_use_perf_links(&mut self) {
        self.tls.set_perf_only();
    }

    /// How many attached TLS library files have (uprobe_multi, perf-event) links.
    pub fn tls_link_kinds(&self) -> (usize, usize) {
        self.tls.link_kinds()
    }

    /// The library files whose last attach failed (tried again at later
    /// scans): scope, path, tries, the error with its sources.
    pub fn tls_failures(&self) -> Vec<(tls::Scope, std::path::PathBuf, u32, String)> {
        self.tls.failures()
    }
}

/// The socket address of a TLS record's side (`addr` as ::ffff:a.b.c.d for IPv4).
fn sock_addr(family: u8, addr: [u8; 16], port: u16) -> SocketAddr {
    match i32::from(family) {
        libc::AF_INET => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15])), port),
        libc::AF_INET6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(addr)), port),
        _ => pidcap_packet::tls::unknown_addr(),
    }
}

/// The cookie of a TCP socket of `pid` by its ports (a record whose socket
/// had no cookie yet), from sock_diag in the process's network namespace.
fn cookie_by_ports(cache: &mut StdHashMap<(u32, u16, u16), u64>, pid: u32, family: u8, lport: u16, rport: u16) -> u64 {
    if let Some(c) = cache.get(&(pid, lport, rport)) {
        return *c;
    }
    let found = sockdiag::dump_in_netns_of(pid)
        .ok()
        .and_then(|all| {
            all.into_iter().find(|s| {
                s.protocol == libc::IPPROTO_TCP as u8
                    && s.family == family
                    && s.src_port == lport
                    && s.dst_port == rport
                    && s.cookie != 0
            })
        })
        .map(|s| s.cookie)
        .unwrap_or(0);
    if found != 0 {
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert((pid, lport, rport), found);
    }
    found
}

/// Load (verify) every program of [`PROGRAM_NAMES`], on two threads: the
/// kernel verifies privileged loads concurrently, and verification is most
/// of the start-up (ingress and egress, the two longest, on different
/// threads). Attaching stays sequential, in [`PROGRAM_NAMES`]' order.
fn load_programs(ebpf: &mut Ebpf) -> Result<()> {
    let mut progs: Vec<(&str, &mut Program)> = ebpf.programs_mut().filter(|(n, _)| PROGRAM_NAMES.contains(n)).collect();
    if progs.len() != PROGRAM_NAMES.len() {
        let missing = PROGRAM_NAMES.iter().find(|n| !progs.iter().any(|(p, _)| p == *n)).copied().unwrap_or("?");
        return Err(EngineError::Unsupported(format!("program {missing} missing from the object")));
    }
    // The object's order, which puts ingress and egress next to each other:
    // alternate between the two halves.
    progs.sort_by_key(|(n, _)| PROGRAM_NAMES.iter().position(|p| p == n));
    let (mut a, mut b): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for (i, p) in progs.into_iter().enumerate() {
        if i % 2 == 0 {
            a.push(p)
        } else {
            b.push(p)
        }
    }
    let load_all = |half: Vec<(&str, &mut Program)>| -> Result<()> {
        for (name, prog) in half {
            load_program(prog).map_err(|e| program_err(name, e))?;
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let other = s.spawn(|| load_all(b));
        let mine = load_all(a);
        let other = other.join().unwrap_or_else(|_| Err(EngineError::Unsupported("a program load panicked".into())));
        mine.and(other)
    })
}

fn load_program(prog: &mut Program) -> Result<(), ProgramError> {
    match prog {
        Program::CgroupSkb(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::SockOps(p) => p.load(),
        Program::RawTracePoint(p) => p.load(),
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

// -- attach point (issue 13) --

/// Where the programs of [`PROGRAM_NAMES`] are attached, and their links:
/// the cgroup programs at one [`AttachPoint`] (each program once per cgroup
/// of it: [`AttachPoint::Cgroups`] has several), the raw tracepoints (fork,
/// exit) system-wide while any point is set. Nothing attached: no program
/// of ours runs on this machine (the maps, the ring and the loaded programs
/// stay; their owners' sockets are found again by sock_diag when a target
/// is added).
#[derive(Default)]
struct Attachments {
    at: Option<AttachPoint>,
    /// Per cgroup program (in [`PROGRAM_NAMES`] order), its link at each cgroup of `at`.
    cgroup: Vec<Vec<FdLink>>,
    tracepoints: Vec<FdLink>,
}

impl Attachments {
    /// Attach the cgroup programs at `at` (the tracepoints too, if they are
    /// not), one program at a time: its link at the new point first, then
    /// its old link dropped (detached), so a socket both points cover never
    /// goes without it (and runs it twice for the few microseconds between
    /// the two calls). On an error the programs already moved go back.
    fn move_to(&mut self, ebpf: &mut Ebpf, at: &AttachPoint) -> Result<()> {
        if self.at.as_ref() == Some(at) {
            return Ok(());
        }
        let cgs = open_points(at)?;
        tracing::debug!(at = %at, from = ?self.at, "attaching the cgroup programs");
        let fresh = self.cgroup.is_empty();
        let mut tracepoints = Vec::new();
        let mut i = 0;
        for name in PROGRAM_NAMES {
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| EngineError::Unsupported(format!("program {name} missing from the object")))?;
            let r = match prog {
                Program::RawTracePoint(_) if !self.tracepoints.is_empty() => continue,
                Program::RawTracePoint(_) => attach(name, prog, &cgs[0]).map(|l| tracepoints.push(l)),
                _ => cgs.iter().map(|cg| attach(name, prog, cg)).collect::<Result<Vec<_>>>().map(|links| {
                    if fresh {
                        self.cgroup.push(links);
                    } else {
                        // The old links go now (detached), right after the new ones are in.
                        drop(std::mem::replace(&mut self.cgroup[i], links));
                    }
                    i += 1;
                }),
            };
            if let Err(e) = r {
                match (&self.at, fresh) {
                    (Some(old), false) => self.roll_back(ebpf, old.clone(), i),
                    _ => self.cgroup.clear(),
                }
                return Err(e);
            }
        }
        self.tracepoints.extend(tracepoints);
        self.at = Some(at.clone());
        Ok(())
    }

    /// Put the first `n` cgroup programs back at `old` (a move that failed
    /// after them); if that fails too, detach everything.
    fn roll_back(&mut self, ebpf: &mut Ebpf, old: AttachPoint, n: usize) {
        let back = open_points(&old).and_then(|cgs| {
            let mut i = 0;
            for name in PROGRAM_NAMES {
                let prog = ebpf
                    .program_mut(name)
                    .ok_or_else(|| EngineError::Unsupported(format!("program {name} missing from the object")))?;
                if matches!(prog, Program::RawTracePoint(_)) {
                    continue; // (system-wide: not moved)
                }
                if i == n {
                    break;
                }
                self.cgroup[i] = cgs.iter().map(|cg| attach(name, prog, cg)).collect::<Result<Vec<_>>>()?;
                i += 1;
            }
            Ok(())
        });
        if let Err(e) = back {
            tracing::warn!(error = %e, at = %old, "the programs could not be put back: every program detached");
            self.clear();
        }
    }

    /// Detach every program.
    fn clear(&mut self) {
        if self.at.is_some() {
            tracing::debug!(from = ?self.at, "detaching every program");
        }
        self.cgroup.clear();
        self.tracepoints.clear();
        self.at = None;
    }
}

/// The cgroup directories of `at`, opened for attaching (at least one).
fn open_points(at: &AttachPoint) -> Result<Vec<File>> {
    let open = |dir: std::path::PathBuf, what| {
        File::open(&dir).map_err(|e| EngineError::Cgroup { what, path: dir, source: e })
    };
    match at {
        AttachPoint::Root => Ok(vec![open(cgroup2_root()?, "opening the root")?]),
        AttachPoint::Cgroup(dir) => Ok(vec![open(dir.clone(), "opening the cgroup to attach to")?]),
        AttachPoint::Cgroups(dirs) if dirs.is_empty() => {
            Err(EngineError::Unsupported("an attach point of no cgroup".into()))
        }
        AttachPoint::Cgroups(dirs) => dirs.iter().map(|d| open(d.clone(), "opening a cgroup to attach to")).collect(),
    }
}

/// Attach one program loaded by [`load_programs`]: a cgroup program to `cg`,
/// a raw tracepoint system-wide. Its link is the caller's (dropping it detaches).
fn attach(name: &str, prog: &mut Program, cg: &File) -> Result<FdLink> {
    let mode = CgroupAttachMode::Single; // with bpf_link this still coexists with other programs
    let err = |e| program_err(name, e);
    let link = |r: std::result::Result<FdLink, aya::programs::links::LinkError>| {
        r.map_err(|e| EngineError::kernel(format!("eBPF program `{name}`: not attached with a bpf_link"), e))
    };
    match prog {
        Program::CgroupSkb(p) => {
            let kind =
                if name.ends_with("ingress") { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
            let id = p.attach(cg, kind, mode).map_err(err)?;
            link(p.take_link(id).map_err(err)?.try_into())
        }
        Program::CgroupSock(p) => {
            let id = p.attach(cg, mode).map_err(err)?;
            link(p.take_link(id).map_err(err)?.try_into())
        }
        Program::CgroupSockAddr(p) => {
            let id = p.attach(cg, mode).map_err(err)?;
            link(p.take_link(id).map_err(err)?.try_into())
        }
        Program::SockOps(p) => {
            let id = p.attach(cg, mode).map_err(err)?;
            link(p.take_link(id).map_err(err)?.try_into())
        }
        Program::RawTracePoint(p) => {
            let id = p
                .attach(if name == "pidcap_exit" { "sched_process_exit" } else { "sched_process_fork" })
                .map_err(err)?;
            Ok(p.take_link(id).map_err(err)?.into())
        }
        _ => Err(err(ProgramError::UnexpectedProgramType)),
    }
}

/// The inode number of the initial cgroup namespace (PROC_CGROUP_INIT_INO, a
/// constant of the kernel's ABI).
const CGROUP_NS_INIT_INO: u64 = 0xEFFF_FFFB;

/// Is pidcap in the initial cgroup namespace? Then a level counted below
/// the cgroup2 mount is the kernel's level; in a child namespace the mount
/// shows the namespace's root, somewhere deeper.
fn in_initial_cgroup_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/cgroup").is_ok_and(|m| m.ino() == CGROUP_NS_INIT_INO)
}

/// The `config.cgroup_levels` bits for a target cgroup `level` levels below
/// the mount: that level, or (in a child cgroup namespace, whose root's own
/// level is not known) that level and every deeper one: the programs then
/// look up each ancestor of a task from there down to its own cgroup.
fn cgroup_level_bits(level: u32, initial_namespace: bool) -> u32 {
    if initial_namespace {
        1 << level
    } else {
        u32::MAX << level
    }
}

fn comm_bytes(comm: &str) -> [u8; abi::COMM_LEN] {
    let mut out = [0u8; abi::COMM_LEN];
    let c = truncate_comm(comm).as_bytes();
    out[..c.len()].copy_from_slice(c);
    out
}

impl KernelBackend for EbpfBackend {
    // -- attach point (issue 13) --
    fn set_attach(&mut self, at: Option<&AttachPoint>) -> Result<()> {
        match at {
            Some(at) => self.attached.move_to(&mut self.ebpf, at),
            None => {
                self.attached.clear();
                Ok(())
            }
        }
    }

    fn configure(&mut self, config: &KernelConfig) -> Result<()> {
        // abi::MAX_SNAPLEN is the engine's (asserted in abi.rs).
        pidcap_engine::capture::check_snaplen(config.snaplen)?;
        self.config.snaplen = config.snaplen;
        self.config.capture = u32::from(config.capture);
        let tls_changed = u32::from(config.tls) != self.config.tls;
        if config.tls {
            self.load_tls_programs()?;
        }
        self.config.tls = u32::from(config.tls);
        self.write_config()?;
        if tls_changed {
            // On: attach for the targets there are; off: detach everything.
            self.rescan_tls(true);
        }
        Ok(())
    }

    fn add_target(&mut self, process: &Process, follow_children: bool) -> Result<()> {
        let pid = process.pid();
        let flags = if follow_children { abi::TARGET_FOLLOW_CHILDREN } else { 0 };
        // Target first, then seed: a socket created in between is recorded by
        // the sock_create hook, so none falls between the two. The entry holds
        // the process's key: the programs match it only to sockets whose
        // recorded owner has that key, so even if the pid were someone else's
        // by now, nothing of theirs would be captured.
        let entry = Target { flags, exited: 0, key: process.key() };
        self.targets.insert(pid, entry, 0).map_err(map_err("targets"))?;
        // Its sockets that cached "not a target's" decide again.
        self.targets_changed()?;
        // Its TLS probes for it alone, unless its children are followed
        // (their breakpoints would not be installed until the next rescan).
        if follow_children {
            self.tls_scoped.remove(&pid);
        } else {
            self.tls_scoped.insert(pid, process.key());
        }
        let seeded = self.seed_sockets(process);
        if let Err(EngineError::NoSuchProcess(_)) = seeded {
            let _ = self.remove_target(process.id());
        }
        let n = seeded?;
        if n > 0 {
            // A seeded socket whose packets found no owner meanwhile cached
            // that (pidcap_sk_owner.unowned): it looks again, and finds this one.
            self.targets_changed()?;
        }
        if self.config.tls != 0 {
            // Before the caller lets a held child go: its first TLS call is covered.
            self.scan_tls(pid, process.key());
        }
        tracing::debug!(pid, key = process.key(), sockets = n, "target added");
        Ok(())
    }

    fn remove_target(&mut self, target: TargetId) -> Result<()> {
        // Only that process's entry: the kernel may have replaced it with the
        // entry of a new process given the pid (a followed child, a name match).
        match self.targets.get(&target.pid, 0) {
            Ok(t) if t.key == target.key => {}
            Ok(_) | Err(aya::maps::MapError::KeyNotFound) => return Ok(()),
            Err(e) => return Err(map_err("targets")(e)),
        }
        if self.tls_scoped.get(&target.pid) == Some(&target.key) {
            self.tls_scoped.remove(&target.pid);
        }
        self.tls.forget_process(target.pid, target.key);
        match self.targets.remove(&target.pid) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err("targets")(e)),
        }
        // Its sockets that cached "a target's" decide again.
        self.targets_changed()
    }

    fn add_target_name(&mut self, comm: &str, follow_children: bool) -> Result<()> {
        if comm.is_empty() {
            return Err(EngineError::Invalid(InvalidInput::EmptyProcessName));
        }
        let flags = if follow_children { abi::TARGET_FOLLOW_CHILDREN } else { 0 };
        let entry = Target { flags, exited: 0, key: 0 };
        self.target_comms.insert(comm_bytes(comm), entry, 0).map_err(map_err("target_comms"))?;
        self.targets_changed()
    }

    /// The programs check, in every socket operation in process context,
    /// the current task's ancestors at the levels that hold target cgroups
    /// (`bpf_get_current_ancestor_cgroup_id`), so a process in the subtree
    /// is taken at its next socket operation, one outside it never.
    fn add_target_cgroup(&mut self, cgroup: &pidcap_engine::cgroup::CgroupTarget, follow_children: bool) -> Result<()> {
        if cgroup.level > abi::MAX_CGROUP_LEVEL {
            return Err(EngineError::Unsupported(format!(
                "a target cgroup {} levels deep (at most {})",
                cgroup.level,
                abi::MAX_CGROUP_LEVEL
            )));
        }
        let flags = if follow_children { abi::TARGET_FOLLOW_CHILDREN } else { 0 };
        let entry = abi::CgroupTarget { flags, level: cgroup.level };
        self.target_cgroups.insert(cgroup.id, entry, 0).map_err(map_err("target_cgroups"))?;
        self.config.cgroup_levels |= cgroup_level_bits(cgroup.level, in_initial_cgroup_namespace());
        self.write_config()?;
        self.targets_changed()?;
        tracing::debug!(cgroup = %cgroup.dir.display(), id = cgroup.id, level = cgroup.level, "target cgroup added");
        Ok(())
    }

    fn clear_target_names_and_cgroups(&mut self) -> Result<()> {
        // No new cgroup matches from here (one word), then the entries.
        self.config.cgroup_levels = 0;
        self.write_config()?;
        let cgroups: Vec<u64> = self.target_cgroups.keys().filter_map(|k| k.ok()).collect();
        for id in cgroups {
            match self.target_cgroups.remove(&id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("target_cgroups")(e)),
            }
        }
        let names: Vec<[u8; abi::COMM_LEN]> = self.target_comms.keys().filter_map(|k| k.ok()).collect();
        for comm in names {
            match self.target_comms.remove(&comm) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("target_comms")(e)),
            }
        }
        self.targets_changed()
    }

    fn targets(&self) -> Result<Vec<KernelTarget>> {
        let mut v = Vec::new();
        for item in self.targets.iter() {
            // (An entry removed during the walk is skipped by the iterator.)
            let (pid, t) = item.map_err(map_err("targets"))?;
            v.push(KernelTarget { id: TargetId { pid, key: t.key }, exited: t.exited != 0 });
        }
        v.sort_unstable_by_key(|t| t.id);
        Ok(v)
    }

    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(RawPacket<'_>)) -> Result<usize> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `ring_wait` is an epoll fd this backend owns, `ev` a valid buffer for one event.
        let rc = unsafe { libc::epoll_wait(self.ring_wait.as_raw_fd(), &mut ev, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(EngineError::io("waiting on the ring buffer", e));
            }
        }
        // Exec, dlopen, children and name matches: new TLS libraries to attach.
        self.rescan_tls(false);
        // Drain whatever is there: the programs wake us only when a lot is
        // pending, so the timeout is the usual way in (under a flood, every
        // `timeout`: one batch of thousands of records, not a loop round
        // per few records).
        let mut n = 0;
        let tls_cookies = &mut self.tls_cookies;
        while let Some(item) = self.ring.next() {
            if abi::record_kind(&item) == Some(abi::REC_TLS) {
                let Some(h) = TlsHdr::read(&item) else { continue };
                let start = std::mem::size_of::<TlsHdr>();
                let Some(data) = item.get(start..start + h.cap_len as usize) else { continue };
                let mut cookie = h.cookie;
                if cookie == 0 && h.family != 0 {
                    cookie = cookie_by_ports(tls_cookies, h.tgid, h.family, h.lport, h.rport);
                }
                sink(RawPacket {
                    ts_mono_ns: h.ts_ns,
                    socket_cookie: cookie,
                    pid: h.tgid,
                    comm: abi::comm_str(&h.comm),
                    tid: h.tid,
                    direction: if h.direction == abi::DIR_OUT { Direction::Outbound } else { Direction::Inbound },
                    verdict: Verdict::Pass,
                    rule: None,
                    orig_len: u32::try_from(h.true_len).unwrap_or(u32::MAX),
                    data,
                    tls: Some(RawTls {
                        tid: h.tid,
                        library: tls::library_of_abi(h.library),
                        local: sock_addr(h.family, h.laddr, h.lport),
                        remote: sock_addr(h.family, h.raddr, h.rport),
                        true_len: h.true_len,
                    }),
                });
                n += 1;
                continue;
            }
            let Some(h) = PktHdr::read(&item) else { continue };
            let start = std::mem::size_of::<PktHdr>();
            let end = start + h.cap_len as usize;
            let Some(data) = item.get(start..end) else { continue };
            sink(RawPacket {
                ts_mono_ns: h.ts_ns,
                socket_cookie: h.cookie,
                pid: h.tgid,
                comm: abi::comm_str(&h.comm),
                tid: h.tid,
                direction: if h.direction == abi::DIR_OUT { Direction::Outbound } else { Direction::Inbound },
                verdict: if h.verdict == abi::VERDICT_BLOCKED { Verdict::Blocked } else { Verdict::Pass },
                rule: (h.rule != abi::NO_RULE).then_some(h.rule),
                orig_len: h.orig_len,
                data,
                tls: None,
            });
            n += 1;
        }
        Ok(n)
    }

    fn counters(&self) -> Result<KernelCounters> {
        let get = |i: u32| -> Result<u64> {
            let v = self.counters.get(&i, 0).map_err(map_err("counters"))?;
            Ok(v.iter().copied().sum())
        };
        use abi::counter as c;
        Ok(KernelCounters {
            seen: get(c::SEEN)?,
            unattributed: get(c::UNATTRIBUTED)?,
            target: get(c::TARGET)?,
            captured: get(c::CAPTURED)?,
            ring_full: get(c::RING_FULL)?,
            load_failed: get(c::LOAD_FAILED)?,
            blocked: get(c::BLOCKED)?,
            owner_full: get(c::OWNER_FULL)?,
            forked: get(c::FORKED)?,
            connect_blocked: get(c::CONNECT_BLOCKED)?,
            tls_records: get(c::TLS_RECORDS)?,
            tls_dropped: get(c::TLS_DROPPED)?,
        })
    }

    /// Double buffering: the map holds two banks of [`abi::RULES_PER_BANK`]
    /// rules. The new list is written into the bank not in use, then one
    /// 32-bit store of `config.ruleset` (base and count) switches to it; a
    /// program reads that word once per evaluation, so it judges a packet
    /// by the old list or the new one, never by a half-written one. The
    /// bank written next may still be read by a program that loaded the
    /// previous word just before the switch: a change less than
    /// `BANK_REUSE_DELAY` (5 ms) after the previous one waits out the rest (a
    /// program runs for microseconds).
    fn set_rules(&mut self, list: &[Rule]) -> Result<()> {
        rules::check_list(list).map_err(EngineError::Invalid)?;
        if let Some(t) = self.rules_switched {
            if let Some(rest) = BANK_REUSE_DELAY.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        let active_base = self.config.ruleset >> abi::RULESET_BASE_SHIFT;
        let base = if active_base == 0 { abi::RULES_PER_BANK } else { 0 };
        for (i, r) in list.iter().enumerate() {
            self.rules.set(base + i as u32, abi::Rule::from(r), 0).map_err(map_err("rules"))?;
        }
        self.config.ruleset = base << abi::RULESET_BASE_SHIFT | list.len() as u32;
        self.write_config()?;
        self.rules_switched = Some(Instant::now());
        Ok(())
    }

    fn rule_hits(&self) -> Result<Vec<u64>> {
        let base = self.config.ruleset >> abi::RULESET_BASE_SHIFT;
        let n = self.config.ruleset & abi::RULESET_COUNT_MASK;
        (base..base + n).map(|i| Ok(self.rules.get(&i, 0).map_err(map_err("rules"))?.hits)).collect()
    }

    /// Per live target, the supported TLS libraries it maps whose probes are
    /// attached (attaching them now if a rescan has not yet). Statically
    /// linked TLS (Go, OpenSSL built in) is not seen: such a target has an
    /// empty list.
    fn tls_coverage(&mut self) -> Result<Vec<TlsCoverage>> {
        let live: Vec<(u32, u64)> =
            self.targets()?.iter().filter(|t| !t.exited).map(|t| (t.id.pid, t.id.key)).collect();
        let mut out = Vec::new();
        for (pid, key) in live {
            let libs = self.scan_tls(pid, key);
            let comm = self.procfs.comm(pid).unwrap_or_default();
            let libraries = libs.iter().filter(|(_, covered)| *covered).map(|(l, _)| tls::coverage_entry(l)).collect();
            out.push(TlsCoverage { pid, comm, libraries });
        }
        Ok(out)
    }
}

/// How long a rule bank stays untouched after it stopped being the active one.
const BANK_REUSE_DELAY: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_read_from_the_status() {
        let status = |eff: &str| {
            Status::parse(&format!("Name:\tx\nState:\tR\nTgid:\t1\nPid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\t{eff}\n")).unwrap()
        };
        assert!(missing_in(Some(&status("000001ffffffffff"))).is_empty());
        // CAP_BPF (39) and CAP_PERFMON (38) missing: an older kernel's root, or a container.
        assert_eq!(missing_in(Some(&status("0000003fffffffff"))), ["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_in(None).len(), NEEDED_CAPS.len());
    }

    #[test]
    fn cgroup_levels_are_exact_in_the_initial_namespace_and_open_below_in_a_child_one() {
        assert_eq!(cgroup_level_bits(0, true), 1);
        assert_eq!(cgroup_level_bits(3, true), 0b1000);
        assert_eq!(cgroup_level_bits(abi::MAX_CGROUP_LEVEL, true), 1 << 31);
        assert_eq!(cgroup_level_bits(3, false), !0b111);
        assert_eq!(cgroup_level_bits(abi::MAX_CGROUP_LEVEL, false), 1 << 31);
    }

    #[test]
    fn tls_record_addresses_by_family() {
        let mut v4 = [0u8; 16];
        v4[10..16].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(sock_addr(libc::AF_INET as u8, v4, 443), "127.0.0.1:443".parse().unwrap());
        let v6 = std::net::Ipv6Addr::LOCALHOST.octets();
        assert_eq!(sock_addr(libc::AF_INET6 as u8, v6, 8443), "[::1]:8443".parse().unwrap());
        // No socket found: the record keeps the unknown address.
        assert_eq!(sock_addr(0, v4, 443), pidcap_packet::tls::unknown_addr());
    }

    #[test]
    fn the_wakeup_threshold_follows_the_ring_size() {
        // A quarter of a small ring: woken with three quarters still free.
        assert_eq!(LoadOptions::with_ring(1 << 20).wakeup_threshold(), 256 << 10);
        assert_eq!(LoadOptions::with_ring(4096).wakeup_threshold(), 1024);
        // Capped for large rings (the 16 MiB default, `-B 64`).
        assert_eq!(LoadOptions::default().wakeup_threshold(), MAX_WAKEUP_BYTES);
        assert_eq!(LoadOptions::with_ring(64 << 20).wakeup_threshold(), MAX_WAKEUP_BYTES);
        for shift in 12..=30 {
            let o = LoadOptions::with_ring(1 << shift);
            assert!(o.wakeup_threshold() < o.ring_bytes, "{o:?}");
            o.check().unwrap();
        }
        // An explicit threshold is kept, and refused when the ring could never reach it.
        assert_eq!(
            LoadOptions { ring_bytes: 1 << 20, wakeup_bytes: Some(4096), ..LoadOptions::default() }.wakeup_threshold(),
            4096
        );
        for bad in [Some(1 << 20), Some(2 << 20), Some(0)] {
            let o = LoadOptions { ring_bytes: 1 << 20, wakeup_bytes: bad, ..LoadOptions::default() };
            assert!(matches!(o.check(), Err(EngineError::Invalid(InvalidInput::WakeupBytes { .. }))), "{o:?}");
            assert!(
                matches!(EbpfBackend::load(o.clone()), Err(EngineError::Invalid(_))),
                "{o:?} is refused before loading"
            );
        }
        assert!(matches!(
            LoadOptions::with_ring(3 << 20).check(),
            Err(EngineError::Invalid(InvalidInput::KernelRingBytes(_)))
        ));
    }
}
