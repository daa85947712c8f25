#!/usr/bin/env bash
# Runs every test of the workspace. As root, the privileged integration tests
# load the real eBPF programs and make their own network namespaces; without
# root they print why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all --check || { echo "the tree is not rustfmt-clean: run cargo fmt --all"; exit 1; }
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
