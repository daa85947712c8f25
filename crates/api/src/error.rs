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

    /// The daemon closed the connection before answering.
    #[error("the daemon closed the connection")]
    Closed,

    /// A line from the daemon that is not a reply or an event of this protocol.
    #[error("unexpected reply from the daemon: {source}: {line}")]
    BadReply {
        /// The line, cut to its first few hundred bytes.
        line: String,
        #[source]
        source: serde_json::Error,
    },

    /// A result that does not have the shape the operation promises.
    #[error("unexpected result of `{op}` from the daemon: {source}")]
    BadResult {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A request this client could not encode.
    #[error("encoding the `{op}` request: {source}")]
    Encode {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A successful reply that lacks what the operation promises.
    #[error("unexpected result of `{op}` from the daemon: {missing}")]
    Incomplete { op: &'static str, missing: &'static str },
}

impl ClientError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
