//! Helpers shared by pidcap's integration tests (a dev-dependency only).
//!
//! - [`require!`]: a test states what it needs (root, a tool on PATH). When
//!   something is missing it is skipped with a `SKIPPED` line, except under
//!   `CI=true`, where it fails naming what is missing: a CI machine that lacks
//!   root or tshark must not look green.
//! - [`NetNs`]: a network namespace of the test's own, loopback up, deleted
//!   on drop. Test traffic stays inside it.
//! - [`cgroup`]: a cgroup2 directory of the test's own, removed on drop.
//! - [`tmpfs`]: a small tmpfs of the test's own (a disk that fills), unmounted on drop.
//! - [`Scratch`]: a scratch directory of the test's own, removed on drop.
//! - [`KillOnDrop`]: a child process killed and reaped on drop (a failed
//!   assertion leaves no helper process behind).
//! - [`tls`]: test certificates, the Python HTTPS peer script and guards for
//!   its processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod cgroup;
pub mod tls;
pub mod tmpfs;

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0 (eBPF, network namespaces, raw sockets, pidfd_getfd).
    Root,
    /// A program on PATH, by name (`tshark`, `ip`, `python3`, `chromium`...).
    Tool(&'static str),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Root => f.write_str("root"),
            Need::Tool(t) => write!(f, "the tool `{t}`"),
        }
    }
}

/// True under `CI=true` (or `CI=1`): missing needs fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where `tool` is on PATH, if it is.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| tool.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// What of `needs` this machine lacks.
pub fn missing(needs: &[Need]) -> Vec<Need> {
    needs
        .iter()
        .copied()
        .filter(|n| match n {
            Need::Root => !is_root(),
            Need::Tool(t) => find_tool(t).is_none(),
        })
        .collect()
}

/// True when `test` may run. When some of `needs` are missing: prints
/// `SKIPPED test: needs ...` and returns false, or panics with that text
/// under `CI=true`.
pub fn require(test: &str, needs: &[Need]) -> bool {
    let lacking = missing(needs);
    if lacking.is_empty() {
        return true;
    }
    let what = lacking.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if in_ci() {
        panic!("{test} needs {what}, which this machine lacks (CI=true: a test that cannot run fails)");
    }
    eprintln!("SKIPPED {test}: needs {what}");
    false
}

/// Return from the calling test unless the machine has what it needs (see [`require()`]).
/// `require!(Root, Tool("tshark"))`.
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::Need::*;
        fn __here() {}
        let test = std::any::type_name_of_val(&__here).trim_end_matches("::__here");
        if !$crate::require(test, &[$($need),+]) {
            return;
        }
    }};
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with only `lo`, up; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A new namespace named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("pidcap-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        run_ip(&["netns", "add", &name]);
        run_ip(&["-n", &name, "link", "set", "lo", "up"]);
        NetNs { name }
    }

    /// A command that runs inside the namespace (`ip netns exec` execs it: its pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

fn run_ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(st.success(), "ip {args:?} failed: {st}");
}

/// A scratch directory, `$TMPDIR/pidcap-TAG-PID` (emptied first: a test
/// binary that died left it), removed on drop. Tags are unique within a
/// test binary; the pid keeps binaries apart.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("pidcap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        Scratch(p)
    }

    /// `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed (SIGKILL) and reaped when dropped: a test that
/// fails half-way leaves no helper process running. Derefs to the
/// [`std::process::Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_reported_by_name() {
        let lacking = missing(&[Need::Tool("pidcap-no-such-tool"), Need::Tool("sh")]);
        assert_eq!(lacking, [Need::Tool("pidcap-no-such-tool")]);
        assert_eq!(lacking[0].to_string(), "the tool `pidcap-no-such-tool`");
    }
}
