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

    /// An option or argument out of range: which one, and what was given.
    #[error("invalid option: {0}")]
    Invalid(InvalidInput),
}

/// What was invalid in a request to the engine or a kernel layer, typed so
/// that clients can map it (the daemon answers `invalid_argument`) and say
/// what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("snap length {0} is not in 1..={max}", max = crate::capture::MAX_SNAPLEN)]
    SnapLength(u32),
    /// The user-space packet ring's capacity, in packets.
    #[error("ring size {0} is not in 1..={max}", max = crate::ring::MAX_RING_SIZE)]
    RingSize(usize),
    /// The kernel ring buffer's size, in bytes.
    #[error("kernel ring buffer of {0} bytes is not a power of two >= 4096")]
    KernelRingBytes(u32),
    /// A kernel ring wakeup threshold the ring could never reach (or zero).
    #[error("a wakeup threshold of {wakeup} bytes is not in 1..{ring} (below the kernel ring's size)")]
    WakeupBytes { wakeup: u32, ring: u32 },
    /// A rule list longer than [`crate::rules::MAX_RULES`].
    #[error("{0} rules given; the kernel layer holds at most {max}", max = crate::rules::MAX_RULES)]
    TooManyRules(usize),
    /// A target process name that is empty.
    #[error("empty process name")]
    EmptyProcessName,
    /// A target pid that is a thread of another process.
    #[error("{tid} is a thread of process {tgid}, not a process: give {tgid}")]
    Thread { tid: u32, tgid: u32 },
}

impl From<InvalidInput> for EngineError {
    fn from(e: InvalidInput) -> EngineError {
        EngineError::Invalid(e)
    }
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
