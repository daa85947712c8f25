//! The one way to start a held process: a command that is a capture target
//! before it executes (`pidcap run`, the UI's "run a command"). Fork, hold the
//! child at a gate (a pipe) until the parent has registered its pid with the
//! kernel layer, then exec.
//!
//! `std::process::Command` cannot do this: its `spawn` waits for the exec to
//! succeed or fail, and the exec is exactly what must wait for us.
//!
//! ```ignore
//! let gated = spawn_gated(&argv, &Stdio::default())?;   // forked, held
//! capture.add_pid(gated.pid)?;                          // on failure: gated.abort()
//! let mut child = gated.release()?;                     // exec; Err if it failed
//! let code = child.wait_blocking();
//! ```

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where a held command's standard output and error go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    /// This process's own (the default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// This process's stderr (for stdout, when ours carries a capture file: `-w -`).
    Stderr,
}

/// The command's standard streams; stdin is always inherited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdout: Output,
    pub stderr: Output,
}

/// A forked child waiting at the gate, not yet executing the command.
/// Dropping it without [`Gated::release`] kills and reaps the child.
pub struct Gated {
    pub pid: u32,
    /// None once released or aborted.
    fds: Option<(OwnedFd, OwnedFd)>,
}

/// A running command. Dropping it leaves the command running (unreaped).
#[derive(Debug)]
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

/// Fork a child that will exec `argv` (`argv[0]` resolved like a shell does)
/// once [`Gated::release`] is called, with its output where `stdio` says.
pub fn spawn_gated(argv: &[OsString], stdio: &Stdio) -> io::Result<Gated> {
    let program =
        resolve(argv.first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?)?;
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in command"))
    };
    let path = cstr(program.as_os_str())?;
    let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<io::Result<_>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());

    // Every descriptor the child needs is opened before the fork.
    let null = match (stdio.stdout, stdio.stderr) {
        (Output::Null, _) | (_, Output::Null) => Some(std::fs::OpenOptions::new().write(true).open("/dev/null")?),
        _ => None,
    };
    let target = |o: Output, own: libc::c_int| match (o, &null) {
        (Output::Inherit, _) => own,
        (Output::Stderr, _) => 2,
        (Output::Null, Some(n)) => n.as_raw_fd(),
        (Output::Null, None) => own, // unreachable: opened above
    };
    let (out_fd, err_fd) = (target(stdio.stdout, 1), target(stdio.stderr, 2));
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
            // The parent's ends: were the child to keep the gate's write end,
            // its read would never see EOF when the parent dies, and it would
            // wait forever holding copies of every descriptor the parent had
            // (its BPF links among them: programs and block rules would
            // outlive a SIGKILLed pidcap).
            libc::close(gate_w.as_raw_fd());
            libc::close(err_r.as_raw_fd());
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
            // stdout first: when it goes to our stderr, it must be the original one.
            if out_fd != 1 {
                libc::dup2(out_fd, 1);
            }
            if err_fd != 2 {
                libc::dup2(err_fd, 2);
            }
            libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_w.as_raw_fd(), (&errno as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(gate_r);
    drop(err_w);
    Ok(Gated { pid: pid as u32, fds: Some((gate_w, err_r)) })
}

impl Gated {
    /// Let the child exec; Err if the exec failed (the child has then exited and is reaped).
    pub fn release(mut self) -> io::Result<Child> {
        let Some((gate, exec_err)) = self.fds.take() else {
            return Err(io::Error::other("the held child is gone"));
        };
        let b = 1u8;
        // SAFETY: writing one byte from a valid local to a pipe we own.
        let n = unsafe { libc::write(gate.as_raw_fd(), (&b as *const u8).cast(), 1) };
        if n != 1 {
            let e = io::Error::last_os_error();
            self.kill_and_reap();
            return Err(e);
        }
        drop(gate);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into the valid remainder of a local 4-byte buffer.
            let n = unsafe { libc::read(exec_err.as_raw_fd(), errno[got..].as_mut_ptr().cast(), 4 - got) };
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

    /// Kill and reap the held child (when registering it failed).
    pub fn abort(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        self.fds = None;
        let mut child = Child { pid: self.pid, status: None };
        child.signal(libc::SIGKILL);
        child.wait_blocking();
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if self.fds.is_some() {
            self.kill_and_reap();
        }
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
        let g = spawn_gated(&["sh".into(), "-c".into(), "exit 7".into()], &Stdio::default()).unwrap();
        let mut c = g.release().unwrap();
        assert_eq!(c.wait_blocking(), 7);
    }

    /// A held child must see EOF on its gate when the parent dies (SIGKILL
    /// included), so it must not hold the gate's write end itself: else it
    /// waits forever with copies of the parent's descriptors (BPF links).
    #[test]
    fn the_held_child_holds_no_write_end_of_its_gate() {
        let g = spawn_gated(&["true".into()], &Stdio::default()).unwrap();
        let proc = std::path::PathBuf::from(format!("/proc/{}", g.pid));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(proc.join("wchan")).is_ok_and(|w| !w.contains("pipe")) {
            assert!(std::time::Instant::now() < deadline, "the child never blocked at the gate");
            std::thread::yield_now();
        }
        let (gate_w, err_r) = g.fds.as_ref().unwrap();
        let link = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let (gate, err) = (link(gate_w.as_raw_fd()), link(err_r.as_raw_fd()));
        let mut held = 0;
        for e in std::fs::read_dir(proc.join("fd")).unwrap() {
            let fd: i32 = e.unwrap().file_name().to_string_lossy().parse().unwrap();
            let target = std::fs::read_link(proc.join("fd").join(fd.to_string())).unwrap();
            let mode = std::fs::read_to_string(proc.join("fdinfo").join(fd.to_string())).unwrap();
            let write_only = mode.lines().any(|l| l.starts_with("flags:") && l.trim_end().ends_with('1'));
            if (target == gate && write_only) || (target == err && !write_only) {
                held += 1;
            }
        }
        assert_eq!(held, 0, "the held child keeps the parent's end of its gate or error pipe");
        g.abort();
    }

    #[test]
    fn child_waits_at_the_gate() {
        let dir = std::env::temp_dir().join(format!("pidcap-gate-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let g = spawn_gated(&["touch".into(), dir.clone().into()], &Stdio::default()).unwrap();
        // Wait until the child sleeps reading the gate pipe: from then on it
        // can only go on when released.
        let proc = std::path::PathBuf::from(format!("/proc/{}", g.pid));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(proc.join("wchan")).is_ok_and(|w| !w.contains("pipe")) {
            assert!(std::time::Instant::now() < deadline, "the child never blocked at the gate");
            std::thread::yield_now();
        }
        assert_eq!(std::fs::read_link(proc.join("exe")).unwrap(), std::env::current_exe().unwrap(), "not executed");
        assert!(!dir.exists(), "the command must not run before release");
        let mut c = g.release().unwrap();
        assert_eq!(c.wait_blocking(), 0);
        assert!(dir.exists());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn missing_commands_are_reported() {
        let e = spawn_gated(&["pidcap-no-such-command".into()], &Stdio::default()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // A path that exists but cannot be executed fails at exec.
        let g = spawn_gated(&["/etc/hostname".into()], &Stdio::default());
        assert!(g.is_err() || g.unwrap().release().is_err());
    }

    #[test]
    fn output_goes_where_it_is_asked() {
        let sh = |script: &str, stdio: Stdio| {
            let g = spawn_gated(&["sh".into(), "-c".into(), script.into()], &stdio).unwrap();
            g.release().unwrap().wait_blocking()
        };
        // With stdout on /dev/null a write still succeeds; a closed stdout would fail it.
        let null = Stdio { stdout: Output::Null, stderr: Output::Null };
        assert_eq!(sh("echo hidden && echo hidden >&2", null), 0);
        let to_stderr = Stdio { stdout: Output::Stderr, ..Stdio::default() };
        // stdout is now the same open file as stderr.
        assert_eq!(sh("[ \"$(readlink /proc/$$/fd/1)\" = \"$(readlink /proc/$$/fd/2)\" ]", to_stderr), 0);
        assert_eq!(sh("[ \"$(readlink /proc/$$/fd/1)\" = /dev/null ]", null), 0);
        assert_eq!(sh("[ \"$(readlink /proc/$$/fd/1)\" = /dev/null ]", Stdio::default()), 1);
    }

    #[test]
    fn a_held_child_that_is_dropped_or_aborted_is_killed_and_reaped() {
        for abort in [true, false] {
            let g = spawn_gated(&["sleep".into(), "10".into()], &Stdio::default()).unwrap();
            let pid = g.pid as libc::pid_t;
            if abort {
                g.abort();
            } else {
                drop(g);
            }
            // SAFETY: kill with signal 0 only checks whether the pid exists.
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            assert!(!exists, "pid {pid} is gone (reaped), abort={abort}");
        }
    }

    #[test]
    fn killed_children_report_128_plus_signal() {
        let g = spawn_gated(&["sleep".into(), "10".into()], &Stdio::default()).unwrap();
        let mut c = g.release().unwrap();
        c.signal(libc::SIGKILL);
        assert_eq!(c.wait_blocking(), 128 + 9);
    }
}
