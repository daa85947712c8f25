//! Errors of the daemon.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another pidcap daemon is already serving {0}")]
    AlreadyRunning(PathBuf),

    #[error("{0} exists and is not a socket; remove it or choose another --socket")]
    NotASocket(PathBuf),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Engine(#[from] pidcap_engine::EngineError),
}

impl DaemonError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> DaemonError {
        DaemonError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;
