#!/usr/bin/env bash
# Daemon memory over a long capture with subscribers attached (issue 13:
# "the daemon's memory flat over 10 million packets with a subscriber attached").
#
#   sudo bench/daemon-bench.sh                   # 10,000,000 packets, one subscriber
#   PACKETS=2000000 bench/daemon-bench.sh        # shorter
#   SUBS=2 STALLED=1 bench/daemon-bench.sh       # two readers and one that never reads
#   SUB=ctl bench/daemon-bench.sh                # the subscriber is `pidcap ctl watch --json`
#   PPS=150000 bench/daemon-bench.sh             # pace the flood (default: as fast as it goes)
#
# Runs the real daemon (`pidcap daemon`) on its own socket under $OUTDIR, a
# subscriber (bench/daemon-sub.py: counts the event lines, parses nothing; or
# `pidcap ctl watch --json`), and the target: bench/flood sending 64-byte UDP
# datagrams on loopback, captured by pid through `pidcap ctl start`. The flood
# runs until the daemon has received PACKETS packets. Prints the daemon's
# RSS when idle, once the capture is warm (WARM packets received: its ring and
# the subscriber queues full), every REPORT_EVERY packets, at the end, and its
# peak (VmHWM); then what the daemon received and lost and what each
# subscriber saw and was told it missed.
#
# Needs root, cargo, python3.
set -euo pipefail

PACKETS=${PACKETS:-10000000}
WARM=${WARM:-500000}
REPORT_EVERY=${REPORT_EVERY:-1000000}
SIZE=${SIZE:-64}
SENDERS=${SENDERS:-1}
PPS=${PPS:-0}
SUBS=${SUBS:-1}
STALLED=${STALLED:-0}
SUB=${SUB:-raw}
SNAPLEN=${SNAPLEN:-1500}
RING=${RING:-} # packets the daemon keeps (start_capture ring_size); empty: its default
OUTDIR=${OUTDIR:-/tmp/pidcap-daemon-bench}
PORT=${PORT:-42900}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FLOOD=$HERE/flood/target/release/flood
PIDCAP=${PIDCAP:-$ROOT/target/release/pidcap}

die() { echo "daemon-bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the daemon loads eBPF programs)"
command -v python3 >/dev/null || die "python3 not found"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== building (cargo build --release) ==" >&2
    (cd "$ROOT" && cargo build --release -q -p pidcap-cli) || die "building pidcap failed"
    cargo build --release -q --manifest-path "$HERE/flood/Cargo.toml" || die "building flood failed"
fi
[ -x "$PIDCAP" ] || die "$PIDCAP missing"
[ -x "$FLOOD" ] || die "$FLOOD missing"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
SOCK=$OUTDIR/run/pidcap.sock
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

ctl() { "$PIDCAP" ctl --socket "$SOCK" "$@"; }
kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
state_field() { # state_field JSON-PATH (python expression on s)
    ctl --json state | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"
}

echo "== machine: $(nproc) CPUs, kernel $(uname -r); $(uptime | sed 's/.*load/load/') ==" >&2
"$PIDCAP" daemon --socket "$SOCK" 2>"$OUTDIR/daemon.err" &
DAEMON=$!
BG_PIDS+=("$DAEMON")
for _ in $(seq 1 200); do [ -S "$SOCK" ] && ctl state >/dev/null 2>&1 && break; sleep 0.05; done
ctl state >/dev/null || die "the daemon did not start: $(cat "$OUTDIR/daemon.err")"
rss_idle=$(kib "$DAEMON" VmRSS)

# Subscribers: SUBS that read, STALLED that subscribe and never read.
SUB_PIDS=()
for i in $(seq 1 "$SUBS"); do
    if [ "$SUB" = ctl ]; then
        # Counted as they come (10 million lines would be gigabytes in a file).
        "$PIDCAP" ctl --socket "$SOCK" --json watch 2>"$OUTDIR/sub$i.err" > >(awk '/"event":"packet"/ { n++ }
            /"event":"missed"/ { sub(/.*"count":/, ""); m += $0 + 0 }
            END { printf "{\"packets\":%d,\"missed\":%d,\"bytes\":0}\n", n, m }' >"$OUTDIR/sub$i.out") &
    else
        python3 "$HERE/daemon-sub.py" "$SOCK" >"$OUTDIR/sub$i.out" 2>"$OUTDIR/sub$i.err" &
    fi
    SUB_PIDS+=("$!")
    BG_PIDS+=("$!")
done
for i in $(seq 1 "$STALLED"); do
    python3 "$HERE/daemon-sub.py" "$SOCK" --stall 100000 >"$OUTDIR/stalled$i.out" 2>"$OUTDIR/stalled$i.err" &
    BG_PIDS+=("$!")
done
want_subs=$((SUBS + STALLED))
for _ in $(seq 1 200); do [ "$(state_field 's["subscribers"]')" -ge "$want_subs" ] && break; sleep 0.05; done
[ "$(state_field 's["subscribers"]')" -ge "$want_subs" ] || die "the subscribers did not subscribe"

# The target: flood, captured by pid from its first packets on.
"$FLOOD" udp --size "$SIZE" --senders "$SENDERS" --port "$PORT" --secs 600 --pps "$PPS" >"$OUTDIR/flood.json" &
FLOODPID=$!
BG_PIDS+=("$FLOODPID")
ring_arg=()
[ -n "$RING" ] && ring_arg=(--ring-size "$RING")
ctl start --pid "$FLOODPID" -s "$SNAPLEN" "${ring_arg[@]}" >/dev/null || die "ctl start failed"
start=$(date +%s.%N)

printf '\n%-12s %10s %10s %12s %12s\n' "received" "rss" "hwm" "ring_full" "elapsed" | tee "$OUTDIR/samples.txt"
rss_warm=
rss_min=
rss_max=0
next=$REPORT_EVERY
while :; do
    kill -0 "$FLOODPID" 2>/dev/null || die "the flood ended before $PACKETS packets were received (600 s limit)"
    read -r got full < <(state_field 's["stats"]["received"], s["stats"]["kernel"]["ring_full"]' | tr -d '(),')
    rss=$(kib "$DAEMON" VmRSS)
    if [ -z "$rss_warm" ] && [ "$got" -ge "$WARM" ]; then
        rss_warm=$rss
        rss_min=$rss
        printf '%-12s %10s %10s %12s %11ss  (warm)\n' "$got" "$(mib "$rss")" "$(mib "$(kib "$DAEMON" VmHWM)")" "$full" \
            "$(since "$start")" | tee -a "$OUTDIR/samples.txt"
    fi
    if [ -n "$rss_warm" ]; then
        [ "$rss" -lt "$rss_min" ] && rss_min=$rss
        [ "$rss" -gt "$rss_max" ] && rss_max=$rss
    fi
    if [ "$got" -ge "$next" ] || [ "$got" -ge "$PACKETS" ]; then
        printf '%-12s %10s %10s %12s %11ss\n' "$got" "$(mib "$rss")" "$(mib "$(kib "$DAEMON" VmHWM)")" "$full" \
            "$(since "$start")" | tee -a "$OUTDIR/samples.txt"
        while [ "$next" -le "$got" ]; do next=$((next + REPORT_EVERY)); done
    fi
    [ "$got" -ge "$PACKETS" ] && break
    sleep 0.5
done
elapsed=$(since "$start")
kill -INT "$FLOODPID" 2>/dev/null || true

wait "$FLOODPID" 2>/dev/null || true
sleep 1 # the subscribers read what is still queued
final=$(ctl --json state)
rss_end=$(kib "$DAEMON" VmRSS)
hwm=$(kib "$DAEMON" VmHWM)
for p in "${SUB_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${SUB_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done

echo
echo "daemon memory (VmRSS; peak = VmHWM) over $PACKETS packets of $SIZE B UDP, $SUBS reading + $STALLED stalled subscriber(s) ($SUB)"
printf '  %-28s %s\n' "idle, before the capture" "$(mib "$rss_idle")"
printf '  %-28s %s\n' "warm ($WARM packets)" "$(mib "$rss_warm")"
printf '  %-28s %s\n' "after warm: min / max" "$(mib "$rss_min") / $(mib "$rss_max")"
printf '  %-28s %s\n' "end" "$(mib "$rss_end")"
printf '  %-28s %s\n' "peak (VmHWM)" "$(mib "$hwm")"
printf '  %-28s %s\n' "growth, warm -> end" "$(mib $((rss_end - rss_warm)))"
python3 - "$final" "$elapsed" <<'EOF'
import json, sys
s = json.loads(sys.argv[1]); st = s["stats"]; k = st["kernel"]; secs = float(sys.argv[2])
print("  daemon: received %d packets in %.1f s (%.0f/s), dropped in the kernel ring %d, evicted from its ring %d (ring %d of %d)"
      % (st["received"], secs, st["received"] / secs, k.get("ring_full", 0), st["evicted"], st["ring_len"], st["ring_capacity"]))
EOF
for i in $(seq 1 "$SUBS"); do
    for _ in $(seq 1 100); do [ -s "$OUTDIR/sub$i.out" ] && break; sleep 0.05; done
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("  subscriber %s: %d packets, told it missed %d%s" % (sys.argv[2], c["packets"], c["missed"], ", %.1f MB read" % (c["bytes"] / 1e6) if c["bytes"] else ""))' \
            "$OUTDIR/sub$i.out" "$i"
done
[ "$STALLED" -gt 0 ] && echo "  $STALLED stalled subscriber(s): subscribed, never read"
rm -f "$OUTDIR"/sub*.out
