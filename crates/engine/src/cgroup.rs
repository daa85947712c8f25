//! Capture by cgroup: which cgroup2 directory `--cgroup PATH`, `--unit NAME`
//! and `--container ID` name ([`Cgroupfs`], on an injectable root so that the
//! logic runs on a fake tree in tests), and the processes in it and below it
//! ([`Cgroupfs::procs`]). The kernel layer takes the rest
//! ([`crate::KernelBackend::add_target_cgroup`]): a process in the cgroup's
//! subtree becomes a target at its next socket operation.
//!
//! Also the one reader of mountinfo for the cgroup2 mount ([`find_cgroup2`]),
//! and the one owner of where a capture's programs go ([`AttachPoint`],
//! [`Cgroupfs::attach_point`]: the deepest cgroup holding every pid
//! target), shared by the CLI's `capture` and the daemon.
//! Container cgroup names are parsed by [`crate::container`] only.

use crate::container::{container_of, Container};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The deepest cgroup (levels below the root, which is 0) the kernel layer
/// can take as a target (its levels are bits of a 32-bit word).
pub const MAX_LEVEL: u32 = 31;

/// How deep a walk of the hierarchy goes (cgroup.max.depth is unlimited by default).
const MAX_WALK_DEPTH: usize = 64;

/// A cgroup to capture: its directory, and what the kernel knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTarget {
    /// The directory (under the cgroup2 mount).
    pub dir: PathBuf,
    /// Its path in the hierarchy, as `/proc/PID/cgroup` shows it (`/system.slice/x.service`; `/` for the root).
    pub path: String,
    /// The cgroup id: on cgroup2, the inode number of its directory.
    pub id: u64,
    /// Its depth below the root (the root is 0).
    pub level: u32,
    /// What the user asked for, when it was not the path (`unit nginx.service`, `container docker:3f4e2b1c0d9a`).
    pub named: Option<String>,
}

impl fmt::Display for CgroupTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.named {
            Some(n) => write!(f, "{n} (cgroup {})", self.dir.display()),
            None => write!(f, "cgroup {}", self.dir.display()),
        }
    }
}

/// Why a cgroup could not be found or used. Each says what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 hierarchy is mounted (capture by cgroup needs cgroup v2)")]
    NotMounted,
    #[error("cgroup {given}: no such cgroup ({} does not exist; the cgroup2 hierarchy is mounted at {})", dir.display(), root.display())]
    NotFound { given: String, dir: PathBuf, root: PathBuf },
    #[error("cgroup {given}: not in the cgroup2 hierarchy (mounted at {})", root.display())]
    Outside { given: String, root: PathBuf },
    #[error("cgroup {given}: {} is not a cgroup2 directory", dir.display())]
    NotCgroup2 { given: String, dir: PathBuf },
    #[error("cgroup {given}: {level} levels deep; pidcap takes cgroups at most {max} levels below the root", max = MAX_LEVEL)]
    TooDeep { given: String, level: u32 },
    #[error("no cgroup of systemd unit {unit}: {why}")]
    NoUnit { unit: String, why: String },
    #[error("unit {unit}: several cgroups have that name: {}", list(candidates))]
    AmbiguousUnit { unit: String, candidates: Vec<PathBuf> },
    #[error("no container {query}: no cgroup under {} names it (give its id, 4 hex digits or more, or its machine name)", root.display())]
    NoContainer { query: String, root: PathBuf },
    #[error("container {query} is ambiguous: {}; give more of its id", candidates.join(", "))]
    AmbiguousContainer { query: String, candidates: Vec<String> },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The cgroup2 hierarchy pidcap resolves names in.
#[derive(Debug, Clone)]
pub struct Cgroupfs {
    root: PathBuf,
    /// Check with statfs that directories are cgroup2 (off for a fake tree).
    check_fs: bool,
    /// Ask systemd (`systemctl show`) for a unit's cgroup.
    ask_systemd: bool,
    /// Where `/proc` is (each process's `cgroup` file).
    proc_root: PathBuf,
}

/// statfs(2)'s f_type of cgroup2 (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl Cgroupfs {
    /// The machine's cgroup2 hierarchy (from /proc/self/mountinfo); systemd
    /// is asked about units when it runs (`/run/systemd/system` exists).
    pub fn system() -> Result<Cgroupfs, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
            what: "reading",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
        let root = find_cgroup2(&mountinfo).ok_or(CgroupError::NotMounted)?;
        Ok(Cgroupfs {
            root,
            check_fs: true,
            ask_systemd: Path::new("/run/systemd/system").is_dir(),
            proc_root: "/proc".into(),
        })
    }

    /// A tree at `root` taken as the hierarchy (tests): no statfs check, no systemd.
    pub fn at(root: impl Into<PathBuf>) -> Cgroupfs {
        Cgroupfs { root: root.into(), check_fs: false, ask_systemd: false, proc_root: "/proc".into() }
    }

    /// Read processes' cgroups under `proc_root` instead of /proc (tests).
    pub fn with_proc(mut self, proc_root: impl Into<PathBuf>) -> Cgroupfs {
        self.proc_root = proc_root.into();
        self
    }

    /// Is process `pid` in `target` or below it now (its `/proc/PID/cgroup`)?
    /// Asked after a pid read from `cgroup.procs` has been opened (a pidfd):
    /// the pid may have been given to another process in between.
    pub fn holds(&self, target: &CgroupTarget, pid: u32) -> bool {
        let Ok(path) = crate::procfs::Procfs::at(&self.proc_root).cgroup_now(pid) else { return false };
        let path = path.trim_end().trim_end_matches(" (deleted)");
        within(path, &target.path)
    }

    /// Where the hierarchy is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `--cgroup PATH`: a directory under the mount (`/sys/fs/cgroup/x`), or
    /// a path in the hierarchy (`/system.slice/x.service`, `x/y`), which is
    /// taken relative to the mount. `..` is refused: the cgroup is in the
    /// hierarchy or it is an error. Nothing outside the mount is looked at
    /// (the daemon resolves its clients' paths as root).
    pub fn resolve(&self, given: &str) -> Result<CgroupTarget, CgroupError> {
        let p = Path::new(given);
        let rel = match p.strip_prefix(&self.root) {
            Ok(rel) => rel.to_path_buf(),
            Err(_) => p.strip_prefix("/").unwrap_or(p).to_path_buf(),
        };
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_os_string()),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(CgroupError::Outside { given: given.into(), root: self.root.clone() })
                }
            }
        }
        let dir = parts.iter().fold(self.root.clone(), |d, s| d.join(s));
        self.target(given, dir, parts.len())
    }

    fn target(&self, given: &str, dir: PathBuf, level: usize) -> Result<CgroupTarget, CgroupError> {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CgroupError::NotFound { given: given.into(), dir, root: self.root.clone() })
            }
            Err(source) => return Err(CgroupError::Io { what: "reading", path: dir, source }),
        };
        if !meta.is_dir() || !dir.join("cgroup.procs").is_file() || (self.check_fs && !is_cgroup2(&dir)) {
            return Err(CgroupError::NotCgroup2 { given: given.into(), dir });
        }
        let level = u32::try_from(level).unwrap_or(u32::MAX);
        if level > MAX_LEVEL {
            return Err(CgroupError::TooDeep { given: given.into(), level });
        }
        let path = dir.strip_prefix(&self.root).map(|r| format!("/{}", r.display())).unwrap_or_default();
        Ok(CgroupTarget { id: meta.ino(), level, path, dir, named: None })
    }

    /// `--unit NAME`: the cgroup of systemd unit NAME (`.service` is added
    /// to a name without a unit type). Asks systemd when it runs; else (or
    /// when systemd has no cgroup for it) looks for a directory of that
    /// name in the hierarchy.
    pub fn unit(&self, name: &str) -> Result<CgroupTarget, CgroupError> {
        let unit = unit_name(name);
        let named = |mut t: CgroupTarget| {
            t.named = Some(format!("unit {unit}"));
            t
        };
        if self.ask_systemd {
            if let Some(path) = systemd_cgroup(&unit) {
                return self.resolve(&path).map(named);
            }
        }
        let mut found = Vec::new();
        self.walk(&mut |dir, _| {
            if dir.file_name().is_some_and(|n| n == unit.as_str()) {
                found.push(dir.to_path_buf());
                return false;
            }
            true
        });
        match found.len() {
            0 => Err(CgroupError::NoUnit {
                unit: unit.clone(),
                why: if self.ask_systemd {
                    format!(
                        "systemd has none (is it loaded and active?), nor is there a directory {unit} under {}",
                        self.root.display()
                    )
                } else {
                    format!("systemd is not running and no directory under {} has that name", self.root.display())
                },
            }),
            1 => {
                let dir = found.remove(0);
                let level = dir.strip_prefix(&self.root).map(|r| r.components().count()).unwrap_or(0);
                self.target(&unit, dir, level).map(named)
            }
            _ => Err(CgroupError::AmbiguousUnit { unit, candidates: found }),
        }
    }

    /// `--container ID`: the cgroup of the container whose id starts with
    /// `query` (4 hex digits or more) or whose machine name is `query`, found
    /// by walking the hierarchy and naming each directory with
    /// [`container_of`]. The container's own cgroup is the outermost
    /// directory that names it. Two containers matching is an error that lists them.
    pub fn container(&self, query: &str) -> Result<CgroupTarget, CgroupError> {
        let mut found: Vec<(Container, PathBuf)> = Vec::new();
        self.walk(&mut |dir, rel| match container_of(rel) {
            Some(c) if c.matches(query) => {
                found.push((c, dir.to_path_buf()));
                false // its subtree is the container's
            }
            _ => true,
        });
        match found.len() {
            0 => Err(CgroupError::NoContainer { query: query.into(), root: self.root.clone() }),
            1 => {
                let (c, dir) = found.remove(0);
                let level = dir.strip_prefix(&self.root).map(|r| r.components().count()).unwrap_or(0);
                let mut t = self.target(query, dir, level)?;
                t.named = Some(format!("container {c}"));
                Ok(t)
            }
            _ => Err(CgroupError::AmbiguousContainer {
                query: query.into(),
                candidates: found.iter().map(|(c, d)| format!("{} ({c}, {})", c.id, d.display())).collect(),
            }),
        }
    }

    /// Visit every directory below the root (depth first, not following
    /// symbolic links, at most [`MAX_WALK_DEPTH`] deep) with its path in the
    /// hierarchy; `visit` returns whether to go into it. A directory that
    /// goes away meanwhile is skipped.
    fn walk(&self, visit: &mut dyn FnMut(&Path, &str) -> bool) {
        fn go(dir: &Path, rel: &str, depth: usize, visit: &mut dyn FnMut(&Path, &str) -> bool) {
            if depth > MAX_WALK_DEPTH {
                return;
            }
            let Ok(entries) = fs::read_dir(dir) else { return };
            let mut subdirs: Vec<_> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
                .collect();
            subdirs.sort();
            for (path, name) in subdirs {
                let rel = format!("{rel}/{name}");
                if visit(&path, &rel) {
                    go(&path, &rel, depth + 1, visit);
                }
            }
        }
        go(&self.root, "", 0, visit);
    }

    /// The processes in `target` and every cgroup below it now (their
    /// `cgroup.procs`), sorted. A cgroup removed meanwhile is skipped.
    pub fn procs(&self, target: &CgroupTarget) -> Result<Vec<u32>, CgroupError> {
        let mut pids = read_procs(&target.dir)?.unwrap_or_default();
        let mut err = None;
        let sub = Cgroupfs { root: target.dir.clone(), ..self.clone() };
        sub.walk(&mut |dir, _| {
            match read_procs(dir) {
                Ok(p) => pids.extend(p.unwrap_or_default()),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
            true
        });
        if let Some(e) = err {
            return Err(e);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }
}

// -- attach point (issue 13) --

/// Where a kernel layer's per-socket programs go
/// ([`crate::KernelBackend::set_attach`]). A cgroup program runs for the
/// sockets of its cgroup and of the cgroups below it (a socket is charged to
/// the cgroup of the process that created it, when it created it), so a
/// capture attached where its targets live costs the rest of the machine
/// nothing: a bystander's packets never run a program of pidcap's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AttachPoint {
    /// The cgroup2 root: every process's packets run the programs (captures
    /// by name or cgroup, targets in the root cgroup).
    #[default]
    Root,
    /// A cgroup2 directory: only the sockets of processes in it and below it.
    Cgroup(PathBuf),
    // -- isolate (issue 13) --
    /// Several cgroup2 directories (none below another), each program
    /// attached at every one: `capture --isolate` with targets from several
    /// cgroups.
    Cgroups(Vec<PathBuf>),
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachPoint::Root => f.write_str("the cgroup2 root"),
            AttachPoint::Cgroup(dir) => write!(f, "cgroup {}", dir.display()),
            AttachPoint::Cgroups(dirs) => {
                let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                write!(f, "cgroups {}", dirs.join(", "))
            }
        }
    }
}

/// The deepest cgroup path that holds every one of `paths` (whole
/// components: `/a/b` and `/a/bc` share `/a`); None for no path.
pub fn common_ancestor<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut common: Option<Vec<&str>> = None;
    for p in paths {
        let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        common = Some(match common {
            None => parts,
            Some(c) => c.iter().zip(&parts).take_while(|(a, b)| a == b).map(|(a, _)| *a).collect(),
        });
    }
    common.map(|c| format!("/{}", c.join("/")))
}

impl Cgroupfs {
    /// Process `pid`'s cgroup2 path as its `/proc/PID/cgroup` shows it now
    /// (`/` for the root; an isolated process's `pidcap-iso-*` cgroup, not
    /// the one the metadata names); None when it cannot be read or names a
    /// removed cgroup.
    pub fn cgroup_of(&self, pid: u32) -> Option<String> {
        let path = crate::procfs::Procfs::at(&self.proc_root).cgroup_now(pid).ok()?;
        let path = path.trim_end();
        (path.starts_with('/') && !path.ends_with(" (deleted)")).then(|| path.to_string())
    }

    /// The attach point for targets in cgroups `paths` (hierarchy paths):
    /// the deepest cgroup holding them all; the root when that is the root
    /// or it cannot be resolved here.
    ///
    /// Limit: a socket is charged to the cgroup of the process that created
    /// it, when it created it; a socket a target made before it moved into
    /// its current cgroup stays charged to the old one and is not seen from
    /// here (rare: systemd places a service's processes in its cgroup when
    /// they start). So is a socket another process created and passed to a target.
    pub fn attach_for<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> AttachPoint {
        match common_ancestor(paths) {
            Some(p) if p != "/" => match self.resolve(&p) {
                Ok(t) => AttachPoint::Cgroup(t.dir),
                Err(e) => {
                    tracing::debug!(cgroup = %p, error = %e, "the targets' cgroup cannot be attached to: attaching at the root");
                    AttachPoint::Root
                }
            },
            _ => AttachPoint::Root,
        }
    }

    /// Where a capture of `pids` goes: the deepest cgroup holding every one
    /// of them now (their children inherit it); the root when
    /// `by_name_or_cgroup` (a process of that name may start anywhere; a
    /// process joining a target cgroup is captured with the sockets it made
    /// outside), when the pids are in the root cgroup, or when a pid's
    /// cgroup cannot be read. None for no pid and no name or cgroup: nothing
    /// to capture, nothing to attach.
    pub fn attach_point(&self, pids: impl IntoIterator<Item = u32>, by_name_or_cgroup: bool) -> Option<AttachPoint> {
        if by_name_or_cgroup {
            return Some(AttachPoint::Root);
        }
        let mut paths = Vec::new();
        for pid in pids {
            match self.cgroup_of(pid) {
                Some(p) => paths.push(p),
                None => return Some(AttachPoint::Root),
            }
        }
        if paths.is_empty() {
            return None;
        }
        Some(self.attach_for(paths.iter().map(String::as_str)))
    }
}

/// Is cgroup path `path` `dir` or below it (whole components: `/a` holds `/a/b`, not `/ab`)?
fn within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// A cgroup directory's `cgroup.procs` (None: the directory is gone).
fn read_procs(dir: &Path) -> Result<Option<Vec<u32>>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io { what: "reading", path, source }),
    }
}

/// Is `dir` on a cgroup2 file system?
pub fn is_cgroup2(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: an all-zero statfs is a valid value of the plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid statfs to write into, both live for the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// systemd's unit name for `name`: as given when it has a unit type, else `NAME.service`.
pub fn unit_name(name: &str) -> String {
    const TYPES: &[&str] =
        &["service", "scope", "slice", "socket", "mount", "swap", "target", "timer", "path", "device", "automount"];
    match name.rsplit_once('.') {
        Some((_, t)) if TYPES.contains(&t) => name.to_string(),
        _ => format!("{name}.service"),
    }
}

/// The cgroup path systemd gives unit `unit` (`systemctl show -p ControlGroup --value`), if any.
fn systemd_cgroup(unit: &str) -> Option<String> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", "ControlGroup", "--value", "--", unit])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && path.starts_with('/')).then_some(path)
}

/// The mount point of the cgroup2 hierarchy in a mountinfo text
/// (`/proc/self/mountinfo`): a mount of the hierarchy's root, which reaches every process.
pub fn find_cgroup2(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let mount_point = f.next()?;
        (root == "/").then(|| PathBuf::from(unescape_mount_path(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests_support {
    use super::*;

    /// A fake hierarchy in a temporary directory: each dir gets a cgroup.procs.
    pub struct FakeTree(pub PathBuf);

    impl FakeTree {
        pub fn new(tag: &str, dirs: &[(&str, &[u32])]) -> FakeTree {
            let root = std::env::temp_dir().join(format!("pidcap-cgroupfs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            fs::write(root.join("cgroup.procs"), "1\n").unwrap();
            for (dir, pids) in dirs {
                let d = root.join(dir.trim_start_matches('/'));
                fs::create_dir_all(&d).unwrap();
                // Every directory of a cgroup2 tree is a cgroup.
                for a in d.ancestors().take_while(|a| a.starts_with(&root)) {
                    if !a.join("cgroup.procs").exists() {
                        fs::write(a.join("cgroup.procs"), "").unwrap();
                    }
                }
                let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
                fs::write(d.join("cgroup.procs"), text).unwrap();
            }
            FakeTree(root)
        }
        pub fn fs(&self) -> Cgroupfs {
            Cgroupfs::at(&self.0)
        }
    }

    impl Drop for FakeTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::FakeTree as Tree;
    use super::*;

    const ID: &str = "3f4e2b1c0d9a8f7e6d5c4b3a29181716f5e4d3c2b1a0998877665544332211ff";
    const ID2: &str = "3f4e2b1c0d9bffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn the_common_ancestor_is_taken_by_whole_components() {
        assert_eq!(common_ancestor(["/a/b/c", "/a/b/d"]).as_deref(), Some("/a/b"));
        assert_eq!(common_ancestor(["/a/b", "/a/bc"]).as_deref(), Some("/a"));
        assert_eq!(common_ancestor(["/a/b/c"]).as_deref(), Some("/a/b/c"));
        assert_eq!(common_ancestor(["/a/b/c", "/a/b"]).as_deref(), Some("/a/b"));
        assert_eq!(common_ancestor(["/a", "/x"]).as_deref(), Some("/"));
        assert_eq!(common_ancestor(["/", "/a"]).as_deref(), Some("/"));
        assert_eq!(common_ancestor(std::iter::empty::<&str>()), None);
    }

    #[test]
    fn the_attach_point_is_the_deepest_cgroup_holding_every_pid() {
        let t = Tree::new("attach", &[("/a/b", &[11]), ("/a/c", &[12]), ("/d", &[20])]);
        let procs = t.0.join("proc");
        let put = |pid: u32, text: &str| {
            fs::create_dir_all(procs.join(pid.to_string())).unwrap();
            fs::write(procs.join(pid.to_string()).join("cgroup"), text).unwrap();
        };
        put(11, "0::/a/b\n");
        put(12, "12:cpu:/x\n0::/a/c\n");
        put(20, "0::/d\n");
        put(1, "0::/\n");
        put(30, "0::/a/gone (deleted)\n");
        let iso = format!("a/b/{}{}", crate::procfs::ISO_PREFIX, std::process::id());
        fs::create_dir_all(t.0.join(&iso)).unwrap();
        fs::write(t.0.join(&iso).join("cgroup.procs"), "").unwrap();
        put(40, &format!("0::/{iso}\n"));
        let fs = t.fs().with_proc(&procs);
        let at = |dir: &str| Some(AttachPoint::Cgroup(t.0.join(dir)));
        assert_eq!(fs.attach_point([40], false), at(&iso), "an isolated pid: its iso cgroup, where it is now");
        assert_eq!(fs.attach_point([11], false), at("a/b"));
        assert_eq!(fs.attach_point([11, 12], false), at("a"));
        assert_eq!(fs.attach_point([11, 20], false), Some(AttachPoint::Root), "only the root holds both");
        assert_eq!(fs.attach_point([1], false), Some(AttachPoint::Root), "a pid in the root cgroup");
        assert_eq!(fs.attach_point([11], true), Some(AttachPoint::Root), "a name or cgroup target");
        assert_eq!(fs.attach_point([], true), Some(AttachPoint::Root));
        assert_eq!(fs.attach_point([11, 30], false), Some(AttachPoint::Root), "a removed cgroup");
        assert_eq!(fs.attach_point([11, 99], false), Some(AttachPoint::Root), "a cgroup that cannot be read");
        assert_eq!(fs.attach_point([], false), None, "nothing to capture");
    }

    #[test]
    fn paths_under_the_mount_or_in_the_hierarchy() {
        let t = Tree::new("paths", &[("/a", &[10]), ("/a/b", &[11, 12]), ("/a/b/c", &[13]), ("/d", &[20])]);
        let fs = t.fs();
        let want = |rel: &str| t.0.join(rel);
        for given in ["a/b", "/a/b", "/a/b/", "./a/b"] {
            let c = fs.resolve(given).unwrap();
            assert_eq!((c.dir.as_path(), c.path.as_str(), c.level), (want("a/b").as_path(), "/a/b", 2), "{given}");
            assert_eq!(c.id, fs::metadata(want("a/b")).unwrap().ino());
        }
        let abs = want("a/b/c");
        let c = fs.resolve(abs.to_str().unwrap()).unwrap();
        assert_eq!((c.path.as_str(), c.level), ("/a/b/c", 3));
        assert_eq!(c.to_string(), format!("cgroup {}", abs.display()));
        let root = fs.resolve("/").unwrap();
        assert_eq!((root.path.as_str(), root.level), ("/", 0));
        // Every process of the subtree, each once.
        assert_eq!(fs.procs(&fs.resolve("a").unwrap()).unwrap(), [10, 11, 12, 13]);
        assert_eq!(fs.procs(&fs.resolve("a/b/c").unwrap()).unwrap(), [13]);
        assert_eq!(fs.procs(&root).unwrap(), [1, 10, 11, 12, 13, 20]);
    }

    #[test]
    fn missing_outside_and_not_cgroups_are_refused() {
        let t = Tree::new("bad", &[("/a", &[])]);
        let fs = t.fs();
        assert!(matches!(fs.resolve("nope"), Err(CgroupError::NotFound { .. })));
        assert!(matches!(fs.resolve("a/../.."), Err(CgroupError::Outside { .. })));
        assert!(matches!(fs.resolve("a/.."), Err(CgroupError::Outside { .. })), "no .. at all");
        // A directory elsewhere on the machine is a path in the hierarchy, where it is not.
        let e = fs.resolve(std::env::temp_dir().to_str().unwrap()).unwrap_err();
        assert!(matches!(e, CgroupError::NotFound { .. }), "{e}");
        // A directory without cgroup.procs is no cgroup.
        fs::create_dir_all(t.0.join("a/plain")).unwrap();
        fs::remove_file(t.0.join("a/plain/cgroup.procs")).ok();
        assert!(matches!(fs.resolve("a/plain"), Err(CgroupError::NotCgroup2 { .. })));
        // Too deep for the kernel layer's level mask.
        let deep: String = (0..=MAX_LEVEL).map(|i| format!("/l{i}")).collect();
        fs::create_dir_all(t.0.join(deep.trim_start_matches('/'))).unwrap();
        fs::write(t.0.join(deep.trim_start_matches('/')).join("cgroup.procs"), "").unwrap();
        assert!(matches!(fs.resolve(&deep), Err(CgroupError::TooDeep { level: 32, .. })));
        let e = fs.resolve("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("does not exist") && e.contains(t.0.to_str().unwrap()), "{e}");
    }

    #[test]
    fn statfs_tells_cgroup2_apart() {
        assert!(!is_cgroup2(&std::env::temp_dir()));
        assert!(!is_cgroup2(Path::new("/proc")));
        if let Ok(fs) = Cgroupfs::system() {
            assert!(is_cgroup2(fs.root()), "{}", fs.root().display());
            // A tmpfs dir made to look like a cgroup is not one on the real hierarchy's terms.
            let t = Tree::new("statfs", &[]);
            let real = Cgroupfs { root: t.0.clone(), check_fs: true, ask_systemd: false, proc_root: "/proc".into() };
            assert!(matches!(real.resolve("/"), Err(CgroupError::NotCgroup2 { .. })));
        }
    }

    #[test]
    fn units_by_name_with_service_added() {
        let t = Tree::new(
            "units",
            &[
                ("/system.slice/nginx.service", &[30]),
                ("/system.slice/nginx.service/worker", &[31]),
                ("/user.slice/user-1000.slice/user@1000.service/app.slice/dup.service", &[]),
                ("/system.slice/dup.service", &[]),
                ("/pidcap.slice", &[]),
            ],
        );
        let fs = t.fs();
        for name in ["nginx", "nginx.service"] {
            let u = fs.unit(name).unwrap();
            assert_eq!((u.path.as_str(), u.level), ("/system.slice/nginx.service", 2), "{name}");
            assert_eq!(u.named.as_deref(), Some("unit nginx.service"));
            assert!(u.to_string().starts_with("unit nginx.service (cgroup "), "{u}");
        }
        assert_eq!(fs.unit("pidcap.slice").unwrap().path, "/pidcap.slice");
        let e = fs.unit("sshd").unwrap_err();
        assert!(matches!(&e, CgroupError::NoUnit { unit, .. } if unit == "sshd.service"), "{e}");
        assert!(e.to_string().contains("systemd is not running"), "{e}");
        match fs.unit("dup").unwrap_err() {
            CgroupError::AmbiguousUnit { candidates, .. } => assert_eq!(candidates.len(), 2),
            e => panic!("{e}"),
        }
        assert_eq!(unit_name("a"), "a.service");
        assert_eq!(unit_name("a.scope"), "a.scope");
        assert_eq!(unit_name("getty@tty1"), "getty@tty1.service");
        assert_eq!(unit_name("x.y"), "x.y.service");
    }

    #[test]
    fn containers_by_id_prefix_or_name_and_ambiguity_listed() {
        let t = Tree::new(
            "containers",
            &[
                (&format!("/system.slice/docker-{ID}.scope"), &[40]),
                (&format!("/system.slice/docker-{ID}.scope/inner"), &[41]),
                (&format!("/machine.slice/libpod-{ID2}.scope/container"), &[50]),
                ("/machine.slice/machine-web\\x2d1.scope", &[60]),
                ("/system.slice/sshd.service", &[70]),
            ],
        );
        let fs = t.fs();
        let c = fs.container(&ID[..12]).unwrap();
        assert_eq!(c.path, format!("/system.slice/docker-{ID}.scope"), "the container's own cgroup, not a child");
        assert_eq!(c.named.as_deref(), Some(&*format!("container docker:{}", &ID[..12])));
        assert_eq!(fs.procs(&c).unwrap(), [40, 41]);
        assert_eq!(fs.container(ID).unwrap().path, c.path);
        let p = fs.container(&ID2[..12]).unwrap();
        assert_eq!(p.path, format!("/machine.slice/libpod-{ID2}.scope"));
        assert_eq!(fs.container("web-1").unwrap().path, "/machine.slice/machine-web\\x2d1.scope");
        match fs.container(&ID[..11]) {
            Err(CgroupError::AmbiguousContainer { candidates, .. }) => {
                assert_eq!(candidates.len(), 2);
                assert!(candidates.iter().any(|c| c.starts_with(ID)) && candidates.iter().any(|c| c.starts_with(ID2)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(fs.container("3f4"), Err(CgroupError::NoContainer { .. })), "too short");
        assert!(matches!(fs.container("abcdef"), Err(CgroupError::NoContainer { .. })));
    }

    #[test]
    fn a_process_is_held_by_its_cgroup_and_the_ones_above_it_only() {
        let t = Tree::new("holds", &[("/a", &[]), ("/a/b", &[]), ("/ab", &[])]);
        let proc = t.0.join("proc");
        for (pid, text) in [(5, "0::/a/b\n"), (6, "0::/ab\n"), (7, "12:cpu:/a\n0::/\n"), (8, "0::/a (deleted)\n")] {
            fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            fs::write(proc.join(pid.to_string()).join("cgroup"), text).unwrap();
        }
        let fs = t.fs().with_proc(&proc);
        let (a, b, root) = (fs.resolve("/a").unwrap(), fs.resolve("/a/b").unwrap(), fs.resolve("/").unwrap());
        assert!(fs.holds(&a, 5) && fs.holds(&b, 5) && fs.holds(&root, 5));
        assert!(!fs.holds(&a, 6), "/ab is not below /a");
        assert!(!fs.holds(&a, 7) && fs.holds(&root, 7), "the cgroup2 line, not a v1 one");
        assert!(fs.holds(&a, 8) && !fs.holds(&b, 8));
        assert!(!fs.holds(&a, 9), "no such process");
    }

    #[test]
    fn finds_the_root_mount_of_cgroup2() {
        let mi = "25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  40 25 0:35 /sub /srv/sub rw - cgroup2 none rw\n\
                  41 25 0:35 / /sys/fs/cgroup/uni\\040fied rw shared:9 - cgroup2 none rw\n";
        assert_eq!(find_cgroup2(mi), Some(PathBuf::from("/sys/fs/cgroup/uni fied")));
        assert_eq!(find_cgroup2("25 30 0:22 / /x rw - tmpfs tmpfs rw\n"), None);
    }
}

#[cfg(test)]
mod capture_tests {
    use super::tests_support::*;
    use crate::fake::FakeKernel;
    use crate::{Capture, CaptureOptions};

    fn sleep() -> std::process::Child {
        std::process::Command::new("sleep").arg("30").spawn().unwrap()
    }

    /// `/proc/PID/cgroup` of each (pid, cgroup path), under the tree.
    fn fake_proc(t: &FakeTree, procs: &[(u32, &str)]) -> std::path::PathBuf {
        let proc = t.0.join("proc");
        for (pid, path) in procs {
            std::fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            std::fs::write(proc.join(pid.to_string()).join("cgroup"), format!("0::{path}\n")).unwrap();
        }
        proc
    }

    #[test]
    fn add_cgroup_gives_the_kernel_the_cgroup_then_adds_its_processes_and_later_ones() {
        let (mut a, mut b, mut c, mut moved) = (sleep(), sleep(), sleep(), sleep());
        let gone = u32::MAX - 11; // listed, but no such process: skipped
        let me = std::process::id(); // pidcap itself: never a target
        let t = FakeTree::new(
            "capture",
            &[("/app", &[a.id(), me]), ("/app/sub", &[b.id(), gone, moved.id()]), ("/other", &[])],
        );
        // `moved` is listed, but by the time its pid is opened it is elsewhere
        // (as a pid given to another process would be): not taken.
        let proc =
            fake_proc(&t, &[(a.id(), "/app"), (b.id(), "/app/sub"), (c.id(), "/app/sub"), (moved.id(), "/other")]);
        let fs = t.fs().with_proc(proc);
        let cg = fs.resolve("/app").unwrap();
        let fake = FakeKernel::default();
        let h = fake.handle();
        let opts = CaptureOptions { follow_children: true, ..CaptureOptions::default() };
        let mut cap = Capture::new(Box::new(fake), opts).unwrap();
        assert_eq!(cap.add_cgroup(&fs, &cg).unwrap(), 2);
        assert_eq!(h.state().cgroups, [(cg.clone(), true)]);
        let sorted = |mut v: Vec<u32>| {
            v.sort_unstable();
            v
        };
        let pids = |h: &crate::fake::FakeHandle| sorted(h.state().targets.keys().copied().collect());
        assert_eq!(pids(&h), sorted(vec![a.id(), b.id()]));
        // `c` moves in: the next liveness check takes it (with its sockets).
        std::fs::write(t.0.join("app/sub/cgroup.procs"), format!("{}\n{}\n", b.id(), c.id())).unwrap();
        assert_eq!(cap.live_targets().unwrap(), sorted(vec![a.id(), b.id(), c.id()]));
        for p in [&mut a, &mut b, &mut c, &mut moved] {
            let _ = p.kill();
            let _ = p.wait();
        }
        assert!(cap.live_targets().unwrap().is_empty(), "all have exited");
    }

    #[test]
    fn stop_forgets_names_and_cgroups_so_a_next_capture_does_not_inherit_them() {
        let t = FakeTree::new("stop", &[("/app", &[])]);
        let fs = t.fs();
        let fake = FakeKernel::default();
        let h = fake.handle();
        let mut cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        cap.add_cgroup(&fs, &fs.resolve("/app").unwrap()).unwrap();
        cap.add_name("pidcap-nobody").unwrap();
        {
            let s = h.state();
            assert_eq!((s.cgroups.len(), s.names.len()), (1, 1));
        }
        cap.stop().unwrap();
        let s = h.state();
        assert!(s.cgroups.is_empty() && s.names.is_empty());
    }

    #[test]
    fn a_backend_without_cgroups_says_so() {
        struct NoCgroups(FakeKernel);
        impl crate::KernelBackend for NoCgroups {
            fn configure(&mut self, c: &crate::KernelConfig) -> crate::Result<()> {
                self.0.configure(c)
            }
            fn add_target(&mut self, p: &crate::Process, f: bool) -> crate::Result<()> {
                self.0.add_target(p, f)
            }
            fn remove_target(&mut self, t: crate::TargetId) -> crate::Result<()> {
                self.0.remove_target(t)
            }
            fn add_target_name(&mut self, c: &str, f: bool) -> crate::Result<()> {
                self.0.add_target_name(c, f)
            }
            fn targets(&self) -> crate::Result<Vec<crate::KernelTarget>> {
                self.0.targets()
            }
            fn poll(
                &mut self,
                t: std::time::Duration,
                s: &mut dyn FnMut(crate::RawPacket<'_>),
            ) -> crate::Result<usize> {
                self.0.poll(t, s)
            }
            fn counters(&self) -> crate::Result<crate::KernelCounters> {
                self.0.counters()
            }
            fn set_rules(&mut self, r: &[crate::Rule]) -> crate::Result<()> {
                self.0.set_rules(r)
            }
            fn rule_hits(&self) -> crate::Result<Vec<u64>> {
                self.0.rule_hits()
            }
        }
        let t = FakeTree::new("unsupported", &[("/app", &[])]);
        let fs = t.fs();
        let mut cap = Capture::new(Box::new(NoCgroups(FakeKernel::default())), CaptureOptions::default()).unwrap();
        let e = cap.add_cgroup(&fs, &fs.resolve("app").unwrap()).unwrap_err();
        assert!(matches!(e, crate::EngineError::Unsupported(_)), "{e}");
    }
}
