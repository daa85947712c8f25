#!/usr/bin/env bash
# Installs what pidcap needs to build and test on a fresh Debian machine:
# clang + libbpf headers (the eBPF programs are compiled by build.rs), libpcap-dev
# (filter expressions),
# tshark/tcpdump/bpftool/iproute2/python3/curl/openssl/gnutls-cli/chromium (the
# tests use them); checks
# that a Rust toolchain (1.87+) with rustfmt and clippy is there (it does not
# install Rust: it says how). Idempotent: installs only what is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang || need+=(clang llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
# pcap-filter expressions are compiled by libpcap (crates/filter links -lpcap).
[ -f /usr/include/pcap/pcap.h ] || need+=(libpcap-dev)
have tshark || need+=(tshark)
have tcpdump || need+=(tcpdump)
have bpftool || need+=(bpftool)
have ip || need+=(iproute2)
have python3 || need+=(python3)
have curl || need+=(curl)
# TLS plaintext tests: certificates, and a GnuTLS client beside OpenSSL's.
have openssl || need+=(openssl)
have gnutls-cli || need+=(gnutls-bin)
# ... and an NSS one (tstclnt, certutil).
{ have tstclnt && have certutil; } || need+=(libnss3-tools)
have setpriv || need+=(util-linux)
have pgrep || need+=(procps)
have gcc || need+=(gcc libc6-dev)
# The UI's end-to-end tests drive Debian's Chromium through chromedriver.
have chromium || need+=(chromium fonts-dejavu-core)
have chromedriver || need+=(chromium-driver)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have cargo; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! have cargo; then
  # Debian 12's own rustc (1.63) is too old for this workspace (1.87+).
  echo "pidcap needs a Rust toolchain, 1.87 or newer (rustup: https://rustup.rs); none found on PATH" >&2
  exit 1
fi
# The test command runs `cargo fmt --check` and `cargo clippy`: both are
# rustup components, missing from a minimal toolchain.
missing=()
cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
if [ ${#missing[@]} -gt 0 ]; then
  if have rustup; then
    echo "the Rust toolchain lacks ${missing[*]}: rustup component add ${missing[*]}" >&2
  else
    echo "the Rust toolchain lacks ${missing[*]} and rustup is not installed: install Rust with rustup" \
      "(https://rustup.rs), then rustup component add ${missing[*]}" >&2
  fi
  exit 1
fi
