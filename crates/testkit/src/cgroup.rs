//! A cgroup2 directory of a test's own ([`Cgroup`]): made under the cgroup2
//! mount with a unique name (or a name the test needs, such as a unit's or
//! a container's), and removed on drop with everything below it, its
//! processes moved back to the root cgroup first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where the cgroup2 hierarchy is mounted (from /proc/self/mountinfo).
pub fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    pidcap_engine::cgroup::find_cgroup2(&mountinfo).expect("no cgroup2 hierarchy is mounted")
}

/// A test's cgroup directory; removed on drop (see the module doc).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    root: PathBuf,
}

impl Cgroup {
    /// A new cgroup directly under the root, named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> Cgroup {
        Cgroup::named(&Cgroup::unique(tag))
    }

    /// A unique name `pidcap-test-TAG-PID-N` (for a unit, a slice...).
    pub fn unique(tag: &str) -> String {
        format!("pidcap-test-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
    }

    /// The cgroup at `rel` below the root (its parents must exist, or be made by other guards).
    pub fn named(rel: &str) -> Cgroup {
        let root = cgroup2_root();
        let dir = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup { dir, root }
    }

    /// A cgroup below this one, named `name` (removed with this one at the latest).
    pub fn child(&self, name: &str) -> Cgroup {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup { dir, root: self.root.clone() }
    }

    /// The directory (`/sys/fs/cgroup/pidcap-test-...`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its path in the hierarchy, as /proc/PID/cgroup shows it (`/pidcap-test-...`).
    pub fn path(&self) -> String {
        format!("/{}", self.dir.strip_prefix(&self.root).unwrap().display())
    }

    /// Move process `pid` into this cgroup.
    pub fn add(&self, pid: u32) {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.dir.display()));
    }

    /// The processes in this cgroup (not below it).
    pub fn procs(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        remove(&self.dir, &self.root);
    }
}

/// Remove `dir` and the cgroups below it, moving their processes to the
/// root cgroup; a process that is exiting can keep a cgroup busy for a
/// moment, so rmdir is retried for a few seconds.
fn remove(dir: &Path, root: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove(&e.path(), root);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            let _ = std::fs::write(root.join("cgroup.procs"), pid);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
