//! The pidcap packet library: packets (and TLS plaintext records, with their
//! library and thread) saved with their capture metadata, a name, a
//! description and tags, in a SQLite database (bundled SQLite, WAL,
//! FTS5 full-text search ranked by bm25), grouped into sequences, imported
//! from pcap/pcapng and `.dpp` files and exported to pcapng, pcap and `.dpp`.
//!
//! Open one with [`Library::open`] (or [`Library::open_default`], which uses
//! [`default_db_path`]): the database is created 0600 in an existing
//! directory (only the default one is created, 0700); exports are 0600. Every write is one transaction: a crash, a full disk
//! or a malformed import leaves the database as it was before the call.
//!
//! Saving by a live capture's packet id goes through [`PacketSource`], which
//! the CLI implements over the daemon's socket (`pidcap lib save --packet`).

mod dpp;
mod error;
mod model;
mod schema;
mod search;
mod store;
mod transfer;

pub use dpp::{
    parse_dpp, write_dpp, DppFile, NewSequence, MAX_DESCRIPTION_CHARS, MAX_FILE_BYTES, MAX_NAME_CHARS, MAX_PACKETS,
    MAX_PACKET_BYTES, MAX_SEQUENCES, MAX_TAGS, MAX_TAG_CHARS, MAX_V1_PAYLOAD_BYTES,
};
pub use error::{LibraryError, Result};
pub use model::{
    Filter, MetaEdit, NewPacket, PacketId, PacketMeta, SavedPacket, SearchHit, Selection, Sequence, SequenceId,
    TagCount,
};
pub use schema::{migration_sql, SCHEMA_VERSION};
pub use search::{build_match, SearchResults, RANKED_MATCHES_MAX, SEARCH_WINDOW};
pub use transfer::{parse_frames, ExportFormat, ImportReport, PacketSource, PcapSaved};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The default database: `$XDG_DATA_HOME/pidcap/library.db`, else
/// `$HOME/.local/share/pidcap/library.db` (relative `XDG_DATA_HOME` is ignored,
/// as the XDG spec says).
pub fn default_db_path() -> Result<PathBuf> {
    default_db_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn default_db_path_from(xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let base = match xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(p) => p,
        None => match home.map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(h) => h.join(".local/share"),
            None => {
                return Err(LibraryError::Invalid(
                    "neither XDG_DATA_HOME nor HOME is set to an absolute path; pass --db PATH".into(),
                ))
            }
        },
    };
    Ok(base.join("pidcap").join("library.db"))
}

/// An open packet library.
pub struct Library {
    conn: Connection,
    path: PathBuf,
    /// [`SEARCH_WINDOW`] and [`RANKED_MATCHES_MAX`], changeable by tests.
    search_limits: (usize, usize),
    /// The schema version of the database: [`SCHEMA_VERSION`], or an older
    /// one from [`schema::READ_ONLY_FROM`] on when opened read-only.
    schema: i64,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("path", &self.path).finish()
    }
}

impl Library {
    /// Open the library at `path`, creating the database (mode 0600) if it
    /// does not exist, migrating an older schema. The directory must exist,
    /// except for [`default_db_path`], whose directories are created (mode
    /// 0700). `path` must be a regular file (or not exist): `/dev/null` or a
    /// directory is refused, so SQLite never puts its `-wal`, `-shm` or
    /// `-journal` files beside a device. SQLite gives those files the
    /// database's mode, so a library created here is private as a whole.
    pub fn open(path: impl AsRef<Path>) -> Result<Library> {
        let path = path.as_ref().to_path_buf();
        let is_default = default_db_path().is_ok_and(|d| d == path);
        prepare(&path, is_default)?;
        // Not SQLITE_OPEN_CREATE: `prepare` made the file, and it must stay the one checked.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&path, flags).map_err(|source| open_error(&path, source))?;
        Library::setup(conn, path, true)
    }

    /// Open the library at [`default_db_path`], creating its directories (0700).
    pub fn open_default() -> Result<Library> {
        Library::open(default_db_path()?)
    }

    /// Open an existing library read-only (listing, searching, exporting); any
    /// write fails with [`LibraryError::ReadOnly`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Library> {
        let path = path.as_ref().to_path_buf();
        if let Ok(m) = std::fs::metadata(&path) {
            if !m.is_file() {
                return Err(not_a_file(&path));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&path, flags).map_err(|source| open_error(&path, source))?;
        Library::setup(conn, path, false)
    }

    fn setup(mut conn: Connection, path: PathBuf, writable: bool) -> Result<Library> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if writable {
            let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(LibraryError::Invalid(format!(
                    "cannot put {} in WAL mode (got {mode}); is it on a network filesystem?",
                    path.display()
                )));
            }
            // FULL: a commit reported to the caller survives a power cut, not only a crash.
            conn.pragma_update(None, "synchronous", "FULL")?;
            schema::migrate(&mut conn, &path)?;
        }
        let found = schema::version(&conn)?;
        // Read-only, an older schema whose packets read as they are (later
        // versions only added indexes) is read without migrating it.
        if !writable && !(schema::READ_ONLY_FROM..=SCHEMA_VERSION).contains(&found) {
            return Err(LibraryError::Invalid(format!(
                "{} has schema version {found}, this pidcap reads {} to {SCHEMA_VERSION}; open it read-write once to migrate",
                path.display(),
                schema::READ_ONLY_FROM
            )));
        }
        Ok(Library { conn, path, search_limits: (SEARCH_WINDOW, RANKED_MATCHES_MAX), schema: found })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for tests and diagnostics (integrity checks,
    /// size limits). Writing through it bypasses the full-text index.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Use other values than [`SEARCH_WINDOW`] and [`RANKED_MATCHES_MAX`] (tests
    /// of the large-result paths on a small library).
    #[doc(hidden)]
    pub fn set_search_limits(&mut self, window: usize, ranked_matches_max: usize) {
        self.search_limits = (window.max(1), ranked_matches_max.max(window.max(1)));
    }

    /// `PRAGMA integrity_check`; `Ok(())` when the database is sound.
    pub fn check_integrity(&self) -> Result<()> {
        let res: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if res != "ok" {
            return Err(LibraryError::Invalid(format!("integrity check failed: {res}")));
        }
        Ok(())
    }
}

fn not_a_file(path: &Path) -> LibraryError {
    LibraryError::Invalid(format!(
        "{} is not a regular file: the packet library is a database file (pass --db with a file name)",
        path.display()
    ))
}

/// Make sure `path` can be the database: its directory exists (created,
/// 0700, when `create_dirs`), and it is a regular file, or is created as an
/// empty one (an empty file is an empty SQLite database) with mode 0600.
fn prepare(path: &Path, create_dirs: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if create_dirs {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| LibraryError::io(format!("cannot create {}", dir.display()), e))?;
    } else if !dir.is_dir() {
        return Err(LibraryError::Invalid(format!(
            "cannot create the packet library {}: the directory {} does not exist (create it first; only the \
             default library's directory is created for you)",
            path.display(),
            dir.display()
        )));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => return Err(not_a_file(path)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LibraryError::io(format!("cannot open the packet library {}", path.display()), e))
        }
        Err(_) => {}
    }
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(LibraryError::Invalid(format!(
            "{} is a symbolic link to a file that does not exist; refusing to create the packet library through it",
            path.display()
        )));
    }
    // O_EXCL: never through a link, never over a file created meanwhile.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| LibraryError::io(format!("cannot make {} private", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(not_a_file(path)),
        },
        Err(e) => Err(LibraryError::io(format!("cannot create the packet library {}", path.display()), e)),
    }
}

fn open_error(path: &Path, source: rusqlite::Error) -> LibraryError {
    match LibraryError::from(source) {
        LibraryError::Sqlite(source) => LibraryError::Open { path: path.to_path_buf(), source },
        other => other,
    }
}

/// Nanoseconds since the UNIX epoch, now.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_follows_xdg() {
        let p = default_db_path_from(Some("/x/data".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/data/pidcap/library.db"));
        let p = default_db_path_from(Some("relative".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/u/.local/share/pidcap/library.db"));
        let p = default_db_path_from(None, Some("/home/u".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/u/.local/share/pidcap/library.db"));
        assert!(default_db_path_from(None, None).is_err());
    }
}
