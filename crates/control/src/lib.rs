//! The pidcap daemon and its local API.
//!
//! `pidcap daemon` loads the kernel layer once and serves it on a Unix
//! socket; `pidcap ctl ...` and the UI are its clients. The API is versioned
//! newline-delimited JSON ([`protocol`], documented in docs/API.md):
//! - [`protocol`]: request, reply and event types, shared by both sides;
//! - [`server`]: the socket, its permissions, one task per client;
//! - [`jobs`]: the send jobs of `inject` (pidcap-resend), one thread each;
//! - [`engine`]: the thread that owns the kernel layer and the filter list;
//! - [`client`]: a small blocking client.

pub mod client;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod protocol;
pub mod server;

pub use client::Client;
pub use error::ControlError;
pub use protocol::{ApiError, ErrorCode, Event, Op, Reply, Request, DEFAULT_SOCKET, VERSION};
pub use server::{Daemon, DaemonConfig};
