//! The pidcap daemon: one loaded kernel layer, served on a Unix socket to
//! `pidcap ctl`, the UI and other clients of [`pidcap_api`].
//!
//! - [`server`]: the socket, its permissions, one task per client;
//! - [`engine`]: the thread that owns the kernel layer (any
//!   [`pidcap_engine::KernelBackend`]: eBPF, or the fake in tests) and the filter list;
//! - [`jobs`]: the send jobs of `inject` (pidcap-resend), one thread each.

pub mod engine;
pub mod error;
pub mod jobs;
pub mod server;

pub use error::DaemonError;
pub use server::{Daemon, DaemonConfig};
