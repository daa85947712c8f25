//! Errors of the daemon's client.

use crate::protocol::ApiError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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

    /// The daemon answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),

    /// The daemon sent something this client does not understand.
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
