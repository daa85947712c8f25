//! The pidcap daemon's local API, apart from the daemon: what a client needs
//! and nothing of the kernel layer (`cargo tree -p pidcap-api -i aya` is empty).
//!
//! - [`protocol`]: versioned newline-delimited JSON requests, replies and
//!   events (documented in docs/API.md), shared by the daemon and its clients;
//! - [`client`]: a small blocking client (`pidcap ctl`, the UI, tests);
//! - [`error`]: the client's typed errors.

pub mod client;
pub mod error;
pub mod protocol;

pub use client::Client;
pub use error::ClientError;
pub use protocol::{
    ApiError, ConnectionOp, EngineOp, ErrorCode, Event, Op, Reply, Request, DEFAULT_GROUP, DEFAULT_SOCKET, VERSION,
};
