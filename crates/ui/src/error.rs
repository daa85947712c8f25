//! What went wrong, typed: [`Task`] names what the UI was doing, [`Problem`]
//! says why it failed (with its source). The state machine routes a failure
//! by its task (a rejected rule goes to the rule form); the screen shows both
//! in plain words ("Could not add the rule: the rule was rejected: ...").

use pidcap_api::protocol::{code_name, ApiError, ErrorCode};
use pidcap_api::ClientError;
use pidcap_library::LibraryError;
use pidcap_pcapfile::PcapError;
use std::fmt;
use std::sync::Arc;

/// What the UI was doing when something failed (shown as "Could not {task}").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    StartCapture,
    RunCommand,
    StopCapture,
    ClearBuffer,
    AddRule,
    RemoveRule,
    ChangeRule,
    ClearRules,
    Resend,
    WatchResend,
    StopResend,
    ReadLibrary,
    SaveLibrary,
    EditLibrary,
    DeleteLibrary,
    ExportLibrary,
    ExportPcapng,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::StartCapture => "start the capture",
            Task::RunCommand => "run the command",
            Task::StopCapture => "stop the capture",
            Task::ClearBuffer => "clear the buffer",
            Task::AddRule => "add the rule",
            Task::RemoveRule => "remove the rule",
            Task::ChangeRule => "change the rule",
            Task::ClearRules => "clear the rules",
            Task::Resend => "resend",
            Task::WatchResend => "watch the resend",
            Task::StopResend => "stop the resend",
            Task::ReadLibrary => "read the library",
            Task::SaveLibrary => "save in the library",
            Task::EditLibrary => "edit the library entry",
            Task::DeleteLibrary => "delete from the library",
            Task::ExportLibrary => "export the library",
            Task::ExportPcapng => "export to pcapng",
        })
    }
}

/// Why something failed. Cheap to clone (messages are `Clone`): the sources
/// are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Problem {
    /// The daemon refused, or could not be reached.
    #[error("{}", plain(.0))]
    Daemon(#[source] Arc<ClientError>),
    /// The packet library (SQLite, `.dpp`).
    #[error(transparent)]
    Library(Arc<LibraryError>),
    /// Writing a capture file.
    #[error(transparent)]
    Pcap(Arc<PcapError>),
    /// A file the UI reads for a request (a resend's CA certificates).
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A command could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Problem {
        Problem::Daemon(Arc::new(e))
    }
}

impl From<LibraryError> for Problem {
    fn from(e: LibraryError) -> Problem {
        Problem::Library(Arc::new(e))
    }
}

impl From<PcapError> for Problem {
    fn from(e: PcapError) -> Problem {
        Problem::Pcap(Arc::new(e))
    }
}

/// A daemon error in plain words.
pub fn plain(e: &ClientError) -> String {
    match e {
        ClientError::Api(a) => plain_api(a),
        ClientError::NotRunning(p) => format!(
            "No pidcap daemon is running on {}. Start one with `sudo pidcap daemon` (or run `sudo pidcap ui`).",
            p.display()
        ),
        ClientError::PermissionDenied(p) => format!(
            "You do not have the rights to use the pidcap daemon ({}): run as root, or join the `pidcap` group.",
            p.display()
        ),
        other => other.to_string(),
    }
}

fn plain_api(a: &ApiError) -> String {
    match a.code {
        ErrorCode::PermissionDenied => {
            "you do not have the rights to use the pidcap daemon: run as root, or join the `pidcap` group".into()
        }
        ErrorCode::NoSuchProcess => format!("that process is gone ({})", a.message),
        ErrorCode::InvalidRule => format!("the rule was rejected: {}", a.message),
        ErrorCode::NotRunning => "no capture is running".into(),
        ErrorCode::AlreadyRunning => "a capture is already running; stop it first".into(),
        ErrorCode::NotImplemented => format!("this daemon cannot do that yet ({})", a.message),
        ErrorCode::Kernel => format!("the kernel refused: {}", a.message),
        _ => format!("{} ({})", a.message, code_name(a.code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_read_as_plain_words_and_keep_their_source() {
        let p = Problem::from(ClientError::Api(ApiError::new(ErrorCode::InvalidRule, "bad port")));
        assert_eq!(p.to_string(), "the rule was rejected: bad port");
        let source = std::error::Error::source(&p).expect("the client error is the source");
        assert!(source.to_string().contains("bad port"), "{source}");
        let gone = Problem::from(ClientError::NotRunning("/run/x.sock".into()));
        assert!(gone.to_string().starts_with("No pidcap daemon is running on /run/x.sock."), "{gone}");
        assert_eq!(Task::AddRule.to_string(), "add the rule");
    }
}
