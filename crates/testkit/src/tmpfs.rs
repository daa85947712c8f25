//! A small tmpfs of a test's own: a disk that fills up.

use crate::tls::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` (as mount's `size=` takes it: `64k`, `2500k`) mounted
/// on a fresh directory, unmounted on drop (even when the test fails).
pub struct Tmpfs(TempDir);

impl Tmpfs {
    pub fn mount(tag: &str, size: &str) -> Tmpfs {
        let dir = TempDir::new(tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "pidcap-test"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}
