//! pidcap's capture engine core: everything between a kernel layer and the
//! clients, with no kernel-specific code (no aya, no build script), so that
//! it builds and is tested anywhere.
//!
//! - [`backend`]: the narrow interface to a kernel layer ([`KernelBackend`]);
//!   `pidcap-ebpf` is its Linux implementation, `fake` (feature `fake`) a
//!   scripted one for tests;
//! - [`capture`]: turns kernel records into [`pidcap_packet::CapturedPacket`]s (those a [`PacketFilter`] keeps);
//! - [`session`]: the one capture loop (drain, liveness, counters, grace) of the CLI and the daemon;
//! - [`ring`]: the bounded packet ring (10,000 by default) that counts evictions;
//! - [`rules`]: filter rules (allow/block) and their SPEC grammar;
//! - [`cgroup`]: capture by cgroup: `--cgroup`/`--unit`/`--container` resolved on a cgroup2 tree, its processes;
//! - [`container`]: container runtimes' cgroup naming (docker, podman, containerd, CRI-O, nspawn, LXC);
//! - [`procfs`]: the one reader of `/proc` (status, comm, sockets, exe, cmdline, cgroup);
//! - [`meta`]: each process's metadata for its packets, read once per process and kept after it exits;
//! - [`process`]: a target held by a pidfd, and the identity ([`TargetId`]) no other process shares;
//! - [`spawn`]: the one way to start a command held until it is a target.

pub mod backend;
pub mod capture;
pub mod cgroup;
pub mod container;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod meta;
pub mod process;
pub mod procfs;
pub mod ring;
pub mod rules;
pub mod session;
pub mod spawn;

pub use backend::{
    KernelBackend, KernelConfig, KernelCounters, KernelTarget, RawPacket, RawTls, TlsCoverage, TlsLibraryFile,
};
pub use capture::{Capture, CaptureOptions, CaptureStats, PacketFilter, Raw, WallClock, DEFAULT_SNAPLEN, MAX_SNAPLEN};
pub use error::{EngineError, InvalidInput, Result};
pub use process::{Process, TargetId};
pub use ring::{PacketRing, DEFAULT_RING_SIZE, MAX_RING_SIZE};
pub use rules::{Action, Rule, RuleError};
pub use session::{Drain, Schedule, Session, Tick};
