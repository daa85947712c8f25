//! Where `run` and `capture` get TLS keys: a private key log that `run`
//! hands its command in `SSLKEYLOGFILE` (created before the command starts,
//! removed when pidcap ends), or a file the user named (SSLKEYLOGFILE
//! already set, or `--keylog FILE`: read, never removed).
//!
//! The private file is `sslkeylog.txt` in a fresh directory made by
//! `mkdtemp` (mode 0700) under the temporary directory; the file is created
//! with `O_EXCL | O_NOFOLLOW`, mode 0600. Both are removed when the
//! [`KeyLog`] is dropped: at the normal end, on an error, and after
//! SIGINT/SIGTERM/SIGHUP (they end the capture loop, they do not kill
//! pidcap). Only SIGKILL leaves them behind (a 0700 directory of root's).

use anyhow::{Context, Result};
use pidcap_pcapfile::{KeyLogFollower, KeyLogLine};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file name of the private key log in its directory.
const FILE_NAME: &str = "sslkeylog.txt";

/// A key log being followed.
#[derive(Debug)]
pub struct KeyLog {
    follower: KeyLogFollower,
    /// The private directory to remove (None: the user's file, kept).
    private_dir: Option<PathBuf>,
}

impl KeyLog {
    /// A private key log (see the module doc).
    pub fn private() -> Result<KeyLog> {
        let template = std::env::temp_dir().join("pidcap-keylog-XXXXXX");
        let mut bytes = template.into_os_string().into_vec();
        bytes.push(0);
        let mut buf = CString::from_vec_with_nul(bytes).context("temporary directory path")?.into_bytes_with_nul();
        // SAFETY: buf is a NUL-terminated template that mkdtemp rewrites in place; it lives across the call.
        let made = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(std::io::Error::last_os_error())
                .context("cannot create a private directory for the TLS key log");
        }
        buf.pop();
        let dir = PathBuf::from(OsString::from_vec(buf));
        let mut log = KeyLog { follower: KeyLogFollower::new(&dir.join(FILE_NAME)), private_dir: Some(dir.clone()) };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir.join(FILE_NAME))
            .with_context(|| format!("cannot create the TLS key log {}", dir.join(FILE_NAME).display()))?;
        log.follower.poll();
        Ok(log)
    }

    /// The user's key log at `path` (it may not exist yet); kept afterwards.
    pub fn existing(path: &Path) -> KeyLog {
        KeyLog { follower: KeyLogFollower::new(path), private_dir: None }
    }

    pub fn path(&self) -> &Path {
        self.follower.path()
    }

    pub fn is_private(&self) -> bool {
        self.private_dir.is_some()
    }

    /// The complete lines added since the last call.
    pub fn poll(&mut self) -> Vec<KeyLogLine> {
        self.follower.poll()
    }

    /// The last lines, a last one without its newline included.
    pub fn finish(&mut self) -> Vec<KeyLogLine> {
        self.follower.finish()
    }

    /// Lines that were not valid keys (ignored).
    pub fn bad_lines(&self) -> u64 {
        self.follower.bad_lines()
    }
}

impl Drop for KeyLog {
    fn drop(&mut self) {
        if let Some(dir) = self.private_dir.take() {
            let _ = std::fs::remove_file(dir.join(FILE_NAME));
            // Anything else the command put there goes too; the directory was ours alone.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_private_log_is_private_read_as_it_grows_and_removed() {
        let mut log = KeyLog::private().unwrap();
        let path = log.path().to_path_buf();
        let dir = path.parent().unwrap().to_path_buf();
        assert!(log.is_private());
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let mut w = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let line = format!("CLIENT_RANDOM {} {}", "01".repeat(32), "02".repeat(48));
        writeln!(w, "{line}\nnonsense").unwrap();
        assert_eq!(log.poll().iter().map(KeyLogLine::to_line).collect::<Vec<_>>(), [line]);
        assert_eq!(log.bad_lines(), 1);
        drop(log);
        assert!(!path.exists() && !dir.exists());
    }

    #[test]
    fn a_users_log_is_kept() {
        let dir = std::env::temp_dir().join(format!("pidcap-cli-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mine.log");
        std::fs::write(&path, b"").unwrap();
        let mut log = KeyLog::existing(&path);
        assert!(!log.is_private());
        assert!(log.finish().is_empty());
        drop(log);
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
