//! TLS plaintext, the userspace half: which TLS library files the targets
//! map (from `/proc/PID/maps`, opened through `/proc/PID/root` so another
//! mount namespace works), attaching `pidcap_tls_ent`/`pidcap_tls_ret` to
//! their read and write functions, and the raw `sys_enter` tracepoint
//! program that ties a call to its socket ([`SYSCALL_PROGRAM`]).
//!
//! Probes are attached per process where the process is known in advance
//! ([`Scope::Process`]: the kernel then installs the breakpoints only in that
//! process's memory, so other processes mapping the same library pay
//! nothing), and system-wide ([`Scope::All`]) only for targets whose
//! processes are not known in advance (followed children, name targets):
//! there every process mapping the file takes the breakpoint trap and the
//! programs' target check. See [`TlsProbes`].
//!
//! A library file's probes are two uprobe_multi links (entry and return,
//! every function in each: [`crate::uprobe_multi`]), or, where the kernel
//! has none, a perf-event link per function and program held by the
//! [`aya::Ebpf`] of the backend; links that go together are closed in
//! parallel. When pidcap exits, however it exits, the kernel removes them.
//! A failed attach is tried again at later scans ([`RETRY_MAX`]) and listed
//! by [`TlsProbes::failures`].

use crate::abi;
use crate::uprobe_multi;
use aya::programs::raw_trace_point::RawTracePointLink;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope};
use aya::programs::{ProgramError, RawTracePoint, UProbe};
use aya::Ebpf;
use pidcap_engine::backend::TlsLibraryFile;
use pidcap_packet::TlsLibrary;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The uprobe programs (loaded with the others, attached per library file).
pub const ENTRY_PROGRAM: &str = "pidcap_tls_ent";
pub const RETURN_PROGRAM: &str = "pidcap_tls_ret";

/// The program that ties a TLS call to its socket: a raw tracepoint on
/// `sys_enter` (attached the first time a library is attached). One link,
/// released without the wait a perf-event tracepoint's release has (see
/// bpf/pidcap_tls.bpf.c), and no tracefs needed for the attach.
pub const SYSCALL_PROGRAM: &str = "pidcap_sys_enter";
/// The raw tracepoint it is attached to.
const SYSCALL_TRACEPOINT: &str = "sys_enter";

// The attach cookie of the uprobes (bpf/pidcap_tls.bpf.c TLS_COOKIE_*).
const OUT: u64 = 0x4;
const EX: u64 = 0x8;
const RET32: u64 = 0x10;

/// The functions probed in each library, with their cookie bits.
fn functions(library: TlsLibrary) -> &'static [(&'static str, u64)] {
    match library {
        TlsLibrary::Openssl => &[
            ("SSL_write", OUT | RET32),
            ("SSL_write_ex", OUT | EX | RET32),
            ("SSL_read", RET32),
            ("SSL_read_ex", EX | RET32),
        ],
        TlsLibrary::Gnutls => &[("gnutls_record_send", OUT), ("gnutls_record_recv", 0)],
        TlsLibrary::Nss => {
            &[("PR_Write", OUT | RET32), ("PR_Send", OUT | RET32), ("PR_Read", RET32), ("PR_Recv", RET32)]
        }
    }
}

fn lib_bits(library: TlsLibrary) -> u64 {
    u64::from(match library {
        TlsLibrary::Openssl => abi::TLS_LIB_OPENSSL,
        TlsLibrary::Gnutls => abi::TLS_LIB_GNUTLS,
        TlsLibrary::Nss => abi::TLS_LIB_NSS,
    })
}

/// The library of a ring record's `library` byte.
pub fn library_of_abi(v: u8) -> TlsLibrary {
    match v {
        abi::TLS_LIB_GNUTLS => TlsLibrary::Gnutls,
        abi::TLS_LIB_NSS => TlsLibrary::Nss,
        _ => TlsLibrary::Openssl,
    }
}

/// The supported library a file name is (`libssl.so.3`, `libssl.so.1.1`,
/// `libgnutls.so.30`, `libnspr4.so`), if any.
pub fn library_of_path(path: &Path) -> Option<TlsLibrary> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("libssl.so") {
        Some(TlsLibrary::Openssl)
    } else if name.starts_with("libgnutls.so") {
        Some(TlsLibrary::Gnutls)
    } else if name.starts_with("libnspr4.so") {
        Some(TlsLibrary::Nss)
    } else {
        None
    }
}

/// What the libraries looked for are, for messages ("no supported TLS library").
pub use pidcap_engine::backend::TLS_LIBRARIES_LOOKED_FOR as LIBRARIES_LOOKED_FOR;

/// The standard places of the supported libraries: a held child of `run`,
/// which has not exec'd its command yet, maps none of them, so these (as
/// seen from its root) are attached before it starts.
pub const STANDARD_CANDIDATES: &[&str] = &[
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/lib/x86_64-linux-gnu/libnspr4.so",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/usr/lib/x86_64-linux-gnu/libnspr4.so",
    "/usr/lib64/libssl.so.3",
    "/usr/lib64/libssl.so.1.1",
    "/usr/lib64/libgnutls.so.30",
    "/usr/lib64/libnspr4.so",
    "/usr/lib/libssl.so.3",
    "/usr/lib/libgnutls.so.30",
    "/usr/lib/libnspr4.so",
];

/// A supported library file a process maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedLibrary {
    pub library: TlsLibrary,
    /// As the process sees it (its mount namespace).
    pub path: PathBuf,
    /// Device (as `makedev(major, minor)`) and inode: one file however it is named.
    pub dev: u64,
    pub inode: u64,
}

/// The supported TLS libraries in the text of a `/proc/PID/maps`, once each.
pub fn parse_maps(text: &str) -> Vec<MappedLibrary> {
    let mut out: Vec<MappedLibrary> = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(_range), Some(_perms), Some(_offset), Some(dev), Some(inode), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start();
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let path = Path::new(path);
        let Some(library) = library_of_path(path) else { continue };
        let Some((major, minor)) = dev.split_once(':') else { continue };
        let (Ok(major), Ok(minor), Ok(inode)) =
            (u32::from_str_radix(major, 16), u32::from_str_radix(minor, 16), inode.parse::<u64>())
        else {
            continue;
        };
        let dev = libc::makedev(major, minor);
        if out.iter().any(|m| m.dev == dev && m.inode == inode) {
            continue;
        }
        out.push(MappedLibrary { library, path: path.to_path_buf(), dev, inode });
    }
    out
}

/// `path` (in the namespace of `pid`) as this process opens it.
fn through_root(pid: u32, path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(rel)
}

/// The supported libraries `pid` maps now (empty when it is gone).
pub fn mapped_by(pid: u32) -> Vec<MappedLibrary> {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|t| parse_maps(&t)).unwrap_or_default()
}

/// The standard candidates that exist as seen from the root of `pid`.
pub fn candidates_of(pid: u32) -> Vec<MappedLibrary> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<MappedLibrary> = Vec::new();
    for c in STANDARD_CANDIDATES {
        let path = Path::new(c);
        let Ok(meta) = std::fs::metadata(through_root(pid, path)) else { continue };
        let Some(library) = library_of_path(path) else { continue };
        if out.iter().any(|m| m.dev == meta.dev() && m.inode == meta.ino()) {
            continue;
        }
        out.push(MappedLibrary { library, path: path.to_path_buf(), dev: meta.dev(), inode: meta.ino() });
    }
    out
}

/// Is `pid` running this very program (a held child of `run` before its exec)?
pub fn runs_our_executable(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(format!("/proc/{pid}/exe")), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Why a library file could not be covered.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no probe could be attached to {path} ({library})")]
    Uprobe {
        path: PathBuf,
        library: TlsLibrary,
        #[source]
        source: ProgramError,
    },
    #[error("no uprobe_multi link could be attached to {path} ({library})")]
    Multi {
        path: PathBuf,
        library: TlsLibrary,
        #[source]
        source: uprobe_multi::LinkError,
    },
    #[error("eBPF program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// An error and its sources on one line (`a: b: c`).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// Which processes a library file's probes are installed in.
///
/// The kernel's uprobe filter for a perf event opened with a pid compares
/// the memory (`mm`) of the process that maps the file, at mmap and at hit
/// time, with that task's: breakpoints go only into that process, also after
/// it execs (a held child of `run` is attached before it execs its
/// command). A child it forks is NOT covered (its copy of the breakpoint is
/// removed at its first hit), which is why targets that follow children use
/// [`Scope::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only this process (pid and its [`pidcap_engine::Process`] key).
    Process { pid: u32, key: u64 },
    /// Every process that maps the file: for targets whose processes cannot
    /// be known in advance (followed children: a forked child would miss its
    /// calls until the next rescan; name targets: any process of that name).
    /// Other processes mapping the file take the trap and the programs'
    /// target check on every call.
    All,
}

/// The key of one attachment: scope, then the file's (dev, inode).
type FileKey = (Scope, u64, u64);

/// The library files attached now and the syscall program's link. The links are owned
/// here: dropping one detaches its probe (and the kernel drops them all
/// when the process exits).
///
/// A file attached for [`Scope::All`] covers every process, so no
/// per-process attachment is made beside it (and those there were are
/// dropped once it is attached). Two attachments taking the same call would
/// still give one record: the return program consumes the call the entry
/// programs remembered.
#[derive(Debug, Default)]
pub struct TlsProbes {
    /// (scope, dev, inode) -> the file's uprobe links, or None: tried and
    /// failed (tried again at a later scan, see [`Failed`]).
    files: HashMap<FileKey, AttachedFile>,
    syscalls: Option<RawTracePointLink>,
    /// Since when no file has links (the syscall link goes [`DETACH_AFTER`] later).
    idle_since: Option<Instant>,
    /// The uprobe programs loaded for uprobe_multi links; None: the kernel
    /// refused them, the perf-event links of aya's programs are used.
    multi: Option<uprobe_multi::Programs>,
    /// aya's uprobe programs (the perf-event fallback) are loaded.
    perf_loaded: bool,
    /// Perf-event links only, never uprobe_multi ([`TlsProbes::perf_only`]).
    perf_only: bool,
}

impl Drop for TlsProbes {
    fn drop(&mut self) {
        let all = self.files.drain().filter_map(|(_, f)| f.links).collect();
        drop(self.syscalls.take());
        close_links(all);
    }
}

/// The uprobe links of one library file.
#[derive(Debug)]
enum Links {
    /// Two uprobe_multi links (entry, return) with every function in them.
    Multi(Vec<OwnedFd>),
    /// The fallback: a perf-event link per function and program.
    Perf(Vec<UProbeLink>),
}

impl Links {
    fn kind(&self) -> &'static str {
        match self {
            Links::Multi(_) => "uprobe_multi",
            Links::Perf(_) => "perf_event",
        }
    }
}

/// Close the links of several files at once: every uprobe_multi link on a
/// thread of its own (their releases overlap; see [`crate::uprobe_multi`]),
/// the perf-event ones in order (the kernel serializes them anyway).
fn close_links(all: Vec<Links>) {
    let mut multi = Vec::new();
    let mut perf = Vec::new();
    for l in all {
        match l {
            Links::Multi(v) => multi.extend(v),
            Links::Perf(v) => perf.extend(v),
        }
    }
    if multi.is_empty() {
        drop(perf);
        return;
    }
    std::thread::scope(|s| {
        if !perf.is_empty() {
            s.spawn(move || drop(perf));
        }
        uprobe_multi::close_all(multi);
    });
}

#[derive(Debug)]
struct AttachedFile {
    links: Option<Links>,
    /// When a live target last mapped it (or it was attached).
    wanted: Instant,
    /// Why the last attach failed (with `links: None`), and when to try again.
    failed: Option<Failed>,
}

/// A failed attach of one file: kept for [`TlsProbes::failures`], and tried
/// again once `retry_at` has passed (the next scan after a first failure,
/// then at doubling intervals up to [`RETRY_MAX`]), so that a transient
/// refusal of the kernel does not leave a file uncovered while it is wanted.
#[derive(Debug)]
struct Failed {
    /// The error and its sources, as text (the error itself went to the
    /// caller of the first failed attach).
    message: String,
    path: PathBuf,
    tries: u32,
    retry_at: Instant,
}

/// The longest wait before a failed attach is tried again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The first wait (about one rescan).
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// How long a library file stays attached after the last target that
/// mapped it: a held child of `run` execs a shell that starts the real
/// client, and between the two no target maps anything.
pub const DETACH_AFTER: Duration = Duration::from_secs(5);

impl TlsProbes {
    /// Is this library file covered for `scope` (its probes attached for it,
    /// or for everyone)?
    pub fn covers(&self, scope: Scope, lib: &MappedLibrary) -> bool {
        let has = |s: Scope| self.files.get(&(s, lib.dev, lib.inode)).is_some_and(|f| f.links.is_some());
        has(scope) || has(Scope::All)
    }

    /// Attach the probes to `lib` (as `pid` sees it) for `scope` unless
    /// done already (or covered by a system-wide attachment); the syscall
    /// program with the first one. Returns true when it is covered.
    pub fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        scope: Scope,
        lib: &MappedLibrary,
    ) -> Result<bool, AttachError> {
        let key = (scope, lib.dev, lib.inode);
        let mut tries = 0;
        if let Some(done) = self.files.get_mut(&key) {
            done.wanted = Instant::now();
            if done.links.is_some() {
                return Ok(true);
            }
        }
        if scope != Scope::All && self.covers(Scope::All, lib) {
            return Ok(true);
        }
        if let Some(failed) = self.files.get(&key).and_then(|f| f.failed.as_ref()) {
            if Instant::now() < failed.retry_at {
                return Ok(false); // failed recently: tried again later
            }
            tries = failed.tries;
        }
        let result = self.attach_now(ebpf, pid, scope, lib);
        match result {
            Ok(true) => Ok(true),
            Ok(false) => {
                // Nothing to attach and no error (no function of the list in the file).
                self.files.insert(key, AttachedFile { links: None, wanted: Instant::now(), failed: None });
                Ok(false)
            }
            Err(error) => {
                let tries = tries + 1;
                let wait = RETRY_FIRST.saturating_mul(1 << (tries - 1).min(8)).min(RETRY_MAX);
                let message = ErrorChain(&error).to_string();
                tracing::debug!(path = %lib.path.display(), ?scope, tries, error = %message, "TLS attach failed; tried again in {wait:?}");
                let failed = Failed { message, path: lib.path.clone(), tries, retry_at: Instant::now() + wait };
                self.files.insert(key, AttachedFile { links: None, wanted: Instant::now(), failed: Some(failed) });
                if tries == 1 {
                    // The caller warns once; later failures are in the debug log and `failures`.
                    Err(error)
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// The attach of [`TlsProbes::attach`] once it is decided to try.
    fn attach_now(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        scope: Scope,
        lib: &MappedLibrary,
    ) -> Result<bool, AttachError> {
        let key = (scope, lib.dev, lib.inode);
        let began = Instant::now();
        if self.syscalls.is_none() {
            self.attach_syscalls(ebpf)?;
            tracing::debug!(took = ?began.elapsed(), "TLS syscall program attached");
        }
        let target = through_root(pid, &lib.path);
        let links = match self.attach_multi(pid, scope, lib, &target) {
            Some(Ok(links)) => links,
            Some(Err(e)) => return Err(e),
            None => match self.attach_perf(ebpf, scope, lib, &target)? {
                Some(links) => links,
                None => return Ok(false),
            },
        };
        tracing::debug!(path = %lib.path.display(), pid, ?scope, links = links.kind(), took = ?began.elapsed(), "TLS library attached");
        self.files.insert(key, AttachedFile { links: Some(links), wanted: Instant::now(), failed: None });
        // Not idle any more: the syscall link's grace starts again when the last file goes.
        self.idle_since = None;
        if scope == Scope::All {
            // Covered for everyone now: the per-process attachments go.
            let gone = self.take_files(|(s, dev, ino), _| *s != Scope::All && (*dev, *ino) == (lib.dev, lib.inode));
            close_links(gone);
        }
        Ok(true)
    }

    /// The uprobe_multi links of `lib` (None: not available, use the
    /// perf-event links; the kernel refusing them turns them off for good).
    fn attach_multi(
        &mut self,
        pid: u32,
        scope: Scope,
        lib: &MappedLibrary,
        target: &Path,
    ) -> Option<Result<Links, AttachError>> {
        let programs = self.multi.as_ref()?;
        let multi_err = |source| AttachError::Multi { path: lib.path.clone(), library: lib.library, source };
        let names: Vec<&str> = functions(lib.library).iter().map(|(n, _)| *n).collect();
        let began = Instant::now();
        let found = match uprobe_multi::symbol_offsets(target, &names) {
            Ok(f) => f,
            Err(e) => return Some(Err(multi_err(e))),
        };
        tracing::trace!(path = %target.display(), took = ?began.elapsed(), "symbol offsets");
        let mut offsets = Vec::new();
        let mut cookies = Vec::new();
        for ((symbol, bits), off) in functions(lib.library).iter().zip(found) {
            match off {
                Some(o) => {
                    offsets.push(o);
                    cookies.push(bits | lib_bits(lib.library));
                }
                // A function this build lacks (SSL_write_ex in OpenSSL 1.1.0): the others count.
                None => tracing::debug!(%symbol, path = %target.display(), "function not in the library"),
            }
        }
        if offsets.is_empty() {
            return Some(Err(multi_err(uprobe_multi::LinkError::NoSymbol { path: target.display().to_string() })));
        }
        let pid_filter = match scope {
            Scope::All => 0,
            Scope::Process { pid, .. } => pid,
        };
        let _ = pid;
        let both = programs
            .attach(false, target, &offsets, &cookies, pid_filter)
            .and_then(|entry| Ok(vec![entry, programs.attach(true, target, &offsets, &cookies, pid_filter)?]));
        match both {
            Ok(links) => Some(Ok(Links::Multi(links))),
            Err(e) if e.refused() => {
                tracing::debug!(path = %target.display(), error = %ErrorChain(&e), "uprobe_multi refused: perf-event uprobes");
                if e.unsupported() {
                    self.multi = None;
                }
                None
            }
            Err(e) => Some(Err(multi_err(e))),
        }
    }

    /// The perf-event links of `lib` (aya's uprobe programs, loaded the
    /// first time they are needed); None: nothing attached and no error.
    fn attach_perf(
        &mut self,
        ebpf: &mut Ebpf,
        scope: Scope,
        lib: &MappedLibrary,
        target: &Path,
    ) -> Result<Option<Links>, AttachError> {
        if !self.perf_loaded {
            for name in [ENTRY_PROGRAM, RETURN_PROGRAM] {
                let prog: &mut UProbe = ebpf
                    .program_mut(name)
                    .ok_or(AttachError::MissingProgram(name))?
                    .try_into()
                    .map_err(|source| AttachError::Program { name, source })?;
                if prog.fd().is_err() {
                    prog.load().map_err(|source| AttachError::Program { name, source })?;
                }
            }
            self.perf_loaded = true;
        }
        let uprobe_scope = match scope {
            Scope::All => UProbeScope::AllProcesses,
            Scope::Process { pid, .. } => match NonZeroU32::new(pid) {
                Some(p) => UProbeScope::OneProcess(p),
                None => UProbeScope::AllProcesses,
            },
        };
        let mut links = Vec::new();
        let mut attached = 0;
        let mut last_err = None;
        for (symbol, bits) in functions(lib.library) {
            let cookie = bits | lib_bits(lib.library);
            let mut pair = Vec::with_capacity(2);
            for name in [ENTRY_PROGRAM, RETURN_PROGRAM] {
                let prog: &mut UProbe = ebpf
                    .program_mut(name)
                    .ok_or(AttachError::MissingProgram(name))?
                    .try_into()
                    .map_err(|source| AttachError::Program { name, source })?;
                let point = UProbeAttachPoint { location: UProbeAttachLocation::Symbol(symbol), cookie: Some(cookie) };
                match prog.attach(point, target, uprobe_scope).and_then(|id| prog.take_link(id)) {
                    Ok(link) => pair.push(link),
                    Err(e) => {
                        // A function this build of the library lacks (SSL_write_ex in
                        // OpenSSL 1.1.0, say): the others still count.
                        tracing::debug!(%symbol, path = %target.display(), error = %e, "uprobe not attached");
                        last_err = Some(e);
                        break;
                    }
                }
            }
            // Entry and return together or not at all (dropping one detaches it).
            if pair.len() == 2 {
                links.extend(pair);
                attached += 1;
            }
        }
        if attached == 0 {
            return match last_err {
                Some(source) => Err(AttachError::Uprobe { path: lib.path.clone(), library: lib.library, source }),
                None => Ok(None),
            };
        }
        tracing::debug!(path = %target.display(), functions = attached, "perf-event uprobes attached");
        Ok(Some(Links::Perf(links)))
    }

    /// Detach what no live target needs any more: per-process attachments
    /// of processes that are not live targets (`live`: their pid and key) at
    /// once, the others when `wanted` (what the live targets map now, and
    /// the candidates of held children) has not had them for
    /// [`DETACH_AFTER`]; the syscall program [`DETACH_AFTER`] after the last file. `at_once`:
    /// detach everything now (TLS turned off). Returns true when a
    /// system-wide attachment went (its files may need per-process ones).
    pub fn retain(&mut self, wanted: &HashSet<FileKey>, live: &HashSet<(u32, u64)>, at_once: bool) -> bool {
        let before = self.files.len();
        let now = Instant::now();
        let mut all_gone = false;
        let gone = self.take_files(|k, f| {
            if let Scope::Process { pid, key } = k.0 {
                if !live.contains(&(pid, key)) {
                    return true;
                }
            }
            if wanted.contains(k) && !at_once {
                f.wanted = now;
                return false;
            }
            let keep = !at_once && now.duration_since(f.wanted) < DETACH_AFTER;
            if !keep && k.0 == Scope::All && f.links.is_some() {
                all_gone = true;
            }
            !keep
        });
        if self.files.len() != before {
            tracing::debug!(detached = before - self.files.len(), "TLS library files no target needs");
        }
        drop(self.syscalls_idle(now, at_once));
        close_links(gone);
        all_gone
    }

    /// Remove the files `take` says (it may update the others) and return
    /// their links, to be closed together ([`close_links`]).
    fn take_files(&mut self, mut take: impl FnMut(&FileKey, &mut AttachedFile) -> bool) -> Vec<Links> {
        let keys: Vec<FileKey> = self.files.iter_mut().filter_map(|(k, f)| take(k, f).then_some(*k)).collect();
        keys.iter().filter_map(|k| self.files.remove(k)).filter_map(|f| f.links).collect()
    }

    /// Detach the syscall program once no file has had links for
    /// [`DETACH_AFTER`] (at once with `at_once`). Not at the moment the last
    /// file goes: a target removed and added again (a held child's shell,
    /// then its client) would pay a detach and an attach for nothing; and
    /// when these were perf-event tracepoints, the same programs attached
    /// again soon after failed with EEXIST while anything still held a
    /// reference to the old link (`bpftool link show` reading it).
    /// Returns the link to close (None while it stays).
    #[must_use = "the link returned is to be closed"]
    fn syscalls_idle(&mut self, now: Instant, at_once: bool) -> Option<RawTracePointLink> {
        if self.files.values().any(|f| f.links.is_some()) {
            self.idle_since = None;
            return None;
        }
        let since = *self.idle_since.get_or_insert(now);
        if at_once || now.duration_since(since) >= DETACH_AFTER {
            self.idle_since = None;
            return self.syscalls.take();
        }
        None
    }

    /// Detach the per-process attachments of this process at once (it is no
    /// longer a target).
    pub fn forget_process(&mut self, pid: u32, key: u64) {
        let gone = self.take_files(|k, _| k.0 == Scope::Process { pid, key });
        // The syscall link stays for DETACH_AFTER (the next `retain` takes it).
        drop(self.syscalls_idle(Instant::now(), false));
        close_links(gone);
    }

    /// The files whose last attach failed, wanted now: (scope, path as the
    /// target sees it, tries so far, the error with its sources).
    pub fn failures(&self) -> Vec<(Scope, PathBuf, u32, String)> {
        self.files
            .iter()
            .filter_map(|(k, f)| f.failed.as_ref().map(|x| (k.0, x.path.clone(), x.tries, x.message.clone())))
            .collect()
    }

    /// Use perf-event links only (tests and comparisons; before the TLS
    /// programs are loaded).
    pub fn set_perf_only(&mut self) {
        self.perf_only = true;
        self.multi = None;
    }

    /// [`TlsProbes::set_perf_only`] was called.
    pub fn perf_only(&self) -> bool {
        self.perf_only
    }

    /// Use uprobe_multi links made with these programs (loaded by the
    /// caller; see [`crate::uprobe_multi::Prepared`]).
    pub fn set_multi(&mut self, programs: uprobe_multi::Programs) {
        self.multi = Some(programs);
    }

    /// The uprobe programs are loaded for uprobe_multi links (else aya's,
    /// for perf-event links, are used).
    pub fn multi(&self) -> Option<&uprobe_multi::Programs> {
        self.multi.as_ref()
    }

    /// How many attached files have each kind of links: (uprobe_multi, perf_event).
    pub fn link_kinds(&self) -> (usize, usize) {
        let multi = self.files.values().filter(|f| matches!(f.links, Some(Links::Multi(_)))).count();
        let perf = self.files.values().filter(|f| matches!(f.links, Some(Links::Perf(_)))).count();
        (multi, perf)
    }

    /// How many (scope, library file) attachments have probes attached.
    pub fn attached_files(&self) -> usize {
        self.files.values().filter(|f| f.links.is_some()).count()
    }

    /// How many of them are system-wide.
    pub fn attached_system_wide(&self) -> usize {
        self.files.iter().filter(|(k, f)| k.0 == Scope::All && f.links.is_some()).count()
    }

    fn attach_syscalls(&mut self, ebpf: &mut Ebpf) -> Result<(), AttachError> {
        let name = SYSCALL_PROGRAM;
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or(AttachError::MissingProgram(name))?
            .try_into()
            .map_err(|source| AttachError::Program { name, source })?;
        let link = prog
            .attach(SYSCALL_TRACEPOINT)
            .and_then(|id| prog.take_link(id))
            .map_err(|source| AttachError::Program { name, source })?;
        self.syscalls = Some(link);
        Ok(())
    }
}

/// A library as [`pidcap_engine::backend::TlsCoverage`] lists it.
pub fn coverage_entry(lib: &MappedLibrary) -> TlsLibraryFile {
    TlsLibraryFile { library: lib.library, path: lib.path.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_give_each_supported_library_file_once() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r-xp 00001000 fd:01 99 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000004000-7f0000005000 r-xp 00001000 fd:01 1234 /lib/x86_64-linux-gnu/libssl.so.3
7f0000005000-7f0000006000 r-xp 00001000 00:2a 77 /opt/app/lib/libgnutls.so.30
7f0000006000-7f0000007000 r-xp 00001000 00:2a 78 /opt/app/lib/libnspr4.so (deleted)
7f0000007000-7f0000008000 r-xp 00001000 00:2a 79 /opt/my dir/libnspr4.so
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0                          [stack]
";
        let libs = parse_maps(maps);
        let got: Vec<_> = libs.iter().map(|l| (l.library, l.path.to_str().unwrap(), l.inode)).collect();
        assert_eq!(
            got,
            [
                (TlsLibrary::Openssl, "/usr/lib/x86_64-linux-gnu/libssl.so.3", 1234),
                (TlsLibrary::Gnutls, "/opt/app/lib/libgnutls.so.30", 77),
                (TlsLibrary::Nss, "/opt/my dir/libnspr4.so", 79),
            ]
        );
        assert_eq!(libs[0].dev, libc::makedev(0xfd, 1));
    }

    #[test]
    fn library_names() {
        assert_eq!(library_of_path(Path::new("/x/libssl.so.1.1")), Some(TlsLibrary::Openssl));
        assert_eq!(library_of_path(Path::new("/x/libssl3.so")), None, "NSS's libssl3 is not OpenSSL");
        assert_eq!(library_of_path(Path::new("libgnutls.so.30")), Some(TlsLibrary::Gnutls));
        assert_eq!(library_of_path(Path::new("/x/libcrypto.so.3")), None);
        assert_eq!(through_root(7, Path::new("/usr/lib/a.so")), PathBuf::from("/proc/7/root/usr/lib/a.so"));
        for v in [abi::TLS_LIB_OPENSSL, abi::TLS_LIB_GNUTLS, abi::TLS_LIB_NSS] {
            assert_eq!(lib_bits(library_of_abi(v)), u64::from(v));
        }
    }
}
