//! Finding (or mounting) the cgroup2 hierarchy, and where in it the
//! programs attach ([`AttachPoint`]): the root, the deepest cgroup holding a
//! capture's targets ([`attach_for_targets`], the engine's computation in
//! this hierarchy), `pidcap run`'s own cgroup for its command
//! ([`RunCgroup`]), or the cgroups `capture --isolate` moves its targets
//! into ([`Isolation`]). Both are an [`OwnCgroup`]: made below a cgroup,
//! processes adopted, dissolved at the end (what is left goes back up), and
//! swept by the next pidcap after a SIGKILL (a run's beside pidcap's own
//! cgroup; an isolation's from its record under [`ISO_RECORDS`]).

pub use pidcap_engine::cgroup::find_cgroup2;
use pidcap_engine::cgroup::{CgroupError, Cgroupfs};
use pidcap_engine::error::{EngineError, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Where pidcap mounts cgroup2 itself when the system has none mounted.
pub const OWN_MOUNT: &str = "/run/pidcap/cgroup2";

/// The cgroup2 root, mounting one at `/run/pidcap/cgroup2` (`OWN_MOUNT`) if none is mounted.
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
/// mounts a fresh /sys) the one pidcap mounts at `/run/pidcap/cgroup2` (`OWN_MOUNT`).
pub fn hierarchy() -> Result<Cgroupfs, ScopeError> {
    match Cgroupfs::system() {
        Ok(fs) => Ok(fs),
        Err(CgroupError::NotMounted) => Ok(Cgroupfs::at(cgroup2_root().map_err(ScopeError::Mount)?)),
        Err(e) => Err(e.into()),
    }
}

/// Why a run's own cgroup could not be made (the capture then attaches at
/// the root), or an isolation could not be (the capture is refused).
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
    // -- isolate (issue 13) --
    #[error("cannot move pid {pid} into {}: {source}", dir.display())]
    Move {
        pid: u32,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid}: its cgroup cannot be read (/proc/{pid}/cgroup), or it was removed")]
    UnknownCgroup { pid: u32 },
    #[error("pid {pid} is in {}, a cgroup of type {kind:?}: a process cannot be moved into a child of a threaded subtree", dir.display())]
    Threaded { pid: u32, dir: PathBuf, kind: String },
    #[error("pid {pid}: its cgroup {} has a newline in its name (not recordable)", dir.display())]
    Unrecordable { pid: u32, dir: PathBuf },
    #[error("pid {pid} is isolated by another pidcap already (in {})", dir.display())]
    Isolated { pid: u32, dir: PathBuf },
    #[error("pidcap's own start time cannot be read (/proc/self/stat): an isolation record needs it")]
    NoStartTime,
    #[error("no target to move (pidcap itself is never one)")]
    NothingToMove,
    #[error("the isolation records' directory {}: {why}", path.display())]
    Records { path: PathBuf, why: &'static str },
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

/// A cgroup pidcap makes, `<parent>/<name>`, for processes it captures:
/// they are moved in ([`OwnCgroup::adopt`]), the programs attach to it, and
/// what they fork inherits it. When dropped (or [`OwnCgroup::close`]d),
/// every process still in it (also in cgroups made below it) is moved back
/// to `parent` and the directory is removed; a process someone moved
/// elsewhere meanwhile is not in it, and is left where it is.
#[derive(Debug)]
pub struct OwnCgroup {
    dir: PathBuf,
    parent: PathBuf,
    closed: bool,
}

impl OwnCgroup {
    /// Make `<parent>/<name>` (mode 0755). Fails on a read-only cgroupfs,
    /// without permission, or when it exists.
    fn make(parent: &Path, name: &str) -> Result<OwnCgroup, ScopeError> {
        let dir = parent.join(name);
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(0o755).create(&dir).map_err(|source| ScopeError::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        Ok(OwnCgroup { dir, parent: parent.to_path_buf(), closed: false })
    }

    /// The directory (the attach point).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Move process `pid` (all its threads) into the cgroup.
    pub fn adopt(&self, pid: u32) -> Result<(), ScopeError> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|source| ScopeError::Move {
            pid,
            dir: self.dir.clone(),
            source,
        })
    }

    /// Move what is left back to the parent and remove the directory;
    /// how many processes were moved back. Dropping does it too.
    pub fn close(&mut self) -> Result<usize, ScopeError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(0);
        }
        dissolve(&self.dir, &self.parent)
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        match self.close() {
            Ok(n) => tracing::debug!(cgroup = %self.dir.display(), moved = n, "own cgroup removed"),
            Err(e) => eprintln!("pidcap: warning: {e}"),
        }
    }
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
pub struct RunCgroup(OwnCgroup);

impl RunCgroup {
    /// Sweep what killed runs left beside pidcap's cgroup (and what killed
    /// isolations left: [`sweep_isolations`]), then make this run's. Fails
    /// on a read-only cgroupfs, without permission, or when pidcap's own
    /// cgroup is not in the mounted hierarchy (a cgroup namespace's mount
    /// that does not show it).
    pub fn create() -> Result<RunCgroup, ScopeError> {
        let fs = hierarchy()?;
        undo_dead(&fs, dead_isolations(Path::new(ISO_RECORDS)));
        let own = cgroup_of(std::process::id()).ok_or_else(|| ScopeError::NoOwnCgroup("/proc/self/cgroup".into()))?;
        let parent = fs.resolve(&own)?.dir;
        sweep(&parent);
        OwnCgroup::make(&parent, &format!("{RUN_PREFIX}{}", std::process::id())).map(RunCgroup)
    }

    /// The directory (the attach point).
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Move process `pid` (the held command) into the cgroup.
    pub fn adopt(&self, pid: u32) -> Result<(), ScopeError> {
        self.0.adopt(pid)
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

// -- isolate (issue 13) --

pub use pidcap_engine::procfs::ISO_PREFIX;

/// Where a live isolation is recorded (a file per pidcap, named by its pid,
/// mode 0600 in this 0700 directory), so that the next pidcap puts back
/// what a SIGKILLed one moved without walking the whole hierarchy: an iso
/// cgroup is below its target's cgroup, which may be anywhere.
pub const ISO_RECORDS: &str = "/run/pidcap/iso";

/// `capture --isolate`: each `--pid` target moved into a new cgroup
/// `<its cgroup>/pidcap-iso-<pidcap's pid>` (targets in one cgroup share
/// one), before the programs attach there. A child of the cgroup it was in:
/// every limit of that cgroup still applies, and a service manager that
/// stops the cgroup stops it. When dropped, every process still in an iso
/// cgroup goes back to its parent and the directories are removed, then the
/// record ([`ISO_RECORDS`]); a SIGKILLed pidcap leaves both, and the next
/// pidcap's [`sweep_isolations`] does the same.
#[derive(Debug)]
pub struct Isolation {
    groups: Vec<IsoGroup>,
    record: Option<PathBuf>,
}

/// The targets of one cgroup, and the iso cgroup they are in.
#[derive(Debug)]
struct IsoGroup {
    /// Their cgroup's path in the hierarchy (`/` for the root).
    original: String,
    cgroup: OwnCgroup,
}

/// One target's cgroup, checked before anything is made or moved.
#[derive(Debug)]
struct Planned {
    original: String,
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Isolation {
    /// Isolate `pids` in the system's hierarchy. Nothing is moved unless
    /// every target's cgroup can take a child; a failure while moving moves
    /// back what was moved. The caller has run [`sweep_isolations`] (every
    /// command does at its start): a dead pidcap's iso cgroup still holding
    /// a target would otherwise refuse it as isolated by another pidcap.
    pub fn create(pids: &[u32]) -> Result<Isolation, ScopeError> {
        Isolation::create_in(&hierarchy()?, Path::new(ISO_RECORDS), pids)
    }

    fn create_in(fs: &Cgroupfs, records: &Path, pids: &[u32]) -> Result<Isolation, ScopeError> {
        let me = std::process::id();
        let name = format!("{ISO_PREFIX}{me}");
        let plan = plan(fs, pids)?;
        if plan.is_empty() {
            return Err(ScopeError::NothingToMove);
        }
        let dirs: Vec<PathBuf> = plan.iter().map(|p| p.dir.join(&name)).collect();
        // The record first: a pidcap killed between the mkdir and its end is
        // found by it.
        let start = pidcap_engine::procfs::Procfs::default().start_time(me).ok_or(ScopeError::NoStartTime)?;
        let record = write_record(records, me, start, &dirs)?;
        let mut iso = Isolation { groups: Vec::new(), record: Some(record) };
        for p in plan {
            let cgroup = OwnCgroup::make(&p.dir, &name)?;
            iso.groups.push(IsoGroup { original: p.original, cgroup });
            let cg = &iso.groups.last().expect("just pushed").cgroup;
            for pid in p.pids {
                cg.adopt(pid)?;
            }
        }
        Ok(iso)
    }

    /// The iso cgroups' directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.groups.iter().map(|g| g.cgroup.dir())
    }

    /// The cgroups the targets came from (hierarchy paths), in the order of
    /// the iso cgroups.
    pub fn originals(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.original.as_str())
    }

    /// Where the programs go: the iso cgroup; with targets from several
    /// cgroups, every iso cgroup (each program attached at each: none is
    /// below another, as each is a new child of a different cgroup).
    pub fn attach_point(&self) -> AttachPoint {
        match &self.groups[..] {
            [one] => AttachPoint::Cgroup(one.cgroup.dir().to_path_buf()),
            groups => AttachPoint::Cgroups(groups.iter().map(|g| g.cgroup.dir().to_path_buf()).collect()),
        }
    }

    /// Undo it: every process still in an iso cgroup back to the cgroup it
    /// came from, the directories removed, then the record (kept while an
    /// iso cgroup is left: the next pidcap sweeps it). Per iso cgroup, its
    /// original cgroup and how many processes went back (or why it is left).
    pub fn end(mut self) -> Vec<(String, Result<usize, ScopeError>)> {
        self.undo()
    }

    fn undo(&mut self) -> Vec<(String, Result<usize, ScopeError>)> {
        let done: Vec<_> = self.groups.drain(..).map(|mut g| (g.original, g.cgroup.close())).collect();
        if let (true, Some(record)) = (done.iter().all(|(_, r)| r.is_ok()), self.record.take()) {
            let _ = fs::remove_file(record);
        }
        done
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Drop for Isolation {
    fn drop(&mut self) {
        for (original, r) in self.undo() {
            match r {
                Ok(n) => tracing::debug!(cgroup = %original, moved = n, "iso cgroup dissolved"),
                Err(e) => eprintln!("pidcap: warning: --isolate: {e} (the next pidcap retries)"),
            }
        }
    }
}

/// Each target's cgroup, resolved and checked (not threaded, nameable in a
/// record), targets of one cgroup together; nothing is made.
fn plan(fs: &Cgroupfs, pids: &[u32]) -> Result<Vec<Planned>, ScopeError> {
    let mut plan: Vec<Planned> = Vec::new();
    // pidcap itself is never a target: it is not moved either.
    for &pid in pids.iter().filter(|&&p| p != std::process::id()) {
        let path = fs.cgroup_of(pid).ok_or(ScopeError::UnknownCgroup { pid })?;
        if let Some(p) = plan.iter_mut().find(|p| p.original == path) {
            p.pids.push(pid);
            continue;
        }
        let dir = fs.resolve(&path)?.dir;
        // Another pidcap's iso cgroup: its end would move the target out of ours.
        if dir_name(&dir).starts_with(ISO_PREFIX) {
            return Err(ScopeError::Isolated { pid, dir });
        }
        if dir.as_os_str().as_encoded_bytes().contains(&b'\n') {
            return Err(ScopeError::Unrecordable { pid, dir });
        }
        // The root has no cgroup.type; a domain cgroup says "domain".
        match fs::read_to_string(dir.join("cgroup.type")) {
            Ok(kind) if kind.trim() != "domain" => {
                return Err(ScopeError::Threaded { pid, dir, kind: kind.trim().to_string() })
            }
            _ => {}
        }
        plan.push(Planned { original: path, dir, pids: vec![pid] });
    }
    Ok(plan)
}

/// A live isolation's record: which pidcap (pid and start time) made
/// which iso cgroups.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    pid: u32,
    start: u64,
    dirs: Vec<PathBuf>,
}

const RECORD_HEAD: &str = "pidcap isolation 1";

impl Record {
    fn text(&self) -> String {
        let mut t = format!("{RECORD_HEAD}\npid {}\nstart {}\n", self.pid, self.start);
        for d in &self.dirs {
            t.push_str(&format!("dir {}\n", d.display()));
        }
        t
    }

    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != RECORD_HEAD {
            return None;
        }
        let pid = lines.next()?.strip_prefix("pid ")?.parse().ok()?;
        let start = lines.next()?.strip_prefix("start ")?.parse().ok()?;
        let dirs = lines.map(|l| l.strip_prefix("dir ").map(PathBuf::from)).collect::<Option<Vec<_>>>()?;
        Some(Record { pid, start, dirs })
    }
}

/// The records directory, made if missing (0700), and checked: a
/// directory (not a link), ours, no access for anyone else; its parent
/// too is a directory of ours, not a link, that no one else can write.
fn records_dir(records: &Path) -> Result<(), ScopeError> {
    use std::os::unix::fs::DirBuilderExt;
    let made = |r: std::io::Result<()>, dir: &Path| match r {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(ScopeError::Io { what: "creating", path: dir.to_path_buf(), source: e })
        }
        _ => Ok(()),
    };
    if let Some(parent) = records.parent() {
        made(fs::DirBuilder::new().recursive(true).mode(0o755).create(parent), parent)?;
        check_dir(parent, 0o022, "is not a directory of pidcap's user that only it can write")?;
    }
    made(fs::DirBuilder::new().mode(0o700).create(records), records)?;
    check_dir(records, 0o077, RECORDS_WHY)
}

const RECORDS_WHY: &str = "is not a directory of pidcap's user with mode 0700";

/// `dir` is a directory (not a link) of pidcap's user with none of the `forbidden` mode bits.
fn check_dir(dir: &Path, forbidden: u32, why: &'static str) -> Result<(), ScopeError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let m = fs::symlink_metadata(dir).map_err(|source| ScopeError::Io {
        what: "reading",
        path: dir.to_path_buf(),
        source,
    })?;
    if !m.is_dir() || m.uid() != me || m.permissions().mode() & forbidden != 0 {
        return Err(ScopeError::Records { path: dir.to_path_buf(), why });
    }
    Ok(())
}

/// Write this pidcap's record (a new file, 0600, not through a link).
fn write_record(records: &Path, pid: u32, start: u64, dirs: &[PathBuf]) -> Result<PathBuf, ScopeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    records_dir(records)?;
    let path = records.join(pid.to_string());
    let text = Record { pid, start, dirs: dirs.to_vec() }.text();
    let io = |source| ScopeError::Io { what: "writing the isolation record", path: path.clone(), source };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    Ok(path)
}

/// Read a record file: a regular file (not followed if a link), ours, parsed.
fn read_record(path: &Path) -> Option<Record> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let m = f.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if !m.is_file() || m.uid() != unsafe { libc::geteuid() } || m.len() > 1 << 20 {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    Record::parse(&text)
}

/// Put back what isolations of pidcaps that are gone (SIGKILL) left:
/// every process in their iso cgroups to the cgroup above, the directories
/// removed, then their records. Run at the start of `capture`, `run` and
/// `daemon`; a live pidcap's isolation (same pid and start time) is kept.
pub fn sweep_isolations() {
    let dead = dead_isolations(Path::new(ISO_RECORDS));
    // Nothing to do (the common case): no hierarchy looked for, none mounted.
    if dead.is_empty() {
        return;
    }
    match hierarchy() {
        Ok(fs) => undo_dead(&fs, dead),
        Err(e) => tracing::warn!(error = %e, "no cgroup2 hierarchy: a killed pidcap's isolation cannot be undone"),
    }
}

/// The records in `records` of pidcaps no longer running, by /proc.
fn dead_isolations(records: &Path) -> Vec<(PathBuf, Record)> {
    let procfs = pidcap_engine::procfs::Procfs::default();
    dead_records(records, |pid| procfs.start_time(pid))
}

/// Undo the isolations of `dead` (records and their files), then remove each
/// record whose iso cgroups are all gone.
fn undo_dead(fs: &Cgroupfs, dead: Vec<(PathBuf, Record)>) {
    for (path, record) in dead {
        let mut all = true;
        for dir in &record.dirs {
            if fs::symlink_metadata(dir).is_err() {
                continue; // never made (killed before its mkdir), or removed since
            }
            let Some(rec) = record_dir(fs, dir, record.pid) else {
                tracing::warn!(cgroup = %dir.display(), "an isolation record names no iso cgroup of its pidcap: ignored");
                continue;
            };
            let Some(parent) = rec.parent() else { continue };
            match dissolve(&rec, parent) {
                Ok(n) => eprintln!(
                    "pidcap: a killed pidcap's (pid {}) isolation undone: {n} process{} moved back to {}",
                    record.pid,
                    if n == 1 { "" } else { "es" },
                    parent.display()
                ),
                Err(e) => {
                    all = false;
                    tracing::warn!(error = %e, "a killed pidcap's iso cgroup could not be dissolved");
                }
            }
        }
        if all {
            let _ = fs::remove_file(path);
        }
    }
}

/// The records of pidcaps no longer running (`start_time` of the pid is
/// not the record's), with their files; unreadable or foreign files are
/// skipped.
fn dead_records(records: &Path, start_time: impl Fn(u32) -> Option<u64>) -> Vec<(PathBuf, Record)> {
    // Another user's (pidcap run without root): not ours to read or undo.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if fs::symlink_metadata(records).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != me) {
        return Vec::new();
    }
    match check_dir(records, 0o077, RECORDS_WHY) {
        Ok(()) => {}
        // None yet; or not ours to read (a user without root: nothing it could undo either).
        Err(ScopeError::Io { source, .. })
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) =>
        {
            return Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the isolation records are not read");
            return Vec::new();
        }
    }
    let Ok(entries) = fs::read_dir(records) else { return Vec::new() };
    let mut dead = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Some(record) = read_record(&e.path()) else { continue };
        if record.pid != pid {
            continue;
        }
        if start_time(pid) != Some(record.start) {
            dead.push((e.path(), record));
        }
    }
    dead
}

/// A record's directory, if it is one pidcap `pid` would have made: named
/// `pidcap-iso-<pid>`, a cgroup2 directory in the hierarchy. Nothing else
/// is ever dissolved on a record's word.
fn record_dir(fs: &Cgroupfs, dir: &Path, pid: u32) -> Option<PathBuf> {
    (dir_name(dir) == format!("{ISO_PREFIX}{pid}")).then_some(())?;
    let given = dir.to_str()?;
    match fs.resolve(given) {
        Ok(t) => Some(t.dir),
        Err(CgroupError::NotFound { .. }) => None,
        Err(e) => {
            tracing::debug!(error = %e, "an isolation record's cgroup");
            None
        }
    }
}

#[cfg(test)]
mod iso_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use pidcap_testkit::Scratch;

    /// A fake hierarchy at `root` (every dir a cgroup) and a fake /proc with each (pid, cgroup path).
    fn tree(root: &Path, dirs: &[&str], procs: &[(u32, &str)]) -> Cgroupfs {
        let h = root.join("cg");
        for d in std::iter::once("").chain(dirs.iter().copied()) {
            fs::create_dir_all(h.join(d.trim_start_matches('/'))).unwrap();
            fs::write(h.join(d.trim_start_matches('/')).join("cgroup.procs"), "").unwrap();
        }
        for (pid, path) in procs {
            let p = root.join("proc").join(pid.to_string());
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("cgroup"), format!("0::{path}\n")).unwrap();
        }
        Cgroupfs::at(h).with_proc(root.join("proc"))
    }

    #[test]
    fn targets_of_one_cgroup_share_a_plan_and_threaded_or_unreadable_cgroups_are_refused() {
        let s = Scratch::new("iso-unit-plan");
        let procs = [(10, "/a"), (11, "/b"), (12, "/a"), (13, "/t"), (14, "/gone"), (15, "/a/pidcap-iso-1")];
        let fs = tree(&s.0, &["/a", "/b", "/t", "/a/pidcap-iso-1"], &procs);
        let plan = plan(&fs, &[10, 11, 12]).unwrap();
        let got: Vec<(&str, &[u32])> = plan.iter().map(|p| (p.original.as_str(), &p.pids[..])).collect();
        assert_eq!(got, [("/a", &[10, 12][..]), ("/b", &[11][..])]);
        assert_eq!(plan[0].dir, fs.root().join("a"));
        fs::write(fs.root().join("a/cgroup.type"), "domain\n").unwrap();
        assert!(super::plan(&fs, &[10]).is_ok(), "a domain cgroup");
        fs::write(fs.root().join("t/cgroup.type"), "threaded\n").unwrap();
        let e = super::plan(&fs, &[10, 13]).unwrap_err();
        assert!(matches!(&e, ScopeError::Threaded { pid: 13, kind, .. } if kind == "threaded"), "{e}");
        assert!(e.to_string().contains("threaded"), "{e}");
        let e = super::plan(&fs, &[14]).unwrap_err();
        assert!(matches!(e, ScopeError::Hierarchy(CgroupError::NotFound { .. })), "{e}");
        assert!(matches!(super::plan(&fs, &[99]), Err(ScopeError::UnknownCgroup { pid: 99 })));
        assert!(matches!(super::plan(&fs, &[15]), Err(ScopeError::Isolated { pid: 15, .. })), "nested");
    }

    #[test]
    fn a_refused_isolation_makes_nothing_and_writes_no_record() {
        let s = Scratch::new("iso-unit-refused");
        let fs = tree(&s.0, &["/a", "/t"], &[(10, "/a"), (13, "/t")]);
        fs::write(fs.root().join("t/cgroup.type"), "domain threaded\n").unwrap();
        let records = s.0.join("run/iso");
        let e = Isolation::create_in(&fs, &records, &[10, 13]).unwrap_err();
        assert!(matches!(e, ScopeError::Threaded { pid: 13, .. }), "{e}");
        assert!(!fs.root().join(format!("a/{ISO_PREFIX}{}", std::process::id())).exists(), "nothing made");
        assert!(!records.join(std::process::id().to_string()).exists(), "no record");
    }

    #[test]
    fn records_round_trip_and_only_dead_pidcaps_records_are_taken() {
        let s = Scratch::new("iso-unit-records");
        let records = s.0.join("run/iso");
        let dirs = vec![PathBuf::from("/sys/fs/cgroup/a/pidcap-iso-7")];
        let path = write_record(&records, 7, 1234, &dirs).unwrap();
        let m = fs::symlink_metadata(&records).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(read_record(&path), Some(Record { pid: 7, start: 1234, dirs: dirs.clone() }));
        assert!(write_record(&records, 7, 1234, &dirs).is_err(), "never over another record");
        write_record(&records, 8, 99, &[]).unwrap();
        // A link is not followed, a foreign name or a malformed file is skipped.
        std::os::unix::fs::symlink(&path, records.join("9")).unwrap();
        fs::write(records.join("10"), "pidcap isolation 1\npid 11\nstart 1\n").unwrap();
        fs::write(records.join("12"), "junk").unwrap();
        let start = |pid| match pid {
            7 => Some(1234), // alive: same start time
            8 => Some(100),  // the pid is another process's now
            _ => None,
        };
        let dead: Vec<u32> = dead_records(&records, start).iter().map(|(_, r)| r.pid).collect();
        assert_eq!(dead, [8]);
        let dead: Vec<u32> = dead_records(&records, |_| None).iter().map(|(_, r)| r.pid).collect();
        let mut dead = dead;
        dead.sort_unstable();
        assert_eq!(dead, [7, 8], "no such process: both dead");
    }

    #[test]
    fn records_are_refused_in_a_directory_others_can_reach() {
        let s = Scratch::new("iso-unit-perms");
        let records = s.0.join("run/iso");
        fs::create_dir_all(&records).unwrap();
        fs::set_permissions(&records, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(write_record(&records, 7, 1, &[]), Err(ScopeError::Records { .. })));
        fs::remove_dir(&records).unwrap();
        let real = s.0.join("real");
        write_record(&real, 7, 1, &[]).unwrap();
        std::os::unix::fs::symlink(&real, &records).unwrap();
        assert!(matches!(write_record(&records, 8, 1, &[]), Err(ScopeError::Records { .. })), "a link");
        assert_eq!(dead_records(&real, |_| None).len(), 1);
        assert!(dead_records(&records, |_| None).is_empty(), "records behind a link are not read");
    }

    #[test]
    fn a_record_dissolves_only_an_iso_cgroup_of_its_own_pidcap() {
        let s = Scratch::new("iso-unit-recdir");
        let fs = tree(&s.0, &["/a/pidcap-iso-7", "/a/other"], &[]);
        let root = fs.root().to_path_buf();
        assert_eq!(record_dir(&fs, &root.join("a/pidcap-iso-7"), 7), Some(root.join("a/pidcap-iso-7")));
        assert_eq!(record_dir(&fs, &root.join("a/pidcap-iso-7"), 8), None, "another pidcap's");
        assert_eq!(record_dir(&fs, &root.join("a/other"), 7), None, "not an iso cgroup");
        assert_eq!(record_dir(&fs, &root.join("a/pidcap-iso-7/../other/pidcap-iso-7"), 7), None, "..");
        assert_eq!(record_dir(&fs, Path::new("/etc/pidcap-iso-7"), 7), None, "outside the hierarchy");
    }
}
