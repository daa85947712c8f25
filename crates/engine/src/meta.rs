//! The process metadata of packets ([`ProcessMeta`]), read once per process
//! from `/proc` and kept, by process identity, for as long as its packets may
//! still come: a process that has exited keeps its metadata (packets still
//! in the kernel ring, the FIN of a socket exit closed).
//!
//! * Identity: an entry is the pid **and** the key no other process gets
//!   ([`TargetId::key`], the pidfs inode): when the pid is found held by a
//!   process with another key, the entry is read again for that one; the
//!   old process's metadata never goes to its successor.
//! * When it is read: when a target is added (by pid, or a running process
//!   of a target name), when the capture's liveness scan first sees a target
//!   the kernel added itself (a followed child, a later name match), and at
//!   the first packet of a pid that is still unknown. A target whose
//!   executable changed since it was read (an `exec`: `run`'s held child
//!   still runs pidcap's own executable when it is added) is read again by
//!   the next scan: one `readlink` per live target per scan.
//! * `run`'s held child is not read before its `exec` (it is a child of
//!   this process running this program): that would say pidcap.
//! * Bounded: at most [`MAX_PROCESSES`] processes; past it, the oldest entry goes.
//! * User names come from the password file (`/etc/passwd`, a parameter for
//!   tests), read once and again when a uid is not in it; not `getpwuid`,
//!   which may load NSS modules into pidcap (root) and block on the network.

use crate::container::container_of;
use crate::process::TargetId;
use crate::procfs::Procfs;
use pidcap_packet::{ContainerRef, ProcessMeta};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

/// The most processes whose metadata is kept.
pub const MAX_PROCESSES: usize = 4096;

#[derive(Debug)]
struct Entry {
    key: u64,
    /// `None`: could not be read (gone already); retried by the liveness scan.
    meta: Option<Arc<ProcessMeta>>,
    /// A packet of this process was seen (see [`ProcessCache::first_packet`]).
    packets: bool,
}

/// Hashes a pid with one multiplication. A packet's metadata takes a few
/// look-ups by pid, and SipHash was most of their cost; the map is bounded
/// ([`MAX_PROCESSES`]) and its keys are pids the kernel hands out, so its
/// defence against chosen keys buys nothing here.
#[derive(Debug, Default, Clone, Copy)]
struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, pid: u32) {
        self.0 = (self.0 ^ u64::from(pid)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct ProcessCache {
    procfs: Procfs,
    passwd: PathBuf,
    entries: HashMap<u32, Entry, BuildHasherDefault<PidHasher>>,
    /// Insertion order, for the bound: (pid, key) of each entry made.
    order: VecDeque<(u32, u64)>,
    users: Option<HashMap<u32, String>>,
    /// This program's executable (`run`'s held children run it until they exec).
    own_exe: Option<String>,
}

impl ProcessCache {
    pub fn new(procfs: Procfs, passwd: impl Into<PathBuf>) -> ProcessCache {
        let own_exe = std::env::current_exe().ok().map(|p| p.to_string_lossy().into_owned());
        ProcessCache {
            procfs,
            passwd: passwd.into(),
            entries: HashMap::default(),
            order: VecDeque::new(),
            users: None,
            own_exe,
        }
    }

    /// Use another `/proc` from now on (tests).
    pub fn set_procfs(&mut self, procfs: Procfs) {
        self.procfs = procfs;
    }

    /// The metadata of the process that has pid `pid` as far as this cache knows.
    pub fn get(&self, pid: u32) -> Option<&Arc<ProcessMeta>> {
        self.entries.get(&pid)?.meta.as_ref()
    }

    /// Is there an entry (read or not readable) for exactly this process?
    pub fn knows(&self, id: TargetId) -> bool {
        self.entries.get(&id.pid).is_some_and(|e| e.key == id.key)
    }

    /// Is there an entry for `pid`, whichever process it was?
    pub fn knows_pid(&self, pid: u32) -> bool {
        self.entries.contains_key(&pid)
    }

    /// The entry of `id` exists but could not be read, or its executable is
    /// not the one read (an exec since): worth reading again.
    pub fn is_stale(&self, id: TargetId) -> bool {
        match self.entries.get(&id.pid) {
            Some(e) if e.key == id.key => match &e.meta {
                None => true,
                // An exec since (its executable), or its name set after the
                // read (exec sets the name after the executable: a read in
                // between has the new exe and the old name).
                Some(m) => {
                    self.procfs.exe(id.pid).is_ok_and(|exe| exe.to_string_lossy() != m.exe.as_str())
                        || self.procfs.comm(id.pid).is_some_and(|comm| comm != m.comm)
                }
            },
            _ => true,
        }
    }

    /// Read process `id` from `/proc` now and keep it (replacing what its
    /// pid had). `still_same` is asked once the files are read: is the pid
    /// still `id`'s (a pidfd of it has not exited)? If not, the read is
    /// thrown away. A read that finds nothing keeps an earlier read of the
    /// same process.
    pub fn read(&mut self, id: TargetId, still_same: impl FnOnce() -> bool) -> Option<&Arc<ProcessMeta>> {
        let fresh = self.read_process(id.pid).filter(|_| still_same()).map(Arc::new);
        let earlier = self.entries.remove(&id.pid).filter(|e| e.key == id.key);
        let packets = earlier.as_ref().is_some_and(|e| e.packets);
        let meta = fresh.or(earlier.and_then(|e| e.meta));
        if !self.order.iter().any(|&(p, k)| (p, k) == (id.pid, id.key)) {
            self.order.push_back((id.pid, id.key));
        }
        self.entries.insert(id.pid, Entry { key: id.key, meta, packets });
        while self.entries.len() > MAX_PROCESSES {
            let Some((pid, key)) = self.order.pop_front() else { break };
            if self.entries.get(&pid).is_some_and(|e| e.key == key) {
                self.entries.remove(&pid);
            }
        }
        // Order entries whose pid went to another process since are dropped lazily.
        if self.order.len() > 2 * MAX_PROCESSES {
            let entries = &self.entries;
            self.order.retain(|&(p, k)| entries.get(&p).is_some_and(|e| e.key == k));
        }
        self.entries.get(&id.pid)?.meta.as_ref()
    }

    /// A packet of `pid` is here: the key of its entry if it is the first
    /// (the caller then checks the entry is not stale: read before an exec).
    pub fn first_packet(&mut self, pid: u32) -> Option<u64> {
        let e = self.entries.get_mut(&pid)?;
        if e.packets {
            return None;
        }
        e.packets = true;
        Some(e.key)
    }

    /// The key of `pid`'s entry, if it has one.
    pub fn key_of(&self, pid: u32) -> Option<u64> {
        self.entries.get(&pid).map(|e| e.key)
    }

    /// `pid`'s metadata was read before an exec and the process is gone:
    /// keep what an exec leaves (ids, parent, user, cgroup), drop what it
    /// changes (executable, arguments: unknown rather than another
    /// program's), and take the name the kernel gave its packets.
    pub fn after_exec(&mut self, pid: u32, comm: &str) {
        if let Some(Entry { meta: Some(m), .. }) = self.entries.get_mut(&pid) {
            *m = Arc::new(ProcessMeta {
                comm: comm.to_string(),
                exe: String::new(),
                cmdline: Vec::new(),
                ..(**m).clone()
            });
        }
    }

    /// Forget `pid`'s entry (a target that was refused).
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// [`ProcessCache::read_one`] until the executable and the name are the
    /// same after the read as before it (an exec during a read mixes two
    /// programs' files), at most three times.
    fn read_process(&mut self, pid: u32) -> Option<ProcessMeta> {
        let mut tries = 0;
        loop {
            let before = (self.procfs.exe(pid).ok(), self.procfs.comm(pid));
            let meta = self.read_one(pid)?;
            tries += 1;
            let after = (self.procfs.exe(pid).ok(), self.procfs.comm(pid));
            if before == after || tries == 3 {
                return Some(meta);
            }
        }
    }

    fn read_one(&mut self, pid: u32) -> Option<ProcessMeta> {
        let status = self.procfs.status(pid).ok()?;
        if status.tgid != pid {
            return None; // a thread's id, not a process's
        }
        let exe = self.procfs.exe(pid).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        if status.ppid == std::process::id() && Some(exe.as_str()) == self.own_exe.as_deref() {
            // `run`'s held child before its exec: it is still pidcap, not
            // the command; read once it has exec'd (an entry without metadata
            // is read again by the next scan and at its first packet).
            return None;
        }
        let comm = self.procfs.comm(pid).unwrap_or_else(|| status.name.clone());
        let cgroup = self.procfs.cgroup(pid).unwrap_or_default();
        let container =
            container_of(&cgroup).map(|c| ContainerRef { runtime: c.runtime.as_str().to_string(), id: c.id });
        let parent_comm =
            if status.ppid == 0 { String::new() } else { self.procfs.comm(status.ppid).unwrap_or_default() };
        let uid = status.uid.real;
        Some(ProcessMeta {
            pid,
            comm,
            exe,
            cmdline: self.procfs.cmdline(pid).unwrap_or_default(),
            ppid: status.ppid,
            parent_comm,
            uid,
            user: self.user(uid),
            cgroup,
            container,
        })
    }

    /// The name of `uid` in the password file ("" when it has none).
    fn user(&mut self, uid: u32) -> String {
        let found = self.users.as_ref().and_then(|u| u.get(&uid).cloned());
        if let Some(name) = found {
            return name;
        }
        // Not read yet, or a user added since: read it (again).
        let users = std::fs::read_to_string(&self.passwd).map(|t| parse_passwd(&t)).unwrap_or_default();
        let name = users.get(&uid).cloned().unwrap_or_default();
        self.users = Some(users);
        name
    }
}

/// uid -> name of each `name:password:uid:...` line of a password file.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else { continue };
        if let Ok(uid) = uid.parse() {
            users.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    users
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// A fake /proc and /etc/passwd under the temp dir, removed on drop.
    pub(crate) struct Tree(PathBuf);

    impl Tree {
        pub(crate) fn new(tag: &str) -> Tree {
            let root = std::env::temp_dir().join(format!("pidcap-meta-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("proc")).unwrap();
            fs::write(root.join("passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n")
                .unwrap();
            Tree(root)
        }

        /// Process `pid` (tgid `pid`) with this parent, uid, exe, argv and cgroup.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn process(
            &self,
            pid: u32,
            comm: &str,
            ppid: u32,
            uid: u32,
            exe: &str,
            argv: &[&str],
            cgroup: &str,
        ) {
            let dir = self.0.join("proc").join(pid.to_string());
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let status = format!(
                "Name:\t{comm}\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n\
                 Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n"
            );
            fs::write(dir.join("status"), status).unwrap();
            fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            let mut cmdline = argv.join("\0");
            cmdline.push('\0');
            fs::write(dir.join("cmdline"), cmdline).unwrap();
            fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
            std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
        }

        pub(crate) fn remove(&self, pid: u32) {
            fs::remove_dir_all(self.0.join("proc").join(pid.to_string())).unwrap();
        }

        pub(crate) fn cache(&self) -> ProcessCache {
            ProcessCache::new(Procfs::at(self.0.join("proc")), self.0.join("passwd"))
        }

        pub(crate) fn procfs(&self) -> Procfs {
            Procfs::at(self.0.join("proc"))
        }

        pub(crate) fn passwd(&self) -> PathBuf {
            self.0.join("passwd")
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const DOCKER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_process_is_read_whole_and_kept_after_it_exits() {
        let t = Tree::new("whole");
        t.process(10, "sh", 1, 0, "/bin/sh", &["sh", "-c", "x"], "/");
        let cg = format!("/system.slice/docker-{DOCKER}.scope");
        t.process(11, "curl", 10, 1000, "/usr/bin/curl", &["curl", "-s", "a b"], &cg);
        let mut c = t.cache();
        let id = TargetId { pid: 11, key: 5 };
        let m = c.read(id, || true).unwrap().clone();
        assert_eq!(
            *m,
            ProcessMeta {
                pid: 11,
                comm: "curl".into(),
                exe: "/usr/bin/curl".into(),
                cmdline: vec!["curl".into(), "-s".into(), "a b".into()],
                ppid: 10,
                parent_comm: "sh".into(),
                uid: 1000,
                user: "alice".into(),
                cgroup: cg.clone(),
                container: Some(ContainerRef { runtime: "docker".into(), id: DOCKER.into() }),
            }
        );
        assert!(c.knows(id) && !c.is_stale(id));
        // It exits: the metadata stays, for its last packets.
        t.remove(11);
        assert_eq!(c.get(11), Some(&m));
        assert!(!c.is_stale(id), "an exited process is not read again (its exe cannot be read)");
        // A read that finds nothing keeps what was read.
        assert_eq!(c.read(id, || true), Some(&m));
    }

    #[test]
    fn a_reused_pid_gets_its_own_metadata_and_an_exec_is_seen() {
        let t = Tree::new("reuse");
        t.process(20, "old", 1, 0, "/bin/old", &["old"], "/");
        let mut c = t.cache();
        let old = TargetId { pid: 20, key: 1 };
        assert_eq!(c.read(old, || true).unwrap().comm, "old");
        t.process(20, "new", 1, 1000, "/bin/new", &["new"], "/");
        let new = TargetId { pid: 20, key: 2 };
        assert!(!c.knows(new) && c.knows_pid(20) && c.is_stale(new));
        let m = c.read(new, || true).unwrap();
        assert_eq!((m.comm.as_str(), m.exe.as_str(), m.user.as_str()), ("new", "/bin/new", "alice"));
        // The successor gone before it was read: nothing, never the old one's.
        t.remove(20);
        assert_eq!(c.read(old, || true), None);
        // An exec: the executable changed, the entry is stale until read again.
        t.process(21, "pidcap", 1, 0, "/usr/bin/pidcap", &["pidcap"], "/");
        let id = TargetId { pid: 21, key: 9 };
        c.read(id, || true);
        t.process(21, "curl", 1, 0, "/usr/bin/curl", &["curl"], "/");
        assert!(c.is_stale(id));
        assert_eq!(c.read(id, || true).unwrap().exe, "/usr/bin/curl");
        assert!(!c.is_stale(id));
        // No such process, or a thread id: nothing.
        assert_eq!(c.read(TargetId { pid: 99, key: 0 }, || true), None);
        assert!(c.is_stale(TargetId { pid: 99, key: 0 }), "retried later");
    }

    #[test]
    fn a_read_in_the_middle_of_an_exec_is_stale_until_the_name_is_set() {
        // exec replaces the executable first and sets the name after: a read
        // in between sees the new exe with the old name (a pyenv shim,
        // `pyenv-exec`, exec'ing python3).
        let t = Tree::new("midexec");
        t.process(50, "pyenv-exec", 1, 0, "/usr/bin/python3.11", &["python3", "x.py"], "/");
        let mut c = t.cache();
        let id = TargetId { pid: 50, key: 7 };
        assert_eq!(c.read(id, || true).unwrap().comm, "pyenv-exec");
        assert!(!c.is_stale(id), "nothing changed since");
        fs::write(t.0.join("proc/50/comm"), "python3\n").unwrap();
        assert!(c.is_stale(id), "the name changed: read again");
        assert_eq!(c.read(id, || true).unwrap().comm, "python3");
        assert!(!c.is_stale(id));
    }

    #[test]
    fn a_child_of_ours_still_running_our_program_is_read_once_it_has_exec_d() {
        let t = Tree::new("held");
        let me = std::process::id();
        let own = std::env::current_exe().unwrap();
        t.process(40, "pidcap", me, 0, own.to_str().unwrap(), &["pidcap"], "/");
        let mut c = t.cache();
        let id = TargetId { pid: 40, key: 3 };
        assert_eq!(c.read(id, || true), None, "not pidcap's metadata");
        assert!(c.knows(id) && c.is_stale(id));
        t.process(40, "curl", me, 0, "/usr/bin/curl", &["curl"], "/");
        assert_eq!(c.read(id, || true).unwrap().exe, "/usr/bin/curl");
        // Another program running our executable (not our child) is read as it is.
        t.process(41, "pidcap", 1, 0, own.to_str().unwrap(), &["pidcap", "daemon"], "/");
        assert_eq!(c.read(TargetId { pid: 41, key: 4 }, || true).unwrap().cmdline, ["pidcap", "daemon"]);
    }

    #[test]
    fn the_cache_is_bounded_and_users_come_from_the_password_file() {
        let t = Tree::new("bound");
        t.process(30, "x", 0, 4242, "/x", &["x"], "/");
        let mut c = t.cache();
        assert_eq!(c.read(TargetId { pid: 30, key: 0 }, || true).unwrap().user, "", "a uid without a name");
        fs::write(t.passwd(), "bob:x:4242:0::/:/bin/sh\n").unwrap();
        assert_eq!(c.read(TargetId { pid: 30, key: 0 }, || true).unwrap().user, "bob", "a user added since is found");
        for key in 0..(MAX_PROCESSES as u64 + 10) {
            c.read(TargetId { pid: 100_000 + key as u32, key }, || true);
        }
        assert_eq!(c.entries.len(), MAX_PROCESSES);
        assert!(!c.knows_pid(30), "the oldest went first");
        assert!(c.order.len() <= 2 * MAX_PROCESSES);
        assert_eq!(parse_passwd("a:x:1:1\nbad\nb:x:nope:1\nc:x:1:1\n"), HashMap::from([(1, "a".to_string())]));
    }
}
