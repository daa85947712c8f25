#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then checks
# formatting (cargo fmt --check), lints (clippy -D warnings), the API docs
# (rustdoc -D warnings: no broken or private links), builds and runs
# every test of the workspace. As root, the privileged integration tests load
# the real eBPF programs and make their own network namespaces; without root
# they print why they skip, except under CI=true, where a test that cannot
# run fails: this script then stops at once, before building anything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: CI=$CI and not root (uid $(id -u)): the eBPF, network-namespace and Chromium tests" >&2
    echo "cannot run here, and under CI a test that cannot run fails. Run it as root: sudo -E scripts/test.sh" >&2
    exit 1
  fi
fi
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all --check || { echo "the tree is not rustfmt-clean: run cargo fmt --all" >&2; exit 1; }
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
# Bounded fuzz run of every parser (crates/fuzz, docs/RELIABILITY.md): 80 s in all, fixed seeds printed; a failing input is saved and its path printed.
"${CARGO_TARGET_DIR:-target}/debug/pidcap-fuzz" run --all --seconds 80
