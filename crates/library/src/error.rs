//! The library's error type: every failure names what went wrong in words a
//! user can act on (which field of which file, a full disk, a read-only database).

use std::path::PathBuf;

/// Everything that can go wrong in the packet library.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The database file could not be opened or created.
    #[error("cannot open the packet library {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    /// The database was written by a newer pidcap whose schema this one does not know.
    #[error("the packet library {path} has schema version {found}, newer than this pidcap supports ({supported}); upgrade pidcap")]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    /// The database (or its directory) is read-only; nothing was changed.
    #[error("the packet library is read-only (check the permissions of the database file and its directory); nothing was changed")]
    ReadOnly,
    /// The disk (or the database's size limit) is full; the transaction was rolled back, nothing was changed.
    #[error("the disk holding the packet library is full; the operation was rolled back and nothing was changed")]
    DiskFull,
    /// The database is locked by another process for longer than the busy timeout.
    #[error("the packet library is busy (locked by another pidcap process); try again")]
    Busy,
    /// Any other SQLite failure.
    #[error("packet library database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A packet, tag or sequence id that does not exist.
    #[error("no {what} with id {id} in the library")]
    NotFound { what: &'static str, id: i64 },
    /// A tag name that does not exist.
    #[error("no tag named {0:?} in the library")]
    NoSuchTag(String),
    /// An argument that is not acceptable (empty tag, bad frame range...).
    #[error("{0}")]
    Invalid(String),
    /// A `.dpp` file that is malformed, truncated, oversized or hostile; `field`
    /// is the JSON path, `source` the error underneath (I/O, JSON, hex...) if any.
    #[error("invalid .dpp file: {field}: {message}")]
    Dpp {
        field: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A pcap/pcapng file (`path`, when it is one) that could not be read or written.
    #[error("pcap: {}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Pcap { path: Option<PathBuf>, source: pidcap_pcapfile::PcapError },
    /// A [`crate::PacketSource`] (the daemon) could not hand over the packets asked for.
    #[error("{0}")]
    Source(String),
    /// A [`crate::PacketSource`] failed on an error of its own (`the daemon: connection refused`).
    #[error("{context}: {source}")]
    SourceFailed { context: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// An I/O failure on a file other than the database.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl LibraryError {
    /// A `.dpp` error about `field`.
    pub(crate) fn dpp(field: impl Into<String>, message: impl Into<String>) -> LibraryError {
        LibraryError::Dpp { field: field.into(), message: message.into(), source: None }
    }

    /// A `.dpp` error about `field`, caused by `source`.
    pub(crate) fn dpp_caused(
        field: impl Into<String>,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LibraryError {
        LibraryError::Dpp { field: field.into(), message: message.into(), source: Some(Box::new(source)) }
    }

    /// A [`crate::PacketSource`] failure caused by `source` (for implementors).
    pub fn source_failed(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LibraryError {
        LibraryError::SourceFailed { context: context.into(), source: Box::new(source) }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LibraryError {
        LibraryError::Io { context: context.into(), source }
    }
}

impl From<rusqlite::Error> for LibraryError {
    fn from(e: rusqlite::Error) -> LibraryError {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::ReadOnly) => LibraryError::ReadOnly,
            Some(ErrorCode::DiskFull) => LibraryError::DiskFull,
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => LibraryError::Busy,
            _ => LibraryError::Sqlite(e),
        }
    }
}

/// Result alias for the library.
pub type Result<T, E = LibraryError> = std::result::Result<T, E>;
