//! The TLS uprobes as BPF `uprobe_multi` links: one link per library file
//! and program (entry, return) with every probed function's file offset and
//! cookie in it, instead of one perf-event link per function and program.
//!
//! Why: a perf-event uprobe's close goes through
//! `perf_trace_event_unreg -> tracepoint_synchronize_unregister` under the
//! kernel's global `event_mutex`, about 110 ms each and never overlapping,
//! so `run`'s 28 pre-attached probes cost ~3 s at exit. A multi link's
//! release unregisters its uprobes and waits once, under no global mutex,
//! so the few links there are close in parallel ([`close_all`]).
//!
//! aya 0.14 cannot make these links, and the kernel wants the programs
//! loaded with `expected_attach_type = BPF_TRACE_UPROBE_MULTI`, which aya's
//! `UProbe::load` does not set. So [`Prepared`] loads `pidcap_tls_ent`
//! and `pidcap_tls_ret` a second time from the same object through the
//! `bpf` syscall (aya-obj's relocations: the maps aya created, CO-RE against
//! the kernel's BTF), and [`Programs::attach`] makes the links.
//! [`symbol_offsets`] resolves the functions (`.dynsym`, then `.symtab`;
//! address to file offset through the containing `PT_LOAD`).

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type, BPF_F_UPROBE_MULTI_RETURN};
use object::{Object, ObjectSegment, ObjectSymbol};
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Why the programs could not be loaded for uprobe_multi links.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("parsing the eBPF object")]
    Parse(#[source] aya_obj::ParseError),
    #[error("parsing the kernel's BTF")]
    Btf(#[source] aya_obj::btf::BtfError),
    #[error("CO-RE relocation of the uprobe programs")]
    Core(#[source] aya_obj::btf::BtfRelocationError),
    #[error("relocating the uprobe programs")]
    Relocate(#[source] aya_obj::relocation::EbpfRelocationError),
    #[error("program {0} or map {0} missing from the object")]
    Missing(String),
    #[error("BPF_PROG_LOAD of {name} for uprobe_multi (verifier: {log})")]
    Load {
        name: &'static str,
        log: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{path}: no probed function found")]
    NoSymbol { path: String },
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an ELF file")]
    Elf {
        path: String,
        #[source]
        source: object::Error,
    },
    #[error("BPF_LINK_CREATE (uprobe_multi, {n} offsets) on {path}")]
    Create {
        path: String,
        n: usize,
        #[source]
        source: std::io::Error,
    },
}

impl LinkError {
    /// The kernel refused the link as such (EINVAL, EOPNOTSUPP, ENOSYS):
    /// the perf-event links are tried for the file instead.
    pub fn refused(&self) -> bool {
        matches!(self, LinkError::Create { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)))
    }

    /// The kernel has no uprobe_multi links at all (EOPNOTSUPP, ENOSYS):
    /// perf-event links from now on.
    pub fn unsupported(&self) -> bool {
        matches!(self, LinkError::Create { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)))
    }
}

/// The two uprobe programs loaded for uprobe_multi links.
#[derive(Debug)]
pub struct Programs {
    pub entry: OwnedFd,
    pub ret: OwnedFd,
}

/// The bpf(2) syscall with `attr`: its non-negative return value, or the error.
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, zero-initialised-then-filled bpf_attr that
    // lives for the call; every pointer in it points to memory the caller
    // keeps alive for the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *mut bpf_attr, std::mem::size_of::<bpf_attr>())
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// [`sys_bpf`] for a command that returns a new file descriptor.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: a non-negative return of BPF_PROG_LOAD / BPF_LINK_CREATE /
    // BPF_LINK_GET_FD_BY_ID is a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_OBJ_GET_INFO_BY_FD into `T` (`bpf_prog_info`, `bpf_link_info`).
///
/// # Safety
/// `T` must be one of the kernel's plain info structs (integers and
/// pointers, all-zero valid) matching the kind of object `fd` is.
unsafe fn obj_info<T>(fd: BorrowedFd<'_>) -> std::io::Result<T> {
    // SAFETY: the caller's contract: T is valid all-zero (null pointers:
    // the kernel fills in counts only).
    let mut info: T = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the BPF_OBJ_GET_INFO_BY_FD
    // member of a zeroed union.
    let i = unsafe { &mut attr.info };
    i.bpf_fd = fd.as_raw_fd() as u32;
    i.info_len = std::mem::size_of::<T>() as u32;
    i.info = &mut info as *mut T as u64;
    // `info` outlives the call; the command returns 0, no fd.
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a plain C union of integers; all-zero is valid
    // (and what the kernel wants in every field not set).
    unsafe { std::mem::zeroed() }
}

/// The uprobe programs of the object, parsed and relocated against the
/// kernel's BTF: the CPU work of loading them (most of it the parse of
/// the kernel's BTF, ~40 ms and ~18 MiB while it lasts), with no kernel
/// object made, so that it can run on a thread of its own while aya loads
/// the other programs ([`crate::LoadOptions::prepare_tls`]), and the BTF is
/// freed before the ring is mapped.
pub struct Prepared {
    obj: aya_obj::Object,
    text_sections: std::collections::HashSet<usize>,
    entry: &'static str,
    ret: &'static str,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("entry", &self.entry).field("ret", &self.ret).finish_non_exhaustive()
    }
}

impl Prepared {
    /// Parse `object`, relocate it against the kernel's BTF and keep only
    /// `entry` and `ret` (program names) and their functions.
    pub fn new(object: &[u8], entry: &'static str, ret: &'static str) -> Result<Prepared, LoadError> {
        let mut obj = aya_obj::Object::parse(object).map_err(LoadError::Parse)?;
        // The entry program reads the task's pidfs key with CO-RE (task_key):
        // relocate against the kernel's BTF (parsed here, once, only when the
        // object has CO-RE relocations; freed on return).
        if obj.has_btf_relocations() {
            let btf = aya_obj::btf::Btf::from_sys_fs().map_err(LoadError::Btf)?;
            obj.relocate_btf(&btf).map_err(LoadError::Core)?;
        }
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.programs.retain(|name, _| name == entry || name == ret);
        let keys: Vec<(usize, u64)> = obj.programs.values().map(|p| p.function_key()).collect();
        obj.functions.retain(|k, _| keys.contains(k));
        Ok(Prepared { obj, text_sections, entry, ret })
    }

    /// Relocate the programs' maps to `maps` (name, fd of the map aya
    /// created) and load them with the uprobe_multi attach type.
    pub fn load(self, maps: &[(&str, BorrowedFd<'_>)]) -> Result<Programs, LoadError> {
        let Prepared { mut obj, text_sections, entry, ret } = self;
        let mut with_fds = Vec::new();
        for (name, fd) in maps {
            let map = obj.maps.get(*name).ok_or_else(|| LoadError::Missing((*name).to_string()))?;
            with_fds.push((*name, fd.as_raw_fd(), map));
        }
        // Borrow juggling: relocate_maps takes &mut self and the maps by reference.
        let maps_owned: Vec<(String, i32, aya_obj::Map)> =
            with_fds.into_iter().map(|(n, fd, m)| (n.to_string(), fd, m.clone())).collect();
        obj.relocate_maps(maps_owned.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)), &text_sections)
            .map_err(LoadError::Relocate)?;
        obj.relocate_calls(&text_sections).map_err(LoadError::Relocate)?;
        let license = obj.license.clone();
        let load = |name: &'static str| -> Result<OwnedFd, LoadError> {
            let prog = obj.programs.get(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
            let function =
                obj.functions.get(&prog.function_key()).ok_or_else(|| LoadError::Missing(name.to_string()))?;
            load_program(name, &function.instructions, &license)
        };
        Ok(Programs { entry: load(entry)?, ret: load(ret)? })
    }
}

impl Programs {
    /// The id the kernel gave a loaded program (BPF_OBJ_GET_INFO_BY_FD).
    pub fn id_of(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
        program_id(fd)
    }

    /// One link of `prog` (entry: [`Programs::entry`], return: with
    /// `ret`) on the file at `path` at `offsets`, each with its cookie;
    /// `pid` 0: every process, else that process alone.
    pub fn attach(
        &self,
        ret: bool,
        path: &Path,
        offsets: &[u64],
        cookies: &[u64],
        pid: u32,
    ) -> Result<OwnedFd, LinkError> {
        let shown = || path.display().to_string();
        let cpath =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LinkError::NoSymbol { path: shown() })?;
        let prog = if ret { self.ret.as_fd() } else { self.entry.as_fd() };
        link_create(prog, &cpath, offsets, cookies, pid, ret).map_err(|source| LinkError::Create {
            path: shown(),
            n: offsets.len(),
            source,
        })
    }
}

fn load_program(
    name: &'static str,
    insns: &[aya_obj::generated::bpf_insn],
    license: &CStr,
) -> Result<OwnedFd, LoadError> {
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = zeroed_attr();
        // SAFETY: writing plain integer fields of the BPF_PROG_LOAD member
        // of a zeroed union.
        let a = unsafe { &mut attr.__bindgen_anon_3 };
        a.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
        a.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        a.insn_cnt = insns.len() as u32;
        a.insns = insns.as_ptr() as u64;
        a.license = license.as_ptr() as u64;
        for (dst, src) in a.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if let Some(buf) = log {
            a.log_level = 1;
            a.log_size = buf.len() as u32;
            a.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            // Again with the verifier's log, for the error.
            let mut buf = vec![0u8; 1 << 20];
            let result = attempt(Some(&mut buf));
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let log = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            let tail = log.len().saturating_sub(2000);
            result.map_err(|source| LoadError::Load { name, log: log[tail..].to_string(), source })
        }
    }
}

fn program_id(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
    // SAFETY: fd is a program's: bpf_prog_info is its info struct.
    Ok(unsafe { obj_info::<aya_obj::generated::bpf_prog_info>(fd) }?.id)
}

fn link_create(
    prog: BorrowedFd<'_>,
    path: &CStr,
    offsets: &[u64],
    cookies: &[u64],
    pid: u32,
    ret: bool,
) -> std::io::Result<OwnedFd> {
    assert_eq!(offsets.len(), cookies.len());
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the BPF_LINK_CREATE member of
    // a zeroed union; the pointers (path, offsets, cookies) outlive the call.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    l.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    // Field by field: a whole struct written into the union would copy its
    // tail padding, uninitialised, into bytes the kernel wants zero (EINVAL).
    // SAFETY: the uprobe_multi member of the zeroed union, plain integers.
    let u = unsafe { &mut l.__bindgen_anon_3.uprobe_multi };
    u.path = path.as_ptr() as u64;
    u.offsets = offsets.as_ptr() as u64;
    u.cookies = cookies.as_ptr() as u64;
    u.cnt = offsets.len() as u32;
    u.flags = if ret { BPF_F_UPROBE_MULTI_RETURN } else { 0 };
    u.pid = pid;
    bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}

/// The file offsets of `names` in the ELF file at `path` (None: not in the
/// file): the symbol's address in `.dynsym` (else `.symtab`) mapped through
/// the `PT_LOAD` segment that contains it.
pub fn symbol_offsets(path: &Path, names: &[&str]) -> Result<Vec<Option<u64>>, LinkError> {
    let shown = || path.display().to_string();
    let data = std::fs::read(path).map_err(|source| LinkError::Read { path: shown(), source })?;
    let file = object::File::parse(&*data).map_err(|source| LinkError::Elf { path: shown(), source })?;
    let find = |name: &str| {
        let by_name = |s: &object::Symbol<'_, '_>| s.is_definition() && s.name() == Ok(name) && s.address() != 0;
        let sym = file.dynamic_symbols().find(by_name).or_else(|| file.symbols().find(by_name))?;
        let addr = sym.address();
        file.segments().find_map(|seg| {
            let (start, size) = (seg.address(), seg.size());
            let (file_off, file_size) = seg.file_range();
            (addr >= start && addr < start + size && addr - start < file_size).then(|| addr - start + file_off)
        })
    };
    Ok(names.iter().map(|n| find(n)).collect())
}

/// Close `links` (their release unregisters the uprobes and waits for the
/// kernel once per link), in parallel: a release takes no global mutex, so
/// the waits overlap.
pub fn close_all(links: Vec<OwnedFd>) {
    if links.len() <= 1 {
        drop(links);
        return;
    }
    std::thread::scope(|s| {
        for link in links {
            s.spawn(move || drop(link));
        }
    });
}

/// One uprobe_multi link the kernel has (any process's; diagnostics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiLinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// How many offsets (functions) it probes.
    pub count: u32,
    /// A return probe (`BPF_F_UPROBE_MULTI_RETURN`).
    pub ret: bool,
    /// The process it is for; 0: every process.
    pub pid: u32,
}

/// Every BPF link on the machine now, with its info
/// (BPF_LINK_GET_NEXT_ID, then each link's info; a link gone in between is
/// skipped). Each link is held only while its info is read.
fn each_link() -> std::io::Result<Vec<(u32, aya_obj::generated::bpf_link_info)>> {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
        match sys_bpf(bpf_cmd::BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        // SAFETY: the kernel wrote next_id, a plain integer.
        id = unsafe { attr.__bindgen_anon_6.next_id };
        let Ok(fd) = link_by_id(id) else { continue };
        if let Ok(info) = link_info(fd.as_fd()) {
            out.push((id, info));
        }
    }
}

/// The uprobe_multi links on the machine now.
pub fn uprobe_multi_links() -> std::io::Result<Vec<MultiLinkInfo>> {
    const BPF_LINK_TYPE_UPROBE_MULTI: u32 = 12;
    Ok(each_link()?
        .into_iter()
        .filter(|(_, info)| info.type_ == BPF_LINK_TYPE_UPROBE_MULTI)
        .map(|(id, info)| {
            // SAFETY: the kernel filled the uprobe_multi member for a link of that type.
            let u = unsafe { info.__bindgen_anon_1.uprobe_multi };
            MultiLinkInfo {
                id,
                prog_id: info.prog_id,
                count: u.count,
                ret: u.flags & BPF_F_UPROBE_MULTI_RETURN != 0,
                pid: u.pid,
            }
        })
        .collect())
}

/// A descriptor of the kernel's link `id` (BPF_LINK_GET_FD_BY_ID): a
/// reference that keeps it alive, as `bpftool link show` holds one while it
/// reads it (tests).
pub fn link_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    bpf(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr)
}

/// (link id, program id) of every BPF link on the machine now, of any
/// kind (tests and diagnostics: cheaper than `bpftool link show`).
pub fn all_links() -> std::io::Result<Vec<(u32, u32)>> {
    Ok(each_link()?.into_iter().map(|(id, info)| (id, info.prog_id)).collect())
}

fn link_info(fd: BorrowedFd<'_>) -> std::io::Result<aya_obj::generated::bpf_link_info> {
    // SAFETY: fd is a link's: bpf_link_info is its info struct.
    unsafe { obj_info(fd) }
}
