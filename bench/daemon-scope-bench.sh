#!/usr/bin/env bash
# What `pidcap daemon` costs a bystander: a 64 B UDP loopback flood that is
# not a target (bench/flood), side by side in one run, interleaved:
#   base        no daemon
#   idle        the daemon running, no capture (nothing attached: issue 13)
#   root        the daemon capturing a name no process has (its programs on
#               the cgroup2 root: what every idle daemon cost before issue 13)
#   cg          the daemon capturing an idle sleep in a cgroup of its own
#               (its programs on that cgroup)
# Prints per config the median packets/s, the ratio to base, the daemon's
# links on the root and elsewhere (bpftool), which say where it was attached,
# and what its packet programs (pidcap_ingress + pidcap_egress) cost per
# datagram of the flood: runs and ns (kernel.bpf_stats_enabled is set to 1
# for the run and restored after; these do not depend on a quiet machine,
# the rates do).
#
#   sudo bench/daemon-scope-bench.sh
#   SECS=5 REPS=5 SENDERS=2 bench/daemon-scope-bench.sh
#
# Needs root, cargo (builds bench/flood and uses target/release/pidcap, or
# PIDCAP=...), bpftool. Refuses to run while another pidcap is loaded.
set -euo pipefail

SECS=${SECS:-3}
REPS=${REPS:-3}
SENDERS=${SENDERS:-1}
SIZE=${SIZE:-64}
CONFIGS=${CONFIGS:-"base idle root cg"}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PIDCAP=${PIDCAP:-$ROOT/target/release/pidcap}
FLOOD=$HERE/flood/target/release/flood
OUT=$(mktemp -d /tmp/pidcap-dscope-bench.XXXXXX)
SOCK=$OUT/pidcap.sock
PORT=${PORT:-42300}

die() { echo "daemon-scope-bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$PIDCAP" ] || die "$PIDCAP missing (cargo build --release -p pidcap-cli, or PIDCAP=...)"
command -v bpftool >/dev/null || die "needs bpftool"
[ -x "$FLOOD" ] || cargo build --release --manifest-path "$HERE/flood/Cargo.toml" >/dev/null 2>&1 || die "cannot build bench/flood"
if bpftool prog show 2>/dev/null | grep -q 'name pidcap_'; then
    die "another pidcap is loaded (its programs would tax every figure): $(bpftool prog show | grep -m1 'name pidcap_')"
fi

CG2=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break } }' /proc/self/mountinfo | head -1)
[ -n "$CG2" ] || die "no cgroup2 mount"
IDLE_CG=$CG2/pidcap-dscope-bench-$$
DAEMON= IDLE=
STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 >/proc/sys/kernel/bpf_stats_enabled
cleanup() {
    echo "$STATS_WAS" >/proc/sys/kernel/bpf_stats_enabled
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    [ -n "$IDLE" ] && kill "$IDLE" 2>/dev/null || true
    if [ -d "$IDLE_CG" ]; then
        for p in $(cat "$IDLE_CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$CG2/cgroup.procs" 2>/dev/null || true; done
        for _ in $(seq 1 100); do rmdir "$IDLE_CG" 2>/dev/null && break; sleep 0.02; done
    fi
    rm -rf "$OUT"
}
trap cleanup EXIT

mkdir "$IDLE_CG"
sleep 100000 &
IDLE=$!
echo "$IDLE" >"$IDLE_CG/cgroup.procs"

ctl() { "$PIDCAP" ctl --socket "$SOCK" "$@" >/dev/null; }

# The daemon's cgroup links: "ROOT_LINKS OTHER_LINKS".
daemon_links() {
    local progs root_id
    progs=$(grep -h '^prog_id:' /proc/"$DAEMON"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u | tr '\n' ' ')
    root_id=$(stat -c %i "$CG2")
    bpftool --json link show | python3 -c '
import json, sys
progs = set(int(p) for p in sys.argv[1].split())
root = int(sys.argv[2])
links = [l for l in json.load(sys.stdin) if l.get("prog_id") in progs and "cgroup_id" in l]
print(sum(1 for l in links if l["cgroup_id"] == root), sum(1 for l in links if l["cgroup_id"] != root))
' "$progs" "$root_id"
}

# The daemon's packet programs' run count and run time: "RUNS NS".
packet_runs() {
    local progs
    progs=$(grep -h '^prog_id:' /proc/"$DAEMON"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u | tr '\n' ' ')
    bpftool --json prog show | python3 -c '
import json, sys
progs = set(int(p) for p in sys.argv[1].split())
ps = [p for p in json.load(sys.stdin) if p["id"] in progs and p.get("name") in ("pidcap_ingress", "pidcap_egress")]
print(sum(p.get("run_cnt", 0) for p in ps), sum(p.get("run_time_ns", 0) for p in ps))
' "$progs"
}

start_daemon() {
    "$PIDCAP" daemon --socket "$SOCK" --group pidcap-bench-no-such-group 2>"$OUT/daemon.err" &
    DAEMON=$!
    for _ in $(seq 1 600); do
        "$PIDCAP" ctl --socket "$SOCK" state >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON" 2>/dev/null || die "the daemon exited: $(cat "$OUT/daemon.err")"
        sleep 0.05
    done
    die "the daemon never answered"
}
stop_daemon() { kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=; }

RESULTS=$OUT/results
: >"$RESULTS"
run_one() { # run_one CONFIG
    local cfg=$1 links="- -" pps sent flood_out=$OUT/flood.json r0 r1 per="- -"
    case $cfg in
        base) ;;
        idle) start_daemon ;;
        root) start_daemon; ctl start --name pidcap-bench-nomatch ;;
        cg) start_daemon; ctl start --pid "$IDLE" ;;
    esac
    [ "$cfg" = base ] || { links=$(daemon_links); r0=$(packet_runs); }
    "$FLOOD" udp --size "$SIZE" --senders "$SENDERS" --secs "$SECS" --port "$PORT" >"$flood_out"
    pps=$(sed -n 's/.*"pps":\([0-9.]*\).*/\1/p' "$flood_out")
    sent=$(sed -n 's/.*"sent_packets":\([0-9]*\).*/\1/p' "$flood_out")
    if [ "$cfg" != base ]; then
        r1=$(packet_runs)
        per=$(awk -v a="$r0" -v b="$r1" -v n="$sent" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f %.0f", (y[1] - x[1]) / n, (y[2] - x[2]) / n }')
        stop_daemon
    fi
    echo "$cfg $pps $links $per" >>"$RESULTS"
}

echo "load before: $(uptime)"
configs=($CONFIGS)
for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order=("${configs[@]}"); else order=($(printf '%s\n' "${configs[@]}" | tac)); fi
    for cfg in "${order[@]}"; do run_one "$cfg"; done
done
echo "load after:  $(uptime)"
echo "${SIZE} B UDP flood, $SENDERS sender(s), ${SECS} s x $REPS, medians; links = the daemon's cgroup links on the root / elsewhere;"
echo "runs/pkt, ns/pkt = its pidcap_ingress + pidcap_egress runs and run time per datagram sent (last run; bpf_stats' own clock reads included)"
awk -v configs="$CONFIGS" '
{ n[$1]++; v[$1, n[$1]] = $2; lr[$1] = $3; lo[$1] = $4; rr[$1] = $5; rn[$1] = $6 }
function median(c,   i, j, t, a, k) {
    k = n[c]; for (i = 1; i <= k; i++) a[i] = v[c, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
    split(configs, cs, " "); base = median("base")
    printf "%-6s %12s %8s %12s %9s %8s   %s\n", "config", "pps", "/base", "links r/else", "runs/pkt", "ns/pkt", "every run (pps)"
    for (i = 1; cs[i] != ""; i++) {
        c = cs[i]; m = median(c); runs = ""
        for (j = 1; j <= n[c]; j++) runs = runs " " sprintf("%.0f", v[c, j])
        printf "%-6s %12.0f %8.3f %12s %9s %8s  %s\n", c, m, base ? m / base : 0, lr[c] "/" lo[c], rr[c], rn[c], runs
    }
}' "$RESULTS"
