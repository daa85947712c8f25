//! Fuzzing pidcap's parsers of outside input.
//!
//! * [`targets`]: one target per parser (capture files, `.dpp`, rule specs,
//!   the daemon's requests, hex/ASCII editing, the packet decoder, library
//!   queries, the display filter, the packet detail tree), each checking properties beyond
//!   "no panic".
//! * [`driver`] + [`mutate`]: a coverage-free mutational driver on stable
//!   Rust over the seed corpora in `crates/fuzz/corpus/<target>/`, with a
//!   time budget per input (a hang is a failure) and, in the binary, a memory
//!   limit ([`alloc`]). `cargo run -p pidcap-fuzz -- help` says how to run it.
//! * `crates/fuzz/libfuzzer/`: the same targets for cargo-fuzz (libFuzzer,
//!   coverage-guided), for the long runs; see docs/RELIABILITY.md.

pub mod alloc;
pub mod driver;
pub mod mutate;
pub mod targets;

/// The corpus directory of this crate (`crates/fuzz/corpus`).
pub fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Where failing inputs go unless told otherwise: `target/fuzz-crashes` of the workspace.
pub fn default_crash_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate_dir.parent().and_then(std::path::Path::parent).unwrap_or(crate_dir).join("target")
    });
    target.join("fuzz-crashes")
}
