//! Errors of the daemon and of its client.

use crate::protocol::ApiError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another pidcap daemon is already serving {0}")]
    AlreadyRunning(PathBuf),

    #[error("{0} exists and is not a socket; remove it or choose another --socket")]
    NotASocket(PathBuf),

    #[error("no pidcap daemon is listening on {0} (start one with `sudo pidcap daemon`)")]
    NotRunning(PathBuf),

    #[error("permission denied on {0}: use root or a member of the `pidcap` group")]
    PermissionDenied(PathBuf),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Engine(#[from] pidcap_engine::EngineError),

    /// The daemon answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),

    /// The daemon sent something this client does not understand.
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
}

impl ControlError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ControlError {
        ControlError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;
