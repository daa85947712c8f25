//! The engine's typed errors. Each says what went wrong and, where the user
//! can fix it, how; load errors carry the kernel verifier's log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("pidcap needs {missing} to load and attach eBPF programs; run it as root (sudo pidcap ...) or grant those capabilities")]
    Permission { missing: String },

    #[error("no process with pid {0}")]
    NoSuchProcess(u32),

    #[error("the kernel refused to load eBPF program `{program}`: {source}\n--- verifier log ---\n{verifier_log}")]
    Verifier {
        program: String,
        #[source]
        source: std::io::Error,
        verifier_log: String,
    },

    /// An error of the kernel layer's own library (aya for eBPF), with its source.
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("this kernel lacks what pidcap needs: {0}")]
    Unsupported(String),

    #[error("cgroup2: {what} ({path}): {source}")]
    Cgroup {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid option: {0}")]
    Invalid(String),
}

impl EngineError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> EngineError {
        EngineError::Io { what: what.into(), source }
    }

    pub fn kernel(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> EngineError {
        EngineError::Kernel { what: what.into(), source: Box::new(source) }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
