//! Finding (or mounting) the cgroup2 hierarchy whose root the programs attach to.

pub use pidcap_engine::cgroup::find_cgroup2;
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
