//! Edit and resend packets: the seed's "hex/ASCII editing, single/loop
//! resend, configurable intervals, send status feedback".
//!
//! * [`edit`]: pure payload editing (hex and escaped-ASCII parsers, patches,
//!   find/replace, durations).
//! * [`wire`]: the serde types of a job: [`InjectArgs`] (one send job as the
//!   CLI and the daemon's `inject` take it), [`SendStatus`], [`Summary`],
//!   [`JobInfo`] (a job as the daemon lists it; the daemon's job bookkeeping
//!   itself lives in `pidcap-daemon`).
//! * [`plan`]: [`prepare`] checks [`InjectArgs`] and resolves them against
//!   the captured packet they start from into a [`Prepared`] job.
//! * [`run`]: [`run_job`] / [`run_loop`]: count / forever, interval, a rate
//!   cap, stop on error or not, one [`SendStatus`] per send and a [`Summary`].
//! * [`send`]: three modes ([`Mode`]), each a [`send::Sender`]:
//!   - **socket**: the owning process's own socket, duplicated with
//!     `pidfd_open` + `pidfd_getfd`, found among `/proc/PID/fd` by socket
//!     cookie (`SO_COOKIE`), else by local and remote address. TCP goes
//!     through the live connection (the kernel numbers the bytes: the
//!     connection stays healthy); UDP uses `send` when the socket is
//!     connected to the remote (no sendmsg hook), else `sendto`. The
//!     process's socket flags are never changed (`MSG_DONTWAIT` per call).
//!   - **raw**: the IPv4/IPv6 + TCP/UDP packet rebuilt by
//!     [`pidcap_packet::build`] (lengths and checksums computed; TCP
//!     seq/ack/flags/window from the captured packet) and sent on an
//!     `IPPROTO_RAW` socket (header included, for v4 and v6 alike, so the
//!     source address is ours to choose).
//!   - **connect**: a new TCP connection or UDP socket per send (to the
//!     server side of the packet's conversation by default:
//!     [`plan::default_destination`]), or one for the whole job
//!     ([`InjectArgs::keep_connection`]); what comes back is reported whole
//!     ([`ReplyInfo`], up to [`wire::MAX_REPLY_BYTES`]): until the peer closes
//!     or the timeout passes.
//!     With [`TlsOptions`] ([`tls`]): a fresh TCP connection and TLS
//!     handshake (rustls) per send, the payload written as application data,
//!     the decrypted reply read back (the TLS replay of a plaintext record).

pub mod edit;
pub mod plan;
pub mod run;
pub mod send;
mod sys;
pub mod tls;
pub mod wire;

pub use plan::{
    default_destination, edited_payload, effective_interval, parse_endpoint, prepare, Prepared, Target,
    DEFAULT_INTERVAL_MS, DEFAULT_MAX_RATE, DEFAULT_TIMEOUT_MS,
};
pub use run::{open_sender, run_job, run_loop};
pub use send::SendError;
pub use wire::{
    EndReason, ErrorKind, InjectArgs, JobInfo, JobState, Mode, Proto, ReplyInfo, SendStatus, Summary, TlsOptions,
    TlsSession, MAX_REPLY_BYTES,
};

/// TCP header fields for raw mode (the one definition is pidcap-packet's builder's).
pub use pidcap_packet::build::TcpFields;
