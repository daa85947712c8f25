//! Starting the command of `pidcap run` so that it is a capture target before
//! it executes: fork, hold the child at a gate (a pipe) until the parent has
//! registered its pid with the kernel layer, then exec.
//!
//! `std::process::Command` cannot do this: its `spawn` waits for the exec to
//! succeed or fail, and the exec is exactly what must wait for us.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A forked child waiting at the gate, not yet executing the command.
pub struct GatedChild {
    pub pid: u32,
    gate: OwnedFd,
    exec_err: OwnedFd,
}

/// A running command.
pub struct Child {
    pub pid: u32,
    status: Option<u8>,
}

/// Resolve `program` the way a shell would: as a path if it has a `/`, else in $PATH.
pub fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    let not_found =
        || io::Error::new(io::ErrorKind::NotFound, format!("command not found: {}", program.to_string_lossy()));
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return if p.exists() { Ok(p) } else { Err(not_found()) };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| is_executable(p)).ok_or_else(not_found)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork a child that will exec `argv` once [`GatedChild::release`] is called.
/// With `stdout_to_stderr`, the command's stdout is our stderr (when our
/// stdout carries the capture file, `-w -`).
pub fn spawn_gated(argv: &[OsString], stdout_to_stderr: bool) -> io::Result<GatedChild> {
    let program =
        resolve(argv.first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?)?;
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in command"))
    };
    let path = cstr(program.as_os_str())?;
    let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());

    let (gate_r, gate_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: fork has no preconditions; in the child only async-signal-safe
    // calls follow (read, write, execv, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // Child.
        // SAFETY: (whole block) raw fds and pointers prepared above stay
        // valid in the child's copy of the address space; no allocation happens.
        unsafe {
            let mut b = 0u8;
            loop {
                let n = libc::read(gate_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(127); // the parent went away before releasing us
            }
            if stdout_to_stderr {
                libc::dup2(2, 1);
            }
            libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_w.as_raw_fd(), (&errno as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(gate_r);
    drop(err_w);
    Ok(GatedChild { pid: pid as u32, gate: gate_w, exec_err: err_r })
}

impl GatedChild {
    /// Let the child exec; Err if the exec failed (the child has then exited).
    pub fn release(self) -> io::Result<Child> {
        let b = 1u8;
        // SAFETY: writing one byte from a valid local to a pipe we own.
        let n = unsafe { libc::write(self.gate.as_raw_fd(), (&b as *const u8).cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        drop(self.gate);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into the valid remainder of a local 4-byte buffer.
            let n = unsafe { libc::read(self.exec_err.as_raw_fd(), errno[got..].as_mut_ptr().cast(), 4 - got) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        let mut child = Child { pid: self.pid, status: None };
        if got == 4 {
            child.wait_blocking();
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
        }
        Ok(child)
    }

    /// Kill the held child (when registering it failed).
    pub fn abort(self) {
        let mut child = Child { pid: self.pid, status: None };
        child.signal(libc::SIGKILL);
        child.wait_blocking();
    }
}

impl Child {
    /// The exit code once the child has exited (128 + signal when killed), without blocking.
    pub fn try_wait(&mut self) -> Option<u8> {
        if self.status.is_none() {
            self.reap(libc::WNOHANG);
        }
        self.status
    }

    pub fn wait_blocking(&mut self) -> u8 {
        while self.status.is_none() {
            self.reap(0);
        }
        self.status.unwrap_or(1)
    }

    fn reap(&mut self, flags: libc::c_int) {
        let mut st = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut st, flags) };
        if rc == self.pid as libc::pid_t {
            self.status = Some(if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st) as u8
            } else {
                128u8.wrapping_add(libc::WTERMSIG(st) as u8)
            });
        } else if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            self.status = Some(1);
        }
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_after_release_and_reports_the_exit_code() {
        let g = spawn_gated(&["sh".into(), "-c".into(), "exit 7".into()], false).unwrap();
        let mut c = g.release().unwrap();
        assert_eq!(c.wait_blocking(), 7);
    }

    #[test]
    fn child_waits_at_the_gate() {
        let dir = std::env::temp_dir().join(format!("pidcap-gate-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let g = spawn_gated(&["touch".into(), dir.clone().into()], false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!dir.exists(), "the command must not run before release");
        let mut c = g.release().unwrap();
        assert_eq!(c.wait_blocking(), 0);
        assert!(dir.exists());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn missing_commands_are_reported() {
        let e = spawn_gated(&["pidcap-no-such-command".into()], false).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // A path that exists but cannot be executed fails at exec.
        let g = spawn_gated(&["/etc/hostname".into()], false);
        assert!(g.is_err() || g.unwrap().release().is_err());
    }

    #[test]
    fn killed_children_report_128_plus_signal() {
        let g = spawn_gated(&["sleep".into(), "10".into()], false).unwrap();
        let mut c = g.release().unwrap();
        c.signal(libc::SIGKILL);
        assert_eq!(c.wait_blocking(), 128 + 9);
    }
}
