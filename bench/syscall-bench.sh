#!/usr/bin/env bash
# What a pidcap with TLS on costs every other process's system calls.
#
# While `pidcap run` (TLS on, the default) has a target mapping a TLS library
# (or a held command with the standard candidates attached), its syscall
# program (pidcap_sys_enter, a raw tracepoint on sys_enter) runs on every
# system call of the machine, and every task takes the kernel's syscall
# tracing path. This measures a bystander's system calls (`flood syscalls`:
# getppid, which no capture looks at, and a 1-byte write to /dev/null, one of
# the eight calls the program looks at) with no pidcap, beside a
# `pidcap run --no-tls -- sleep` (the control: no syscall program), and
# beside a `pidcap run -- sleep` (the syscall program attached), interleaved,
# REPS times; with OTHER=path, also beside `OTHER run -- sleep` (another
# build, for a before/after in one run).
#
#   sudo bench/syscall-bench.sh                      # SECS=2 REPS=5
#   OTHER=/tmp/pidcap-old sudo bench/syscall-bench.sh
#
# Prints the medians (ns per call) and each configuration over `base`.
set -euo pipefail

cd "$(dirname "$0")/.."
PIDCAP=${PIDCAP:-target/release/pidcap}
OTHER=${OTHER:-}
SECS=${SECS:-2}
REPS=${REPS:-5}
FLOOD=bench/flood/target/release/flood

die() { echo "syscall-bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (pidcap loads eBPF programs)"
[ -x "$PIDCAP" ] || die "no $PIDCAP: cargo build --release -p pidcap-cli"
[ -z "$OTHER" ] || [ -x "$OTHER" ] || die "OTHER=$OTHER is not an executable"
if [ ! -x "$FLOOD" ] || [ bench/flood/src/main.rs -nt "$FLOOD" ]; then
    (cd bench/flood && cargo build --release --quiet) || die "cannot build bench/flood"
fi
if command -v bpftool >/dev/null && bpftool prog show 2>/dev/null | grep -q 'name pidcap_'; then
    die "another pidcap has programs loaded: it taxes every configuration; stop it first"
fi

OUT=$(mktemp -d /tmp/syscall-bench.XXXXXX)
chmod 700 "$OUT"
BG=""
cleanup() { [ -n "$BG" ] && kill "$BG" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT

# beside BIN ARGS...: start `BIN run -q ARGS -- sleep` and wait until it says it captures.
beside() {
    local bin=$1; shift
    : >"$OUT/err"
    "$bin" run -q "$@" -- sleep $((SECS * 2 + 5)) 2>"$OUT/err" >/dev/null &
    BG=$!
    for _ in $(seq 200); do
        grep -q '^pidcap: capturing' "$OUT/err" && return 0
        kill -0 "$BG" 2>/dev/null || die "$bin run failed: $(cat "$OUT/err")"
        sleep 0.05
    done
    die "$bin run did not start: $(cat "$OUT/err")"
}

stop() { kill -INT "$BG" 2>/dev/null || true; wait "$BG" 2>/dev/null || true; BG=""; }

CONFIGS="base notls tls"
[ -n "$OTHER" ] && CONFIGS="$CONFIGS other"
echo "== syscall-bench: $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg) at the start; $REPS reps of $SECS s =="
for rep in $(seq "$REPS"); do
    for cfg in $CONFIGS; do
        case $cfg in
            notls) beside "$PIDCAP" --no-tls ;;
            tls) beside "$PIDCAP" ;;
            other) beside "$OTHER" ;;
        esac
        line=$("$FLOOD" syscalls --secs "$SECS")
        [ "$cfg" = base ] || stop
        echo "$cfg $line" | tee -a "$OUT/results" >&2
    done
done
echo "load average $(cut -d' ' -f1 /proc/loadavg) at the end"
python3 - "$OUT/results" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    cfg, js = line.split(" ", 1)
    runs.setdefault(cfg, []).append(json.loads(js))
med = {c: {k: statistics.median(r[k] for r in v) for k in ("getppid_ns", "write_ns")} for c, v in runs.items()}
what = {"base": "no pidcap", "notls": "pidcap run --no-tls -- sleep (control)",
        "tls": "pidcap run -- sleep (syscall program on)", "other": "OTHER run -- sleep"}
print(f"{'configuration':44} {'getppid ns':>11} {'/base':>6} {'write ns':>10} {'/base':>6}")
for c in ("base", "notls", "tls", "other"):
    if c in med:
        g, w = med[c]["getppid_ns"], med[c]["write_ns"]
        print(f"{what[c]:44} {g:11.1f} {g / med['base']['getppid_ns']:6.2f} {w:10.1f} {w / med['base']['write_ns']:6.2f}")
EOF
