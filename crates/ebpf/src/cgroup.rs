//! Finding (or mounting) the cgroup2 hierarchy, and where in it the
//! programs attach ([`AttachPoint`]): the root, the deepest cgroup holding a
//! capture's targets ([`attach_for_targets`], the engine's computation in
//! this hierarchy), or `pidcap run`'s own cgroup for its command
//! ([`RunCgroup`]: made, swept after a killed run, dissolved).

pub use pidcap_engine::cgroup::find_cgroup2;
use pidcap_engine::cgroup::{CgroupError, Cgroupfs};
use pidcap_engine::error::{EngineError, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Where pidcap mounts cgroup2 itself when the system has none mounted.
pub const OWN_MOUNT: &str = "/run/pidcap/cgroup2";

/// The cgroup2 root, mounting one at [`OWN_MOUNT`] if none is mounted.
pub fn cgroup2_root() -> Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| EngineError::Cgroup {
        what: "reading mounts",
        path: "/proc/self/mountinfo".into(),
        source: e,
    })?;
    if let Some(p) = find_cgroup2(&mountinfo) {
        return Ok(p);
    }
    mount_cgroup2(Path::new(OWN_MOUNT))?;
    Ok(PathBuf::from(OWN_MOUNT))
}

fn mount_cgroup2(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| EngineError::Cgroup {
        what: "creating the mount point",
        path: dir.into(),
        source: e,
    })?;
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| EngineError::Cgroup {
        what: "the mount point has a NUL byte in its path",
        path: dir.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: every pointer is a valid NUL-terminated C string that outlives the call; data is NULL.
    let rc = unsafe { libc::mount(c"none".as_ptr(), target.as_ptr(), c"cgroup2".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(EngineError::Cgroup {
            what: "no cgroup2 hierarchy is mounted and mounting one failed",
            path: dir.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

// The attach point: a cgroup program runs for the sockets of its cgroup and
// of the cgroups below it (`sock_create`/`connect`/`sendmsg` for the socket's
// cgroup, `cgroup_skb` ingress and egress for the socket a packet is received
// on or sent from). The ownership and cgroup-target logic work from any
// attach point (`match_cgroup` reads the task's ancestors at absolute levels,
// `bpf_get_current_ancestor_cgroup_id`); the tracepoints (fork, exit, TLS)
// are global either way. The type and the deepest-common-cgroup computation
// are the engine's ([`pidcap_engine::cgroup::Cgroupfs::attach_point`]), shared
// with the daemon.
pub use pidcap_engine::cgroup::{common_ancestor, AttachPoint};

/// The cgroup2 hierarchy to resolve attach points in: the system's, or
/// (none mounted in this mount namespace, as under `ip netns exec`, which
/// mounts a fresh /sys) the one pidcap mounts at [`OWN_MOUNT`].
pub fn hierarchy() -> Result<Cgroupfs, ScopeError> {
    match Cgroupfs::system() {
        Ok(fs) => Ok(fs),
        Err(CgroupError::NotMounted) => Ok(Cgroupfs::at(cgroup2_root().map_err(ScopeError::Mount)?)),
        Err(e) => Err(e.into()),
    }
}

/// Why a run's own cgroup could not be made (the capture then attaches at the root).
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    Hierarchy(#[from] CgroupError),
    #[error(transparent)]
    Mount(EngineError),
    #[error("pidcap's own cgroup2 cgroup is not known ({0})")]
    NoOwnCgroup(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Process `pid`'s cgroup2 path as `/proc/PID/cgroup` shows it (`/` for the
/// root); None when it cannot be read or names a removed cgroup.
pub fn cgroup_of(pid: u32) -> Option<String> {
    Cgroupfs::at("/").cgroup_of(pid)
}

/// Where a capture of `pids` (and of names or cgroups, when
/// `by_name_or_cgroup`) attaches, in [`hierarchy`]:
/// [`Cgroupfs::attach_point`] (the deepest cgroup holding every pid; the
/// root for names and cgroups), the root when no hierarchy can be had.
/// None: no target at all.
pub fn attach_for_targets(pids: impl IntoIterator<Item = u32>, by_name_or_cgroup: bool) -> Option<AttachPoint> {
    let at = match hierarchy() {
        Ok(fs) => fs.attach_point(pids, by_name_or_cgroup),
        Err(e) => {
            tracing::debug!(error = %e, "no cgroup2 hierarchy to place the programs in: attaching at the root");
            Some(AttachPoint::Root)
        }
    };
    tracing::debug!(at = ?at, "the capture's programs attach point");
    at
}

/// The prefix of a run's cgroup directory name; the rest is pidcap's pid.
pub const RUN_PREFIX: &str = "pidcap-run-";

/// `pidcap run`'s own cgroup, `<pidcap's cgroup>/pidcap-run-<pid>`: the
/// command is moved into it while it is held (before its exec), and the
/// programs attach to it, so its followed children (which inherit it) and
/// their sockets are what runs them. When dropped, any process still in it
/// (an orphaned descendant, also in cgroups it made below) is moved back to
/// the cgroup it came from and the directory is removed. A run killed with
/// SIGKILL leaves it: the next run sweeps it ([`RunCgroup::create`]).
#[derive(Debug)]
pub struct RunCgroup {
    dir: PathBuf,
    parent: PathBuf,
}

impl RunCgroup {
    /// Sweep what killed runs left beside pidcap's cgroup, then make this
    /// run's. Fails on a read-only cgroupfs, without permission, or when
    /// pidcap's own cgroup is not in the mounted hierarchy (a cgroup
    /// namespace's mount that does not show it).
    pub fn create() -> Result<RunCgroup, ScopeError> {
        let fs = hierarchy()?;
        let own = cgroup_of(std::process::id()).ok_or_else(|| ScopeError::NoOwnCgroup("/proc/self/cgroup".into()))?;
        let parent = fs.resolve(&own)?.dir;
        sweep(&parent);
        let dir = parent.join(format!("{RUN_PREFIX}{}", std::process::id()));
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(0o755).create(&dir).map_err(|source| ScopeError::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        Ok(RunCgroup { dir, parent })
    }

    /// The directory (the attach point).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Move process `pid` (the held command) into the cgroup.
    pub fn adopt(&self, pid: u32) -> Result<(), ScopeError> {
        let procs = self.dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|source| ScopeError::Io { what: "writing", path: procs, source })
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        match dissolve(&self.dir, &self.parent) {
            Ok(0) => tracing::debug!(cgroup = %self.dir.display(), "run cgroup removed"),
            Ok(n) => {
                tracing::debug!(cgroup = %self.dir.display(), moved = n, "run cgroup removed, its processes moved back")
            }
            Err(e) => eprintln!("pidcap: warning: {e}"),
        }
    }
}

/// Dissolve the `pidcap-run-<pid>` cgroups in `parent` whose pidcap is
/// gone (the pid does not exist or is not a pidcap: given to another
/// process since), and a leftover of a pidcap that had our pid. A live
/// pidcap's is kept, also between its mkdir and its attach.
fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RUN_PREFIX)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid != std::process::id() && is_pidcap(pid);
        if !alive {
            match dissolve(&e.path(), parent) {
                Ok(n) => tracing::debug!(cgroup = %e.path().display(), moved = n, "a killed run's cgroup swept"),
                Err(err) => tracing::warn!(error = %err, "a killed run's cgroup could not be swept"),
            }
        }
    }
}

/// Is process `pid` a pidcap: named so, or running our executable (a copy
/// under another name, or a held `run` child before its exec)?
fn is_pidcap(pid: u32) -> bool {
    let named = pidcap_engine::procfs::Procfs::default().comm(pid).is_some_and(|c| c.starts_with("pidcap"));
    named || crate::tls::runs_our_executable(pid)
}

/// How long removing a run's cgroup retries while processes leave it.
const DISSOLVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Move every process in `dir` and below it to `to`, then remove `dir` and
/// the cgroups below it (deepest first). Returns how many were moved.
/// Retried until [`DISSOLVE_DEADLINE`]: a process forking while it is
/// moved, or one that just exited, can keep a cgroup busy for a moment.
fn dissolve(dir: &Path, to: &Path) -> Result<usize, ScopeError> {
    let deadline = std::time::Instant::now() + DISSOLVE_DEADLINE;
    let mut moved = 0;
    loop {
        let mut dirs = vec![dir.to_path_buf()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
            i += 1;
        }
        let dest = to.join("cgroup.procs");
        for d in &dirs {
            let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) else { continue };
            for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                // A process that exited meanwhile (ESRCH) is not an error.
                if fs::write(&dest, pid.to_string()).is_ok() {
                    moved += 1;
                }
            }
        }
        let mut last = None;
        for d in dirs.iter().rev() {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => last = Some(ScopeError::Io { what: "removing", path: d.clone(), source }),
            }
        }
        match last {
            None => return Ok(moved),
            Some(e) if std::time::Instant::now() >= deadline => return Err(e),
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
