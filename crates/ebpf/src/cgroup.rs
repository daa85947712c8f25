//! Finding (or mounting) the cgroup2 hierarchy whose root the programs attach to.

use pidcap_engine::error::{EngineError, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Where pidcap mounts cgroup2 itself when the system has none mounted.
pub const OWN_MOUNT: &str = "/run/pidcap/cgroup2";

/// The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo.
pub fn find_cgroup2(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        // Only a mount of the hierarchy's root reaches every process.
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

#[cfg(test)]
mod tests {
    use super::*;

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
