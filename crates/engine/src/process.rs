//! A process held by a pidfd from the moment it is named ([`Process`]), and
//! the identity every layer gives a target ([`TargetId`]: pid plus a key
//! that is never reused).
//!
//! A pid names a process only while that process exists: once it has exited
//! and been reaped, the kernel may give the number to an unrelated process.
//! A pidfd (`pidfd_open(2)`) stays bound to the process it was opened for:
//! polling it says exactly when that process has exited, and its inode
//! number in pidfs (Linux 6.9+) is the key the kernel layer records beside
//! the pid, so that neither userspace nor the kernel mistakes the next
//! holder of the pid for the target.

use crate::error::{EngineError, InvalidInput, Result};
use crate::procfs::Procfs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `statfs.f_type` of pidfs, the filesystem of pidfds since Linux 6.9.
const PIDFS_MAGIC: i64 = 0x5049_4446;

/// Who a target is: its pid, and a key no other process gets while the
/// system runs (the pidfs inode number of its pid on Linux; a WFP backend
/// would use the process's creation time or sequence number). Key 0: unknown
/// (a kernel without pidfs), the pid alone then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    pub pid: u32,
    pub key: u64,
}

/// A process, held by a pidfd. See the module documentation.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    key: u64,
    fd: OwnedFd,
}

impl Process {
    /// Hold process `pid` (a thread group id) from now on.
    ///
    /// Errors: [`EngineError::NoSuchProcess`] when no process has that pid,
    /// [`InvalidInput::Thread`] when it is the id of a thread that is not
    /// its process's main thread.
    pub fn open(pid: u32) -> Result<Process> {
        let Ok(raw_pid) = libc::pid_t::try_from(pid) else { return Err(EngineError::NoSuchProcess(pid)) };
        if raw_pid <= 0 {
            return Err(EngineError::NoSuchProcess(pid));
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new file
        // descriptor or -1; no memory is passed.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => EngineError::NoSuchProcess(pid),
                // Not a thread group leader (EINVAL before 6.9, ENOENT since):
                // a thread of another process.
                Some(libc::EINVAL | libc::ENOENT) => match Procfs::default().tgid(pid) {
                    Some(tgid) if tgid != pid => EngineError::Invalid(InvalidInput::Thread { tid: pid, tgid }),
                    _ => EngineError::NoSuchProcess(pid),
                },
                _ => EngineError::io(format!("pidfd_open({pid})"), e),
            });
        }
        // SAFETY: `rc` is a file descriptor pidfd_open just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        let key = pidfs_inode(fd.as_fd()).map_err(|e| EngineError::io(format!("fstat of the pidfd of {pid}"), e))?;
        Ok(Process { pid, key, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The key the kernel layer records beside the pid (0 without pidfs).
    pub fn key(&self) -> u64 {
        self.key
    }

    pub fn id(&self) -> TargetId {
        TargetId { pid: self.pid, key: self.key }
    }

    /// Has the process exited (every thread; a zombie counts as exited)?
    /// Exact: the pid may have been given to another process since.
    pub fn has_exited(&self) -> Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: `pfd` is one valid pollfd for the duration of the call; timeout 0.
            let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
            if rc >= 0 {
                return Ok(rc > 0 && pfd.revents & libc::POLLIN != 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(EngineError::io(format!("polling the pidfd of {}", self.pid), e));
            }
        }
    }
}

impl AsFd for Process {
    /// The pidfd (for `pidfd_getfd`, `pidfd_send_signal`...).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The inode number of a pidfd in pidfs, or 0 where pidfds are anonymous
/// inodes (before Linux 6.9), all sharing one number.
fn pidfs_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor and `fs` a writable statfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between libcs
    if fs.f_type as i64 != PIDFS_MAGIC {
        return Ok(0);
    }
    // SAFETY: as above, for stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor and `st` a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_held_until_it_exits_and_its_key_is_its_own() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let p = Process::open(child.id()).unwrap();
        let me = Process::open(std::process::id()).unwrap();
        assert_eq!(p.pid(), child.id());
        assert!(!p.has_exited().unwrap());
        assert_ne!(p.key(), me.key(), "two live processes have different keys (or pidfs is missing: both 0)");
        child.kill().unwrap();
        // Until it is reaped it is a zombie: exited already.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !p.has_exited().unwrap() {
            assert!(std::time::Instant::now() < deadline, "the pidfd never said the child exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(p.has_exited().unwrap(), "and after it was reaped");
    }

    #[test]
    fn missing_pids_and_threads_are_refused() {
        for pid in [0, u32::MAX - 3, i32::MAX as u32] {
            assert!(matches!(Process::open(pid), Err(EngineError::NoSuchProcess(p)) if p == pid), "{pid}");
        }
        // A thread of this process (the test harness runs each test on one).
        let tid = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            (tid, Process::open(tid).map(|p| p.pid()))
        })
        .join()
        .unwrap();
        match tid.1 {
            Err(EngineError::Invalid(InvalidInput::Thread { tid: t, tgid })) => {
                assert_eq!((t, tgid), (tid.0, std::process::id()))
            }
            other => panic!("thread {} accepted as a process: {other:?}", tid.0),
        }
    }
}
