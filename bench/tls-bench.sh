#!/usr/bin/env bash
# TLS plaintext benchmark: what pidcap's uprobes cost a TLS bulk transfer.
#
#   sudo bench/tls-bench.sh                 # 100 MB x 5 repetitions per configuration
#   MB=200 REPS=7 bench/tls-bench.sh
#
# curl downloads MB megabytes over HTTPS (TLS 1.3, OpenSSL 3) from a local
# `openssl s_server -WWW` on 127.0.0.1, to /dev/null; the figure is curl's
# own wall time. Configurations, interleaved (A B C D E, then E D C B A, ...),
# medians shown as ratios against base:
#   base         no pidcap
#   hooks        pidcap captures an idle `sleep` (no TLS library: cgroup programs only,
#                no uprobe attached): the cost of the packet hooks for a bystander
#   bystander    pidcap captures an idle python3 that maps libssl.so.3 (by pid): the
#                uprobes on SSL_read/SSL_write & co. are attached for that process
#                alone, so curl, which is not a target, has no breakpoint; the syscall
#                tracepoints (machine-wide) are attached too
#   bystander-f  the same with --follow-children: the uprobes fall back to
#                system-wide (a forked child must be covered from its first call),
#                and curl takes the uprobe trap on every call
#   target       pidcap run -q -- curl ...: curl is the target; every SSL_read's
#                plaintext (up to the 1500-byte snap length) goes to the ring, and its
#                packets too
# The server maps libssl as well, so it is a bystander of the probes like curl.
#
# Needs root, curl, openssl, python3. Writes only under $OUTDIR (removed at the end).
set -euo pipefail

MB=${MB:-100}
REPS=${REPS:-5}
CONFIGS=${CONFIGS:-"base hooks bystander bystander-f target"}
OUTDIR=${OUTDIR:-/tmp/pidcap-tls-bench}
PORT=${PORT:-42443}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PIDCAP=${PIDCAP:-$ROOT/target/release/pidcap}

die() { echo "tls-bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (pidcap loads eBPF programs)"
for t in curl openssl python3; do command -v $t >/dev/null || die "$t not found"; done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== building (cargo build --release -p pidcap-cli) ==" >&2
    (cd "$ROOT" && cargo build --release -q -p pidcap-cli) || die "building pidcap failed"
fi
[ -x "$PIDCAP" ] || die "$PIDCAP missing"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR/www"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$OUTDIR"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$OUTDIR/key.pem" \
    -out "$OUTDIR/cert.pem" -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
head -c $((MB << 20)) /dev/zero > "$OUTDIR/www/bulk"
(cd "$OUTDIR/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$PORT" \
    -cert "$OUTDIR/cert.pem" -key "$OUTDIR/key.pem" </dev/null >/dev/null 2>&1) &
PIDS+=($!)
URL="https://127.0.0.1:$PORT/bulk"
CURL=(curl -s -o /dev/null --cacert "$OUTDIR/cert.pem" "$URL")
for _ in $(seq 100); do "${CURL[@]}" 2>/dev/null && break; sleep 0.1; done
"${CURL[@]}" || die "the server does not answer"

# An idle process without a TLS library, and one that maps libssl.so.3.
sleep 100000 &
SLEEPER=$!
PIDS+=($SLEEPER)
python3 -c 'import ssl, sys; print("ok", flush=True); sys.stdin.read()' < <(sleep 100000) > "$OUTDIR/py.out" &
PYSSL=$!
PIDS+=($PYSSL)
for _ in $(seq 100); do grep -q ok "$OUTDIR/py.out" 2>/dev/null && break; sleep 0.1; done
grep -q libssl /proc/$PYSSL/maps || die "python3 does not map libssl"

# curl's own figure (time_total), in nanoseconds: process start-up and
# pidcap's loading stay outside.
timed_curl() {
    "$@" curl -s -o /dev/null -w '%{time_total}\n' --cacert "$OUTDIR/cert.pem" "$URL" 2>>"$OUTDIR/run.err" |
        awk '{printf "%d\n", $1 * 1e9}'
}

links_of() { ls -l /proc/"$1"/fd 2>/dev/null | grep -c 'anon_inode:bpf_link' || true; }

# `pidcap capture -q --pid PID [more options]`, once it holds at least $2 BPF
# links (15 for the packet hooks; 31 with the syscall tracepoints and 4 OpenSSL
# functions' uprobes and uretprobes).
start_capture() {
    "$PIDCAP" capture -q "${@:3}" --pid "$1" 2>>"$OUTDIR/capture.err" &
    CAP=$!
    for _ in $(seq 400); do
        [ "$(links_of $CAP)" -ge "$2" ] && return
        sleep 0.05
    done
    die "pidcap capture --pid $1 did not attach $2 links (has $(links_of $CAP)): $(cat "$OUTDIR/capture.err")"
}
stop_capture() {
    kill -INT "$CAP" 2>/dev/null || true
    wait "$CAP" 2>/dev/null || true
}

run_one() { # config -> nanoseconds of curl's download
    case $1 in
    base) timed_curl ;;
    hooks)
        start_capture "$SLEEPER" 15
        timed_curl
        stop_capture ;;
    bystander)
        start_capture "$PYSSL" 31
        timed_curl
        stop_capture ;;
    bystander-f)
        start_capture "$PYSSL" 31 --follow-children
        timed_curl
        stop_capture ;;
    target) timed_curl "$PIDCAP" run -q -- ;;
    esac
}

declare -A RES
order=($CONFIGS)
for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 0 ]; then
        seq_=$(printf '%s\n' "${order[@]}" | tac)
    else
        seq_=$(printf '%s\n' "${order[@]}")
    fi
    for c in $seq_; do
        ns=$(run_one "$c")
        RES[$c]="${RES[$c]:-} $ns"
        printf 'rep %d %-12s %8.3f s\n' "$rep" "$c" "$(echo "$ns" | awk '{print $1/1e9}')" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base=$(echo "${RES[base]}" | median)
printf '\n%s MB over HTTPS (curl <- openssl s_server, loopback), median of %d\n' "$MB" "$REPS"
printf '%-12s %10s %10s %8s\n' config seconds MB/s ratio
for c in "${order[@]}"; do
    m=$(echo "${RES[$c]}" | median)
    awk -v c="$c" -v m="$m" -v b="$base" -v mb="$MB" \
        'BEGIN {printf "%-12s %10.3f %10.0f %8.3f\n", c, m/1e9, mb/(m/1e9), m/b}'
done
