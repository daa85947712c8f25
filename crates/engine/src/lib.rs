//! pidcap's capture engine.
//!
//! - [`backend`]: the narrow interface to a kernel layer ([`KernelBackend`]);
//! - [`ebpf`]: its Linux implementation over the programs in `bpf/`;
//! - [`abi`]: the Rust mirror of `bpf/pidcap_abi.h`;
//! - [`capture`]: the loop that turns kernel records into [`pidcap_packet::CapturedPacket`]s;
//! - [`ring`]: the bounded packet ring (10,000 by default) that counts evictions;
//! - [`rules`]: filter rules (allow/block), their SPEC grammar and kernel form;
//! - [`procfs`]: what the engine reads about processes.

pub mod abi;
pub mod backend;
pub mod capture;
pub mod ebpf;
pub mod error;
pub mod procfs;
pub mod ring;
pub mod rules;

pub use backend::{KernelBackend, KernelConfig, KernelCounters, RawPacket};
pub use capture::{Capture, CaptureOptions, CaptureStats, WallClock, DEFAULT_SNAPLEN};
pub use ebpf::{EbpfBackend, LoadOptions};
pub use error::{EngineError, Result};
pub use ring::{PacketRing, DEFAULT_RING_SIZE};
pub use rules::{Action, Rule, RuleError};
