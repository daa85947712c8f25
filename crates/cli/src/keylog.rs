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
//! pidcap). Only SIGKILL leaves them behind (a 0700 directory of root's):
//! the directory's name carries pidcap's pid (`pidcap-keylog-PID-XXXXXX`),
//! and the next `run` removes those of pidcaps that no longer run.

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
        remove_stale(&std::env::temp_dir());
        let template = std::env::temp_dir().join(format!("pidcap-keylog-{}-XXXXXX", std::process::id()));
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

/// Remove the private key log directories in `tmp` that SIGKILLed pidcaps
/// left: named `pidcap-keylog-PID-...` for a PID that no longer runs, real
/// directories (not links), ours, mode 0700.
fn remove_stale(tmp: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(dir) = std::fs::read_dir(tmp) else { return };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in dir.map_while(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pidcap-keylog-")).and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        if meta.is_dir() && meta.uid() == me && meta.permissions().mode() & 0o777 == 0o700 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
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
    fn directories_left_by_a_killed_pidcap_go_at_the_next_start() {
        let tmp = std::env::temp_dir().join(format!("pidcap-cli-stale-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mk = |name: &str, mode: u32| {
            let d = tmp.join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join(FILE_NAME), b"old keys").unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            d
        };
        // No process has a pid above pid_max (4194304 at most).
        let dead = mk("pidcap-keylog-4194305-abcdef", 0o700);
        let alive = mk(&format!("pidcap-keylog-{}-abcdef", std::process::id()), 0o700);
        let open = mk("pidcap-keylog-4194306-abcdef", 0o755);
        let link = tmp.join("pidcap-keylog-4194307-abcdef");
        std::os::unix::fs::symlink(&alive, &link).unwrap();
        remove_stale(&tmp);
        assert!(!dead.exists(), "a dead pidcap's directory goes");
        assert!(alive.join(FILE_NAME).exists(), "a running pidcap's stays");
        assert!(open.exists(), "not one of ours (mode): kept");
        assert!(std::fs::symlink_metadata(&link).is_ok(), "a link is not followed nor removed");
        std::fs::remove_dir_all(&tmp).unwrap();
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
